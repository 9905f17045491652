//! The concierge's directory: who is identified under which name and key,
//! which services exist, who owns and who subscribes to them.
//!
//! Every change goes through here, in one actor of its own (supervised, on
//! the arbiter pool, beside the registry rather than inside it, so concierge
//! requests never queue behind other protocols' directory work), so names are
//! claimed atomically and every fetch sees one consistent state; the service
//! actors and the lobby only deliver. A client's MESSAGEs to a service go
//! straight to the service's actor, whose address the client gets here once
//! (when it creates or subscribes to the service, or by [`FindService`]).
//! Announcements are encoded here once and handed to the lobby or the
//! service that fans them out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use actix::WeakAddr;
use uuid::Uuid;

use super::service::{AddSubscriber, Deleted, RemoveSubscriber, Service};
use super::wire::{ClientInfo, PayloadOut, ServiceInfo};
use super::FsKeyMode;
use crate::connection::{Frames, MemberHandle};
use crate::lobby::{Announce, JoinLobby, LeaveLobby, Lobby};
use crate::metrics::{metrics, ActorGauge, ActorKind};
use crate::pool::ArbiterPool;

/// The concierge's directory actor. Runs supervised; its state survives a
/// restart.
pub struct ConciergeDirectory {
    clients: HashMap<Uuid, ClientEntry>,
    /// Names of identified clients, in name order (CLIENT_FETCH_ALL lists them so).
    names: BTreeMap<String, Uuid>,
    /// Names of clients whose departure is still being announced; they cannot
    /// be claimed until their CLIENT_LEFT is out and their folder is gone.
    leaving: HashSet<String>,
    /// File-server secrets of identified clients (`concierge.fs_key = "secret"`).
    file_keys: HashMap<String, Uuid>,
    services: BTreeMap<String, ServiceEntry>,
    lobby: Addr<Lobby>,
    pool: Arc<ArbiterPool>,
    evict_after: u32,
    /// `limits.max_rooms_per_client`: services one client may own plus subscribe to.
    max_services: usize,
    files_dir: PathBuf,
    fs_key: FsKeyMode,
    _alive: ActorGauge,
}

struct ClientEntry {
    /// HELLO went out and everyone was told (see [`Welcome`]); until then the
    /// entry only holds the name.
    welcomed: bool,
    info: Arc<ClientInfo>,
    member: MemberHandle,
    /// Its file-server secret, when keys are secrets.
    fs_key: Option<String>,
    subscriptions: BTreeSet<String>,
    owned: BTreeSet<String>,
}

impl ClientEntry {
    /// Services the client owns or subscribes to (one owned and subscribed counts once).
    fn holds(&self) -> usize {
        self.owned.len() + self.subscriptions.difference(&self.owned).count()
    }
}

struct ServiceEntry {
    /// The service's info; `subscribers` in the order they subscribed.
    info: ServiceInfo,
    addr: Addr<Service>,
}

impl ConciergeDirectory {
    /// An empty directory announcing through `lobby`.
    pub(crate) fn new(
        lobby: Addr<Lobby>,
        pool: Arc<ArbiterPool>,
        evict_after: u32,
        max_services: usize,
        files_dir: PathBuf,
        fs_key: FsKeyMode,
    ) -> Self {
        ConciergeDirectory {
            fs_key,
            max_services,
            clients: HashMap::new(),
            names: BTreeMap::new(),
            leaving: HashSet::new(),
            file_keys: HashMap::new(),
            services: BTreeMap::new(),
            lobby,
            pool,
            evict_after,
            files_dir,
            _alive: ActorGauge::new(ActorKind::ConciergeDirectory),
        }
    }

    fn announce(&self, payload: PayloadOut<'_>) {
        self.lobby
            .do_send(Announce(Frames::One(payload.encode(None).into())));
    }

