//! The session list protocol (PROTOCOLS.md §3), end to end: a real broker,
//! real watchers, the host HTTP API, and frames asserted byte for byte.

mod common;

use std::time::Duration;

use common::{admin, metric, request, wait_for_metric, Broker, Options, WsClient};

/// Live listing actors.
const LISTINGS: &str = "switchboard_actors{kind=\"session_listing\"}";

/// How long a test waits for a gauge to settle.
const WAIT: Duration = Duration::from_secs(5);
use serde_json::{json, Value};

fn user(id: &str, name: &str) -> Value {
    json!({
        "user_id": id,
        "username": name,
        "registration_date": "2024-01-02T03:04:05Z",
        "is_patron": false,
        "is_mentor": true,
    })
}

fn session(name: &str, users: Vec<Value>) -> Value {
    json!({
        "session_name": name,
        "active_users": 3,
        "joined_users": 5,
        "host_username": "hostess",
        "host_registration_date": "2020-05-06T07:08:09Z",
        "host_is_patron": true,
        "host_is_mentor": false,
        "session_begin_time": "2025-11-03T00:45:12Z",
        "users": users,
    })
}

/// The `add` frame of `session(name, users)` listed as `id` in `epoch`.
fn add_line(epoch: i32, id: &str, name: &str, users: &[(&str, &str)]) -> String {
    let users: Vec<String> = users
        .iter()
        .map(|(id, name)| format!("{id}\r{name}\r2024-01-02T03:04:05Z\rfalse\rtrue"))
        .collect();
    format!(
        "add\n{epoch}\n{id}\n3\n5\nhostess\n2020-05-06T07:08:09Z\ntrue\nfalse\n{name}\n2025-11-03T00:45:12Z\n{}",
        users.join("\r")
    )
}

async fn put(broker: &Broker, id: &str, body: &Value) -> u16 {
    admin(
        "PUT",
        &broker.http(&format!("/api/sessions/{id}")),
        Some(body),
    )
    .await
    .status
}

#[actix_rt::test]
async fn a_new_watcher_gets_reset_then_one_add_per_session() {
    let broker = Broker::start();
    assert_eq!(put(&broker, "s2", &session("Empty", vec![])).await, 201);
    let users = vec![user("u1", "alice"), user("u2", "bob")];
    assert_eq!(
        put(&broker, "s1", &session("Friday night", users)).await,
        201
    );

    let mut watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(watcher.recv().await, "reset\n1\n1.0.0");
    assert_eq!(
        watcher.recv().await,
        "add\n1\ns1\n3\n5\nhostess\n2020-05-06T07:08:09Z\ntrue\nfalse\nFriday night\n2025-11-03T00:45:12Z\n\
         u1\ralice\r2024-01-02T03:04:05Z\rfalse\rtrue\ru2\rbob\r2024-01-02T03:04:05Z\rfalse\rtrue"
    );
    assert_eq!(
        watcher.recv().await,
        "add\n1\ns2\n3\n5\nhostess\n2020-05-06T07:08:09Z\ntrue\nfalse\nEmpty\n2025-11-03T00:45:12Z\n",
        "no users: an empty last line"
    );
    watcher.expect_silence(Duration::from_millis(200)).await;
}

