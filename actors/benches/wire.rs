//! Decode and encode cost of each protocol's wire module, per frame.
//!
//! Every benchmark reports bytes/s of the frame it reads or writes. Run with
//! `cargo bench -p switchboard-actors --bench wire`.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uuid::Uuid;

use switchboard_actors::{chat, concierge, live, rooms, sessions};

/// A 100-character message body.
fn text_100() -> String {
    let text: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(100)
        .collect();
    assert_eq!(text.len(), 100);
    text
}

fn date(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid RFC 3339 date")
        .with_timezone(&Utc)
}

fn bench_chat(c: &mut Criterion) {
    let body = text_100();
    let frame = format!(r#"{{"event_type":"message","username":"alice","message":"{body}"}}"#);
    assert!(matches!(
        chat::wire::ClientEvent::decode(&frame),
        Ok(chat::wire::ClientEvent::Message { .. })
    ));
    let event = chat::wire::ServerEvent::Message {
        username: "alice",
        message: &body,
    };
    let encoded = event.encode();

    let mut group = c.benchmark_group("chat");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("decode_message", |b| {
        b.iter(|| chat::wire::ClientEvent::decode(black_box(&frame)))
    });
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode_message", |b| b.iter(|| black_box(&event).encode()));
    group.finish();
}

fn bench_concierge(c: &mut Criterion) {
    use concierge::wire::{encode_message, ClientInfo, PayloadIn, PayloadOut, ServiceInfo};

    // `data` is a JSON string of exactly 100 bytes, quotes included.
    let data = format!("\"{}\"", &text_100()[..98]);
    let frame = format!(
        r#"{{"type":"MESSAGE","target":{{"type":"SERVICE","service":"weather"}},"data":{data}}}"#
    );
    let decoded = PayloadIn::decode(&frame).expect("a MESSAGE payload");
    let PayloadIn::Message { target, data: raw } = &decoded else {
        panic!("decoded {:?}, not a MESSAGE", decoded.kind());
    };
    assert_eq!(raw.get().len(), 100);

    let owner = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let origin = ClientInfo {
        name: "sensor_7".into(),
        nickname: Some("Roof sensor".into()),
        uuid: owner,
        tags: vec!["outdoor".into(), "weather".into()],
    };
    let service = ServiceInfo {
        name: "weather".into(),
        nickname: Some("Weather feed".into()),
        owner_uuid: owner,
        subscribers: (1..=50).map(Uuid::from_u128).collect(),
    };
    let relayed = encode_message(&origin, Some(&service), target, raw);
    let joined = PayloadOut::ClientJoined { client: &origin };
    let joined_frame = joined.encode(Some(42));

    let mut group = c.benchmark_group("concierge");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("decode_message", |b| {
        b.iter(|| PayloadIn::decode(black_box(&frame)))
    });
    group.throughput(Throughput::Bytes(relayed.len() as u64));
    group.bench_function("encode_message", |b| {
        b.iter(|| {
            encode_message(
                black_box(&origin),
                Some(black_box(&service)),
                black_box(target),
                black_box(*raw),
            )
        })
    });
    group.throughput(Throughput::Bytes(joined_frame.len() as u64));
    group.bench_function("encode_client_joined", |b| {
        b.iter(|| black_box(&joined).encode(black_box(Some(42))))
    });
    group.finish();
}

fn bench_rooms(c: &mut Criterion) {
    use rooms::wire::{Command, Event};

    let body = text_100();
    let room_id = Uuid::from_u128(0x6f1c_2d3e_4f50_4a6b_8c7d_9e0f_1a2b_3c4d);
    let frame = format!(
        r#"{{"type":"message","key":"0f8e2d4c6b1a39587766554433221100","content":"{body}","room_id":"{room_id}"}}"#
    );
    assert!(matches!(
        Command::decode(&frame),
        Ok(Command::Message { .. })
    ));
    let event = Event::Message {
        time: 1_762_130_712_000,
        content: &body,
        user_id: "alice",
        message_id: 4_242,
        room_id,
    };
    let encoded = event.encode();

    let mut group = c.benchmark_group("rooms");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("decode_message", |b| {
        b.iter(|| Command::decode(black_box(&frame)))
    });
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode_message", |b| b.iter(|| black_box(&event).encode()));
    group.finish();
}

fn bench_live(c: &mut Criterion) {
    use live::wire::{Popup, Reply, Request, RequestKind};

    let frame = r#"{"type":"now-playing","message":"Space Station 14","id":"req-42"}"#;
    assert_eq!(
        Request::decode(frame).map(|r| r.kind),
        Ok(RequestKind::NowPlaying)
    );
    let popup = Reply::Popup(Popup::NowPlaying {
        name: "alice",
        game: "Space Station 14",
    });
    let encoded = popup.encode(None);
    let count = Reply::Count(1_234);
    let count_frame = count.encode(Some("req-43"));

    let mut group = c.benchmark_group("live");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("decode_now_playing", |b| {
        b.iter(|| Request::decode(black_box(frame)))
    });
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode_popup", |b| {
        b.iter(|| black_box(&popup).encode(black_box(None)))
    });
    group.throughput(Throughput::Bytes(count_frame.len() as u64));
    group.bench_function("encode_count", |b| {
        b.iter(|| black_box(&count).encode(black_box(Some("req-43"))))
    });
    group.finish();
}

fn bench_sessions(c: &mut Criterion) {
    use sessions::wire::{ClientMessage, ServerMessage, Session, SessionUser};

    let users = (0..8)
        .map(|i| SessionUser {
            user_id: format!("u{i}"),
            username: format!("player_{i}"),
            registration_date: date("2025-01-02T03:04:05Z"),
            is_patron: i % 3 == 0,
            is_mentor: i % 4 == 0,
        })
        .collect();
    let add = ServerMessage::Add {
        epoch: 7,
        session: Session {
            session_id: "3f2a9c".into(),
            session_name: "Friday night".into(),
            active_users: 8,
            joined_users: 12,
            host_username: "host".into(),
            host_registration_date: date("2025-11-03T00:45:12Z"),
            host_is_patron: true,
            host_is_mentor: false,
            session_begin_time: date("2025-11-03T01:00:00Z"),
            users,
        },
    };
    let add_frame = add.encode();
    let update = ServerMessage::Update {
        epoch: 7,
        session_id: "3f2a9c".into(),
        session_name: "Saturday night".into(),
        active_users: 7,
        joined_users: 13,
    };
    let update_frame = update.encode();
    let connect = "connect\nu1\nalice\n1.2.3";
    assert!(matches!(
        ClientMessage::decode(connect),
        Ok(ClientMessage::Connect { .. })
    ));

    let mut group = c.benchmark_group("sessions");
    group.throughput(Throughput::Bytes(add_frame.len() as u64));
    group.bench_function("encode_add", |b| b.iter(|| black_box(&add).encode()));
    group.throughput(Throughput::Bytes(update_frame.len() as u64));
    group.bench_function("encode_update", |b| b.iter(|| black_box(&update).encode()));
    group.throughput(Throughput::Bytes(connect.len() as u64));
    group.bench_function("decode_connect", |b| {
        b.iter(|| ClientMessage::decode(black_box(connect)))
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_chat,
    bench_concierge,
    bench_rooms,
    bench_live,
    bench_sessions
);
criterion_main!(benches);
