//! The session list's epoch is acknowledged only after it is committed
//! (issue 16 §2): a full resync whose new epoch the store refuses answers
//! 5xx, and no watcher sees any change.

mod common;

use std::time::Duration;

use common::{admin, fail_store_writes, request, Broker, WsClient};
use serde_json::{json, Value};

/// A session object with no users, listed as `id`.
fn session(id: &str, name: &str) -> Value {
    json!({
        "session_id": id,
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

/// The `add` frame of `session(id, name)` in `epoch`.
fn add_line(epoch: i64, id: &str, name: &str) -> String {
    format!(
        "add\n{epoch}\n{id}\n1\n2\nhostess\n2020-05-06T07:08:09Z\nfalse\nfalse\n{name}\n2025-11-03T00:45:12Z\n"
    )
}

/// The ids `GET /api/sessions` lists.
async fn listed(broker: &Broker) -> Vec<String> {
    let reply = request("GET", &broker.http("/api/sessions"), None, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A watcher that has read its `reset` (epoch `epoch`) and one `add` per
/// `(id, name)` in `sessions`.
async fn watcher(broker: &Broker, epoch: i64, sessions: &[(&str, &str)]) -> WsClient {
    let mut ws = WsClient::connect(&broker.ws_url("/sessions")).await;
    assert_eq!(ws.recv().await, format!("reset\n{epoch}\n1.0.0"));
    for (id, name) in sessions {
        assert_eq!(ws.recv().await, add_line(epoch, id, name));
    }
    ws
}

#[actix_rt::test]
async fn a_resync_whose_epoch_the_store_refuses_changes_nothing() {
    let broker = Broker::start();
    let put = admin(
        "PUT",
        &broker.http("/api/sessions/old"),
        Some(&session("old", "Old")),
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.text);
    let mut before = watcher(&broker, 1, &[("old", "Old")]).await;

    fail_store_writes(&broker, true).await;
    let refused = admin(
        "PUT",
        &broker.http("/api/sessions"),
        Some(&json!([session("new", "New")])),
    )
    .await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(
        refused.json,
        json!({"error": "the new epoch could not be saved, so nothing was changed; try again later"})
    );
    // Nobody hears of a resync that did not happen: same epoch, same list.
    before.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(listed(&broker).await, ["old"]);
    let mut during = watcher(&broker, 1, &[("old", "Old")]).await;
    // The old listing still works, under the old epoch.
    let patched = admin(
        "PATCH",
        &broker.http("/api/sessions/old"),
        Some(&json!({"joined_users": 7})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    for ws in [&mut before, &mut during] {
        assert_eq!(ws.recv().await, "update\n1\nold\nOld\n1\n7");
    }

    // Once the store takes writes again the resync goes through, under an
    // epoch no watcher has seen (the refused one is never used).
    fail_store_writes(&broker, false).await;
    let done = admin(
        "PUT",
        &broker.http("/api/sessions"),
        Some(&json!([session("new", "New")])),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text);
    let epoch = done.json["epoch"].as_i64().expect("integer epoch");
    assert!(epoch > 1, "{epoch}");
    for ws in [&mut before, &mut during] {
        assert_eq!(ws.recv().await, format!("reset\n{epoch}\n1.0.0"));
        assert_eq!(ws.recv().await, add_line(epoch, "new", "New"));
    }
    assert_eq!(listed(&broker).await, ["new"]);

    // The committed epoch is the one the next process starts after.
    drop((before, during));
    let data = broker.stop();
    let broker = Broker::with(common::Options::default().data(&data.path));
    watcher(&broker, epoch + 1, &[]).await;
}
