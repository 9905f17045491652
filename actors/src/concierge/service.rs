//! The Service actor: one concierge service, its owner and its subscribers.
//!
//! The directory decides who is subscribed (it is the authority every fetch
//! reads) and tells the service, which keeps the delivery side: the owner's
//! and the subscribers' handles. A MESSAGE through the service comes straight
//! from the sender's connection (a [`Relay`], never through the directory), is
//! encoded once here with the service as its origin, and goes out through the
//! fan-out helper; its outcome goes back to the sender on its own channel.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use actix::prelude::*;
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::wire::{encode_message, ClientInfo, ServiceInfo, Target};
use crate::admin::SERVER_NAME;
use crate::connection::{ConnId, Frames, MemberHandle};
use crate::fanout::{Delivery, FanOut};
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::Protocol;

/// One service. Runs supervised on the arbiter pool.
pub struct Service {
    /// Name, nickname and owner; `subscribers` stays empty (this is the
    /// `origin.service` of every relayed message).
    header: ServiceInfo,
    owner: FanOut,
    owner_conn: ConnId,
    subscribers: FanOut,
    by_uuid: HashMap<Uuid, ConnId>,
    deleted: bool,
    _alive: ActorGauge,
}

impl Service {
    /// A service owned by `owner`, with no subscribers yet.
    pub fn new(mut header: ServiceInfo, owner: MemberHandle, evict_after: u32) -> Self {
        header.subscribers.clear();
        let owner_conn = owner.id;
        let mut owner_fan = FanOut::new(Protocol::Concierge, evict_after);
        owner_fan.join(owner);
        Service {
            header,
            owner: owner_fan,
            owner_conn,
            subscribers: FanOut::new(Protocol::Concierge, evict_after),
            by_uuid: HashMap::new(),
            deleted: false,
            _alive: ActorGauge::new(ActorKind::ConciergeService),
        }
    }

    fn forget(&mut self, removed: &[ConnId]) {
        if !removed.is_empty() {
            self.by_uuid.retain(|_, conn| !removed.contains(conn));
        }
    }
}

impl Actor for Service {
    type Context = Context<Self>;
}

impl Supervised for Service {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("concierge service {} restarting", self.header.name);
        metrics().actor_restarted(ActorKind::ConciergeService);
    }
}

/// A client subscribed: add it, then send `announce`
/// (SERVICE_CLIENT_SUBSCRIBED) to every subscriber, the new one included.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSubscriber {
    /// The subscriber's uuid.
    pub uuid: Uuid,
    /// Its connection.
    pub member: MemberHandle,
    /// The announcement, encoded by the directory.
    pub announce: Frames,
}

impl Handler<AddSubscriber> for Service {
    type Result = ();
    fn handle(&mut self, msg: AddSubscriber, _: &mut Self::Context) {
        self.by_uuid.insert(msg.uuid, msg.member.id);
        self.subscribers.join(msg.member);
        let removed = self.subscribers.broadcast(&msg.announce);
        self.forget(&removed);
    }
}

/// A client unsubscribed or left: remove it, then send `announce`
/// (SERVICE_CLIENT_UNSUBSCRIBED) to the remaining subscribers. Answers once
/// those are queued, so the directory can order what it announces next.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveSubscriber {
    /// The subscriber's uuid.
    pub uuid: Uuid,
    /// The announcement, encoded by the directory.
    pub announce: Frames,
}

impl Handler<RemoveSubscriber> for Service {
    type Result = ();
    fn handle(&mut self, msg: RemoveSubscriber, _: &mut Self::Context) {
        if let Some(conn) = self.by_uuid.remove(&msg.uuid) {
            self.subscribers.leave(conn);
        }
        let removed = self.subscribers.broadcast(&msg.announce);
        self.forget(&removed);
    }
}

/// The service was deleted: refuse every later message. The actor stops
/// once the last address to it is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deleted;

impl Handler<Deleted> for Service {
    type Result = ();
    fn handle(&mut self, _: Deleted, _: &mut Self::Context) {
        self.deleted = true;
    }
}

/// Why a MESSAGE through a service was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    /// The sender may not use this target (BAD).
    #[error("not allowed")]
    NotAllowed,
    /// SERVICE_CLIENT_UUID to a client that is not subscribed (INVALID_UUID).
    #[error("no such subscriber")]
    NoSuchSubscriber(Uuid),
    /// The service was deleted meanwhile (INVALID_SERVICE).
    #[error("service deleted")]
    Deleted,
}

