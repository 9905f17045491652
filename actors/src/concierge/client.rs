//! The ConciergeClient: the concierge's state of one connection, run by the
//! shared [`Connection`] actor.
//!
//! A new connection must IDENTIFY first (within `identify_timeout`); any
//! failure there closes the socket with the protocol's 40xx code. After
//! that every text payload gets a `seq` (the n-th text payload since
//! IDENTIFY, or as set by SELF_SET_SEQ) and exactly one reply carrying it,
//! and replies leave in the order the payloads came.
//!
//! MESSAGEs to a service whose actor the client holds (it created or
//! subscribed to the service, or reached it once through the directory) are
//! pipelined: each goes straight to the service actor, in order, and the
//! client reads on without waiting for the outcome. The outcomes come back on
//! their own channels; the replies they make wait in the queue of owed
//! replies until every earlier one is written. Any other request waits until
//! no reply is owed (so it sees the effect of everything sent before it, as
//! when each payload waited for its own answer), then the actor waits for the
//! work the reply needs (the directory's answer, a broadcast queued) before
//! reading on: one path, [`reply_after`](Connection::reply_after).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use actix::WeakAddr;
use actix_web::web::Bytes;
use bytestring::ByteString;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::directory::{
    ClientRef, ConciergeDirectory, CreateService, Creation, DeleteRefused, DeleteService,
    FetchClient, FetchClients, FetchService, FetchServices, FindClient, FindService, Identify,
    Leave, NameTaken, Subscription, SubscriptionRefused, Welcome,
};
use super::service::{ClientMessage, PublishRefused, Relay, RelayOutcome, Service};
use super::wire::{
    self, close, encode_message, ClientInfo, DecodeError, PayloadIn, PayloadOut, Target,
};
use super::{ConciergeSettings, FsKeyMode};
use crate::connection::{Connection, ConnectionContext, Disconnect, Frames, Hooks};
use crate::fanout::Delivery;
use crate::lobby::{Announce, Lobby, SendTo};
use crate::metrics::{metrics, ProtocolErrorKind};
use crate::Protocol;

/// MESSAGEs one client may have on their way to a service before it stops
/// reading until the oldest is answered: bounds the replies it is owed and
/// its share of the service's mailbox (TCP pushes back on the client).
const MAX_PIPELINED: usize = 64;

/// Services a client may remember before the ones that are gone are swept
/// out (a client only remembers services it holds, which a limit bounds).
const SWEEP_SERVICES_AT: usize = 32;

/// Where a connection is in its life.
enum Stage {
    /// Waiting for IDENTIFY.
    Unidentified,
    /// IDENTIFY passed the checks; the directory is claiming the name.
    Joining(Uuid),
    /// Identified: HELLO was sent.
    Identified(Arc<ClientInfo>),
}

/// Where a reply goes relative to what is already queued for the client.
#[derive(Clone, Copy)]
enum ReplyOrder {
    /// Written at once.
    Now,
    /// Written behind everything queued (the broadcast the request caused,
    /// or the sender's own copy of its message).
    BehindQueued,
}

/// Why an IDENTIFY that passed the checks still failed.
enum JoinFailed {
    /// Another client has the name (4005).
    NameTaken,
    /// The broker could not set the client up (4000); the detail is logged.
    Internal(String),
}

/// A service the client may message directly. Held weakly: a deleted
/// service's actor stops once the directory lets go of it, whoever still
/// remembers it.
struct KnownService {
    name: Arc<str>,
    addr: WeakAddr<Service>,
}

/// A service's actor, ready for a pipelined MESSAGE.
struct Route {
    name: Arc<str>,
    addr: Addr<Service>,
}

/// When a payload may be handled.
enum Turn {
    /// Now; if it needs the directory, no reply is owed.
    Now,
    /// Now, pipelined: a MESSAGE straight to this service.
    Relay(Route),
    /// Once at most this many replies are owed.
    After(usize),
}

/// A reply owed to the client, in payload order.
enum Owed {
    /// A reply that only waits for its turn (written at once when due).
    Ready(String),
    /// A pipelined MESSAGE waiting for its service's outcome.
    Relayed(RelayedMessage),
    /// A pipelined MESSAGE whose service was deleted before it arrived,
    /// sent again to whatever service the directory now knows by the name.
    Rerouted(Pin<Box<dyn Future<Output = String>>>),
}

/// A MESSAGE on its way to a service.
struct RelayedMessage {
    seq: u64,
    kind: &'static str,
    service: Arc<str>,
    outcome: oneshot::Receiver<RelayOutcome>,
}

