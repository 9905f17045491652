//! `ClientEvent::decode`, the workshop chat's client frames (JSON).
//!
//! Invalid UTF-8 is fed through `from_utf8_lossy` so no input is wasted (the
//! WebSocket layer only ever hands the decoder valid text). Checked beyond "no
//! panic": the events the server relays under the same `event_type`
//! (`message`, `typing`, `room_chat_clear`, `room_create`) encode to frames
//! that decode back to the same client event, and name validation (the
//! caller's next step) is idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_actors::chat::wire::{check_name, ClientEvent, RoomInfo, ServerEvent};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let Ok(event) = ClientEvent::decode(&text) else {
        return;
    };
    let room;
    let relayed = match &event {
        ClientEvent::ConnectionRequest { username } => {
            check_name_idempotent(username);
            None
        }
        ClientEvent::RoomSwitchRequest { room_name } => {
            check_name_idempotent(room_name);
            None
        }
        ClientEvent::Message { username, message } => {
            Some(ServerEvent::Message { username, message })
        }
        ClientEvent::Typing {
            username,
            is_typing,
        } => Some(ServerEvent::Typing {
            username,
            is_typing: *is_typing,
        }),
        ClientEvent::RoomChatClear {
            username,
            room_name,
        } => Some(ServerEvent::RoomChatClear {
            username,
            room_name,
        }),
        ClientEvent::RoomCreate { room_name } => {
            check_name_idempotent(room_name);
            room = RoomInfo {
                room_name: room_name.clone(),
                room_creator: "fuzz".into(),
                connected_users: Vec::new(),
            };
            Some(ServerEvent::RoomCreate { room: &room })
        }
    };
    if let Some(relayed) = relayed {
        let frame = relayed.encode();
        assert_eq!(
            ClientEvent::decode(&frame).as_ref(),
            Ok(&event),
            "relayed as {frame}"
        );
    }
});

fn check_name_idempotent(raw: &str) {
    if let Ok(name) = check_name(raw) {
        assert_eq!(check_name(&name).as_ref(), Ok(&name));
    }
}