    /// Announces `payload` to everyone, then answers `answer` once every
    /// copy is queued: the requester's sequenced reply, written after what
    /// was queued for it, then follows the broadcast (the reference's order).
    fn announce_then<T: 'static>(&self, payload: PayloadOut<'_>, answer: T) -> ResponseFuture<T> {
        let queued = self
            .lobby
            .send(Announce(Frames::One(payload.encode(None).into())));
        Box::pin(async move {
            if let Err(e) = queued.await {
                log::error!("concierge lobby unreachable: {e}");
            }
            answer
        })
    }

    /// An identified client that got HELLO.
    fn welcomed(&self, uuid: &Uuid) -> Option<&ClientEntry> {
        self.clients.get(uuid).filter(|c| c.welcomed)
    }

    fn subscriptions_of(&self, entry: &ClientEntry) -> Vec<ServiceInfo> {
        entry
            .subscriptions
            .iter()
            .filter_map(|name| self.services.get(name))
            .map(|s| s.info.clone())
            .collect()
    }

    /// Removes a service at its owner's request.
    fn delete_service(
        &mut self,
        requester: Uuid,
        name: &str,
    ) -> Result<ServiceInfo, DeleteRefused> {
        let service = self
            .services
            .get(name)
            .ok_or(DeleteRefused::NoSuchService)?;
        if service.info.owner_uuid != requester {
            return Err(DeleteRefused::NotOwner);
        }
        self.remove_service(name)
            .ok_or(DeleteRefused::NoSuchService)
    }

    /// Removes a service: every subscriber forgets it, its actor refuses
    /// further messages. Returns its last info.
    fn remove_service(&mut self, name: &str) -> Option<ServiceInfo> {
        let entry = self.services.remove(name)?;
        for uuid in &entry.info.subscribers {
            if let Some(client) = self.clients.get_mut(uuid) {
                client.subscriptions.remove(name);
            }
        }
        if let Some(owner) = self.clients.get_mut(&entry.info.owner_uuid) {
            owner.owned.remove(name);
        }
        entry.addr.do_send(Deleted);
        metrics().concierge.services.dec();
        Some(entry.info)
    }
}

impl Actor for ConciergeDirectory {
    type Context = Context<Self>;
}

impl Supervised for ConciergeDirectory {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("concierge directory restarting");
        metrics().actor_restarted(ActorKind::ConciergeDirectory);
    }
}

/// The name is taken (close 4005).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("name taken")]
pub struct NameTaken;

/// A client passed the IDENTIFY checks: claim its name. Nobody is told
/// until its folder is ready and it sends [`Welcome`].
#[derive(Message)]
#[rtype(result = "Result<(), NameTaken>")]
pub struct Identify {
    /// The client as others will see it.
    pub info: ClientInfo,
    /// Its connection.
    pub member: MemberHandle,
    /// Its file-server secret (`concierge.fs_key = "secret"`), else `None`
    /// and the uuid is the key.
    pub fs_key: Option<String>,
}

impl Handler<Identify> for ConciergeDirectory {
    type Result = Result<(), NameTaken>;
    fn handle(&mut self, msg: Identify, _: &mut Self::Context) -> Self::Result {
        let name = &msg.info.name;
        if self.names.contains_key(name) || self.leaving.contains(name) {
            return Err(NameTaken);
        }
        self.names.insert(name.clone(), msg.info.uuid);
        if let Some(key) = &msg.fs_key {
            self.file_keys.insert(key.clone(), msg.info.uuid);
        }
        self.clients.insert(
            msg.info.uuid,
            ClientEntry {
                welcomed: false,
                info: Arc::new(msg.info),
                member: msg.member,
                fs_key: msg.fs_key,
                subscriptions: BTreeSet::new(),
                owned: BTreeSet::new(),
            },
        );
        Ok(())
    }
}

/// The client's folder is ready and it is sending HELLO: CLIENT_JOINED goes
/// to everyone else, then the client joins the lobby.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Welcome(pub Uuid);

impl Handler<Welcome> for ConciergeDirectory {
    type Result = ();
    fn handle(&mut self, Welcome(uuid): Welcome, _: &mut Self::Context) {
        let Some(entry) = self.clients.get_mut(&uuid) else {
            return;
        };
        entry.welcomed = true;
        let (info, member) = (Arc::clone(&entry.info), entry.member.clone());
        self.announce(PayloadOut::ClientJoined { client: &info });
        self.lobby.do_send(JoinLobby(member));
        metrics().concierge.clients.inc();
    }
}

/// An identified client's connection ended. In order: its services are
/// deleted (SERVICE_DELETE_RESULT to everyone), it leaves every service it
/// subscribed to (SERVICE_CLIENT_UNSUBSCRIBED to their subscribers), its
/// folder is taken away, then CLIENT_LEFT goes to everyone and the name can
/// be claimed again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave(pub Uuid);

