//! The ConciergeClient: the connection actor of one concierge client.
//!
//! A new connection must IDENTIFY first (within `identify_timeout`); any
//! failure there closes the socket with the protocol's 40xx code. After
//! that every text payload gets a `seq` (the n-th text payload since
//! IDENTIFY, or as set by SELF_SET_SEQ) and exactly one reply carrying it.
//! Payloads are handled one at a time: while the registry or a service
//! answers, the actor waits, so replies leave in the order the payloads came.

use std::sync::Arc;
use std::time::Instant;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use actix_web_actors::ws::{self, ProtocolError, WebsocketContext};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::directory::{
    ClientRef, Creation, DeleteRefused, DeleteService, FetchClient, FetchClients, FetchService,
    FetchServices, FindClient, FindService, Identify, Leave, NameTaken, Subscription,
    SubscriptionRefused, Welcome,
};
use super::service::{Publish, PublishRefused};
use super::wire::{
    self, close, encode_message, ClientInfo, DecodeError, PayloadIn, PayloadOut, Target,
};
use super::{ConciergeSettings, FsKeyMode};
use crate::connection::{ConnectionCore, Disconnect, Frames, Inbound, WsConnection};
use crate::fanout::Delivery;
use crate::lobby::{Announce, Lobby, SendTo};
use crate::metrics::metrics;
use crate::registry::Registry;
use crate::Protocol;

/// Where a connection is in its life.
enum Stage {
    /// Waiting for IDENTIFY.
    Unidentified,
    /// IDENTIFY passed the checks; the registry is claiming the name.
    Joining(Uuid),
    /// Identified: HELLO was sent.
    Identified(Arc<ClientInfo>),
}

/// Where a reply goes relative to what is already queued for the client.
#[derive(Clone, Copy)]
enum ReplyOrder {
    /// Written at once.
    Now,
    /// Written behind everything queued (the broadcast the request caused).
    BehindQueued,
}

/// Why an IDENTIFY that passed the checks still failed.
enum JoinFailed {
    /// Another client has the name (4005).
    NameTaken,
    /// The broker could not set the client up (4000); the detail is logged.
    Internal(String),
}

/// One concierge client.
pub struct ConciergeClient {
    core: ConnectionCore,
    registry: Addr<Registry>,
    lobby: Addr<Lobby>,
    settings: Arc<ConciergeSettings>,
    stage: Stage,
    next_seq: u64,
}

impl ConciergeClient {
    /// A client served through `registry` and `lobby`.
    pub fn new(
        core: ConnectionCore,
        registry: Addr<Registry>,
        lobby: Addr<Lobby>,
        settings: Arc<ConciergeSettings>,
    ) -> Self {
        ConciergeClient {
            core,
            registry,
            lobby,
            settings,
            stage: Stage::Unidentified,
            next_seq: 0,
        }
    }

    fn close(&mut self, ctx: &mut WebsocketContext<Self>, code: u16, reason: &str) {
        self.core.close(
            ctx,
            &Disconnect {
                code,
                reason: reason.into(),
            },
        );
    }

    fn reply(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        payload: PayloadOut<'_>,
        seq: Option<u64>,
    ) {
        let frame = payload.encode(seq);
        self.core.write(ctx, Frames::One(frame.into()));
    }

    /// Asks the registry, then writes the frame `answer` makes of the result,
    /// at once or behind what is queued for this client (`order`: a request
    /// whose broadcast the requester hears too, SERVICE_CREATE and
    /// SERVICE_DELETE, is answered by the registry once that broadcast is
    /// queued everywhere, and the reply goes out behind it). The actor
    /// handles nothing else until then, so replies stay in order.
    fn ask<M>(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        msg: M,
        seq: u64,
        order: ReplyOrder,
        answer: impl FnOnce(M::Result) -> String + 'static,
    ) where
        M: Message + Send + 'static,
        M::Result: Send,
        Registry: Handler<M>,
        <Registry as Actor>::Context: ToEnvelope<Registry, M>,
    {
        let request = self.registry.send(msg);
        ctx.wait(request.into_actor(self).map(move |result, act, ctx| {
            let frame = match result {
                Ok(result) => answer(result),
                Err(e) => {
                    log::error!("concierge: registry unreachable: {e}");
                    PayloadOut::ErrorInternal {
                        desc: "broker unavailable",
                    }
                    .encode(Some(seq))
                }
            };
            let frames = Frames::One(frame.into());
            match order {
                ReplyOrder::Now => act.core.write(ctx, frames),
                ReplyOrder::BehindQueued => act.core.write_behind_queued(ctx, frames),
            }
        }));
    }