/// A MESSAGE whose target is this service (`SERVICE` or `SERVICE_CLIENT_UUID`).
pub struct ClientMessage {
    /// Who sent it.
    pub sender: Arc<ClientInfo>,
    /// The sender's connection (subscribers are known by connection).
    pub sender_conn: ConnId,
    /// The target as sent.
    pub target: Target,
    /// The data, verbatim.
    pub data: Box<RawValue>,
}

/// What became of a [`Relay`].
pub enum RelayOutcome {
    /// Handed to its recipients (OK).
    Delivered,
    /// Refused; the reply says why.
    Refused(PublishRefused),
    /// The service was deleted before the message reached it. The message
    /// comes back so that the sender can look the name up again: a service
    /// of the same name may have been created since.
    Deleted(ClientMessage),
}

/// A client's MESSAGE sent straight from its connection (the directory is
/// not asked). It is sent with `do_send`, which enqueues at once even when
/// the mailbox is full, so one client's messages reach the service in the
/// order it sent them; the outcome comes back on `outcome`, so the client
/// can keep sending while earlier outcomes are on their way.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relay {
    /// The message.
    pub message: ClientMessage,
    /// Where the outcome goes.
    pub outcome: oneshot::Sender<RelayOutcome>,
}

impl Handler<Relay> for Service {
    type Result = ();
    fn handle(&mut self, Relay { message, outcome }: Relay, _: &mut Self::Context) {
        let result = if self.deleted {
            RelayOutcome::Deleted(message)
        } else {
            match self.relay(&message) {
                Ok(()) => RelayOutcome::Delivered,
                Err(refused) => RelayOutcome::Refused(refused),
            }
        };
        // The sender may have gone meanwhile; nobody is left to answer.
        let _ = outcome.send(result);
    }
}

impl Service {
    /// Delivers one client's message by the ownership rules.
    fn relay(&mut self, msg: &ClientMessage) -> Result<(), PublishRefused> {
        let from_owner = msg.sender.uuid == self.header.owner_uuid;
        let frame = || {
            Frames::One(
                encode_message(&msg.sender, Some(&self.header), &msg.target, &msg.data).into(),
            )
        };
        match msg.target {
            // Never back to the owner, even when it subscribed to its own
            // service: real services re-broadcast what they receive, or
            // stop at their own first message.
            Target::Service { .. } if from_owner => {
                let removed = self
                    .subscribers
                    .broadcast_except(&frame(), Some(self.owner_conn));
                self.forget(&removed);
            }
            Target::Service { .. } if self.subscribers.contains(msg.sender_conn) => {
                self.owner.send_to(self.owner_conn, &frame());
            }
            Target::ServiceClientUuid { uuid, .. } if from_owner => {
                let conn = *self
                    .by_uuid
                    .get(&uuid)
                    .ok_or(PublishRefused::NoSuchSubscriber(uuid))?;
                if self.subscribers.send_to(conn, &frame()) == Delivery::Removed {
                    self.by_uuid.remove(&uuid);
                }
            }
            _ => return Err(PublishRefused::NotAllowed),
        }
        Ok(())
    }
}

/// The origin of a server-originated MESSAGE: shaped like any client's info
/// so clients parse it as they parse every origin, and marked as the server
/// by its name (no client can take it), the nil uuid and the `server` tag.
pub static SERVER_ORIGIN: LazyLock<ClientInfo> = LazyLock::new(|| ClientInfo {
    name: SERVER_NAME.to_owned(),
    nickname: Some("Switchboard".to_owned()),
    uuid: Uuid::nil(),
    tags: vec!["server".to_owned()],
});

/// A message the server publishes through the service (the publish API):
/// every subscriber gets a MESSAGE from [`SERVER_ORIGIN`] with target
/// `SERVICE`, as if the owner had sent it. Answers how many subscribers it
/// was handed to.
#[derive(Message)]
#[rtype(result = "Result<usize, PublishRefused>")]
pub struct ServerPublish {
    /// The data, verbatim.
    pub data: Box<RawValue>,
}

impl Handler<ServerPublish> for Service {
    type Result = Result<usize, PublishRefused>;
    fn handle(&mut self, msg: ServerPublish, _: &mut Self::Context) -> Self::Result {
        if self.deleted {
            return Err(PublishRefused::Deleted);
        }
        let target = Target::Service {
            service: self.header.name.clone(),
        };
        let frame = encode_message(&SERVER_ORIGIN, Some(&self.header), &target, &msg.data);
        let removed = self.subscribers.broadcast(&Frames::One(frame.into()));
        self.forget(&removed);
        Ok(self.subscribers.len())
    }
}