#[actix_rt::test]
async fn every_change_reaches_every_watcher() {
    let broker = Broker::start();
    let mut a = WsClient::connect(&broker.ws_url("/sessions")).await;
    let mut b = WsClient::connect(&broker.ws_url("/sessions")).await;
    for w in [&mut a, &mut b] {
        assert_eq!(w.recv().await, "reset\n1\n1.0.0");
    }
    let url = broker.http("/api/sessions/s1");

    let steps: Vec<(common::Reply, u16, String)> = vec![
        (
            admin(
                "PUT",
                &url,
                Some(&session("Lobby", vec![user("u1", "alice")])),
            )
            .await,
            201,
            add_line(1, "s1", "Lobby", &[("u1", "alice")]),
        ),
        (
            admin(
                "PATCH",
                &url,
                Some(&json!({"session_name": "Arena", "active_users": 4})),
            )
            .await,
            200,
            "update\n1\ns1\nArena\n4\n5".into(),
        ),
        (
            admin("PUT", &format!("{url}/users/u2"), Some(&user("u2", "bob"))).await,
            200,
            "add_user\n1\ns1\nu2\nbob\n2024-01-02T03:04:05Z\nfalse\ntrue".into(),
        ),
        (
            admin("DELETE", &format!("{url}/users/u1"), None).await,
            200,
            "remove_user\n1\ns1\nu1\nalice".into(),
        ),
    ];
    for (reply, status, frame) in steps {
        assert_eq!(reply.status, status, "{}", reply.text);
        for w in [&mut a, &mut b] {
            assert_eq!(w.recv().await, frame);
        }
    }
    assert_eq!(
        admin("DELETE", &format!("{url}/users/nobody"), None)
            .await
            .status,
        404
    );

    // A replace that changes counts and users: one update, then the user diff.
    let mut next = session("Arena", vec![user("u3", "carol")]);
    next["active_users"] = json!(7);
    let reply = admin("PUT", &url, Some(&next)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["users"][0]["username"], "carol");
    for w in [&mut a, &mut b] {
        assert_eq!(w.recv().await, "update\n1\ns1\nArena\n7\n5");
        assert_eq!(w.recv().await, "remove_user\n1\ns1\nu2\nbob");
        assert_eq!(
            w.recv().await,
            "add_user\n1\ns1\nu3\ncarol\n2024-01-02T03:04:05Z\nfalse\ntrue"
        );
    }

    // A host field change is remove + add.
    next["host_is_mentor"] = json!(true);
    assert_eq!(admin("PUT", &url, Some(&next)).await.status, 200);
    for w in [&mut a, &mut b] {
        assert_eq!(w.recv().await, "remove\n1\ns1");
        assert_eq!(
            w.recv().await,
            "add\n1\ns1\n7\n5\nhostess\n2020-05-06T07:08:09Z\ntrue\ntrue\nArena\n2025-11-03T00:45:12Z\n\
             u3\rcarol\r2024-01-02T03:04:05Z\rfalse\rtrue"
        );
    }

    // An identical PUT only refreshes the TTL: nothing is broadcast.
    assert_eq!(admin("PUT", &url, Some(&next)).await.status, 200);

    let reply = admin("DELETE", &url, None).await;
    assert_eq!(reply.status, 200);
    for w in [&mut a, &mut b] {
        assert_eq!(w.recv().await, "remove\n1\ns1");
    }
    assert_eq!(admin("DELETE", &url, None).await.status, 404);
    wait_for_metric(&broker, LISTINGS, 0.0, WAIT).await;
    assert_eq!(
        admin("PATCH", &url, Some(&json!({"active_users": 1})))
            .await
            .status,
        404
    );
    assert_eq!(request("GET", &url, None, None).await.status, 404);
}