    /// Waits for `work`, then writes the reply it makes behind whatever it
    /// queued for this client (the sender's own copy of a broadcast comes
    /// before its `OK`). The actor handles nothing else until then.
    fn settle(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        work: impl std::future::Future<Output = String> + 'static,
    ) {
        ctx.wait(work.into_actor(self).map(|frame, act, ctx| {
            act.core.write_behind_queued(ctx, Frames::One(frame.into()));
        }));
    }

    /// The first payload: IDENTIFY, checked in the order of the close codes.
    fn identify(&mut self, ctx: &mut WebsocketContext<Self>, text: &str) {
        let identify = match PayloadIn::decode(text) {
            Ok(PayloadIn::Identify(identify)) => identify,
            Ok(_) => return self.close(ctx, close::NO_AUTH, "identify first"),
            Err(_) => return self.close(ctx, close::FATAL_DECODE, "could not decode IDENTIFY"),
        };
        let settings = &self.settings;
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
        self.stage = Stage::Joining(info.uuid);
        // 122 random bits; only HELLO carries it, and only to this client.
        let fs_key =
            (settings.fs_key == FsKeyMode::Secret).then(|| Uuid::new_v4().simple().to_string());
        let claim = Identify {
            info: info.clone(),
            member: self.core.handle(ctx),
            fs_key: fs_key.clone(),
        };
        let (registry, files_dir) = (self.registry.clone(), self.settings.files_dir.clone());
        // The name is claimed first: only its holder may reset its folder.
        let join = async move {
            let name = claim.info.name.clone();
            match registry.send(claim).await {
                Ok(Ok(())) => {}
                Ok(Err(NameTaken)) => return Err(JoinFailed::NameTaken),
                Err(e) => return Err(JoinFailed::Internal(format!("registry unreachable: {e}"))),
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
                        act.registry.do_send(Welcome(info.uuid));
                        let hello = PayloadOut::Hello {
                            uuid: info.uuid,
                            version: wire::PROTOCOL_VERSION,
                            fs_key: fs_key.as_deref(),
                        };
                        act.reply(ctx, hello, None);
                        // Not the uuid: it is the client's file-server key.
                        log::debug!(
                            "concierge connection {} identified as {}",
                            act.core.id(),
                            info.name
                        );
                        act.core.identify(&info.name);
                        act.stage = Stage::Identified(Arc::new(info));
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

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }

    /// Every payload after IDENTIFY.
    fn payload(&mut self, ctx: &mut WebsocketContext<Self>, me: Arc<ClientInfo>, text: &str) {
        let seq = self.take_seq();
        let payload = match PayloadIn::decode(text) {
            Ok(payload) => payload,
            Err(DecodeError::Malformed(desc)) => {
                return self.reply(ctx, PayloadOut::ErrorProtocol { desc: &desc }, Some(seq))
            }
            Err(DecodeError::Unsupported(_)) => {
                return self.reply(ctx, PayloadOut::ErrorUnsupported, Some(seq))
            }
        };
        log::trace!(
            "concierge client {} sent {} (seq {seq})",
            me.name,
            payload.kind()
        );
        let s = Some(seq);
        match payload {
            PayloadIn::Identify(_) => self.reply(ctx, PayloadOut::ErrorUnsupported, s),
            PayloadIn::SelfSetSeq { seq } => {
                self.next_seq = seq.wrapping_add(1);
                self.reply(ctx, PayloadOut::Ok, Some(seq));
            }
            PayloadIn::Message { target, data } => self.message(ctx, me, seq, target, data),
            PayloadIn::SelfFetch => self.ask(
                ctx,
                FetchClient(me.uuid),
                seq,
                ReplyOrder::Now,
                move |found| {
                    let (client, subscriptions) =
                        found.unwrap_or_else(|| (ClientInfo::clone(&me), Vec::new()));
                    PayloadOut::SelfFetchResult {
                        client: &client,
                        subscriptions: &subscriptions,
                    }
                    .encode(s)
                },
            ),
            PayloadIn::ClientFetch { uuid } => self.ask(
                ctx,
                FetchClient(uuid),
                seq,
                ReplyOrder::Now,
                move |found| match found {
                    Some((client, subscriptions)) => PayloadOut::ClientFetchResult {
                        client: &client,
                        subscriptions: &subscriptions,
                    }
                    .encode(s),
                    None => PayloadOut::InvalidUuid { uuid }.encode(s),
                },
            ),
            PayloadIn::ClientFetchAll => {
                self.ask(ctx, FetchClients, seq, ReplyOrder::Now, move |clients| {
                    PayloadOut::ClientFetchAllResult { clients: &clients }.encode(s)
                })
            }
            PayloadIn::ServiceFetch { service } => self.ask(
                ctx,
                FetchService(service.clone()),
                seq,
                ReplyOrder::Now,
                move |found| match found {
                    Some(info) => PayloadOut::ServiceFetchResult { service: &info }.encode(s),
                    None => PayloadOut::InvalidService { service: &service }.encode(s),
                },
            ),
            PayloadIn::ServiceFetchAll => {
                self.ask(ctx, FetchServices, seq, ReplyOrder::Now, move |services| {
                    PayloadOut::ServiceFetchAllResult {
                        services: &services,
                    }
                    .encode(s)
                })
            }
            PayloadIn::ServiceCreate { service, nickname } => {
                if !self.valid_service_name(&service) {
                    return self.reply(ctx, PayloadOut::Bad, s);
                }
                let create = super::directory::CreateService {
                    owner: me.uuid,
                    name: service,
                    nickname,
                };
                self.ask(
                    ctx,
                    create,
                    seq,
                    ReplyOrder::BehindQueued,
                    move |created| match created {
                        Some(Creation::Created(info)) => PayloadOut::ServiceCreateResult {
                            successful: true,
                            service: &info,
                        }
                        .encode(s),
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
                )
            }
            PayloadIn::ServiceDelete { service } => {
                let delete = DeleteService {
                    requester: me.uuid,
                    name: service.clone(),
                };
                self.ask(
                    ctx,
                    delete,
                    seq,
                    ReplyOrder::BehindQueued,
                    move |deleted| match deleted {
                        Ok(info) => PayloadOut::ServiceDeleteResult { service: &info }.encode(s),
                        Err(DeleteRefused::NotOwner) => PayloadOut::Bad.encode(s),
                        Err(DeleteRefused::NoSuchService) => {
                            PayloadOut::InvalidService { service: &service }.encode(s)
                        }
                    },
                )
            }
            PayloadIn::SelfSubscribe { service } => self.subscription(ctx, &me, seq, service, true),
            PayloadIn::SelfUnsubscribe { service } => {
                self.subscription(ctx, &me, seq, service, false)
            }
        }
    }

    fn valid_service_name(&self, name: &str) -> bool {
        !name.is_empty()
            && name.chars().count() <= self.settings.max_name_length
            && !name.chars().any(char::is_control)
    }

    fn subscription(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
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
        self.ask(ctx, msg, seq, ReplyOrder::Now, move |result| match result {
            Ok((successful, info)) if subscribe => PayloadOut::SelfSubscribeResult {
                successful,
                service: &info,
            }
            .encode(s),
            Ok((successful, info)) => PayloadOut::SelfUnsubscribeResult {
                successful,
                service: &info,
            }
            .encode(s),
            Err(SubscriptionRefused::TooMany) => PayloadOut::Bad.encode(s),
            Err(SubscriptionRefused::NoSuchService) => {
                PayloadOut::InvalidService { service: &service }.encode(s)
            }
        });
    }

    /// MESSAGE: resolve the target through the registry, then deliver
    /// straight to the client, the service actor or the lobby.
    fn message(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        me: Arc<ClientInfo>,
        seq: u64,
        target: Target,
        data: &RawValue,
    ) {
        let s = Some(seq);
        match target {
            Target::All => {
                metrics().concierge.message("ALL");
                let frame = encode_message(&me, None, &target, data);
                let queued = self.lobby.send(Announce(Frames::One(frame.into())));
                self.settle(ctx, async move {
                    match queued.await {
                        Ok(()) => PayloadOut::Ok.encode(s),
                        Err(_) => PayloadOut::ErrorInternal {
                            desc: "broker unavailable",
                        }
                        .encode(s),
                    }
                });
            }
            Target::Name { ref name } => {
                let (find, kind) = (FindClient(ClientRef::Name(name.clone())), "NAME");
                self.direct(ctx, &me, seq, kind, find, target, data);
            }
            Target::Uuid { uuid } => {
                let (find, kind) = (FindClient(ClientRef::Uuid(uuid)), "UUID");
                self.direct(ctx, &me, seq, kind, find, target, data);
            }
            Target::Service { ref service } | Target::ServiceClientUuid { ref service, .. } => {
                let kind = match target {
                    Target::Service { .. } => "SERVICE",
                    _ => "SERVICE_CLIENT_UUID",
                };
                let name = service.clone();
                let publish = Publish {
                    sender: me,
                    sender_conn: self.core.id(),
                    target,
                    data: data.to_owned(),
                };
                let registry = self.registry.clone();
                let route = async move {
                    let service = registry
                        .send(FindService(name.clone()))
                        .await
                        .ok()
                        .flatten();
                    let outcome = match service {
                        Some(service) => service.send(publish).await.ok(),
                        None => None,
                    };
                    match outcome {
                        Some(Ok(())) => {
                            metrics().concierge.message(kind);
                            PayloadOut::Ok.encode(s)
                        }
                        Some(Err(PublishRefused::NotAllowed)) => PayloadOut::Bad.encode(s),
                        Some(Err(PublishRefused::NoSuchSubscriber(uuid))) => {
                            PayloadOut::InvalidUuid { uuid }.encode(s)
                        }
                        Some(Err(PublishRefused::Deleted)) | None => {
                            PayloadOut::InvalidService { service: &name }.encode(s)
                        }
                    }
                };
                self.settle(ctx, route);
            }
        }
    }

    /// A MESSAGE to one client by name or uuid: encoded here, handed to the
    /// lobby, which queues it under the shared slow-consumer policy (a drop
    /// is counted, a client that keeps dropping is closed). `OK` once it is
    /// queued or counted; a target that left meanwhile is unknown.
    #[allow(clippy::too_many_arguments)]
    fn direct(
        &mut self,
        ctx: &mut WebsocketContext<Self>,
        me: &ClientInfo,
        seq: u64,
        kind: &'static str,
        find: FindClient,
        target: Target,
        data: &RawValue,
    ) {
        let frames = Frames::One(encode_message(me, None, &target, data).into());
        let s = Some(seq);
        let (registry, lobby) = (self.registry.clone(), self.lobby.clone());
        let deliver = async move {
            let member = match registry.send(find).await {
                Ok(member) => member,
                Err(_) => {
                    return PayloadOut::ErrorInternal {
                        desc: "broker unavailable",
                    }
                    .encode(s)
                }
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
        self.settle(ctx, deliver);
    }
}

impl WsConnection for ConciergeClient {
    fn core(&mut self) -> &mut ConnectionCore {
        &mut self.core
    }
}

crate::connection_handlers!(ConciergeClient);

impl Actor for ConciergeClient {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.core.started(ctx);
        ctx.run_later(self.settings.identify_timeout, |act, ctx| {
            if matches!(act.stage, Stage::Unidentified) {
                act.close(ctx, close::AUTH_FAILED, "no IDENTIFY in time");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.core.stopped();
        match &self.stage {
            Stage::Joining(uuid) => self.registry.do_send(Leave(*uuid)),
            Stage::Identified(me) => self.registry.do_send(Leave(me.uuid)),
            Stage::Unidentified => {}
        }
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for ConciergeClient {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        let Some(inbound) = self.core.receive(item, ctx) else {
            return;
        };
        let started = Instant::now();
        let me = match &self.stage {
            Stage::Identified(me) => Some(Arc::clone(me)),
            Stage::Unidentified | Stage::Joining(_) => None,
        };
        match (inbound, me) {
            (Inbound::Text(text), None) => self.identify(ctx, &text),
            (Inbound::Text(text), Some(me)) => self.payload(ctx, me, &text),
            (Inbound::Binary(_), None) => {
                self.close(ctx, close::FATAL_DECODE, "IDENTIFY must be a text frame")
            }
            (Inbound::Binary(_), Some(_)) => self.reply(
                ctx,
                PayloadOut::ErrorProtocol {
                    desc: "binary frames are not part of this protocol",
                },
                None,
            ),
            (Inbound::RateLimited { .. }, None) => self.close(ctx, 1008, "rate limit exceeded"),
            (Inbound::RateLimited { text }, Some(_)) => {
                let seq = text.then(|| self.take_seq());
                let refusal = PayloadOut::ErrorProtocol {
                    desc: "rate limit exceeded",
                };
                self.reply(ctx, refusal, seq);
                self.core.close_if_abusive(ctx);
            }
        }
        self.core.observe_handling(started);
    }
}