/// What the head of the owed replies turned into.
enum Due {
    /// A frame to write.
    Write(String, ReplyOrder),
    /// A MESSAGE to send again by name.
    Reroute(ClientMessage),
}

/// One concierge client: what the protocol knows of its connection.
pub struct ConciergeClient {
    directory: Addr<ConciergeDirectory>,
    lobby: Addr<Lobby>,
    settings: Arc<ConciergeSettings>,
    stage: Stage,
    next_seq: u64,
    /// Services this client may message directly, by name.
    services: HashMap<String, KnownService>,
    /// Replies owed, oldest first (empty unless MESSAGEs are pipelined).
    owed: VecDeque<Owed>,
    /// The service the pipelined MESSAGEs in `owed` go to: one at a time,
    /// so that two services never deliver one client's messages out of order.
    relaying_to: Option<Arc<str>>,
    /// Whether a [`WriteOwed`] pump runs in the context.
    pumping: bool,
}

/// Writes owed replies as they come due; resolves once at most `until`
/// are owed. Spawned as the pump (`until` 0) that writes replies while the
/// client reads on, and waited for (`ctx.wait`) where a payload must wait.
struct WriteOwed {
    until: usize,
    pump: bool,
}

impl ActorFuture<Connection<ConciergeClient>> for WriteOwed {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection<ConciergeClient>,
        _: &mut ConnectionContext<ConciergeClient>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let done = act.write_owed(task, self.until);
        if self.pump && done.is_ready() {
            act.state.pumping = false;
        }
        done
    }
}

impl ConciergeClient {
    /// A client served through `directory` and `lobby`.
    pub fn new(
        directory: Addr<ConciergeDirectory>,
        lobby: Addr<Lobby>,
        settings: Arc<ConciergeSettings>,
    ) -> Self {
        ConciergeClient {
            directory,
            lobby,
            settings,
            stage: Stage::Unidentified,
            next_seq: 0,
            services: HashMap::new(),
            owed: VecDeque::new(),
            relaying_to: None,
            pumping: false,
        }
    }

    /// The client as others know it, once HELLO was sent.
    fn identified(&self) -> Option<Arc<ClientInfo>> {
        match &self.stage {
            Stage::Identified(me) => Some(Arc::clone(me)),
            Stage::Unidentified | Stage::Joining(_) => None,
        }
    }

    fn is_identified(&self) -> bool {
        matches!(self.stage, Stage::Identified(_))
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }

    /// When a decoded payload may be handled. A MESSAGE to a service the
    /// client holds is pipelined unless MESSAGEs to another service are on
    /// their way or the pipeline is full; a reply that needs nothing is
    /// written in its turn; anything else waits until no reply is owed.
    fn turn(&mut self, decoded: &Result<PayloadIn<'_>, DecodeError>) -> Turn {
        let service = match decoded {
            Ok(PayloadIn::Message {
                target: Target::Service { service } | Target::ServiceClientUuid { service, .. },
                ..
            }) => service,
            Err(_) | Ok(PayloadIn::Identify(_) | PayloadIn::SelfSetSeq { .. }) => return Turn::Now,
            Ok(_) if self.owed.is_empty() => return Turn::Now,
            Ok(_) => return Turn::After(0),
        };
        let Some(route) = self.route(service) else {
            return if self.owed.is_empty() {
                Turn::Now
            } else {
                Turn::After(0)
            };
        };
        let other_service = self
            .relaying_to
            .as_ref()
            .is_some_and(|to| **to != *route.name);
        if !self.owed.is_empty() && other_service {
            Turn::After(0)
        } else if self.owed.len() >= MAX_PIPELINED {
            Turn::After(MAX_PIPELINED - 1)
        } else {
            Turn::Relay(route)
        }
    }

    /// The live actor of a service the client holds; a service whose actor
    /// has stopped is forgotten.
    fn route(&mut self, name: &str) -> Option<Route> {
        let known = self.services.get(name)?;
        match known.addr.upgrade() {
            Some(addr) => Some(Route {
                name: Arc::clone(&known.name),
                addr,
            }),
            None => {
                self.forget_service(name);
                None
            }
        }
    }

    /// The oldest owed reply is for a MESSAGE whose service was deleted
    /// before it arrived: the service is forgotten and the message is sent
    /// by name through the directory, as the first one to a service is.
    /// Later MESSAGEs to the same name are still on their way to the deleted
    /// service and come back the same way, in order; new ones wait, since
    /// the name is no longer known.
    fn reroute_head(&mut self, message: ClientMessage) {
        let Some(Owed::Relayed(relayed)) = self.owed.pop_front() else {
            return;
        };
        self.forget_service(&relayed.service);
        let directory = self.directory.clone();
        let RelayedMessage {
            seq, kind, service, ..
        } = relayed;
        let rerouting = async move {
            let found = directory.send(FindService(service.to_string())).await;
            let outcome = match found {
                Ok(Some(addr)) => relay_once(&addr, message).await,
                _ => None,
            };
            relay_reply(outcome, seq, kind, &service)
        };
        self.owed.push_front(Owed::Rerouted(Box::pin(rerouting)));
    }

