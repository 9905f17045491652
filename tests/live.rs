//! Live presence and friends end to end (PROTOCOLS.md §4): real tokens,
//! real clients, a real store that survives a restart.

mod common;

use std::time::Duration;

use common::tokens::{base64url, options, token, upgrade_refused, JWT_SECRET as SECRET};
use common::{admin, request, wait_for_metric, Broker, WsClient};
use serde_json::{json, Value};
use switchboard_actors::auth::TokenKeys;

/// A connected live user.
struct Live {
    ws: WsClient,
    name: &'static str,
}

impl Live {
    /// Connects and waits until the broker has the user online (its first
    /// reply comes after the arrival is recorded).
    async fn connect(broker: &Broker, id: &str, name: &'static str) -> Live {
        let url = broker.ws_url(&format!("/live?token={}", token(id, name)));
        let mut live = Live {
            ws: WsClient::connect(&url).await,
            name,
        };
        assert_eq!(live.ask("ping", None, None).await["type"], "pong");
        live
    }

    /// Sends `{type, message?, id?}` and returns the reply.
    async fn ask(&mut self, kind: &str, message: Option<&str>, id: Option<&str>) -> Value {
        let mut request = json!({"type": kind});
        if let Some(message) = message {
            request["message"] = json!(message);
        }
        if let Some(id) = id {
            request["id"] = json!(id);
        }
        self.ws.send(&request.to_string()).await;
        self.ws.recv_json().await
    }

    async fn expect(&mut self, want: Value) {
        let got = self.ws.recv_json().await;
        assert_eq!(got, want, "{} got an unexpected frame", self.name);
    }

    async fn expect_popup(&mut self, title: &str, description: &str) {
        let frame = self.ws.recv_json().await;
        assert_eq!(frame["type"], "message", "{}: {frame}", self.name);
        assert_eq!(frame["data"], "");
        let popup: Value = serde_json::from_str(frame["message"].as_str().unwrap()).unwrap();
        assert_eq!(
            popup,
            json!({"title": title, "description": description}),
            "{}",
            self.name
        );
    }

    async fn silent(&mut self) {
        self.ws.expect_silence(Duration::from_millis(300)).await;
    }
}

fn success(id: Option<&str>) -> Value {
    match id {
        Some(id) => json!({"id": id, "type": "success", "data": ""}),
        None => json!({"type": "success", "data": ""}),
    }
}

fn error(reason: &str) -> Value {
    json!({"type": "error", "message": reason, "data": ""})
}

async fn refused(broker: &Broker, path: &str, bearer: Option<&str>) {
    upgrade_refused(&broker.ws_url(path), bearer).await;
}

