//! The concierge's pipelined MESSAGEs end to end (PROTOCOLS.md §1): a client
//! sends many payloads without waiting for their replies; every reply still
//! carries its `seq` and leaves in payload order, every recipient gets every
//! message in the order it was sent, requests that are not MESSAGEs see the
//! effect of everything sent before them, and a MESSAGE to a service deleted
//! meanwhile is answered INVALID_SERVICE, never dropped.

mod common;

use common::concierge::{identify_all, service, Peer};
use common::{metric, Broker};
use serde_json::{json, Value};

/// A MESSAGE as its recipient gets it through the service `header`.
fn relayed(from: &Peer, header: Value, target: Value, data: Value) -> Value {
    let mut origin = from.info();
    origin["service"] = header;
    json!({"type": "MESSAGE", "origin": origin, "target": target, "data": data})
}

fn to_service(name: &str) -> Value {
    json!({"type": "SERVICE", "service": name})
}

fn message(target: &Value, data: Value) -> Value {
    json!({"type": "MESSAGE", "target": target, "data": data})
}

fn ok(seq: u64) -> Value {
    json!({"seq": seq, "type": "OK"})
}

/// `owner` creates the service `name` with sequence number `seq`; `others`
/// (everyone else identified) hear of it.
async fn create(owner: &mut Peer, others: &mut [&mut Peer], name: &str, seq: u64) {
    owner
        .send(json!({"type": "SERVICE_CREATE", "service": name}))
        .await;
    let created = service(name, owner, &[]);
    let broadcast =
        json!({"type": "SERVICE_CREATE_RESULT", "successful": true, "service": created});
    owner.expect(broadcast.clone()).await;
    owner
        .expect(json!({"seq": seq, "type": "SERVICE_CREATE_RESULT", "successful": true, "service": created}))
        .await;
    for other in others.iter_mut() {
        other.expect(broadcast.clone()).await;
    }
}

/// `sub` subscribes to `name` with sequence number `seq`; `subscribers` is
/// the service's info after (the new subscriber hears its own arrival).
async fn subscribe(sub: &mut Peer, name: &str, seq: u64, subscribers: Value) {
    sub.ask(
        json!({"type": "SELF_SUBSCRIBE", "service": name}),
        json!({"seq": seq, "type": "SELF_SUBSCRIBE_RESULT", "successful": true, "service": subscribers}),
    )
    .await;
    sub.expect(
        json!({"type": "SERVICE_CLIENT_SUBSCRIBED", "client": sub.info(), "service": subscribers}),
    )
    .await;
}

/// `owner` with its service `feed`, and `viewer` subscribed to it (seq 0
/// taken on both sides).
async fn feed_with_a_subscriber(broker: &Broker) -> Vec<Peer> {
    let mut peers = identify_all(broker, &["owner", "viewer"]).await;
    let [owner, viewer] = &mut peers[..] else {
        unreachable!()
    };
    create(owner, &mut [&mut *viewer], "feed", 0).await;
    subscribe(viewer, "feed", 0, service("feed", owner, &[viewer])).await;
    peers
}