    /// Remembers a service's actor, for MESSAGEs straight to it.
    fn learn_service(&mut self, name: &str, addr: WeakAddr<Service>) {
        if self.services.len() >= SWEEP_SERVICES_AT {
            self.services
                .retain(|_, known| known.addr.upgrade().is_some());
        }
        let known = KnownService {
            name: Arc::from(name),
            addr,
        };
        self.services.insert(name.to_owned(), known);
    }

    fn forget_service(&mut self, name: &str) {
        self.services.remove(name);
    }

    fn valid_service_name(&self, name: &str) -> bool {
        !name.is_empty()
            && name.chars().count() <= self.settings.max_name_length
            && !name.chars().any(char::is_control)
    }
}

impl Connection<ConciergeClient> {
    /// Closes with one of the concierge's own codes (`wire::close`).
    fn close(&mut self, ctx: &mut ConnectionContext<ConciergeClient>, code: u16, reason: &str) {
        self.core.close(ctx, &Disconnect::concierge(code, reason));
    }

    /// Writes a reply that needs nothing but its turn: at once, or behind
    /// the replies still owed.
    fn answer(&mut self, ctx: &mut ConnectionContext<ConciergeClient>, frame: String) {
        if self.state.owed.is_empty() {
            self.write_reply(frame, ReplyOrder::Now);
        } else {
            self.owe(ctx, Owed::Ready(frame));
        }
    }