#[actix_rt::test]
async fn upgrades_without_a_valid_token_are_refused_with_401() {
    let broker = Broker::with(options());
    let other = TokenKeys::new(b"another-secret-of-32-characters!!").mint(
        "u1",
        "alice",
        Duration::from_secs(60),
    );
    let expired = {
        // `exp` one second in the past; the check has no leeway.
        let keys = TokenKeys::new(SECRET.as_bytes());
        let token = keys.mint("u1", "alice", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        token
    };
    // alg:none with the same claims.
    let unsigned = {
        let part = |v: Value| base64url(v.to_string().as_bytes());
        format!(
            "{}.{}.",
            part(json!({"alg": "none", "typ": "JWT"})),
            part(json!({"sub": "u1", "name": "alice", "exp": 4_000_000_000u64}))
        )
    };
    refused(&broker, "/live", None).await;
    refused(&broker, "/live?token=", None).await;
    refused(&broker, "/live?token=not.a.jwt", None).await;
    refused(&broker, &format!("/live?token={other}"), None).await;
    refused(&broker, &format!("/live?token={expired}"), None).await;
    refused(&broker, &format!("/live?token={unsigned}"), None).await;
    refused(&broker, "/live", Some(&other)).await;

    // The right token works both ways.
    let good = token("u1", "alice");
    let (_, conn) = awc::Client::new()
        .ws(broker.ws_url("/live"))
        .bearer_auth(&good)
        .connect()
        .await
        .expect("bearer upgrade");
    drop(conn);
    Live::connect(&broker, "u1", "alice").await;

    // Without a configured secret every token upgrade answers 401.
    let bare = Broker::start();
    refused(&bare, &format!("/live?token={good}"), None).await;
}

#[actix_rt::test]
async fn ping_get_and_bad_requests() {
    let broker = Broker::with(options());
    let mut alice = Live::connect(&broker, "u1", "alice").await;
    assert_eq!(
        alice.ask("ping", None, Some("p1")).await,
        json!({"id": "p1", "type": "pong", "data": ""})
    );
    assert_eq!(
        alice.ask("ping", None, None).await,
        json!({"type": "pong", "data": ""})
    );
    // Two connections of one user count once.
    let _alice_again = Live::connect(&broker, "u1", "alice").await;
    let _bob = Live::connect(&broker, "u2", "bob").await;
    wait_for_metric(
        &broker,
        "switchboard_live_users_online",
        2.0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        alice.ask("get", None, Some("g")).await,
        json!({"id": "g", "type": "get", "count": 2, "data": "2"})
    );

    // Bad input: an error, the connection stays open.
    for (text, reason) in [
        ("not json", "invalid JSON"),
        ("{}", "missing type"),
        (r#"{"type":"fly"}"#, "unknown type `fly`"),
        (
            r#"{"type":"ping","message":5}"#,
            "`message` must be a string",
        ),
    ] {
        alice.ws.send(text).await;
        alice.expect(error(reason)).await;
    }
    alice.ws.send(r#"{"type":"fly","id":"x9"}"#).await;
    alice
        .expect(json!({"id": "x9", "type": "error", "message": "unknown type `fly`", "data": ""}))
        .await;
    let reply = alice.ask("send-friend-request", None, None).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(
        alice.ask("ping", None, None).await,
        json!({"type": "pong", "data": ""})
    );
}

#[actix_rt::test]
async fn the_whole_friend_flow_between_two_users() {
    let broker = Broker::with(options());
    let mut alice = Live::connect(&broker, "u1", "alice").await;
    let mut bob = Live::connect(&broker, "u2", "bob").await;
    // Carol is registered by the operator and never connects.
    let reply = admin(
        "PUT",
        &broker.http("/api/live/users/u3"),
        Some(&json!({"username": "carol"})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = request(
        "PUT",
        &broker.http("/api/live/users/u4"),
        None,
        Some(&json!({"username": "x"})),
    )
    .await;
    assert_eq!(reply.status, 401);

    // Errors of send-friend-request.
    assert_eq!(
        alice.ask("send-friend-request", Some("nobody"), None).await,
        error("unknown user")
    );
    assert_eq!(
        alice.ask("send-friend-request", Some("alice"), None).await,
        error("you cannot send a friend request to yourself")
    );

    // alice -> bob: bob gets a popup and sees the request.
    assert_eq!(
        alice
            .ask("send-friend-request", Some("bob"), Some("r1"))
            .await,
        success(Some("r1"))
    );
    bob.expect_popup("Friend request", "alice sent you a friend request.")
        .await;
    assert_eq!(
        alice.ask("send-friend-request", Some("bob"), None).await,
        error("friend request already pending")
    );
    let requests = bob.ask("get-friend-requests", None, Some("q")).await;
    assert_eq!(requests["id"], "q");
    assert_eq!(requests["type"], "retrieveFriendRequests");
    let list = requests["data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (&list[0]["user_id"], &list[0]["username"]),
        (&json!("u1"), &json!("alice"))
    );
    assert!(list[0]["sent_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        alice.ask("get-friend-requests", None, None).await["data"],
        json!([]),
        "incoming only"
    );

    // Only an incoming pending request can be answered.
    assert_eq!(
        alice.ask("accept-friend-request", Some("u2"), None).await,
        error("no pending friend request from that user")
    );
    assert_eq!(
        bob.ask("accept-friend-request", Some("u1"), None).await,
        success(None)
    );
    alice
        .expect_popup(
            "Friend request accepted",
            "bob accepted your friend request.",
        )
        .await;
    assert_eq!(
        alice.ask("send-friend-request", Some("bob"), None).await,
        error("already friends")
    );
    assert_eq!(
        alice.ask("get-friends", None, None).await,
        json!({"type": "retrieveFriends", "data": [{"user_id": "u2", "username": "bob", "online": true, "playing": null}]})
    );

    // A rejected request makes no friends.
    assert_eq!(
        alice.ask("send-friend-request", Some("carol"), None).await,
        success(None)
    );
    let mut carol = Live::connect(&broker, "u3", "carol").await;
    alice.silent().await; // carol is not alice's friend: no online popup
    assert_eq!(
        carol.ask("reject-friend-request", Some("u1"), None).await,
        success(None)
    );
    assert_eq!(
        carol.ask("reject-friend-request", Some("u1"), None).await,
        error("no pending friend request from that user")
    );

    // Removing.
    assert_eq!(
        alice.ask("remove-friend", Some("u3"), None).await,
        error("not a friend")
    );
    assert_eq!(
        alice.ask("remove-friend", Some("u2"), None).await,
        success(None)
    );
    assert_eq!(
        bob.ask("get-friends", None, None).await,
        json!({"type": "retrieveFriends", "data": []})
    );
}

#[actix_rt::test]
async fn presence_reaches_friends_and_not_strangers() {
    let broker = Broker::with(options());
    let mut alice = Live::connect(&broker, "u1", "alice").await;
    let mut bob = Live::connect(&broker, "u2", "bob").await;
    let mut stranger = Live::connect(&broker, "u9", "stranger").await;
    alice.ask("send-friend-request", Some("bob"), None).await;
    bob.expect_popup("Friend request", "alice sent you a friend request.")
        .await;
    // bob asking back makes them friends at once; alice hears it was accepted.
    assert_eq!(
        bob.ask("send-friend-request", Some("alice"), None).await,
        success(None)
    );
    alice
        .expect_popup(
            "Friend request accepted",
            "bob accepted your friend request.",
        )
        .await;

    // Now playing: to every connection of every online friend, nobody else.
    let mut alice_phone = Live::connect(&broker, "u1", "alice").await;
    bob.ws
        .send(&json!({"type": "now-playing", "message": "Chess \"960\""}).to_string())
        .await;
    for a in [&mut alice, &mut alice_phone] {
        a.expect_popup("Now playing", "bob is now playing Chess \"960\".")
            .await;
    }
    bob.silent().await;
    stranger.silent().await;
    assert_eq!(
        alice.ask("get-friends", None, None).await["data"][0]["playing"],
        "Chess \"960\""
    );

    // Coming online: once, to online friends only, not for a second connection.
    drop(bob);
    let reply = alice.ask("get-friends", None, None).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut reply = reply;
    while reply["data"][0]["online"] == true {
        assert!(
            std::time::Instant::now() < deadline,
            "bob never went offline"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        reply = alice.ask("get-friends", None, None).await;
    }
    assert_eq!(reply["data"][0]["playing"], Value::Null);
    alice_phone.silent().await;
    let mut bob = Live::connect(&broker, "u2", "bob").await;
    alice.expect_popup("Online", "bob is now online.").await;
    alice_phone
        .expect_popup("Online", "bob is now online.")
        .await;
    stranger.silent().await;
    let _bob_tablet = Live::connect(&broker, "u2", "bob").await;
    alice.silent().await;
    bob.silent().await;
}

#[actix_rt::test]
async fn friendships_and_pending_requests_survive_a_restart() {
    let broker = Broker::with(options());
    let mut alice = Live::connect(&broker, "u1", "alice").await;
    let mut bob = Live::connect(&broker, "u2", "bob").await;
    let mut carol = Live::connect(&broker, "u3", "carol").await;
    assert_eq!(
        alice.ask("send-friend-request", Some("bob"), None).await,
        success(None)
    );
    bob.expect_popup("Friend request", "alice sent you a friend request.")
        .await;
    assert_eq!(
        bob.ask("accept-friend-request", Some("u1"), None).await,
        success(None)
    );
    alice
        .expect_popup(
            "Friend request accepted",
            "bob accepted your friend request.",
        )
        .await;
    assert_eq!(
        alice.ask("send-friend-request", Some("carol"), None).await,
        success(None)
    );
    carol
        .expect_popup("Friend request", "alice sent you a friend request.")
        .await;
    drop((alice, bob, carol));
    let data = broker.stop();

    let broker = Broker::with(options().data(&data.path));
    let mut carol = Live::connect(&broker, "u3", "carol").await;
    let requests = carol.ask("get-friend-requests", None, None).await;
    assert_eq!(requests["data"][0]["username"], "alice");
    let mut alice = Live::connect(&broker, "u1", "alice").await;
    assert_eq!(
        alice.ask("get-friends", None, None).await,
        json!({"type": "retrieveFriends", "data": [{"user_id": "u2", "username": "bob", "online": false, "playing": null}]})
    );
}

#[test]
fn the_token_command_mints_a_token_the_broker_accepts() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["token", "--user-id", "u7", "--name", "gus", "--ttl", "10m"])
        .env("SWITCHBOARD_AUTH__JWT_SECRET", SECRET)
        .output()
        .expect("run switchboard token");
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let claims = TokenKeys::new(SECRET.as_bytes()).verify(&token).unwrap();
    assert_eq!((claims.sub.as_str(), claims.name.as_str()), ("u7", "gus"));
    let lifetime = claims.exp - chrono::Utc::now().timestamp();
    assert!((590..=600).contains(&lifetime), "{lifetime}");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["token", "--user-id", "u7", "--name", "gus"])
        .env_remove("SWITCHBOARD_AUTH__JWT_SECRET")
        .output()
        .expect("run switchboard token");
    assert_eq!(output.status.code(), Some(2), "no secret configured");
}