#[actix_rt::test]
async fn pipelined_messages_are_answered_and_delivered_in_order() {
    let broker = Broker::start();
    let mut peers = feed_with_a_subscriber(&broker).await;
    let [owner, viewer] = &mut peers[..] else {
        unreachable!()
    };
    let header = service("feed", owner, &[]);
    let target = to_service("feed");

    // The owner sends 200 MESSAGEs without reading a reply, with a payload
    // that does not decode, a fetch and a SELF_SET_SEQ among them.
    for i in 0..100 {
        owner.send(message(&target, json!(i))).await;
    }
    owner.ws.send("not json").await;
    for i in 100..150 {
        owner.send(message(&target, json!(i))).await;
    }
    owner
        .send(json!({"type": "SERVICE_FETCH", "service": "feed"}))
        .await;
    owner
        .send(json!({"type": "SELF_SET_SEQ", "seq": 1000}))
        .await;
    for i in 150..200 {
        owner.send(message(&target, json!(i))).await;
    }

    // Replies: seq 1..=100, the decode error (101), seq 102..=151, the
    // fetch (152), the SELF_SET_SEQ (1000), then 1001..=1050.
    for seq in 1..=100 {
        owner.expect(ok(seq)).await;
    }
    let error = owner.ws.recv_json().await;
    assert_eq!(error["type"], "ERROR_PROTOCOL", "{error}");
    assert_eq!(error["seq"], 101, "{error}");
    for seq in 102..=151 {
        owner.expect(ok(seq)).await;
    }
    owner
        .expect(json!({"seq": 152, "type": "SERVICE_FETCH_RESULT", "service": service("feed", owner, &[viewer])}))
        .await;
    owner.expect(ok(1000)).await;
    for seq in 1001..=1050 {
        owner.expect(ok(seq)).await;
    }
    owner.silent().await;

    // The viewer got every message, in the order sent.
    for i in 0..200 {
        viewer
            .expect(relayed(owner, header.clone(), target.clone(), json!(i)))
            .await;
    }
    viewer.silent().await;

    // The other way: 200 MESSAGEs from the subscriber reach the owner in order.
    for i in 0..200 {
        viewer.send(message(&target, json!({"up": i}))).await;
    }
    for seq in 1..=200 {
        viewer.expect(ok(seq)).await;
    }
    for i in 0..200 {
        owner
            .expect(relayed(
                viewer,
                header.clone(),
                target.clone(),
                json!({"up": i}),
            ))
            .await;
    }
    owner.silent().await;

    let series = "switchboard_concierge_messages_total{target=\"SERVICE\"}";
    assert_eq!(metric(&broker, series).await, Some(400.0), "{series}");
}

#[actix_rt::test]
async fn a_request_after_pipelined_messages_sees_them_all_through() {
    let broker = Broker::start();
    let mut peers = feed_with_a_subscriber(&broker).await;
    let [owner, viewer] = &mut peers[..] else {
        unreachable!()
    };
    let header = service("feed", owner, &[]);
    let target = to_service("feed");

    // Messages, then an unsubscribe, then a message, all without waiting:
    // every message sent before the unsubscribe reaches the owner, the one
    // after is refused.
    for i in 0..50 {
        viewer.send(message(&target, json!(i))).await;
    }
    viewer
        .send(json!({"type": "SELF_UNSUBSCRIBE", "service": "feed"}))
        .await;
    viewer.send(message(&target, json!("late"))).await;
    for seq in 1..=50 {
        viewer.expect(ok(seq)).await;
    }
    viewer
        .expect(json!({"seq": 51, "type": "SELF_UNSUBSCRIBE_RESULT", "successful": true, "service": header}))
        .await;
    viewer.expect(json!({"seq": 52, "type": "BAD"})).await;
    viewer.silent().await;
    for i in 0..50 {
        owner
            .expect(relayed(viewer, header.clone(), target.clone(), json!(i)))
            .await;
    }
    owner.silent().await;
}

#[actix_rt::test]
async fn messages_to_two_services_reach_their_common_owner_in_the_order_sent() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["owner", "viewer"]).await;
    let [owner, viewer] = &mut peers[..] else {
        unreachable!()
    };
    create(owner, &mut [&mut *viewer], "left", 0).await;
    create(owner, &mut [&mut *viewer], "right", 1).await;
    subscribe(viewer, "left", 0, service("left", owner, &[viewer])).await;
    subscribe(viewer, "right", 1, service("right", owner, &[viewer])).await;

    // Runs of messages alternating between the two services.
    let names = ["left", "right"];
    for i in 0..120 {
        let name = names[(i / 7) % 2];
        viewer.send(message(&to_service(name), json!(i))).await;
    }
    for seq in 2..122 {
        viewer.expect(ok(seq)).await;
    }
    for i in 0..120 {
        let name = names[(i / 7) % 2];
        let header = service(name, owner, &[]);
        owner
            .expect(relayed(viewer, header, to_service(name), json!(i)))
            .await;
    }
    owner.silent().await;
}

