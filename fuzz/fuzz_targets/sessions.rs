//! `ClientMessage::decode` and `ServerMessage::decode`, the session list's
//! line-based frames.
//!
//! Invalid UTF-8 is fed through `from_utf8_lossy` so no input is wasted (the
//! WebSocket layer only ever hands the decoders valid text). Checked beyond "no
//! panic": a decoded message re-encodes to a frame that decodes to the same
//! message, and error texts (sent back in `error` messages) are one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_actors::sessions::wire::{ClientMessage, ServerMessage, WireError};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    match ClientMessage::decode(&text) {
        Ok(message) => assert_eq!(ClientMessage::decode(&message.encode()), Ok(message)),
        Err(err) => check_error(&err),
    }
    match ServerMessage::decode(&text) {
        Ok(message) => {
            let frame = message.encode();
            assert_eq!(
                ServerMessage::decode(&frame).as_ref(),
                Ok(&message),
                "re-encoded as {frame:?}"
            );
        }
        Err(err) => check_error(&err),
    }
});

fn check_error(err: &WireError) {
    let text = err.to_string();
    assert!(!text.contains(['\n', '\r']), "{text:?}");
}