impl Handler<Leave> for ConciergeDirectory {
    type Result = ();
    fn handle(&mut self, Leave(uuid): Leave, ctx: &mut Self::Context) {
        let Some(entry) = self.clients.remove(&uuid) else {
            return;
        };
        let name = entry.info.name.clone();
        self.names.remove(&name);
        if let Some(key) = &entry.fs_key {
            self.file_keys.remove(key);
        }
        self.leaving.insert(name.clone());
        if entry.welcomed {
            metrics().concierge.clients.dec();
            self.lobby.do_send(LeaveLobby(entry.member.id));
        }

        let deleted: Vec<_> = entry
            .owned
            .iter()
            .filter_map(|service| self.remove_service(service))
            .map(|service| {
                PayloadOut::ServiceDeleteResult { service: &service }
                    .encode(None)
                    .into()
            })
            .collect();
        let mut unsubscribed = Vec::new();
        for service in &entry.subscriptions {
            let Some(s) = self.services.get_mut(service) else {
                continue;
            };
            s.info.subscribers.retain(|u| *u != uuid);
            let announce = PayloadOut::ServiceClientUnsubscribed {
                client: &entry.info,
                service: &s.info,
            };
            let removal = RemoveSubscriber {
                uuid,
                announce: Frames::One(announce.encode(None).into()),
            };
            unsubscribed.push((s.addr.clone(), removal));
        }
        // Nobody was told of a client that never got HELLO.
        let left = entry.welcomed.then(|| {
            Frames::One(
                PayloadOut::ClientLeft {
                    client: &entry.info,
                }
                .encode(None)
                .into(),
            )
        });
        let lobby = self.lobby.clone();
        let files_dir = self.files_dir.clone();
        // Each step is sent only once the one before is queued everywhere
        // (`send` enqueues at once, so the messages are created in order).
        // The folder is taken away before the name is released, and the name
        // is released as CLIENT_LEFT goes out: whoever hears it may reclaim
        // the name at once, with a folder of its own.
        let departure = async move {
            if !deleted.is_empty() {
                let _ = lobby.send(Announce(Frames::from(deleted))).await;
            }
            let removals: Vec<_> = unsubscribed
                .into_iter()
                .map(|(service, removal)| service.send(removal))
                .collect();
            for removal in removals {
                let _ = removal.await;
            }
            if let Err(e) = super::remove_client_folder(&files_dir, &entry.info.name).await {
                log::error!("could not remove the files of {}: {e}", entry.info.name);
            }
        };
        ctx.spawn(departure.into_actor(self).map(move |(), dir, _| {
            dir.leaving.remove(&name);
            if let Some(left) = left {
                dir.lobby.do_send(Announce(left));
            }
        }));
    }
}

/// The result of [`CreateService`].
pub enum Creation {
    /// A new service (announced to everyone), and its actor, which the owner
    /// keeps to send its MESSAGEs straight there (weakly: the service stops
    /// once it is deleted, whoever still remembers it).
    Created(ServiceInfo, WeakAddr<Service>),
    /// A service of that name exists already.
    Exists(ServiceInfo),
    /// The client holds `limits.max_rooms_per_client` services already (BAD).
    TooMany,
}

/// Creates a service owned by the sender.
#[derive(Message)]
#[rtype(result = "Option<Creation>")]
pub struct CreateService {
    /// The owner.
    pub owner: Uuid,
    /// The service's name.
    pub name: String,
    /// Its nickname.
    pub nickname: Option<String>,
}

impl Handler<CreateService> for ConciergeDirectory {
    type Result = ResponseFuture<Option<Creation>>;
    fn handle(&mut self, msg: CreateService, _: &mut Self::Context) -> Self::Result {
        if let Some(existing) = self.services.get(&msg.name) {
            let exists = Some(Creation::Exists(existing.info.clone()));
            return Box::pin(std::future::ready(exists));
        }
        let Some(owner) = self.clients.get_mut(&msg.owner) else {
            return Box::pin(std::future::ready(None));
        };
        if owner.holds() >= self.max_services {
            return Box::pin(std::future::ready(Some(Creation::TooMany)));
        }
        let info = ServiceInfo {
            name: msg.name,
            nickname: msg.nickname,
            owner_uuid: msg.owner,
            subscribers: Vec::new(),
        };
        let (header, member, evict_after) = (info.clone(), owner.member.clone(), self.evict_after);
        let addr = Supervisor::start_in_arbiter(&self.pool.next(), move |_| {
            Service::new(header, member, evict_after)
        });
        let weak = addr.downgrade();
        owner.owned.insert(info.name.clone());
        self.services.insert(
            info.name.clone(),
            ServiceEntry {
                info: info.clone(),
                addr,
            },
        );
        metrics().concierge.services.inc();
        let created = PayloadOut::ServiceCreateResult {
            successful: true,
            service: &info,
        };
        self.announce_then(created, Some(Creation::Created(info.clone(), weak)))
    }
}