    /// Handles a reply that needs work first (the directory's answer, a
    /// broadcast queued, a first MESSAGE through a service): the actor reads
    /// nothing else until `work` is done, then writes the frame `reply`
    /// makes of its result, at once or behind what is queued for this client
    /// (`order`). Called only when no reply is owed, so replies stay in
    /// `seq` order.
    fn reply_after<T: 'static>(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        work: impl Future<Output = T> + 'static,
        order: ReplyOrder,
        reply: impl FnOnce(&mut ConciergeClient, T) -> String + 'static,
    ) {
        ctx.wait(work.into_actor(self).map(move |result, act, _| {
            let frame = reply(&mut act.state, result);
            act.write_reply(frame, order);
        }));
    }

    /// Asks the directory, then replies with the frame `answer` makes of
    /// its answer ([`reply_after`](Self::reply_after)); an unreachable
    /// directory gets ERROR_INTERNAL. A request whose broadcast the
    /// requester hears too (SERVICE_CREATE, SERVICE_DELETE) is answered by
    /// the directory once that broadcast is queued everywhere, and its reply
    /// goes behind it (`order`).
    fn ask<M>(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        msg: M,
        seq: u64,
        order: ReplyOrder,
        answer: impl FnOnce(&mut ConciergeClient, M::Result) -> String + 'static,
    ) where
        M: Message + Send + 'static,
        M::Result: Send,
        ConciergeDirectory: Handler<M>,
        <ConciergeDirectory as Actor>::Context: ToEnvelope<ConciergeDirectory, M>,
    {
        let request = self.state.directory.send(msg);
        self.reply_after(ctx, request, order, move |client, result| match result {
            Ok(result) => answer(client, result),
            Err(e) => {
                log::error!("concierge: directory unreachable: {e}");
                unavailable(seq)
            }
        });
    }

    fn write_reply(&mut self, frame: String, order: ReplyOrder) {
        let frames = Frames::One(frame.into());
        match order {
            ReplyOrder::Now => self.core.write(frames),
            ReplyOrder::BehindQueued => self.core.write_behind_queued(frames),
        }
    }

    /// Queues a reply behind the owed ones and makes sure the pump runs.
    fn owe(&mut self, ctx: &mut ConnectionContext<ConciergeClient>, owed: Owed) {
        self.state.owed.push_back(owed);
        if !self.state.pumping {
            self.state.pumping = true;
            ctx.spawn(WriteOwed {
                until: 0,
                pump: true,
            });
        }
    }

    /// Writes the owed replies that are due, oldest first, until at most
    /// `until` are owed (`Ready`) or the oldest is still on its way.
    fn write_owed(&mut self, task: &mut TaskContext<'_>, until: usize) -> Poll<()> {
        while self.state.owed.len() > until {
            let Some(head) = self.state.owed.front_mut() else {
                break;
            };
            let due = match head {
                Owed::Ready(frame) => Due::Write(std::mem::take(frame), ReplyOrder::Now),
                Owed::Relayed(relayed) => match Pin::new(&mut relayed.outcome).poll(task) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(RelayOutcome::Deleted(message))) => Due::Reroute(message),
                    Poll::Ready(outcome) => {
                        let (seq, kind) = (relayed.seq, relayed.kind);
                        let frame = relay_reply(outcome.ok(), seq, kind, &relayed.service);
                        Due::Write(frame, ReplyOrder::BehindQueued)
                    }
                },
                Owed::Rerouted(rerouting) => match rerouting.as_mut().poll(task) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(frame) => Due::Write(frame, ReplyOrder::BehindQueued),
                },
            };
            match due {
                Due::Write(frame, order) => {
                    self.state.owed.pop_front();
                    self.write_reply(frame, order);
                }
                Due::Reroute(message) => self.state.reroute_head(message),
            }
        }
        if self.state.owed.is_empty() {
            self.state.relaying_to = None;
        }
        Poll::Ready(())
    }

    /// The first payload: IDENTIFY, checked in the order of the close codes.
    fn identify(&mut self, ctx: &mut ConnectionContext<ConciergeClient>, text: &str) {
        let identify = match PayloadIn::decode(text) {
            Ok(PayloadIn::Identify(identify)) => identify,
            Ok(_) => return self.close(ctx, close::NO_AUTH, "identify first"),
            Err(_) => return self.close(ctx, close::FATAL_DECODE, "could not decode IDENTIFY"),
        };
        let settings = &self.state.settings;
        if let Some(secret) = &settings.secret {
            let given = identify.secret.as_deref().unwrap_or_default();
            if !bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
                return self.close(ctx, close::BAD_SECRET, "bad secret");
            }
        }
        let version_ok = semver::Version::parse(&identify.version)
            .is_ok_and(|v| settings.client_version_req.matches(&v));
        if !version_ok {
            let reason = format!("client version must match {}", settings.client_version_req);
            return self.close(ctx, close::BAD_VERSION, &reason);
        }
        if !wire::valid_client_name(&identify.name, settings.max_name_length) {
            let reason = format!(
                "name must be 1 to {} letters, digits or _",
                settings.max_name_length
            );
            return self.close(ctx, close::BAD_NAME, &reason);
        }
        let identity_bytes = identify.nickname.as_ref().map_or(0, String::len)
            + identify.tags.iter().map(String::len).sum::<usize>();
        if identity_bytes > settings.max_identity_bytes {
            metrics().limit_reached(Protocol::Concierge, "max_identity_bytes");
            let reason = format!(
                "nickname and tags must hold at most {} bytes together",
                settings.max_identity_bytes
            );
            return self.close(ctx, close::BAD_NAME, &reason);
        }
        let info = ClientInfo {
            name: identify.name,
            nickname: identify.nickname,
            uuid: Uuid::new_v4(),
            tags: identify.tags,
        };
        self.state.stage = Stage::Joining(info.uuid);
        // 122 random bits; only HELLO carries it, and only to this client.
        let fs_key =
            (settings.fs_key == FsKeyMode::Secret).then(|| Uuid::new_v4().simple().to_string());
        let claim = Identify {
            info: info.clone(),
            member: self.core.handle(ctx),
            fs_key: fs_key.clone(),
        };
        let (directory, files_dir) = (
            self.state.directory.clone(),
            self.state.settings.files_dir.clone(),
        );
        // The name is claimed first: only its holder may reset its folder.
        let join = async move {
            let name = claim.info.name.clone();
            match directory.send(claim).await {
                Ok(Ok(())) => {}
                Ok(Err(NameTaken)) => return Err(JoinFailed::NameTaken),
                Err(e) => return Err(JoinFailed::Internal(format!("directory unreachable: {e}"))),
            }
            super::create_client_folder(&files_dir, &name)
                .await
                .map_err(|e| {
                    JoinFailed::Internal(format!("cannot create the client's folder: {e}"))
                })
        };
        ctx.wait(
            join.into_actor(self)
                .map(move |joined, act, ctx| match joined {
                    Ok(()) => {
                        // Others hear of the client now; anything the lobby
                        // sends it is queued behind the HELLO written here.
                        act.state.directory.do_send(Welcome(info.uuid));
                        let hello = PayloadOut::Hello {
                            uuid: info.uuid,
                            version: wire::PROTOCOL_VERSION,
                            fs_key: fs_key.as_deref(),
                        };
                        act.answer(ctx, hello.encode(None));
                        // Not the uuid: it is the client's file-server key.
                        log::debug!(
                            "concierge connection {} identified as {}",
                            act.core.id(),
                            info.name
                        );
                        act.core.identify(&info.name);
                        act.state.stage = Stage::Identified(Arc::new(info));
                    }
                    Err(JoinFailed::NameTaken) => {
                        act.close(ctx, close::DUPLICATE_AUTH, "name taken")
                    }
                    Err(JoinFailed::Internal(detail)) => {
                        log::error!(
                            "concierge: identification of {} failed: {detail}",
                            info.name
                        );
                        act.close(ctx, close::UNKNOWN, "internal error");
                    }
                }),
        );
    }

    /// Every payload after IDENTIFY.
    fn payload(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: Arc<ClientInfo>,
        text: ByteString,
    ) {
        let decoded = PayloadIn::decode(&text);
        let route = match self.state.turn(&decoded) {
            Turn::Now => None,
            Turn::Relay(route) => Some(route),
            Turn::After(until) => {
                drop(decoded);
                let later = WriteOwed { until, pump: false }
                    .map(move |(), act: &mut Self, ctx| act.payload(ctx, me, text));
                ctx.wait(later);
                return;
            }
        };
        let seq = self.state.take_seq();
        let payload = match decoded {
            Ok(payload) => payload,
            Err(DecodeError::Malformed(desc)) => {
                metrics().protocol_error(Protocol::Concierge, ProtocolErrorKind::Malformed);
                let frame = PayloadOut::ErrorProtocol { desc: &desc }.encode(Some(seq));
                return self.answer(ctx, frame);
            }
            Err(DecodeError::Unsupported(_)) => {
                metrics().protocol_error(Protocol::Concierge, ProtocolErrorKind::UnknownType);
                return self.answer(ctx, PayloadOut::ErrorUnsupported.encode(Some(seq)));
            }
        };
        log::trace!(
            "concierge client {} sent {} (seq {seq})",
            me.name,
            payload.kind()
        );
        match (payload, route) {
            (PayloadIn::Message { target, data }, Some(route)) => {
                self.relay(ctx, route, me, seq, target, data)
            }
            (payload, _) => self.command(ctx, me, seq, payload),
        }
    }

    /// One payload that is not pipelined, by its type.
    fn command(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: Arc<ClientInfo>,
        seq: u64,
        payload: PayloadIn<'_>,
    ) {
        match payload {
            PayloadIn::Identify(_) => {
                self.answer(ctx, PayloadOut::ErrorUnsupported.encode(Some(seq)))
            }
            PayloadIn::SelfSetSeq { seq } => self.self_set_seq(ctx, seq),
            PayloadIn::Message { target, data } => self.message(ctx, me, seq, target, data),
            PayloadIn::SelfFetch => self.self_fetch(ctx, me, seq),
            PayloadIn::ClientFetch { uuid } => self.client_fetch(ctx, seq, uuid),
            PayloadIn::ClientFetchAll => self.client_fetch_all(ctx, seq),
            PayloadIn::ServiceFetch { service } => self.service_fetch(ctx, seq, service),
            PayloadIn::ServiceFetchAll => self.service_fetch_all(ctx, seq),
            PayloadIn::ServiceCreate { service, nickname } => {
                self.service_create(ctx, &me, seq, service, nickname)
            }
            PayloadIn::ServiceDelete { service } => self.service_delete(ctx, &me, seq, service),
            PayloadIn::SelfSubscribe { service } => self.subscription(ctx, &me, seq, service, true),
            PayloadIn::SelfUnsubscribe { service } => {
                self.subscription(ctx, &me, seq, service, false)
            }
        }
    }

    /// SELF_SET_SEQ: this payload gets `seq`, the next one `seq + 1`.
    fn self_set_seq(&mut self, ctx: &mut ConnectionContext<ConciergeClient>, seq: u64) {
        self.state.next_seq = seq.wrapping_add(1);
        self.answer(ctx, PayloadOut::Ok.encode(Some(seq)));
    }

    /// SELF_FETCH: the client's own info and subscriptions.
    fn self_fetch(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: Arc<ClientInfo>,
        seq: u64,
    ) {
        let fetch = FetchClient(me.uuid);
        self.ask(ctx, fetch, seq, ReplyOrder::Now, move |_, found| {
            let (client, subscriptions) =
                found.unwrap_or_else(|| (ClientInfo::clone(&me), Vec::new()));
            PayloadOut::SelfFetchResult {
                client: &client,
                subscriptions: &subscriptions,
            }
            .encode(Some(seq))
        });
    }

    /// CLIENT_FETCH: one client's info and subscriptions.
    fn client_fetch(&mut self, ctx: &mut ConnectionContext<ConciergeClient>, seq: u64, uuid: Uuid) {
        let fetch = FetchClient(uuid);
        self.ask(
            ctx,
            fetch,
            seq,
            ReplyOrder::Now,
            move |_, found| match found {
                Some((client, subscriptions)) => PayloadOut::ClientFetchResult {
                    client: &client,
                    subscriptions: &subscriptions,
                }
                .encode(Some(seq)),
                None => PayloadOut::InvalidUuid { uuid }.encode(Some(seq)),
            },
        );
    }

    /// CLIENT_FETCH_ALL: every identified client.
    fn client_fetch_all(&mut self, ctx: &mut ConnectionContext<ConciergeClient>, seq: u64) {
        self.ask(
            ctx,
            FetchClients,
            seq,
            ReplyOrder::Now,
            move |_, clients| {
                PayloadOut::ClientFetchAllResult { clients: &clients }.encode(Some(seq))
            },
        );
    }

    /// SERVICE_FETCH: one service's info.
    fn service_fetch(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        seq: u64,
        service: String,
    ) {
        let fetch = FetchService(service.clone());
        self.ask(
            ctx,
            fetch,
            seq,
            ReplyOrder::Now,
            move |_, found| match found {
                Some(info) => PayloadOut::ServiceFetchResult { service: &info }.encode(Some(seq)),
                None => PayloadOut::InvalidService { service: &service }.encode(Some(seq)),
            },
        );
    }

    /// SERVICE_FETCH_ALL: every service.
    fn service_fetch_all(&mut self, ctx: &mut ConnectionContext<ConciergeClient>, seq: u64) {
        self.ask(
            ctx,
            FetchServices,
            seq,
            ReplyOrder::Now,
            move |_, services| {
                PayloadOut::ServiceFetchAllResult {
                    services: &services,
                }
                .encode(Some(seq))
            },
        );
    }

    /// SERVICE_CREATE: the creator keeps the new service's actor.
    fn service_create(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: &ClientInfo,
        seq: u64,
        service: String,
        nickname: Option<String>,
    ) {
        let s = Some(seq);
        if !self.state.valid_service_name(&service) {
            return self.answer(ctx, PayloadOut::Bad.encode(s));
        }
        let create = CreateService {
            owner: me.uuid,
            name: service,
            nickname,
        };
        let order = ReplyOrder::BehindQueued;
        self.ask(
            ctx,
            create,
            seq,
            order,
            move |client, created| match created {
                Some(Creation::Created(info, addr)) => {
                    client.learn_service(&info.name, addr);
                    PayloadOut::ServiceCreateResult {
                        successful: true,
                        service: &info,
                    }
                    .encode(s)
                }
                Some(Creation::Exists(info)) => PayloadOut::ServiceCreateResult {
                    successful: false,
                    service: &info,
                }
                .encode(s),
                Some(Creation::TooMany) => PayloadOut::Bad.encode(s),
                None => PayloadOut::ErrorInternal {
                    desc: "client not identified",
                }
                .encode(s),
            },
        );
    }

    /// SERVICE_DELETE: only the owner may; it forgets the service's actor.
    fn service_delete(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: &ClientInfo,
        seq: u64,
        service: String,
    ) {
        let delete = DeleteService {
            requester: me.uuid,
            name: service.clone(),
        };
        let (s, order) = (Some(seq), ReplyOrder::BehindQueued);
        self.ask(
            ctx,
            delete,
            seq,
            order,
            move |client, deleted| match deleted {
                Ok(info) => {
                    client.forget_service(&info.name);
                    PayloadOut::ServiceDeleteResult { service: &info }.encode(s)
                }
                Err(DeleteRefused::NotOwner) => PayloadOut::Bad.encode(s),
                Err(DeleteRefused::NoSuchService) => {
                    PayloadOut::InvalidService { service: &service }.encode(s)
                }
            },
        );
    }

    /// SELF_SUBSCRIBE / SELF_UNSUBSCRIBE: a subscriber keeps the service's
    /// actor, one that unsubscribes forgets it.
    fn subscription(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: &ClientInfo,
        seq: u64,
        service: String,
        subscribe: bool,
    ) {
        let msg = Subscription {
            uuid: me.uuid,
            service: service.clone(),
            subscribe,
        };
        let s = Some(seq);
        self.ask(
            ctx,
            msg,
            seq,
            ReplyOrder::Now,
            move |client, result| match result {
                Ok(change) if subscribe => {
                    client.learn_service(&change.info.name, change.service);
                    PayloadOut::SelfSubscribeResult {
                        successful: change.changed,
                        service: &change.info,
                    }
                    .encode(s)
                }
                Ok(change) => {
                    client.forget_service(&change.info.name);
                    PayloadOut::SelfUnsubscribeResult {
                        successful: change.changed,
                        service: &change.info,
                    }
                    .encode(s)
                }
                Err(SubscriptionRefused::TooMany) => PayloadOut::Bad.encode(s),
                Err(SubscriptionRefused::NoSuchService) => {
                    PayloadOut::InvalidService { service: &service }.encode(s)
                }
            },
        );
    }

    /// A pipelined MESSAGE: straight to the service's actor; its reply is
    /// owed until the outcome comes back.
    fn relay(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        route: Route,
        me: Arc<ClientInfo>,
        seq: u64,
        target: Target,
        data: &RawValue,
    ) {
        let kind = service_target_kind(&target);
        let (outcome, answer) = oneshot::channel();
        let message = ClientMessage {
            sender: me,
            sender_conn: self.core.id(),
            target,
            data: data.to_owned(),
        };
        route.addr.do_send(Relay { message, outcome });
        self.state.relaying_to = Some(Arc::clone(&route.name));
        let relayed = RelayedMessage {
            seq,
            kind,
            service: route.name,
            outcome: answer,
        };
        self.owe(ctx, Owed::Relayed(relayed));
    }

    /// MESSAGE that is not pipelined (no reply is owed): to everyone, to one
    /// client, or to a service the client holds no actor of yet.
    fn message(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: Arc<ClientInfo>,
        seq: u64,
        target: Target,
        data: &RawValue,
    ) {
        match target {
            Target::All => self.message_all(ctx, &me, seq, &target, data),
            Target::Name { ref name } => {
                let (find, kind) = (FindClient(ClientRef::Name(name.clone())), "NAME");
                self.direct(ctx, &me, seq, kind, find, target, data);
            }
            Target::Uuid { uuid } => {
                let (find, kind) = (FindClient(ClientRef::Uuid(uuid)), "UUID");
                self.direct(ctx, &me, seq, kind, find, target, data);
            }
            Target::Service { ref service } | Target::ServiceClientUuid { ref service, .. } => {
                let name = service.clone();
                self.first_to_service(ctx, me, seq, name, target, data)
            }
        }
    }

    /// MESSAGE to ALL, the sender included: `OK` once every copy is queued.
    fn message_all(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: &ClientInfo,
        seq: u64,
        target: &Target,
        data: &RawValue,
    ) {
        metrics().concierge.message("ALL");
        let frame = encode_message(me, None, target, data);
        let queued = self.state.lobby.send(Announce(Frames::One(frame.into())));
        let order = ReplyOrder::BehindQueued;
        self.reply_after(ctx, queued, order, move |_, queued| match queued {
            Ok(()) => PayloadOut::Ok.encode(Some(seq)),
            Err(_) => unavailable(seq),
        });
    }

    /// A MESSAGE to a service the client holds no actor of: the directory
    /// finds the actor, the message goes there, and a client the service
    /// accepted the message from keeps the actor for its next ones.
    fn first_to_service(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: Arc<ClientInfo>,
        seq: u64,
        name: String,
        target: Target,
        data: &RawValue,
    ) {
        let kind = service_target_kind(&target);
        let message = ClientMessage {
            sender: me,
            sender_conn: self.core.id(),
            target,
            data: data.to_owned(),
        };
        let directory = self.state.directory.clone();
        let route = async move {
            let found = directory
                .send(FindService(name.clone()))
                .await
                .ok()
                .flatten();
            let outcome = match &found {
                Some(addr) => relay_once(addr, message).await,
                None => None,
            };
            (name, found, outcome)
        };
        let order = ReplyOrder::BehindQueued;
        self.reply_after(ctx, route, order, move |client, (name, found, outcome)| {
            if let (Some(addr), Some(RelayOutcome::Delivered)) = (&found, &outcome) {
                client.learn_service(&name, addr.downgrade());
            }
            relay_reply(outcome, seq, kind, &name)
        });
    }

    /// A MESSAGE to one client by name or uuid: encoded here, handed to the
    /// lobby, which queues it under the shared slow-consumer policy (a drop
    /// is counted, a client that keeps dropping is closed). `OK` once it is
    /// queued or counted; a target that left meanwhile is unknown.
    #[allow(clippy::too_many_arguments)]
    fn direct(
        &mut self,
        ctx: &mut ConnectionContext<ConciergeClient>,
        me: &ClientInfo,
        seq: u64,
        kind: &'static str,
        find: FindClient,
        target: Target,
        data: &RawValue,
    ) {
        let frames = Frames::One(encode_message(me, None, &target, data).into());
        let s = Some(seq);
        let (directory, lobby) = (self.state.directory.clone(), self.state.lobby.clone());
        let deliver = async move {
            let Ok(member) = directory.send(find).await else {
                return unavailable(seq);
            };
            let delivery = match member {
                Some(member) => lobby
                    .send(SendTo {
                        id: member.id,
                        frames,
                    })
                    .await
                    .ok(),
                None => None,
            };
            match (delivery, target) {
                (Some(Delivery::Queued | Delivery::Dropped), _) => {
                    metrics().concierge.message(kind);
                    PayloadOut::Ok.encode(s)
                }
                (_, Target::Uuid { uuid }) => PayloadOut::InvalidUuid { uuid }.encode(s),
                (_, Target::Name { name }) => PayloadOut::InvalidName { name: &name }.encode(s),
                (_, _) => PayloadOut::Bad.encode(s),
            }
        };
        self.reply_after(ctx, deliver, ReplyOrder::BehindQueued, |_, frame| frame);
    }
}

