//! `Request::decode`, the live presence protocol's client frames (JSON).
//!
//! Invalid UTF-8 is fed through `from_utf8_lossy` so no input is wasted (the
//! WebSocket layer only ever hands the decoder valid text). Checked beyond "no
//! panic": every reply echoes the request's `id` (the error reply too, when
//! the id could be read) and an error reply carries the error's text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard_actors::live::wire::{Reply, Request};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let (frame, id, message) = match Request::decode(&text) {
        Ok(request) => {
            let _ = request.kind.as_str();
            (
                Reply::Success.encode(request.id.as_deref()),
                request.id,
                None,
            )
        }
        Err(bad) => (bad.encode(), bad.id.clone(), Some(bad.to_string())),
    };
    let reply: Value = serde_json::from_str(&frame).expect("a reply is JSON");
    assert_eq!(
        reply.get("id").and_then(Value::as_str),
        id.as_deref(),
        "{frame}"
    );
    assert_eq!(
        reply.get("message").and_then(Value::as_str),
        message.as_deref(),
        "{frame}"
    );
});