/// Why a SERVICE_DELETE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeleteRefused {
    /// No service of that name (INVALID_SERVICE).
    #[error("no such service")]
    NoSuchService,
    /// The sender does not own it (BAD).
    #[error("not the owner")]
    NotOwner,
}

/// Deletes a service; only its owner may.
#[derive(Message)]
#[rtype(result = "Result<ServiceInfo, DeleteRefused>")]
pub struct DeleteService {
    /// Who asks.
    pub requester: Uuid,
    /// The service.
    pub name: String,
}

impl Handler<DeleteService> for ConciergeDirectory {
    type Result = ResponseFuture<Result<ServiceInfo, DeleteRefused>>;
    fn handle(&mut self, msg: DeleteService, _: &mut Self::Context) -> Self::Result {
        match self.delete_service(msg.requester, &msg.name) {
            Ok(info) => {
                let deleted = PayloadOut::ServiceDeleteResult { service: &info };
                self.announce_then(deleted, Ok(info.clone()))
            }
            Err(refused) => Box::pin(std::future::ready(Err(refused))),
        }
    }
}

/// Why a SELF_SUBSCRIBE / SELF_UNSUBSCRIBE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionRefused {
    /// No service of that name (INVALID_SERVICE).
    #[error("no such service")]
    NoSuchService,
    /// The client holds `limits.max_rooms_per_client` services already (BAD).
    #[error("too many services")]
    TooMany,
}

/// What a [`Subscription`] did.
pub struct SubscriptionChange {
    /// Whether anything changed (the reply's `successful` flag).
    pub changed: bool,
    /// The service's info after the change.
    pub info: ServiceInfo,
    /// The service's actor, which a subscriber keeps to send its MESSAGEs
    /// straight there (weakly: the service stops once it is deleted).
    pub service: WeakAddr<Service>,
}

/// Subscribes (`subscribe: true`) or unsubscribes a client.
#[derive(Message)]
#[rtype(result = "Result<SubscriptionChange, SubscriptionRefused>")]
pub struct Subscription {
    /// The client.
    pub uuid: Uuid,
    /// The service.
    pub service: String,
    /// Subscribe or unsubscribe.
    pub subscribe: bool,
}

impl Handler<Subscription> for ConciergeDirectory {
    type Result = Result<SubscriptionChange, SubscriptionRefused>;
    fn handle(&mut self, msg: Subscription, _: &mut Self::Context) -> Self::Result {
        let service = self
            .services
            .get_mut(&msg.service)
            .ok_or(SubscriptionRefused::NoSuchService)?;
        let client = self
            .clients
            .get_mut(&msg.uuid)
            .ok_or(SubscriptionRefused::NoSuchService)?;
        let adds_one =
            !client.subscriptions.contains(&msg.service) && !client.owned.contains(&msg.service);
        if msg.subscribe && adds_one && client.holds() >= self.max_services {
            return Err(SubscriptionRefused::TooMany);
        }
        let changed = if msg.subscribe {
            client.subscriptions.insert(msg.service.clone())
        } else {
            client.subscriptions.remove(&msg.service)
        };
        if changed {
            if msg.subscribe {
                service.info.subscribers.push(msg.uuid);
            } else {
                service.info.subscribers.retain(|u| *u != msg.uuid);
            }
            if msg.subscribe {
                let announce = PayloadOut::ServiceClientSubscribed {
                    client: &client.info,
                    service: &service.info,
                };
                service.addr.do_send(AddSubscriber {
                    uuid: msg.uuid,
                    member: client.member.clone(),
                    announce: Frames::One(announce.encode(None).into()),
                });
            } else {
                let announce = PayloadOut::ServiceClientUnsubscribed {
                    client: &client.info,
                    service: &service.info,
                };
                service.addr.do_send(RemoveSubscriber {
                    uuid: msg.uuid,
                    announce: Frames::One(announce.encode(None).into()),
                });
            }
        }
        Ok(SubscriptionChange {
            changed,
            info: service.info.clone(),
            service: service.addr.downgrade(),
        })
    }
}