/// The metrics label of a MESSAGE through a service.
fn service_target_kind(target: &Target) -> &'static str {
    match target {
        Target::ServiceClientUuid { .. } => "SERVICE_CLIENT_UUID",
        _ => "SERVICE",
    }
}

/// Sends one MESSAGE to a service's actor and waits for its outcome; `None`
/// when the actor stopped before answering.
async fn relay_once(service: &Addr<Service>, message: ClientMessage) -> Option<RelayOutcome> {
    let (outcome, answer) = oneshot::channel();
    service.do_send(Relay { message, outcome });
    answer.await.ok()
}

/// The reply to a MESSAGE through a service, from its outcome (`None`: no
/// such service, or its actor stopped before answering).
fn relay_reply(outcome: Option<RelayOutcome>, seq: u64, kind: &str, service: &str) -> String {
    let s = Some(seq);
    match outcome {
        Some(RelayOutcome::Delivered) => {
            metrics().concierge.message(kind);
            PayloadOut::Ok.encode(s)
        }
        Some(RelayOutcome::Refused(PublishRefused::NotAllowed)) => PayloadOut::Bad.encode(s),
        Some(RelayOutcome::Refused(PublishRefused::NoSuchSubscriber(uuid))) => {
            PayloadOut::InvalidUuid { uuid }.encode(s)
        }
        Some(RelayOutcome::Refused(PublishRefused::Deleted) | RelayOutcome::Deleted(_)) | None => {
            PayloadOut::InvalidService { service }.encode(s)
        }
    }
}

