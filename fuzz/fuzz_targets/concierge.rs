//! `PayloadIn::decode`, the concierge gateway's client frames (JSON).
//!
//! Invalid UTF-8 is fed through `from_utf8_lossy` so no input is wasted (the
//! WebSocket layer only ever hands the decoder valid text). Checked beyond "no
//! panic": an error still encodes the `ERROR_*` reply the client gets, and a
//! decoded `MESSAGE` relays with its `data` bytes verbatim, as a frame that
//! decodes back to the same target and data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use switchboard_actors::concierge::wire::{
    encode_message, ClientInfo, DecodeError, PayloadIn, PayloadOut,
};
use uuid::Uuid;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    match PayloadIn::decode(&text) {
        Ok(payload) => {
            let _ = payload.kind();
            if let PayloadIn::Message { target, data } = payload {
                check_relay(&target, data);
            }
        }
        Err(err) => {
            let desc = err.to_string();
            let reply = match err {
                DecodeError::Malformed(_) => PayloadOut::ErrorProtocol { desc: &desc },
                DecodeError::Unsupported(_) => PayloadOut::ErrorUnsupported,
            }
            .encode(Some(1));
            serde_json::from_str::<&RawValue>(&reply).expect("an error reply is JSON");
        }
    }
});

/// What the server does with a `MESSAGE`: relay it, the client's data verbatim.
fn check_relay(target: &switchboard_actors::concierge::wire::Target, data: &RawValue) {
    let origin = ClientInfo {
        name: "fuzz".into(),
        nickname: None,
        uuid: Uuid::nil(),
        tags: Vec::new(),
    };
    let relayed = encode_message(&origin, None, target, data);
    let tail = format!(r#","data":{}}}"#, data.get());
    assert!(relayed.ends_with(&tail), "data not verbatim: {relayed}");
    match PayloadIn::decode(&relayed) {
        Ok(PayloadIn::Message {
            target: again,
            data: data_again,
        }) => {
            assert_eq!(&again, target);
            assert_eq!(data_again.get(), data.get());
        }
        other => panic!("relayed frame {relayed} decodes as {other:?}"),
    }
}