/// A client's info and the services it subscribes to (SELF_FETCH,
/// CLIENT_FETCH); `None` when no identified client has that uuid.
#[derive(Message)]
#[rtype(result = "Option<(ClientInfo, Vec<ServiceInfo>)>")]
pub struct FetchClient(pub Uuid);

impl Handler<FetchClient> for ConciergeDirectory {
    type Result = Option<(ClientInfo, Vec<ServiceInfo>)>;
    fn handle(&mut self, FetchClient(uuid): FetchClient, _: &mut Self::Context) -> Self::Result {
        let entry = self.welcomed(&uuid)?;
        Some((ClientInfo::clone(&entry.info), self.subscriptions_of(entry)))
    }
}

/// Every identified client, in name order.
#[derive(Message)]
#[rtype(result = "Vec<ClientInfo>")]
pub struct FetchClients;

impl Handler<FetchClients> for ConciergeDirectory {
    type Result = Vec<ClientInfo>;
    fn handle(&mut self, _: FetchClients, _: &mut Self::Context) -> Self::Result {
        self.names
            .values()
            .filter_map(|uuid| self.welcomed(uuid))
            .map(|entry| ClientInfo::clone(&entry.info))
            .collect()
    }
}

/// One service's info (SERVICE_FETCH).
#[derive(Message)]
#[rtype(result = "Option<ServiceInfo>")]
pub struct FetchService(pub String);

impl Handler<FetchService> for ConciergeDirectory {
    type Result = Option<ServiceInfo>;
    fn handle(&mut self, FetchService(name): FetchService, _: &mut Self::Context) -> Self::Result {
        self.services.get(&name).map(|s| s.info.clone())
    }
}

/// Every service, in name order (SERVICE_FETCH_ALL).
#[derive(Message)]
#[rtype(result = "Vec<ServiceInfo>")]
pub struct FetchServices;

impl Handler<FetchServices> for ConciergeDirectory {
    type Result = Vec<ServiceInfo>;
    fn handle(&mut self, _: FetchServices, _: &mut Self::Context) -> Self::Result {
        self.services.values().map(|s| s.info.clone()).collect()
    }
}

/// How a MESSAGE names one client.
pub enum ClientRef {
    /// By name (`NAME` target).
    Name(String),
    /// By uuid (`UUID` target).
    Uuid(Uuid),
}

/// The connection of one identified client, for a direct MESSAGE.
#[derive(Message)]
#[rtype(result = "Option<MemberHandle>")]
pub struct FindClient(pub ClientRef);

impl Handler<FindClient> for ConciergeDirectory {
    type Result = Option<MemberHandle>;
    fn handle(&mut self, FindClient(target): FindClient, _: &mut Self::Context) -> Self::Result {
        let uuid = match target {
            ClientRef::Name(name) => *self.names.get(&name)?,
            ClientRef::Uuid(uuid) => uuid,
        };
        self.welcomed(&uuid).map(|c| c.member.clone())
    }
}

/// The actor of a service: for a client's first MESSAGE through a service it
/// holds no address of, and for the publish API.
#[derive(Message)]
#[rtype(result = "Option<Addr<Service>>")]
pub struct FindService(pub String);

impl Handler<FindService> for ConciergeDirectory {
    type Result = Option<Addr<Service>>;
    fn handle(&mut self, FindService(name): FindService, _: &mut Self::Context) -> Self::Result {
        self.services.get(&name).map(|s| s.addr.clone())
    }
}

/// The name of the identified client whose file-server key this is, if
/// any: its HELLO uuid, or with `concierge.fs_key = "secret"` the secret
/// HELLO gave it (and then never the uuid, which every client knows).
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct FileKeyOwner(pub String);

impl Handler<FileKeyOwner> for ConciergeDirectory {
    type Result = Option<String>;
    fn handle(&mut self, FileKeyOwner(key): FileKeyOwner, _: &mut Self::Context) -> Self::Result {
        let uuid = match self.fs_key {
            FsKeyMode::Uuid => Uuid::parse_str(&key).ok()?,
            FsKeyMode::Secret => *self.file_keys.get(&key)?,
        };
        self.welcomed(&uuid).map(|c| c.info.name.clone())
    }
}