/// The reply when the broker's own actors cannot be reached.
fn unavailable(seq: u64) -> String {
    PayloadOut::ErrorInternal {
        desc: "broker unavailable",
    }
    .encode(Some(seq))
}

/// Before HELLO, anything but a well-formed IDENTIFY closes the connection
/// with a 40xx code; after it, every payload is handled in `seq` order.
impl Hooks for ConciergeClient {
    fn join(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>) {
        ctx.run_later(conn.state.settings.identify_timeout, |act, ctx| {
            if matches!(act.state.stage, Stage::Unidentified) {
                act.close(ctx, close::AUTH_FAILED, "no IDENTIFY in time");
            }
        });
    }

    fn handle_text(
        conn: &mut Connection<Self>,
        ctx: &mut ConnectionContext<Self>,
        text: ByteString,
    ) {
        match conn.state.identified() {
            None => conn.identify(ctx, &text),
            Some(me) => conn.payload(ctx, me, text),
        }
    }

    fn handle_binary(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>, _: Bytes) {
        if !conn.state.is_identified() {
            return conn.close(ctx, close::FATAL_DECODE, "IDENTIFY must be a text frame");
        }
        let refusal = PayloadOut::ErrorProtocol {
            desc: "binary frames are not part of this protocol",
        };
        conn.answer(ctx, refusal.encode(None));
    }

    fn rate_limited(conn: &mut Connection<Self>, ctx: &mut ConnectionContext<Self>, text: bool) {
        if !conn.state.is_identified() {
            return conn.core.close(ctx, &Disconnect::rate_limited());
        }
        let seq = text.then(|| conn.state.take_seq());
        let refusal = PayloadOut::ErrorProtocol {
            desc: "rate limit exceeded",
        };
        conn.answer(ctx, refusal.encode(seq));
    }

    fn terminate(conn: &mut Connection<Self>) {
        match &conn.state.stage {
            Stage::Joining(uuid) => conn.state.directory.do_send(Leave(*uuid)),
            Stage::Identified(me) => conn.state.directory.do_send(Leave(me.uuid)),
            Stage::Unidentified => {}
        }
    }
}