#[actix_rt::test]
async fn a_message_to_a_service_deleted_meanwhile_is_invalid_service() {
    let broker = Broker::start();
    let mut peers = identify_all(&broker, &["owner", "viewer", "heir"]).await;
    let [owner, viewer, heir] = &mut peers[..] else {
        unreachable!()
    };
    create(owner, &mut [&mut *viewer, &mut *heir], "feed", 0).await;
    subscribe(viewer, "feed", 0, service("feed", owner, &[viewer])).await;
    let header = service("feed", owner, &[]);
    let target = to_service("feed");

    // The viewer pipelines messages while the owner deletes the service:
    // each is delivered and answered OK, or answered INVALID_SERVICE once
    // the service is gone; none is lost.
    for i in 0..100 {
        viewer.send(message(&target, json!(i))).await;
    }
    owner
        .send(json!({"type": "SERVICE_DELETE", "service": "feed"}))
        .await;
    for i in 100..200 {
        viewer.send(message(&target, json!(i))).await;
    }
    let deleted =
        json!({"type": "SERVICE_DELETE_RESULT", "service": service("feed", owner, &[viewer])});
    let mut delivered = 0;
    let mut deletion_seen = false;
    for seq in 1..=200 {
        let reply = viewer.ws.recv_json().await;
        if reply == deleted {
            deletion_seen = true;
            let reply = viewer.ws.recv_json().await;
            assert_reply(&reply, seq, &mut delivered);
        } else {
            assert_reply(&reply, seq, &mut delivered);
        }
    }
    if !deletion_seen {
        viewer.expect(deleted.clone()).await;
    }
    viewer.silent().await;
    // The owner got exactly the messages answered OK, in order; its own
    // deletion's broadcast comes before its reply (a message the service
    // handled just before the deletion may still come after either).
    let reply = json!({"seq": 1, "type": "SERVICE_DELETE_RESULT", "service": service("feed", owner, &[viewer])});
    let (mut next, mut broadcast_seen, mut reply_seen) = (0, false, false);
    while next < delivered || !reply_seen {
        let frame = owner.ws.recv_json().await;
        if frame == deleted && !broadcast_seen {
            broadcast_seen = true;
        } else if frame == reply && broadcast_seen && !reply_seen {
            reply_seen = true;
        } else {
            let want = relayed(viewer, header.clone(), target.clone(), json!(next));
            assert_eq!(frame, want, "the owner's next frame");
            next += 1;
        }
    }
    owner.silent().await;
    heir.expect(deleted).await;

    // Once the deletion is known: every pipelined MESSAGE is INVALID_SERVICE.
    for i in 0..20 {
        viewer.send(message(&target, json!(i))).await;
    }
    for seq in 201..=220 {
        viewer
            .expect(json!({"seq": seq, "type": "INVALID_SERVICE", "service": "feed"}))
            .await;
    }

    // A new service of the same name: the old subscription is gone (BAD);
    // after subscribing, messages reach the new owner, never the old one.
    create(heir, &mut [&mut *owner, &mut *viewer], "feed", 0).await;
    viewer
        .ask(
            message(&target, json!("who")),
            json!({"seq": 221, "type": "BAD"}),
        )
        .await;
    subscribe(viewer, "feed", 222, service("feed", heir, &[viewer])).await;
    for i in 0..30 {
        viewer.send(message(&target, json!(i))).await;
    }
    for seq in 223..253 {
        viewer.expect(ok(seq)).await;
    }
    let header = service("feed", heir, &[]);
    for i in 0..30 {
        heir.expect(relayed(viewer, header.clone(), target.clone(), json!(i)))
            .await;
    }
    owner.silent().await;
}

/// One reply to a pipelined MESSAGE racing the deletion of its service:
/// OK while the service stood, INVALID_SERVICE after, never OK again.
fn assert_reply(reply: &Value, seq: u64, delivered: &mut u64) {
    if *reply == ok(seq) && *delivered + 1 == seq {
        *delivered = seq;
    } else {
        let invalid = json!({"seq": seq, "type": "INVALID_SERVICE", "service": "feed"});
        assert_eq!(*reply, invalid, "reply {seq} after {delivered} delivered");
    }
}
