//! Durability end to end: what the broker acknowledged survives a SIGKILL,
//! and a graceful shutdown under load closes everyone with 1001 and leaves
//! a consistent store.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::rooms::{numbered_user, ERIN, FRANK};
use common::tokens::{options, token};
use common::{chat_history, Broker, Closed, Next, Options, WsClient, FRAME_TIMEOUT};
use serde_json::{json, Value};

/// Chat messages sent back to back before the kill: enough that a broker
/// which broadcast before its store committed would still have a backlog
/// of acknowledged but unwritten messages (and the ban behind them) when
/// killed; with 300 that failed 10 runs out of 10.
const CHAT_MESSAGES: usize = 300;

/// Test defaults, JWTs, and a chat history long enough to hold every message.
fn durable_options() -> Options {
    options().env("CHAT__HISTORY_LIMIT", "10000")
}

/// `PRAGMA integrity_check` of the broker's SQLite file, opened directly.
fn integrity(data: &Path) -> String {
    let db = rusqlite::Connection::open(data.join("switchboard.db")).expect("open the store");
    db.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// The next text frame as JSON.
async fn next_json(ws: &mut WsClient) -> Value {
    let text = ws.recv().await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Reads frames until one satisfies `want`; returns it.
async fn until(ws: &mut WsClient, want: impl Fn(&Value) -> bool) -> Value {
    loop {
        let frame = next_json(ws).await;
        if want(&frame) {
            return frame;
        }
    }
}

/// A live user, online once its `ping` is answered.
async fn live_user(broker: &Broker, id: &str, name: &str) -> WsClient {
    let mut ws =
        WsClient::connect(&broker.ws_url(&format!("/live?token={}", token(id, name)))).await;
    ws.send(r#"{"type":"ping"}"#).await;
    assert_eq!(next_json(&mut ws).await["type"], "pong");
    ws
}

/// Sends a live request and returns its reply (popups skipped).
async fn live_ask(ws: &mut WsClient, kind: &str, message: Option<&str>) -> Value {
    let mut request = json!({"type": kind});
    if let Some(message) = message {
        request["message"] = json!(message);
    }
    ws.send(&request.to_string()).await;
    until(ws, |f| f["type"] != "message").await
}

/// A chat user joined to `room`, its startup frames read.
async fn chat_user(broker: &Broker, name: &str, room: &str) -> WsClient {
    let mut ws = WsClient::connect(&broker.ws_url(&format!("/chat/ws/{room}"))).await;
    ws.send(&json!({"event_type": "connection_request", "username": name}).to_string())
        .await;
    let joined = json!({"event_type": "user_join", "username": name});
    until(&mut ws, |f| {
        assert_ne!(f["event_type"], "connection_reject", "{f}");
        *f == joined
    })
    .await;
    ws
}

fn chat_message(username: &str, message: &str) -> Value {
    json!({"event_type": "message", "username": username, "message": message})
}

/// A rooms user and its session key.
async fn rooms_user(broker: &Broker, id: &str) -> (WsClient, String) {
    let mut ws =
        WsClient::connect(&broker.ws_url(&format!("/rooms?token={}", token(id, id)))).await;
    let session = next_json(&mut ws).await;
    assert_eq!(session["type"], "session", "{session}");
    (ws, session["key"].as_str().unwrap().to_owned())
}

/// Sends a keyed rooms command.
async fn rooms_send(ws: &mut WsClient, key: &str, mut command: Value) {
    command["key"] = json!(key);
    ws.send(&command.to_string()).await;
}

/// Creates a room (entering it) and returns its id.
async fn rooms_create(ws: &mut WsClient, key: &str, me: &str, name: &str) -> String {
    rooms_send(
        ws,
        key,
        json!({"type": "create", "name": name, "closed": false}),
    )
    .await;
    let created = next_json(ws).await;
    assert_eq!(created["type"], "created", "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    assert_eq!(next_json(ws).await, rooms_event("enter", me, &room));
    room
}

fn rooms_event(kind: &str, user: &str, room: &str) -> Value {
    json!({"type": kind, "user_id": user, "room_id": room})
}

/// A friendship, chat messages and a ban, each acknowledged to its client,
/// then SIGKILL without a moment's grace: after a restart on the same store
/// all of them are there, and the file opened directly is intact.
#[actix_rt::test]
async fn acknowledged_writes_survive_sigkill() {
    let broker = Broker::with(durable_options());

    // Live: alice asks bob.
    let mut alice = live_user(&broker, "u-alice", "alice").await;
    let mut bob = live_user(&broker, "u-bob", "bob").await;
    assert_eq!(
        live_ask(&mut alice, "send-friend-request", Some("bob")).await["type"],
        "success"
    );
    let popup = next_json(&mut bob).await;
    assert_eq!(popup["type"], "message", "{popup}");

    // Chat: carol speaks, dave listens, in a room of their own.
    let mut carol = chat_user(&broker, "carol", "vault").await;
    let mut dave = chat_user(&broker, "dave", "vault").await;
    until(&mut carol, |f| {
        f["event_type"] == "user_join" && f["username"] == "dave"
    })
    .await;

    // Rooms: erin's room, frank in it.
    let (mut erin, erin_key) = rooms_user(&broker, ERIN).await;
    let (mut frank, frank_key) = rooms_user(&broker, FRANK).await;
    let room = rooms_create(&mut erin, &erin_key, ERIN, "club").await;
    rooms_send(
        &mut frank,
        &frank_key,
        json!({"type": "enter", "room_id": room}),
    )
    .await;
    assert_eq!(
        next_json(&mut frank).await,
        rooms_event("enter", FRANK, &room)
    );
    assert_eq!(
        next_json(&mut erin).await,
        rooms_event("enter", FRANK, &room)
    );

    // Bob accepts: `success` acknowledges the friendship.
    bob.send(&json!({"type": "accept-friend-request", "message": "u-alice"}).to_string())
        .await;
    let accepted = until(&mut bob, |f| f["type"] != "message").await;
    assert_eq!(accepted["type"], "success", "{accepted}");

    // Carol sends her messages back to back; each one's broadcast back to
    // her is its acknowledgement.
    let texts: Vec<String> = (0..CHAT_MESSAGES).map(|i| format!("durable {i}")).collect();
    let burst = Instant::now();
    for text in &texts {
        carol.send(&chat_message("carol", text).to_string()).await;
    }
    for text in &texts {
        let frame = until(&mut carol, |f| f["event_type"] == "message").await;
        assert_eq!(frame, chat_message("carol", text));
    }

    eprintln!(
        "{CHAT_MESSAGES} chat messages committed and broadcast in {:?}",
        burst.elapsed()
    );
    // Erin bans frank at once: `kick` to frank and `exit` to the room
    // acknowledge it. A store lagging behind the chat's acknowledgements
    // would still be busy with them.
    rooms_send(
        &mut erin,
        &erin_key,
        json!({"type": "kick", "user_id": FRANK, "room_id": room, "message": "bye", "permanent": true}),
    )
    .await;
    assert_eq!(
        next_json(&mut frank).await,
        json!({"type": "kick", "room_id": room, "message": "bye", "permanent": true})
    );
    assert_eq!(
        next_json(&mut erin).await,
        rooms_event("exit", FRANK, &room)
    );
    for text in &texts {
        let frame = until(&mut dave, |f| f["event_type"] == "message").await;
        assert_eq!(frame, chat_message("carol", text), "the second member");
    }
    // The last acknowledgement is in: no grace at all.
    let data = broker.kill();

    // The file as the kill left it (its WAL replayed on open).

    assert_eq!(integrity(&data.path), "ok");
    let broker = Broker::with(durable_options().data(&data.path));

    // Every check runs, so a failure names everything that was lost.
    let mut lost = Vec::new();
    let mut alice = live_user(&broker, "u-alice", "alice").await;
    let friends = live_ask(&mut alice, "get-friends", None).await;
    let bob_friend =
        json!([{"user_id": "u-bob", "username": "bob", "online": false, "playing": null}]);
    if friends["data"] != bob_friend {
        lost.push(format!(
            "the accepted friendship: get-friends answers {friends}"
        ));
    }
    let history = chat_history(&broker, "vault").await;
    if history != texts {
        lost.push(format!(
            "{} of {CHAT_MESSAGES} broadcast chat messages: the history is {history:?}",
            CHAT_MESSAGES - history.len()
        ));
    }
    let (mut frank, frank_key) = rooms_user(&broker, FRANK).await;
    rooms_send(
        &mut frank,
        &frank_key,
        json!({"type": "enter", "room_id": room}),
    )
    .await;
    let entered = next_json(&mut frank).await;
    if entered != json!({"type": "error", "message": "you are banned from this room"}) {
        lost.push(format!("the ban: frank's enter is answered {entered}"));
    }
    assert!(
        lost.is_empty(),
        "acknowledged but lost to SIGKILL: {lost:#?}"
    );
}

/// Makes a client's `i`-th request.
type MakeRequest = Box<dyn Fn(u64) -> String>;
/// Whether a frame answers the `i`-th request.
type IsAnswer = Box<dyn Fn(&Value, u64) -> bool>;

/// A client driven until the broker closes it.
struct Driven {
    ws: WsClient,
    /// For messages and errors.
    name: String,
    /// What it sends, one request at a time (`None`: it only reads).
    load: Option<(MakeRequest, IsAnswer)>,
}

/// Pause between a client's answered request and its next one.
const PACE: Duration = Duration::from_millis(2);

impl Driven {
    fn reader(ws: WsClient, name: String) -> Driven {
        Driven {
            ws,
            name,
            load: None,
        }
    }

    fn sender(
        ws: WsClient,
        name: String,
        request: impl Fn(u64) -> String + 'static,
        answers: impl Fn(&Value, u64) -> bool + 'static,
    ) -> Driven {
        Driven {
            ws,
            name,
            load: Some((Box::new(request), Box::new(answers))),
        }
    }

    /// Sends (if a sender) and reads until the close frame. Every chat
    /// `message` seen goes into `seen`; every answered request counts in
    /// `progress`.
    async fn run(
        mut self,
        seen: Rc<RefCell<HashSet<String>>>,
        progress: Rc<Cell<usize>>,
    ) -> Result<Closed, String> {
        let mut load = self.load.take();
        let mut i = 0;
        loop {
            if let Some((request, _)) = &load {
                if !self.ws.try_send(&request(i)).await {
                    // Gone: what is left to read ends with the close frame.
                    load = None;
                }
            }
            loop {
                let text = match self.ws.next_or_end(FRAME_TIMEOUT).await {
                    Next::Text(text) => text,
                    Next::Close(closed) => return Ok(closed),
                    Next::Ended => {
                        return Err(format!(
                            "{}: the connection ended without a close frame",
                            self.name
                        ))
                    }
                    Next::TimedOut => {
                        return Err(format!(
                            "{}: no close frame within {FRAME_TIMEOUT:?}",
                            self.name
                        ))
                    }
                };
                let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if frame["event_type"] == "message" {
                    seen.borrow_mut()
                        .insert(frame["message"].as_str().unwrap_or_default().to_owned());
                }
                if load.as_ref().is_some_and(|(_, answers)| answers(&frame, i)) {
                    progress.set(progress.get() + 1);
                    break;
                }
            }
            i += 1;
            actix_rt::time::sleep(PACE).await;
        }
    }
}

#[actix_rt::test]
async fn shutdown_under_load_closes_everyone_with_1001_and_keeps_the_store_consistent() {
    let started = Instant::now();
    let mut broker = Broker::with(durable_options());
    let mut clients = Vec::new();

    // Chat: two rooms of six, three of them talking.
    for room in ["load-a", "load-b"] {
        for n in 0..6 {
            let name = format!("{room}-{n}");
            let ws = chat_user(&broker, &name, room).await;
            clients.push(if n < 3 {
                let (me, said) = (name.clone(), name.clone());
                Driven::sender(
                    ws,
                    name,
                    move |i| chat_message(&me, &format!("{me} {i}")).to_string(),
                    move |f, i| *f == chat_message(&said, &format!("{said} {i}")),
                )
            } else {
                Driven::reader(ws, name)
            });
        }
    }

    // Concierge: eight identified clients, two messaging everyone.
    for n in 0..8 {
        let name = format!("concierge_{n}");
        let peer = common::concierge::identify(&broker, &name).await;
        clients.push(if n < 2 {
            Driven::sender(
                peer.ws,
                name,
                |i| json!({"type": "MESSAGE", "target": {"type": "ALL"}, "data": i}).to_string(),
                |f, _| f["type"] == "OK",
            )
        } else {
            Driven::reader(peer.ws, name)
        });
    }

    // Live: ten users, half of them reading their friends from the store.
    for n in 0..10 {
        let name = format!("live{n}");
        let ws = live_user(&broker, &format!("u-{name}"), &name).await;
        clients.push(if n < 5 {
            Driven::sender(
                ws,
                name,
                |_| json!({"type": "get-friends"}).to_string(),
                |f, _| f["type"] == "retrieveFriends",
            )
        } else {
            Driven::reader(ws, name)
        });
    }

    // Rooms: ten members of one room, four of them talking.
    let (mut admin, admin_key) = rooms_user(&broker, &numbered_user(0)).await;
    let room = rooms_create(&mut admin, &admin_key, &numbered_user(0), "busy").await;
    let mut members = vec![(admin, admin_key)];
    for n in 1..10 {
        let id = numbered_user(n);
        let (mut ws, key) = rooms_user(&broker, &id).await;
        rooms_send(&mut ws, &key, json!({"type": "enter", "room_id": room})).await;
        until(&mut ws, |f| *f == rooms_event("enter", &id, &room)).await;
        members.push((ws, key));
    }
    for (n, (ws, key)) in members.into_iter().enumerate() {
        let name = format!("r{n}");
        clients.push(if n < 4 {
            let (me, said, user, room) = (name.clone(), name.clone(), numbered_user(n), room.clone());
            Driven::sender(
                ws,
                name,
                move |i| {
                    json!({"type": "message", "key": key, "content": format!("{me} {i}"), "room_id": room})
                        .to_string()
                },
                move |f, i| {
                    f["type"] == "message"
                        && f["user_id"] == user.as_str()
                        && f["content"] == format!("{said} {i}").as_str()
                },
            )
        } else {
            Driven::reader(ws, name)
        });
    }

    // Session list: ten watchers.
    for n in 0..10 {
        let mut ws = WsClient::connect(&broker.ws_url("/sessions")).await;
        assert!(ws.recv().await.starts_with("reset\n"));
        clients.push(Driven::reader(ws, format!("watcher{n}")));
    }
    assert_eq!(clients.len(), 50);

    let seen = Rc::new(RefCell::new(HashSet::new()));
    let progress = Rc::new(Cell::new(0));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let name = client.name.clone();
            let run = client.run(seen.clone(), progress.clone());
            actix_rt::spawn(async move { (name, run.await) })
        })
        .collect();

    // Under load: a few hundred answered requests, among them a couple of
    // hundred chat messages, then SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress.get() < 400 || seen.borrow().len() < 200 {
        assert!(
            Instant::now() < deadline,
            "the load never got going: {} answered, {} chat messages",
            progress.get(),
            seen.borrow().len()
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    broker.signal(libc::SIGTERM);
    let signalled = Instant::now();

    let mut failures = Vec::new();
    for task in tasks {
        match task.await.expect("client task") {
            (_, Ok(closed)) if closed.code == 1001 && closed.reason == "server shutting down" => {}
            (name, Ok(closed)) => failures.push(format!("{name}: closed with {closed:?}")),
            (_, Err(failure)) => failures.push(failure),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let status = broker.wait_exit(Duration::from_secs(10));
    let shutdown = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", broker.log());
    assert!(
        shutdown < Duration::from_secs(10),
        "shutdown took {shutdown:?}"
    );
    let log = broker.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("store flushed"), "{log}");
    let errors: Vec<_> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "errors logged: {errors:#?}");

    // The store: intact, and it holds every message anyone was sent.
    assert_eq!(integrity(broker.data()), "ok");
    let restarted = Broker::with(durable_options().data(broker.data()));
    let mut history = HashSet::new();
    for room in ["load-a", "load-b"] {
        history.extend(chat_history(&restarted, room).await);
    }
    let seen = seen.borrow();
    let lost: Vec<_> = seen.difference(&history).collect();
    assert!(
        lost.is_empty(),
        "{} of {} broadcast chat messages are not in the history: {lost:?}",
        lost.len(),
        seen.len()
    );
    eprintln!(
        "{} chat messages broadcast, {} requests answered; shutdown took {shutdown:?}; test {:?}",
        seen.len(),
        progress.get(),
        started.elapsed()
    );
}
