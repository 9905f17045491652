//! The operator console's admin API end to end (issue 9): every
//! `/api/admin/*` endpoint against a real broker with real clients of all
//! five protocols, and the `/api/admin/live` feed.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::chat::join as chat;
use common::concierge::{self, identify_payload, Peer};
use common::rooms::{create_by_api, exit, RoomsUser, ALICE, BOB, CAROL, DAVE, OWNER};
use common::tokens::{options, token};
use common::{admin, request, Broker, Closed, Options, WsClient, ADMIN_KEY};
use serde_json::{json, Value};

/// The rooms user of the every-protocol tests (rooms user ids are UUIDs).
const ROOMS_USER: &str = "5e550000-0000-4000-8000-00000000000a";

/// How long a test polls the API for a state the broker reaches asynchronously.
const WAIT: Duration = Duration::from_secs(10);

/// A key that is not the admin key.
const WRONG_KEY: &str = "not-the-admin-key-0123456789";

/// The fields of the overview object (a live-feed sample has the same).
const OVERVIEW_KEYS: [&str; 16] = [
    "time",
    "version",
    "started_at",
    "uptime_seconds",
    "connections",
    "chat_rooms",
    "rooms",
    "services",
    "sessions",
    "messages_in_per_second",
    "messages_out_per_second",
    "messages_in_total",
    "messages_out_total",
    "dropped_total",
    "actor_restarts_total",
    "published_total",
];

/// The fields of a connection item.
const CONNECTION_KEYS: [&str; 8] = [
    "id",
    "protocol",
    "peer",
    "identity",
    "connected_since",
    "messages_in",
    "messages_out",
    "queue_depth",
];

/// The five protocols, as the `protocol` filter names them.
const PROTOCOLS: [&str; 5] = ["chat", "concierge", "rooms", "sessions", "live"];

/// The five paged lists.
const LISTS: [&str; 5] = [
    "/api/admin/connections",
    "/api/admin/chat/rooms",
    "/api/admin/rooms",
    "/api/admin/services",
    "/api/admin/sessions",
];

// ---------------------------------------------------------------- helpers

/// Asserts that `value` is an object with exactly the keys `want`.
fn assert_keys(value: &Value, want: &[&str]) {
    let mut got: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want = want.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "fields of {value}");
}

/// Parses an RFC 3339 UTC timestamp with a `Z` suffix.
fn rfc3339(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(text.ends_with('Z'), "not UTC with Z: {text}");
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {text}"))
        .with_timezone(&Utc)
}

