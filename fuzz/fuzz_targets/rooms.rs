//! `Command::decode`, the permissioned rooms protocol's client frames (JSON).
//!
//! Invalid UTF-8 is fed through `from_utf8_lossy` so no input is wasted (the
//! WebSocket layer only ever hands the decoder valid text). Checked beyond "no
//! panic": an error encodes the `error` event the client gets, with the
//! error's text, and the server's `ping`/`pong` events decode back as the
//! client commands of the same name and time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard_actors::rooms::wire::{Command, Event};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    match Command::decode(&text) {
        Ok(command) => {
            let _ = command.key();
            let event = match command {
                Command::Ping { time } => Event::Ping { time },
                Command::Pong { time } => Event::Pong { time },
                _ => return,
            };
            assert_eq!(Command::decode(&event.encode()), Ok(command));
        }
        Err(bad) => {
            let frame = Event::Error {
                message: &bad.reason,
            }
            .encode();
            let event: Value = serde_json::from_str(&frame).expect("an event is JSON");
            assert_eq!(event["message"].as_str(), Some(bad.to_string().as_str()));
        }
    }
});