#[actix_rt::test]
async fn a_full_resync_starts_a_new_epoch_for_every_watcher() {
    let broker = Broker::start();
    assert_eq!(put(&broker, "old", &session("Old", vec![])).await, 201);
    let mut watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(watcher.recv().await, "reset\n1\n1.0.0");
    assert_eq!(watcher.recv().await, add_line(1, "old", "Old", &[]));

    let mut s3 = session("Three", vec![user("u9", "zed")]);
    s3["session_id"] = json!("s3");
    let mut s2 = session("Two", vec![]);
    s2["session_id"] = json!("s2");
    let reply = admin("PUT", &broker.http("/api/sessions"), Some(&json!([s3, s2]))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["epoch"], 2);

    assert_eq!(watcher.recv().await, "reset\n2\n1.0.0");
    assert_eq!(watcher.recv().await, add_line(2, "s2", "Two", &[]));
    assert_eq!(
        watcher.recv().await,
        add_line(2, "s3", "Three", &[("u9", "zed")])
    );

    let mut late = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(late.recv().await, "reset\n2\n1.0.0");
    assert_eq!(late.recv().await, add_line(2, "s2", "Two", &[]));
    assert_eq!(
        late.recv().await,
        add_line(2, "s3", "Three", &[("u9", "zed")])
    );

    // The old listing is gone and later changes carry the new epoch.
    assert_eq!(
        admin("DELETE", &broker.http("/api/sessions/old"), None)
            .await
            .status,
        404
    );
    let reply = admin(
        "PATCH",
        &broker.http("/api/sessions/s2"),
        Some(&json!({"joined_users": 9})),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(watcher.recv().await, "update\n2\ns2\nTwo\n3\n9");
    let list = request("GET", &broker.http("/api/sessions"), None, None).await;
    let ids: Vec<&str> = list.json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s2", "s3"]);
    assert_eq!(
        metric(&broker, "switchboard_listed_sessions").await,
        Some(2.0)
    );

    wait_for_metric(&broker, LISTINGS, 2.0, WAIT).await;
    // A resync with duplicate ids is refused whole.
    let reply = admin("PUT", &broker.http("/api/sessions"), Some(&json!([s2, s2]))).await;
    assert_eq!(reply.status, 400);
    watcher.expect_silence(Duration::from_millis(200)).await;
}

#[actix_rt::test]
async fn a_session_not_refreshed_within_the_ttl_is_removed() {
    let broker = Broker::with(Options::default().env("SESSIONS__TTL", "300ms"));
    let mut watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(watcher.recv().await, "reset\n1\n1.0.0");
    assert_eq!(put(&broker, "s1", &session("Brief", vec![])).await, 201);
    assert_eq!(watcher.recv().await, add_line(1, "s1", "Brief", &[]));
    assert_eq!(watcher.recv().await, "remove\n1\ns1");
    let list = request("GET", &broker.http("/api/sessions"), None, None).await;
    assert_eq!(list.json, json!({"sessions": []}));
    assert_eq!(
        metric(&broker, "switchboard_listed_sessions").await,
        Some(0.0)
    );
    wait_for_metric(&broker, LISTINGS, 0.0, WAIT).await;
    // The id can be listed again afterwards.
    assert_eq!(put(&broker, "s1", &session("Again", vec![])).await, 201);
    assert_eq!(watcher.recv().await, add_line(1, "s1", "Again", &[]));
    assert_eq!(metric(&broker, LISTINGS).await, Some(1.0));
}

#[actix_rt::test]
async fn a_line_break_in_any_field_is_refused_and_nothing_is_broadcast() {
    let broker = Broker::start();
    let mut watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(watcher.recv().await, "reset\n1\n1.0.0");
    assert_eq!(put(&broker, "ok", &session("Fine", vec![])).await, 201);
    assert_eq!(watcher.recv().await, add_line(1, "ok", "Fine", &[]));

    let bad_requests = [
        (
            "PUT",
            "/api/sessions/s1",
            Some(session("two\nlines", vec![])),
        ),
        ("PUT", "/api/sessions/s1", Some(session("cr\rhere", vec![]))),
        (
            "PUT",
            "/api/sessions/s1",
            Some(session("ok", vec![user("u1", "al\nice")])),
        ),
        (
            "PUT",
            "/api/sessions/s1",
            Some(session("ok", vec![user("u\r1", "alice")])),
        ),
        ("PUT", "/api/sessions/a%0Ab", Some(session("ok", vec![]))),
        (
            "PUT",
            "/api/sessions/s1",
            Some(json!({"session_id": "x\ny"})),
        ),
        (
            "PATCH",
            "/api/sessions/ok",
            Some(json!({"session_name": "a\nb"})),
        ),
        (
            "PUT",
            "/api/sessions/ok/users/u1",
            Some(user("u1", "bo\nb")),
        ),
        (
            "PUT",
            "/api/sessions/ok/users/u%0D1",
            Some(user("u\r1", "bob")),
        ),
        (
            "PUT",
            "/api/sessions",
            Some(json!([session("x\ny", vec![])])),
        ),
    ];
    for (method, path, body) in &bad_requests {
        let reply = admin(method, &broker.http(path), body.as_ref()).await;
        assert_eq!(reply.status, 400, "{method} {path}: {}", reply.text);
        assert!(reply.json["error"].is_string(), "{}", reply.text);
    }

    // Other malformed bodies are 400 with a JSON error too.
    let mut mismatched = session("x", vec![]);
    mismatched["session_id"] = json!("other");
    for (path, body) in [
        ("/api/sessions/s1", mismatched),
        (
            "/api/sessions/s1",
            json!({"session_name": "missing fields"}),
        ),
        ("/api/sessions/s1", {
            let mut s = session("x", vec![]);
            s["surprise"] = json!(1);
            s
        }),
        (
            "/api/sessions/s1",
            session("dup", vec![user("u1", "a"), user("u1", "b")]),
        ),
        ("/api/sessions/ok/users/u1", user("u2", "bob")),
    ] {
        let reply = admin("PUT", &broker.http(path), Some(&body)).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text);
        assert!(reply.json["error"].is_string());
    }

    watcher.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(
        request("GET", &broker.http("/api/sessions"), None, None)
            .await
            .json["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[actix_rt::test]
async fn state_changes_need_the_admin_key() {
    let broker = Broker::start();
    let url = broker.http("/api/sessions/s1");
    assert_eq!(put(&broker, "s1", &session("Guarded", vec![])).await, 201);
    let body = session("Hijack", vec![]);
    let calls: [(&str, String, Option<Value>); 6] = [
        ("PUT", url.clone(), Some(body.clone())),
        ("PATCH", url.clone(), Some(json!({"active_users": 0}))),
        ("DELETE", url.clone(), None),
        ("PUT", format!("{url}/users/u1"), Some(user("u1", "x"))),
        ("DELETE", format!("{url}/users/u1"), None),
        ("PUT", broker.http("/api/sessions"), Some(json!([]))),
    ];
    for (method, url, body) in &calls {
        for key in [None, Some("wrong-key-0123456789"), Some("")] {
            let reply = request(method, url, key, body.as_ref()).await;
            assert_eq!(reply.status, 401, "{method} {url} with {key:?}");
            assert_eq!(reply.json, json!({"error": "missing or wrong admin key"}));
        }
    }
    // Reads are public, and nothing above changed the session.
    let reply = request("GET", &url, None, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["session_name"], "Guarded");
}

#[actix_rt::test]
async fn without_a_configured_key_every_state_change_is_refused() {
    let broker = Broker::with(Options::default().without_admin_key());
    for key in [None, Some(common::ADMIN_KEY)] {
        let reply = request(
            "PUT",
            &broker.http("/api/sessions/s1"),
            key,
            Some(&session("x", vec![])),
        )
        .await;
        assert_eq!(reply.status, 401, "with {key:?}");
    }
    assert_eq!(
        request("GET", &broker.http("/api/sessions"), None, None)
            .await
            .status,
        200
    );
}

#[actix_rt::test]
async fn bad_client_messages_get_an_error_and_the_connection_keeps_working() {
    let broker = Broker::start();
    let mut watcher = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(watcher.recv().await, "reset\n1\n1.0.0");

    watcher.send("hello").await;
    assert_eq!(watcher.recv().await, "error\n1\nunknown command `hello`");
    watcher.send("reset\n1\n1.0.0").await;
    assert_eq!(
        watcher.recv().await,
        "error\n1\n`reset` is a server command"
    );
    watcher.send("connect\nonly-one").await;
    assert_eq!(
        watcher.recv().await,
        "error\n1\n`connect` takes 3 parameters, got 1"
    );
    watcher.send("").await;
    assert!(watcher.recv().await.starts_with("error\n1\n"));
    watcher
        .send_message(awc::ws::Message::Binary(vec![1u8, 2, 3].into()))
        .await;
    assert_eq!(
        watcher.recv().await,
        "error\n1\nbinary messages are not part of this protocol"
    );

    // `connect` is recorded in the usage metrics, with no reply.
    watcher.send("connect\nu1\nalice\n2.3.4").await;
    watcher.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(
        metric(&broker, "switchboard_session_clients{version=\"2.3.4\"}").await,
        Some(1.0)
    );

    // Still a working watcher.
    assert_eq!(
        put(&broker, "s1", &session("Still here", vec![])).await,
        201
    );
    assert_eq!(watcher.recv().await, add_line(1, "s1", "Still here", &[]));

    drop(watcher);
    wait_for_metric(
        &broker,
        "switchboard_session_clients{version=\"2.3.4\"}",
        0.0,
        WAIT,
    )
    .await;
}