/// Asserts `reply` is an error with `status` and a non-empty `error` text.
fn assert_error(reply: &common::Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert!(
        reply.json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: not {{\"error\": \"...\"}}: {}",
        reply.text
    );
}

/// `GET path` with the admin key; asserts 200 and returns the JSON.
async fn get(broker: &Broker, path: &str) -> Value {
    let reply = admin("GET", &broker.http(path), None).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
    reply.json
}

/// `GET path` of a paged list: checks the envelope against the expected
/// `offset` and `limit` and returns `(total, items)`.
async fn page_at(broker: &Broker, path: &str, offset: u64, limit: u64) -> (u64, Vec<Value>) {
    let page = get(broker, path).await;
    assert_keys(&page, &["total", "offset", "limit", "items"]);
    assert_eq!(
        (&page["offset"], &page["limit"]),
        (&json!(offset), &json!(limit)),
        "{path}: {page}"
    );
    let total = page["total"].as_u64().expect("integer total");
    let items = page["items"].as_array().expect("items").clone();
    assert!(items.len() as u64 <= total, "{path}: {page}");
    (total, items)
}

/// A paged list with the default offset and limit (0, 50).
async fn page(broker: &Broker, path: &str) -> (u64, Vec<Value>) {
    page_at(broker, path, 0, 50).await
}

/// Polls `GET path` until `done` holds and returns that answer; fails with
/// the last answer after [`WAIT`].
async fn poll(broker: &Broker, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let value = get(broker, path).await;
        if done(&value) {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GET {path} never got there: {value}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `path` until its `items` equal `want`, then asserts exactly that.
async fn wait_for_items(broker: &Broker, path: &str, want: &Value) {
    let got = poll(broker, path, |v| &v["items"] == want).await;
    assert_eq!(&got["items"], want, "{path}");
}

/// The id of the connection of `protocol` whose identity is `identity`
/// (`Value::Null` for none), once the broker lists it.
async fn connection_id(broker: &Broker, protocol: &str, identity: Value) -> u64 {
    let path = format!("/api/admin/connections?protocol={protocol}");
    let found = poll(broker, &path, |v| {
        v["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["identity"] == identity))
    })
    .await;
    let item = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["identity"] == identity)
        .unwrap()
        .clone();
    item["id"].as_u64().expect("integer id")
}

/// Whether connection `id` is still listed.
async fn listed(broker: &Broker, id: u64) -> bool {
    let (_, items) = page_at(broker, "/api/admin/connections?limit=500", 0, 500).await;
    items.iter().any(|i| i["id"] == id)
}

/// Waits until connection `id` is no longer listed.
async fn wait_unlisted(broker: &Broker, id: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    while listed(broker, id).await {
        assert!(
            std::time::Instant::now() < deadline,
            "connection {id} is still listed"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks an overview object: exactly the contract's fields, and each
/// field's kind; the counts are left to the caller.
fn check_overview(overview: &Value) {
    assert_keys(overview, &OVERVIEW_KEYS);
    check_overview_values(overview);
}

/// Checks the values of the overview's fields (not that there are no others).
fn check_overview_values(overview: &Value) {
    assert_eq!(overview["version"], env!("CARGO_PKG_VERSION"));
    let started = rfc3339(&overview["started_at"]);
    let since = Utc::now() - started;
    assert!(
        since >= chrono::Duration::seconds(-1) && since < chrono::Duration::minutes(10),
        "started_at is the start of this broker: {started}"
    );
    assert!(overview["uptime_seconds"].is_u64(), "{overview}");
    assert_keys(
        &overview["connections"],
        &["total", "concierge", "chat", "sessions", "live", "rooms"],
    );
    let per_protocol: u64 = PROTOCOLS
        .iter()
        .map(|p| overview["connections"][p].as_u64().expect("integer count"))
        .sum();
    assert_eq!(
        overview["connections"]["total"].as_u64(),
        Some(per_protocol),
        "the total is the sum: {overview}"
    );
    for key in ["messages_in_per_second", "messages_out_per_second"] {
        let rate = overview[key].as_f64().expect("a number");
        assert!(rate >= 0.0, "{key}: {overview}");
    }
    for key in [
        "chat_rooms",
        "rooms",
        "services",
        "sessions",
        "messages_in_total",
        "messages_out_total",
        "dropped_total",
        "actor_restarts_total",
        "published_total",
    ] {
        assert!(overview[key].is_u64(), "{key} is a count: {overview}");
    }
}

/// The overview's counts: connections per protocol, then rooms, services, sessions.
fn counts(overview: &Value) -> Value {
    json!({
        "connections": overview["connections"],
        "chat_rooms": overview["chat_rooms"],
        "rooms": overview["rooms"],
        "services": overview["services"],
        "sessions": overview["sessions"],
    })
}

/// Polls the overview until its counts are `want`; returns it.
async fn overview_with(broker: &Broker, want: &Value) -> Value {
    let overview = poll(broker, "/api/admin/overview", |v| &counts(v) == want).await;
    check_overview_values(&overview);
    assert_eq!(&counts(&overview), want);
    overview
}

/// The connections object of the overview.
fn connections(
    total: u64,
    chat: u64,
    concierge: u64,
    rooms: u64,
    sessions: u64,
    live: u64,
) -> Value {
    assert_eq!(total, chat + concierge + rooms + sessions + live);
    json!({"total": total, "chat": chat, "concierge": concierge, "rooms": rooms, "sessions": sessions, "live": live})
}

// ------------------------------------------------------- protocol clients

/// A live-presence user `id` called `name`, online once it has its pong.
async fn live(broker: &Broker, id: &str, name: &str) -> WsClient {
    let url = broker.ws_url(&format!("/live?token={}", token(id, name)));
    let mut ws = WsClient::connect(&url).await;
    ws.send(r#"{"type":"ping"}"#).await;
    assert_eq!(ws.recv_json().await["type"], "pong");
    ws
}

/// A session-list watcher, past its `reset`.
async fn watcher(broker: &Broker) -> WsClient {
    let mut ws = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert!(ws.recv().await.starts_with("reset\n"));
    ws
}

/// A session object for the host API.
fn session(name: &str) -> Value {
    json!({
        "session_name": name,
        "active_users": 1,
        "joined_users": 2,
        "host_username": "hostess",
        "host_registration_date": "2020-05-06T07:08:09Z",
        "host_is_patron": false,
        "host_is_mentor": false,
        "session_begin_time": "2025-11-03T00:45:12Z",
        "users": [],
    })
}

/// Lists session `id` through the host API.
async fn put_session(broker: &Broker, id: &str, name: &str) {
    let reply = admin(
        "PUT",
        &broker.http(&format!("/api/sessions/{id}")),
        Some(&session(name)),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

/// Reads frames until the sequenced reply (one carrying `seq`) of type `kind`.
async fn reply_of(peer: &mut Peer, kind: &str) -> Value {
    loop {
        let frame = peer.ws.recv_json().await;
        if frame["type"] == kind && frame.get("seq").is_some() {
            return frame;
        }
    }
}

/// `peer` creates concierge service `name` (with `nickname`).
async fn create_service(peer: &mut Peer, name: &str, nickname: Option<&str>) {
    let mut create = json!({"type": "SERVICE_CREATE", "service": name});
    if let Some(nickname) = nickname {
        create["nickname"] = json!(nickname);
    }
    peer.send(create).await;
    let result = reply_of(peer, "SERVICE_CREATE_RESULT").await;
    assert_eq!(result["successful"], true, "{result}");
}

/// `peer` subscribes to concierge service `name`.
async fn subscribe(peer: &mut Peer, name: &str) {
    peer.send(json!({"type": "SELF_SUBSCRIBE", "service": name}))
        .await;
    let result = reply_of(peer, "SELF_SUBSCRIBE_RESULT").await;
    assert_eq!(result["successful"], true, "{result}");
}

// ------------------------------------------------------------- overview

/// The overview has exactly the contract's fields, and its connection,
/// room, service and session counts follow real clients of every protocol:
/// they rise as clients connect and create things, and fall as they leave.
#[actix_rt::test]
async fn the_overview_counts_clients_rooms_services_and_sessions_of_every_protocol() {
    let broker = Broker::with(options());
    let empty = json!({
        "connections": connections(0, 0, 0, 0, 0, 0),
        "chat_rooms": 1, "rooms": 0, "services": 0, "sessions": 0,
    });
    let before = overview_with(&broker, &empty).await;
    check_overview(&before);
    assert_eq!(before["published_total"], 0);
    assert_eq!(before["actor_restarts_total"], 0);
    assert_eq!(before["dropped_total"], 0);

    // One client of each protocol, each making one thing of its kind.
    let alice = chat(&broker, "alice", Some("lobby")).await;
    let mut carol = concierge::identify(&broker, "carol").await;
    create_service(&mut carol, "weather", None).await;
    let mut rooms_user = RoomsUser::connect(&broker, ROOMS_USER).await;
    rooms_user.create("ops", false).await;
    let lina = live(&broker, "u-live", "lina").await;
    let sessions = watcher(&broker).await;
    put_session(&broker, "s1", "Friday").await;

    let after = overview_with(
        &broker,
        &json!({
            "connections": connections(5, 1, 1, 1, 1, 1),
            "chat_rooms": 2, "rooms": 1, "services": 1, "sessions": 1,
        }),
    )
    .await;
    check_overview(&after);
    assert_eq!(after["started_at"], before["started_at"]);
    assert!(after["uptime_seconds"].as_u64() >= before["uptime_seconds"].as_u64());
    for key in ["messages_in_total", "messages_out_total"] {
        assert!(
            after[key].as_u64() > before[key].as_u64(),
            "{key} rose: {before} -> {after}"
        );
    }

    // Two more chat users and a second watcher.
    let bob = chat(&broker, "bob", None).await;
    let dave = chat(&broker, "dave", Some("lobby")).await;
    let sessions2 = watcher(&broker).await;
    overview_with(
        &broker,
        &json!({
            "connections": connections(8, 3, 1, 1, 2, 1),
            "chat_rooms": 2, "rooms": 1, "services": 1, "sessions": 1,
        }),
    )
    .await;

    // Leaving: connections fall; the service (deleted with its owner) too;
    // chat and permissioned rooms stay.
    drop((
        alice, bob, dave, carol, rooms_user, lina, sessions, sessions2,
    ));
    overview_with(
        &broker,
        &json!({
            "connections": connections(0, 0, 0, 0, 0, 0),
            "chat_rooms": 2, "rooms": 1, "services": 0, "sessions": 1,
        }),
    )
    .await;
}

/// The overview's rates are messages per second over the last sampled
/// second: above zero while a client talks, back to zero once it stops.
#[actix_rt::test]
async fn the_overview_rates_follow_the_traffic() {
    let broker = Broker::start();
    let mut alice = chat(&broker, "alice", None).await;
    let said = json!({"event_type": "message", "username": "alice", "message": "hi"});
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        for _ in 0..5 {
            alice.send(&said.to_string()).await;
            assert_eq!(alice.recv_json().await, said);
        }
        let overview = get(&broker, "/api/admin/overview").await;
        check_overview_values(&overview);
        if overview["messages_in_per_second"].as_f64() > Some(0.0)
            && overview["messages_out_per_second"].as_f64() > Some(0.0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rates stayed zero under traffic: {overview}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Quiet: the next samples show no traffic.
    let overview = poll(&broker, "/api/admin/overview", |v| {
        v["messages_in_per_second"].as_f64() == Some(0.0)
            && v["messages_out_per_second"].as_f64() == Some(0.0)
    })
    .await;
    check_overview_values(&overview);
    assert!(overview["messages_in_total"].as_u64() >= Some(6));
}

// ----------------------------------------------------------- connections

/// Every connection is listed once, ordered by id, with exactly the
/// contract's fields; its identity is the name it goes by in its protocol
/// (chat username, concierge name, live and rooms user id) once it has
/// identified, `null` before that and for session-list watchers; the
/// `protocol` filter keeps one protocol and refuses an unknown one.
#[actix_rt::test]
async fn the_connection_list_shows_every_protocol_with_its_identity() {
    let broker = Broker::with(options());

    // Before identifying: listed, no identity.
    let mut carol = concierge::connect(&broker).await;
    let carol_id = connection_id(&broker, "concierge", Value::Null).await;
    let mut alice = WsClient::connect(&broker.ws_url("/chat/ws")).await;
    let alice_id = connection_id(&broker, "chat", Value::Null).await;

    // After identifying: the protocol's name for the client.
    carol.send(&identify_payload("carol")).await;
    assert_eq!(carol.recv_json().await["type"], "HELLO");
    assert_eq!(
        connection_id(&broker, "concierge", json!("carol")).await,
        carol_id
    );
    alice
        .send(&json!({"event_type": "connection_request", "username": "alice"}).to_string())
        .await;
    let joined = json!({"event_type": "user_join", "username": "alice"});
    while alice.recv_json().await != joined {}
    assert_eq!(
        connection_id(&broker, "chat", json!("alice")).await,
        alice_id
    );
    let _rooms_user = RoomsUser::connect(&broker, ROOMS_USER).await;
    let _lina = live(&broker, "u-live", "lina").await;
    let _watcher = watcher(&broker).await;
    let rooms_id = connection_id(&broker, "rooms", json!(ROOMS_USER)).await;
    let live_id = connection_id(&broker, "live", json!("u-live")).await;
    let watcher_id = connection_id(&broker, "sessions", Value::Null).await;

    let (total, items) = page(&broker, "/api/admin/connections").await;
    assert_eq!(total, 5, "{items:?}");
    assert_eq!(items.len(), 5);
    let ids: Vec<u64> = items.iter().map(|i| i["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ordered by id: {ids:?}"
    );
    let mut want = vec![
        (carol_id, "concierge", json!("carol")),
        (alice_id, "chat", json!("alice")),
        (rooms_id, "rooms", json!(ROOMS_USER)),
        (live_id, "live", json!("u-live")),
        (watcher_id, "sessions", Value::Null),
    ];
    want.sort_by_key(|w| w.0);
    for (item, (id, protocol, identity)) in items.iter().zip(&want) {
        assert_keys(item, &CONNECTION_KEYS);
        assert_eq!(
            (&item["id"], &item["protocol"], &item["identity"]),
            (&json!(id), &json!(protocol), identity),
            "{item}"
        );
        let peer = item["peer"].as_str().expect("peer");
        let port = peer
            .strip_prefix("127.0.0.1:")
            .expect("the client's address");
        assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{peer}");
        let since = rfc3339(&item["connected_since"]);
        assert!(
            since <= Utc::now() + chrono::Duration::seconds(1)
                && Utc::now() - since < chrono::Duration::minutes(5),
            "{item}"
        );
        for key in ["messages_in", "messages_out", "queue_depth"] {
            assert!(item[key].is_u64(), "{key}: {item}");
        }
        // Every client got at least one frame; chat, concierge and live
        // clients sent one (the rooms and sessions clients sent nothing).
        assert!(item["messages_out"].as_u64() >= Some(1), "{item}");
        if ["chat", "concierge", "live"].contains(protocol) {
            assert!(item["messages_in"].as_u64() >= Some(1), "{item}");
        }
    }
    let peers: std::collections::HashSet<&str> =
        items.iter().map(|i| i["peer"].as_str().unwrap()).collect();
    assert_eq!(peers.len(), 5, "each connection its own port");

    // The protocol filter.
    for (id, protocol, identity) in &want {
        let (total, items) = page(
            &broker,
            &format!("/api/admin/connections?protocol={protocol}"),
        )
        .await;
        assert_eq!(total, 1, "{protocol}: {items:?}");
        assert_eq!(
            (&items[0]["id"], &items[0]["identity"]),
            (&json!(id), identity),
            "{protocol}"
        );
    }
    for bad in ["smoke", "CHAT2", "all"] {
        let reply = admin(
            "GET",
            &broker.http(&format!("/api/admin/connections?protocol={bad}")),
            None,
        )
        .await;
        assert_error(&reply, 400, bad);
    }
}

/// The message counters of a connection follow what it said and heard.
#[actix_rt::test]
async fn a_connection_counts_its_messages_in_and_out() {
    let broker = Broker::start();
    let mut alice = chat(&broker, "alice", None).await;
    let id = connection_id(&broker, "chat", json!("alice")).await;
    let item = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap()
    };
    let path = "/api/admin/connections?protocol=chat";
    let before = item(&get(&broker, path).await);
    let said = json!({"event_type": "message", "username": "alice", "message": "hi"});
    for _ in 0..3 {
        alice.send(&said.to_string()).await;
        assert_eq!(alice.recv_json().await, said);
    }
    let (messages_in, messages_out) = (
        before["messages_in"].as_u64().unwrap() + 3,
        before["messages_out"].as_u64().unwrap() + 3,
    );
    let after = poll(&broker, path, |v| {
        item(v)["messages_in"] == messages_in && item(v)["messages_out"] == messages_out
    })
    .await;
    let after = item(&after);
    assert_eq!(
        (&after["messages_in"], &after["messages_out"]),
        (&json!(messages_in), &json!(messages_out)),
        "{before} -> {after}"
    );
    assert_eq!(after["queue_depth"], 0);
}

/// Paging: `offset` and `limit` (default 0 and 50) cut the id-ordered list
/// and `total` counts all matches; `q` is a case-insensitive substring
/// search over id, protocol, peer and identity, combinable with `protocol`.
#[actix_rt::test]
async fn the_connection_list_pages_and_searches() {
    let broker = Broker::start();
    let _watchers = [
        watcher(&broker).await,
        watcher(&broker).await,
        watcher(&broker).await,
    ];
    let _alice = chat(&broker, "Alice", None).await;
    let _bob = chat(&broker, "bob", None).await;
    connection_id(&broker, "chat", json!("Alice")).await;
    let bob_id = connection_id(&broker, "chat", json!("bob")).await;

    let (total, all) = page(&broker, "/api/admin/connections").await;
    assert_eq!((total, all.len()), (5, 5));
    let ids: Vec<Value> = all.iter().map(|i| i["id"].clone()).collect();
    let ids_of =
        |items: &[Value]| -> Vec<Value> { items.iter().map(|i| i["id"].clone()).collect() };

    for (query, offset, limit, want) in [
        ("limit=2", 0, 2, &ids[0..2]),
        ("offset=2&limit=2", 2, 2, &ids[2..4]),
        ("limit=2&offset=4", 4, 2, &ids[4..5]),
        ("offset=1", 1, 50, &ids[1..5]),
        ("offset=5", 5, 50, &ids[5..5]),
        ("offset=100&limit=1", 100, 1, &ids[5..5]),
        ("limit=500", 0, 500, &ids[..]),
        ("limit=1&offset=0", 0, 1, &ids[0..1]),
    ] {
        let (total, items) = page_at(
            &broker,
            &format!("/api/admin/connections?{query}"),
            offset,
            limit,
        )
        .await;
        assert_eq!(total, 5, "{query}");
        assert_eq!(ids_of(&items), want, "{query}");
    }

    // Search.
    let search = |q: &str| format!("/api/admin/connections?q={q}");
    for q in ["ALI", "alice", "lIc"] {
        let (total, items) = page(&broker, &search(q)).await;
        assert_eq!(total, 1, "{q}: {items:?}");
        assert_eq!(items[0]["identity"], "Alice", "{q}");
    }
    let (total, items) = page(&broker, &search("SESSIONS")).await;
    assert_eq!(total, 3, "by protocol: {items:?}");
    assert!(items.iter().all(|i| i["protocol"] == "sessions"));
    let (total, _) = page(&broker, &search("127.0.0.1")).await;
    assert_eq!(total, 5, "by peer");
    let (_, items) = page(&broker, &search(&bob_id.to_string())).await;
    assert!(items.iter().any(|i| i["id"] == bob_id), "by id: {items:?}");
    for item in &items {
        let haystack = format!(
            "{} {} {} {}",
            item["id"], item["protocol"], item["peer"], item["identity"]
        )
        .to_lowercase();
        assert!(haystack.contains(&bob_id.to_string()), "{item}");
    }
    let (total, items) = page(&broker, &search("no-such-thing-anywhere")).await;
    assert_eq!((total, items), (0, vec![]));

    // Search with the filter and with paging.
    let (total, items) = page(&broker, "/api/admin/connections?q=B&protocol=chat").await;
    assert_eq!(total, 1, "{items:?}");
    assert_eq!(items[0]["identity"], "bob");
    let (total, items) = page(&broker, "/api/admin/connections?q=b&protocol=sessions").await;
    assert_eq!((total, items), (0, vec![]));
    let (total, items) = page_at(
        &broker,
        "/api/admin/connections?q=sessions&offset=1&limit=1",
        1,
        1,
    )
    .await;
    assert_eq!(total, 3);
    assert_eq!(ids_of(&items), &ids[1..2]);
}

/// Every list refuses a `limit` outside 1..=500 or not a number, and an
/// `offset` that is not a non-negative number, with 400.
#[actix_rt::test]
async fn every_list_refuses_bad_paging_with_400() {
    let broker = Broker::start();
    for list in LISTS {
        for query in [
            "limit=0",
            "limit=501",
            "limit=abc",
            "limit=-1",
            "limit=1.5",
            "offset=-1",
            "offset=abc",
            "offset=1&limit=0",
        ] {
            let reply = admin("GET", &broker.http(&format!("{list}?{query}")), None).await;
            assert_error(&reply, 400, &format!("{list}?{query}"));
        }
        // The bounds themselves are fine.
        page_at(&broker, &format!("{list}?limit=1"), 0, 1).await;
        page_at(&broker, &format!("{list}?limit=500&offset=0"), 0, 500).await;
    }
}

// ------------------------------------------------------ the other lists

/// The chat room list: every room ordered by name, with its creator and
/// the users in it now; paged and searchable by name.
#[actix_rt::test]
async fn the_chat_room_list_shows_rooms_creators_and_users() {
    let broker = Broker::start();
    let _alice = chat(&broker, "alice", None).await;
    let _bob = chat(&broker, "bob", None).await;
    let carol = chat(&broker, "carol", Some("lobby")).await;
    let _dave = chat(&broker, "dave", Some("zoo")).await;
    let path = "/api/admin/chat/rooms";
    let lobby = json!({"name": "lobby", "creator": "carol", "users": ["carol"]});
    let zoo = json!({"name": "zoo", "creator": "dave", "users": ["dave"]});
    let global = json!({"name": "Global", "creator": "System", "users": ["alice", "bob"]});
    wait_for_items(&broker, path, &json!([global, lobby, zoo])).await;
    let (total, _) = page(&broker, path).await;
    assert_eq!(total, 3);

    // The same rooms, creators and users as the chat API shows.
    let public = request("GET", &broker.http("/chat/rooms"), None, None).await;
    let (_, items) = page(&broker, path).await;
    for room in public.json["rooms"].as_array().unwrap() {
        let item = items
            .iter()
            .find(|i| i["name"] == room["room_name"])
            .unwrap_or_else(|| panic!("{room} is listed"));
        assert_eq!(
            (&item["creator"], &item["users"]),
            (&room["room_creator"], &room["connected_users"])
        );
    }

    let (total, items) = page_at(&broker, &format!("{path}?offset=1&limit=1"), 1, 1).await;
    assert_eq!((total, items), (3, vec![lobby.clone()]));
    // ("lob" alone would find Global too.)
    let (total, items) = page(&broker, &format!("{path}?q=LOBB")).await;
    assert_eq!((total, items), (1, vec![lobby]));
    let (total, items) = page(&broker, &format!("{path}?q=no-such-room")).await;
    assert_eq!((total, items), (0, vec![]));

    // A room outlives its users.
    drop(carol);
    wait_for_items(
        &broker,
        &format!("{path}?q=lobby"),
        &json!([{"name": "lobby", "creator": "carol", "users": []}]),
    )
    .await;
}

/// The permissioned room list: every room ordered by name, with whether it
/// is closed and the user ids entered now; paged and searchable by name.
#[actix_rt::test]
async fn the_permissioned_room_list_shows_rooms_and_entered_members() {
    let broker = Broker::with(options());
    let ops = create_by_api(&broker, "ops", true).await;
    let mut alice = RoomsUser::connect(&broker, ALICE).await;
    let mut bob = RoomsUser::connect(&broker, BOB).await;
    let _carol = RoomsUser::connect(&broker, CAROL).await;
    let lobby = alice.create("lobby", false).await;
    bob.enter(&lobby, &mut [&mut alice]).await;

    let path = "/api/admin/rooms";
    let sorted = |mut v: Value| {
        for item in v["items"].as_array_mut().unwrap() {
            item["members"]
                .as_array_mut()
                .unwrap()
                .sort_by_key(|m| m.to_string());
        }
        v
    };
    let lobby_item =
        json!({"room_id": lobby, "name": "lobby", "closed": false, "members": [ALICE, BOB]});
    let ops_item = json!({"room_id": ops, "name": "ops", "closed": true, "members": []});
    let want = json!([lobby_item, ops_item]);
    let got = sorted(poll(&broker, path, |v| sorted(v.clone())["items"] == want).await);
    assert_eq!(got["items"], want);
    assert_eq!(got["total"], 2);

    let (total, items) = page_at(&broker, &format!("{path}?offset=1&limit=1"), 1, 1).await;
    assert_eq!((total, items), (2, vec![ops_item.clone()]));
    let (total, items) = page(&broker, &format!("{path}?q=OP")).await;
    assert_eq!((total, items), (1, vec![ops_item]));
    let (total, items) = page(&broker, &format!("{path}?q=no-such-room")).await;
    assert_eq!((total, items), (0, vec![]));

    // Exiting leaves the members.
    bob.send(json!({"type": "exit", "room_id": lobby})).await;
    bob.expect(exit(BOB, &lobby)).await;
    wait_for_items(
        &broker,
        &format!("{path}?q=lobby"),
        &json!([{"room_id": lobby, "name": "lobby", "closed": false, "members": [ALICE]}]),
    )
    .await;
}

/// The concierge service list: every service ordered by name, with its
/// nickname, its owner's name and how many subscribe; paged and searchable.
#[actix_rt::test]
async fn the_service_list_shows_owners_and_subscriber_counts() {
    let broker = Broker::start();
    let mut peers = concierge::identify_all(&broker, &["alice", "bob", "carol"]).await;
    let [alice, bob, carol] = &mut peers[..] else {
        unreachable!()
    };
    create_service(alice, "weather", Some("Weather feed")).await;
    create_service(alice, "alerts", None).await;
    create_service(bob, "zebra", None).await;
    subscribe(bob, "weather").await;
    subscribe(carol, "weather").await;
    subscribe(carol, "zebra").await;

    let path = "/api/admin/services";
    let weather =
        json!({"name": "weather", "nickname": "Weather feed", "owner": "alice", "subscribers": 2});
    let alerts = json!({"name": "alerts", "nickname": null, "owner": "alice", "subscribers": 0});
    let zebra = json!({"name": "zebra", "nickname": null, "owner": "bob", "subscribers": 1});
    wait_for_items(
        &broker,
        path,
        &json!([alerts, weather.clone(), zebra.clone()]),
    )
    .await;
    let (total, items) = page_at(&broker, &format!("{path}?offset=1&limit=2"), 1, 2).await;
    assert_eq!((total, items), (3, vec![weather.clone(), zebra]));
    let (total, items) = page(&broker, &format!("{path}?q=WEATH")).await;
    assert_eq!((total, items), (1, vec![weather]));
    let (total, items) = page(&broker, &format!("{path}?q=no-such-service")).await;
    assert_eq!((total, items), (0, vec![]));

    // An owner's services go with it.
    drop(peers.remove(0));
    wait_for_items(
        &broker,
        path,
        &json!([{"name": "zebra", "nickname": null, "owner": "bob", "subscribers": 1}]),
    )
    .await;
}

/// The session list: every listed session ordered by name, as the host API
/// shows it; paged and searchable.
#[actix_rt::test]
async fn the_session_list_shows_listed_sessions_as_the_host_api_does() {
    let broker = Broker::start();
    put_session(&broker, "s1", "Zeta night").await;
    put_session(&broker, "s2", "Alpha").await;
    put_session(&broker, "s3", "Midweek").await;
    let public = request("GET", &broker.http("/api/sessions"), None, None).await;
    let by_id = |id: &str| {
        public.json["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["session_id"] == id)
            .cloned()
            .unwrap()
    };
    let (alpha, midweek, zeta) = (by_id("s2"), by_id("s3"), by_id("s1"));
    assert_eq!(alpha["session_name"], "Alpha");

    let path = "/api/admin/sessions";
    let (total, items) = page(&broker, path).await;
    assert_eq!(total, 3);
    assert_eq!(items, vec![alpha, midweek.clone(), zeta.clone()]);
    let (total, items) = page_at(&broker, &format!("{path}?offset=1&limit=1"), 1, 1).await;
    assert_eq!((total, items), (3, vec![midweek]));
    let (total, items) = page(&broker, &format!("{path}?q=zeta")).await;
    assert_eq!((total, items), (1, vec![zeta]));
    let (total, items) = page(&broker, &format!("{path}?q=no-such-session")).await;
    assert_eq!((total, items), (0, vec![]));

    // A removed session leaves the list.
    let reply = admin("DELETE", &broker.http("/api/sessions/s1"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let (total, items) = page(&broker, path).await;
    assert_eq!(total, 2);
    assert!(items.iter().all(|s| s["session_id"] != "s1"));
}

// ------------------------------------------------------------ disconnect

/// Disconnecting a connection of any protocol closes it with 1008 and
/// exactly the operator's reason, answers `{"disconnected": id}`, and the
/// connection leaves the list.
#[actix_rt::test]
async fn disconnect_closes_a_client_of_every_protocol_with_1008_and_the_reason() {
    let broker = Broker::with(options());
    let alice = chat(&broker, "alice", None).await;
    let carol = concierge::identify(&broker, "carol").await.ws;
    let rooms_user = RoomsUser::connect(&broker, ROOMS_USER).await.ws;
    let lina = live(&broker, "u-live", "lina").await;
    let sessions = watcher(&broker).await;
    let clients = [
        ("chat", json!("alice"), alice),
        ("concierge", json!("carol"), carol),
        ("rooms", json!(ROOMS_USER), rooms_user),
        ("live", json!("u-live"), lina),
        ("sessions", Value::Null, sessions),
    ];
    for (protocol, identity, mut client) in clients {
        let id = connection_id(&broker, protocol, identity).await;
        let reason = format!("maintenance of {protocol}: back at 5");
        let reply = admin(
            "POST",
            &broker.http(&format!("/api/admin/connections/{id}/disconnect")),
            Some(&json!({"reason": reason})),
        )
        .await;
        assert_eq!(
            (reply.status, &reply.json),
            (200, &json!({"disconnected": id})),
            "{protocol}: {}",
            reply.text
        );
        assert_eq!(
            client.recv_close().await,
            Closed {
                code: 1008,
                reason: reason.clone()
            },
            "{protocol}"
        );
        wait_unlisted(&broker, id).await;
        // Gone: a second disconnect finds nothing.
        let again = admin(
            "POST",
            &broker.http(&format!("/api/admin/connections/{id}/disconnect")),
            None,
        )
        .await;
        assert_error(&again, 404, protocol);
    }
    overview_with(
        &broker,
        &json!({
            "connections": connections(0, 0, 0, 0, 0, 0),
            "chat_rooms": 1, "rooms": 0, "services": 0, "sessions": 0,
        }),
    )
    .await;
}

/// The other chat users hear of a disconnected user like of any leaver.
#[actix_rt::test]
async fn a_disconnected_chat_user_leaves_its_room() {
    let broker = Broker::start();
    let mut alice = chat(&broker, "alice", None).await;
    let mut bob = chat(&broker, "bob", None).await;
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "user_join", "username": "bob"})
    );
    let id = connection_id(&broker, "chat", json!("bob")).await;
    let reply = admin(
        "POST",
        &broker.http(&format!("/api/admin/connections/{id}/disconnect")),
        Some(&json!({"reason": "spam"})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        bob.recv_close().await,
        Closed {
            code: 1008,
            reason: "spam".into()
        }
    );
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "user_leave", "username": "bob"})
    );
    alice.expect_silence(Duration::from_millis(200)).await;
}

/// Without a body the reason is "disconnected by an operator".
#[actix_rt::test]
async fn disconnect_without_a_body_uses_the_default_reason() {
    let broker = Broker::start();
    let mut alice = chat(&broker, "alice", None).await;
    let id = connection_id(&broker, "chat", json!("alice")).await;
    let reply = admin(
        "POST",
        &broker.http(&format!("/api/admin/connections/{id}/disconnect")),
        None,
    )
    .await;
    assert_eq!(
        (reply.status, &reply.json),
        (200, &json!({"disconnected": id})),
        "{}",
        reply.text
    );
    assert_eq!(
        alice.recv_close().await,
        Closed {
            code: 1008,
            reason: "disconnected by an operator".into()
        }
    );
}

/// An unknown id is 404, a non-numeric one 400, and a reason over 123 bytes
/// (the most a close frame carries) 400 and the client stays; 123 bytes
/// exactly is delivered whole.
#[actix_rt::test]
async fn disconnect_refuses_unknown_ids_bad_ids_and_long_reasons() {
    let broker = Broker::start();
    let mut alice = chat(&broker, "alice", None).await;
    let id = connection_id(&broker, "chat", json!("alice")).await;
    let url = |id: &str| broker.http(&format!("/api/admin/connections/{id}/disconnect"));

    let reply = admin("POST", &url("999999"), None).await;
    assert_error(&reply, 404, "unknown id");
    for bad in ["abc", "1x", "%20"] {
        let reply = admin("POST", &url(bad), None).await;
        assert_error(&reply, 400, bad);
    }
    // 62 two-byte characters: 62 characters, 124 bytes.
    let long = "é".repeat(62);
    let reply = admin(
        "POST",
        &url(&id.to_string()),
        Some(&json!({"reason": long})),
    )
    .await;
    assert_error(&reply, 400, "124-byte reason");
    alice.expect_silence(Duration::from_millis(200)).await;
    assert!(listed(&broker, id).await, "the client was not disconnected");
    let said = json!({"event_type": "message", "username": "alice", "message": "still here"});
    alice.send(&said.to_string()).await;
    assert_eq!(alice.recv_json().await, said);

    let longest = format!("a{}", "é".repeat(61));
    assert_eq!(longest.len(), 123);
    let reply = admin(
        "POST",
        &url(&id.to_string()),
        Some(&json!({"reason": longest})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        alice.recv_close().await,
        Closed {
            code: 1008,
            reason: longest
        }
    );
}

// --------------------------------------------------------- chat removal

/// Removing a chat user from its room closes its connection with 1008 and
/// `removed from room <room> by an operator`; the room hears `user_leave`,
/// other rooms nothing; an unknown room or a user not in it is 404.
#[actix_rt::test]
async fn removing_a_chat_member_closes_it_and_tells_the_room() {
    let broker = Broker::start();
    let mut alice = chat(&broker, "alice", Some("lobby")).await;
    let mut bob = chat(&broker, "bob", Some("lobby")).await;
    let mut carol = chat(&broker, "carol", None).await;
    assert_eq!(
        alice.recv_json().await,
        json!({"event_type": "user_join", "username": "bob"})
    );
    let url = |room: &str, user: &str| {
        broker.http(&format!("/api/admin/chat/rooms/{room}/members/{user}"))
    };

    // Not found: no such room, a user in another room, no such user.
    for (room, user) in [
        ("nowhere", "alice"),
        ("lobby", "carol"),
        ("Global", "alice"),
        ("lobby", "nobody"),
    ] {
        let reply = admin("DELETE", &url(room, user), None).await;
        assert_error(&reply, 404, &format!("{room}/{user}"));
    }
    for client in [&mut alice, &mut bob, &mut carol] {
        client.expect_silence(Duration::from_millis(200)).await;
    }

    let reply = admin("DELETE", &url("lobby", "alice"), None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (200, &json!({"removed": "alice", "room": "lobby"})),
        "{}",
        reply.text
    );
    assert_eq!(
        alice.recv_close().await,
        Closed {
            code: 1008,
            reason: "removed from room lobby by an operator".into()
        }
    );
    assert_eq!(
        bob.recv_json().await,
        json!({"event_type": "user_leave", "username": "alice"})
    );
    carol.expect_silence(Duration::from_millis(200)).await;
    wait_for_items(
        &broker,
        "/api/admin/chat/rooms?q=lobby",
        &json!([{"name": "lobby", "creator": "alice", "users": ["bob"]}]),
    )
    .await;
    // Removed once: not there any more.
    let reply = admin("DELETE", &url("lobby", "alice"), None).await;
    assert_error(&reply, 404, "removed twice");

    // Global works the same.
    let reply = admin("DELETE", &url("Global", "carol"), None).await;
    assert_eq!(
        (reply.status, &reply.json),
        (200, &json!({"removed": "carol", "room": "Global"})),
        "{}",
        reply.text
    );
    assert_eq!(
        carol.recv_close().await,
        Closed {
            code: 1008,
            reason: "removed from room Global by an operator".into()
        }
    );
    bob.expect_silence(Duration::from_millis(200)).await;
}

// --------------------------------------------- permissioned room removal

/// Removing a member of a permissioned room is an admin's kick: the user
/// gets `kick {room_id, message, permanent}`, the room `exit`; it may come
/// back unless the removal was permanent, which is a ban.
#[actix_rt::test]
async fn removing_a_room_member_kicks_it_and_a_permanent_removal_bans_it() {
    let broker = Broker::with(options());
    let mut alice = RoomsUser::connect(&broker, ALICE).await;
    let mut bob = RoomsUser::connect(&broker, BOB).await;
    let room = alice.create("club", false).await;
    bob.enter(&room, &mut [&mut alice]).await;
    let url = broker.http(&format!("/api/admin/rooms/{room}/members/{BOB}"));

    let reply = admin(
        "DELETE",
        &url,
        Some(&json!({"message": "cool off", "permanent": false})),
    )
    .await;
    assert_eq!(
        (reply.status, &reply.json),
        (200, &json!({"removed": BOB, "room_id": room})),
        "{}",
        reply.text
    );
    bob.expect(json!({"type": "kick", "room_id": room, "message": "cool off", "permanent": false}))
        .await;
    alice.expect(exit(BOB, &room)).await;
    bob.send(json!({"type": "message", "content": "hey", "room_id": room}))
        .await;
    bob.expect(json!({"type": "error", "message": "you have not entered this room"}))
        .await;
    // Not permanent: bob comes back.
    bob.enter(&room, &mut [&mut alice]).await;

    // No body: a plain kick, no message, not permanent.
    let reply = admin("DELETE", &url, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    bob.expect(json!({"type": "kick", "room_id": room, "message": null, "permanent": false}))
        .await;
    alice.expect(exit(BOB, &room)).await;
    bob.enter(&room, &mut [&mut alice]).await;

    // Permanent: a ban, also for a new connection.
    let reply = admin(
        "DELETE",
        &url,
        Some(&json!({"message": "bye", "permanent": true})),
    )
    .await;
    assert_eq!(
        (reply.status, &reply.json),
        (200, &json!({"removed": BOB, "room_id": room})),
        "{}",
        reply.text
    );
    bob.expect(json!({"type": "kick", "room_id": room, "message": "bye", "permanent": true}))
        .await;
    alice.expect(exit(BOB, &room)).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect(json!({"type": "error", "message": "you are banned from this room"}))
        .await;
    drop(bob);
    let mut bob = RoomsUser::connect(&broker, BOB).await;
    bob.send(json!({"type": "enter", "room_id": room})).await;
    bob.expect(json!({"type": "error", "message": "you are banned from this room"}))
        .await;
    alice.ws.expect_silence(Duration::from_millis(200)).await;
    wait_for_items(
        &broker,
        "/api/admin/rooms",
        &json!([{"room_id": room, "name": "club", "closed": false, "members": [ALICE]}]),
    )
    .await;
}

/// An unknown room or a user who has not entered is 404, a room id that is
/// not a UUID 400; nobody hears anything.
#[actix_rt::test]
async fn removing_a_room_member_refuses_unknown_rooms_users_and_bad_ids() {
    let broker = Broker::with(options());
    let mut alice = RoomsUser::connect(&broker, ALICE).await;
    let mut carol = RoomsUser::connect(&broker, CAROL).await;
    let room = alice.create("club", false).await;
    let url =
        |room: &str, user: &str| broker.http(&format!("/api/admin/rooms/{room}/members/{user}"));
    let nowhere = uuid::Uuid::new_v4().to_string();
    for (room, user) in [
        (nowhere.as_str(), ALICE),
        (room.as_str(), CAROL),
        (room.as_str(), DAVE),
    ] {
        let reply = admin("DELETE", &url(room, user), None).await;
        assert_error(&reply, 404, &format!("{room}/{user}"));
    }
    for bad in ["not-a-uuid", "12345"] {
        let reply = admin("DELETE", &url(bad, ALICE), None).await;
        assert_error(&reply, 400, bad);
    }
    alice.ws.expect_silence(Duration::from_millis(200)).await;
    carol.ws.expect_silence(Duration::from_millis(200)).await;
    // Alice is still in her room.
    alice
        .send(json!({"type": "message", "content": "still here", "room_id": room}))
        .await;
    assert_eq!(alice.ws.recv_json().await["content"], "still here");
}

// ------------------------------------------------------------------ 401

/// Every admin endpoint answers 401 `{"error"}` without the key, with a
/// wrong one, or with the key in another scheme, and does nothing: the
/// clients it names stay connected and in their rooms.
#[actix_rt::test]
async fn every_admin_endpoint_needs_the_admin_key() {
    let broker = Broker::with(options());
    let mut alice = chat(&broker, "alice", Some("lobby")).await;
    let alice_id = connection_id(&broker, "chat", json!("alice")).await;
    let mut owner = RoomsUser::connect(&broker, OWNER).await;
    let mut bob = RoomsUser::connect(&broker, BOB).await;
    let room = owner.create("club", false).await;
    bob.enter(&room, &mut [&mut owner]).await;

    let endpoints: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/api/admin/overview".into(), None),
        ("GET", "/api/admin/connections".into(), None),
        ("GET", "/api/admin/connections?protocol=chat".into(), None),
        ("GET", "/api/admin/chat/rooms".into(), None),
        ("GET", "/api/admin/rooms".into(), None),
        ("GET", "/api/admin/services".into(), None),
        ("GET", "/api/admin/sessions".into(), None),
        (
            "POST",
            format!("/api/admin/connections/{alice_id}/disconnect"),
            Some(json!({"reason": "x"})),
        ),
        (
            "POST",
            format!("/api/admin/connections/{alice_id}/disconnect"),
            None,
        ),
        (
            "DELETE",
            "/api/admin/chat/rooms/lobby/members/alice".into(),
            None,
        ),
        (
            "DELETE",
            format!("/api/admin/rooms/{room}/members/{BOB}"),
            Some(json!({"permanent": true})),
        ),
        (
            "DELETE",
            format!("/api/admin/rooms/{room}/members/{BOB}"),
            None,
        ),
    ];
    for (method, path, body) in &endpoints {
        let url = broker.http(path);
        for key in [None, Some(WRONG_KEY), Some(""), Some(&ADMIN_KEY[1..])] {
            let reply = request(method, &url, key, body.as_ref()).await;
            assert_error(&reply, 401, &format!("{method} {path} with {key:?}"));
        }
        // The right key in the wrong scheme, or bare.
        for header in [format!("Basic {ADMIN_KEY}"), ADMIN_KEY.to_owned()] {
            let (status, _) = common::request_raw(
                method,
                &url,
                &[
                    ("authorization", &header),
                    ("content-type", "application/json"),
                ],
                body.as_ref()
                    .map(|b| b.to_string().into_bytes())
                    .unwrap_or_default(),
            )
            .await;
            assert_eq!(status, 401, "{method} {path} with {header}");
        }
    }

    // Nothing happened.
    alice.expect_silence(Duration::from_millis(200)).await;
    bob.ws.expect_silence(Duration::from_millis(200)).await;
    owner.ws.expect_silence(Duration::from_millis(200)).await;
    assert!(listed(&broker, alice_id).await);
    let said = json!({"event_type": "message", "username": "alice", "message": "still here"});
    alice.send(&said.to_string()).await;
    assert_eq!(alice.recv_json().await, said);
    bob.send(json!({"type": "message", "content": "still in", "room_id": room}))
        .await;
    assert_eq!(bob.ws.recv_json().await["content"], "still in");
}

/// A broker without an admin key refuses every admin call, whatever key
/// is offered.
#[actix_rt::test]
async fn without_a_configured_key_every_admin_endpoint_answers_401() {
    let broker = Broker::with(common::Options::default().without_admin_key());
    for path in [
        "/api/admin/overview",
        "/api/admin/connections",
        "/api/admin/chat/rooms",
        "/api/admin/rooms",
        "/api/admin/services",
        "/api/admin/sessions",
    ] {
        for key in [None, Some(ADMIN_KEY), Some("")] {
            let reply = request("GET", &broker.http(path), key, None).await;
            assert_error(&reply, 401, &format!("{path} with {key:?}"));
        }
    }
    let reply = admin(
        "POST",
        &broker.http("/api/admin/connections/1/disconnect"),
        None,
    )
    .await;
    assert_error(&reply, 401, "disconnect");
}

// ------------------------------------------------------------- live feed

/// Checks one sample: the overview's fields, `time` among them.
fn check_sample(sample: &Value) -> DateTime<Utc> {
    check_overview(sample);
    rfc3339(&sample["time"])
}

/// Connects to the console feed and sends `first`.
async fn feed(broker: &Broker, first: &str) -> WsClient {
    let mut ws = WsClient::connect(&broker.ws_url("/api/admin/live")).await;
    ws.send(first).await;
    ws
}

/// The next `sample` frame, as the sample object (without `type`).
async fn next_sample(ws: &mut WsClient) -> Value {
    let mut frame = ws.recv_json().await;
    assert_eq!(frame["type"], "sample", "{frame}");
    frame.as_object_mut().unwrap().remove("type");
    check_sample(&frame);
    frame
}

/// The feed refuses a wrong key and a client that sends none with close
/// 1008 (`invalid admin key`, `no key`).
#[actix_rt::test]
async fn the_live_feed_refuses_a_wrong_or_missing_key() {
    let broker = Broker::start();
    for first in [
        json!({"key": WRONG_KEY}).to_string(),
        json!({"key": ""}).to_string(),
        json!({"key": &ADMIN_KEY[1..]}).to_string(),
    ] {
        let mut ws = feed(&broker, &first).await;
        assert_eq!(
            ws.recv_close().await,
            Closed {
                code: 1008,
                reason: "invalid admin key".into()
            },
            "{first}"
        );
    }
    // Silent for 5 s.
    let mut ws = WsClient::connect(&broker.ws_url("/api/admin/live")).await;
    assert_eq!(
        ws.recv_close().await,
        Closed {
            code: 1008,
            reason: "no key".into()
        }
    );
}

/// With the key the feed sends `history` (the samples so far) and then a
/// `sample` every second: the overview plus `time`, in time order,
/// following the connections as they change; a later client's history
/// holds the very samples the first one was sent.
#[actix_rt::test]
async fn the_live_feed_sends_history_then_a_sample_every_second() {
    let broker = Broker::start();
    let mut console = feed(&broker, &json!({"key": ADMIN_KEY}).to_string()).await;
    let history = console.recv_json().await;
    assert_keys(&history, &["type", "samples"]);
    assert_eq!(history["type"], "history");
    let early = history["samples"].as_array().expect("samples").clone();
    assert!(early.len() <= 300);
    for sample in &early {
        check_sample(sample);
    }

    let mut seen = vec![
        next_sample(&mut console).await,
        next_sample(&mut console).await,
        next_sample(&mut console).await,
    ];
    let times: Vec<DateTime<Utc>> = seen.iter().map(check_sample).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]) && times[0] < times[2],
        "samples in time order: {times:?}"
    );
    if let Some(last) = early.last() {
        assert!(check_sample(last) <= times[0]);
    }
    for sample in &seen {
        assert_eq!(sample["connections"]["total"], 0, "{sample}");
    }

    // A chat client connects: a sample shows it.
    let _alice = chat(&broker, "alice", None).await;
    let mut showed = false;
    for _ in 0..10 {
        let sample = next_sample(&mut console).await;
        showed = sample["connections"]["chat"] == 1;
        seen.push(sample);
        if showed {
            break;
        }
    }
    assert!(showed, "no sample showed the chat client: {seen:?}");
    assert_eq!(seen.last().unwrap()["connections"]["total"], 1);

    // A second console's history holds those samples, in order.
    let mut late = feed(&broker, &json!({"key": ADMIN_KEY}).to_string()).await;
    let history = late.recv_json().await;
    assert_eq!(history["type"], "history", "{history}");
    let samples = history["samples"].as_array().unwrap();
    assert!(samples.len() <= 300);
    let start = samples
        .iter()
        .position(|s| s == &seen[0])
        .unwrap_or_else(|| panic!("{} is in the history {samples:?}", seen[0]));
    assert!(
        start + seen.len() <= samples.len(),
        "the history holds every sample sent: {samples:?}"
    );
    assert_eq!(
        &samples[start..start + seen.len()],
        &seen[..],
        "the history holds the samples as sent"
    );
    let times: Vec<DateTime<Utc>> = samples.iter().map(check_sample).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    next_sample(&mut late).await;
}

/// Only consoles that proved the key take one of the 16 places: sixteen
/// sockets that never send it do not keep operators out, sixteen consoles
/// watch at once, a seventeenth is closed with 1013, and a place comes back
/// when a console leaves.
#[actix_rt::test]
async fn sixteen_consoles_watch_at_once_and_keyless_sockets_take_no_place() {
    let broker = Broker::start();
    let key = json!({"key": ADMIN_KEY}).to_string();
    let mut keyless = Vec::new();
    for _ in 0..16 {
        keyless.push(WsClient::connect(&broker.ws_url("/api/admin/live")).await);
    }
    let mut consoles = Vec::new();
    for _ in 0..16 {
        let mut console = feed(&broker, &key).await;
        assert_eq!(console.recv_json().await["type"], "history");
        consoles.push(console);
    }
    let mut seventeenth = feed(&broker, &key).await;
    assert_eq!(
        seventeenth.recv_close().await,
        Closed {
            code: 1013,
            reason: "at most 16 consoles may watch at once".into()
        }
    );
    drop(consoles.pop());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut again = feed(&broker, &key).await;
        match again.next_frame().await {
            awc::ws::Frame::Text(text) => {
                let frame: Value = serde_json::from_slice(&text).unwrap();
                assert_eq!(frame["type"], "history");
                break;
            }
            other => assert!(
                std::time::Instant::now() < deadline,
                "no place came back: {other:?}"
            ),
        }
    }
    drop(keyless);
}

/// Before it has sent the key, a console socket is an ordinary connection
/// for admission: over the per-address cap its upgrade answers 503.
#[actix_rt::test]
async fn a_console_socket_counts_against_the_connection_caps() {
    let broker = Broker::with(Options::default().env("LIMITS__MAX_CONNECTIONS_PER_IP", "2"));
    let _first = WsClient::connect(&broker.ws_url("/api/admin/live")).await;
    let _second = chat(&broker, "alice", None).await;
    let refused = WsClient::try_connect(&broker.ws_url("/api/admin/live")).await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 503)
        }
        other => panic!("expected 503, got {:?}", other.map(|_| "an open socket")),
    }
}
