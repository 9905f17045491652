//! Wire format of the "workshop chat" WebSocket protocol.
//!
//! Every frame, in either direction, is one JSON object in a text message.
//! Its first key is `"event_type"`, whose snake_case value names the event
//! (`connection_request`, `message`, `room_switch_response`, ...); the event's
//! own fields follow in the order the workshop material shows them, for
//! example:
//!
//! ```json
//! {"event_type":"message","username":"alice","message":"Hi everyone!"}
//! ```
//!
//! The reference backend's browser client must work against us unchanged, so
//! the shapes here are exactly the reference's:
//!
//! * Timestamps (`timestamp`, `connected_at`) are written as RFC 3339 UTC with
//!   whole seconds and a `Z` suffix (`2025-11-03T00:45:12Z`); any RFC 3339
//!   timestamp is accepted when reading and converted to UTC.
//! * Frames are compact JSON (no insignificant whitespace) in UTF-8.
//!
//! Clients send the events of [`ClientEvent`]; anything else they send is
//! [`InvalidFormat`], answered with a `system` error carrying
//! [`INVALID_FORMAT`]. The server sends the events of [`ServerEvent`], which
//! borrow what they carry so one broadcast is encoded once without cloning
//! room state. [`check_name`] holds the rules shared by user and room names.
//!
//! This module only translates between text and values: trimming and
//! validating what a client sent, and every decision about who receives what,
//! belong to the caller.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The room every user starts in; it always exists and cannot be cleared.
pub const GLOBAL_ROOM: &str = "Global";

/// Longest user or room name, in characters (not bytes).
pub const MAX_NAME_CHARS: usize = 20;

/// The `system` text sent for any frame that is not a valid client event.
pub const INVALID_FORMAT: &str = "Invalid message format";

/// Why a user or room name is refused.
///
/// The display texts are sent to clients verbatim (in `connection_reject`),
/// so they are part of the protocol and must not change. They speak of a
/// "Username" because that is what the reference sends; a caller rejecting a
/// room name words its own `room_create_reject` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// More than [`MAX_NAME_CHARS`] characters after trimming.
    #[error("Username is too long")]
    TooLong,
    /// Empty after trimming, or containing a character other than an ASCII
    /// letter, one of `åäöÅÄÖ`, an ASCII digit, `_`, `-` or a space.
    #[error("Username contains invalid characters")]
    InvalidCharacters,
}

/// Trims `raw` and checks the name rules (the same for users and rooms);
/// returns the trimmed name.
///
/// Length is checked before content: a name longer than [`MAX_NAME_CHARS`]
/// characters is [`NameError::TooLong`] even if it also contains forbidden
/// characters, since "too long" is the more useful thing to tell a user whose
/// name fails both ways. Characters are Unicode scalar values, so `ä` counts
/// once; a decomposed `ä` (`a` followed by a combining diaeresis) is two
/// characters, the second of them forbidden.
pub fn check_name(raw: &str) -> Result<String, NameError> {
    let name = raw.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(NameError::InvalidCharacters);
    }
    Ok(name.to_owned())
}

/// Whether `c` may appear in a user or room name.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, 'å' | 'ä' | 'ö' | 'Å' | 'Ä' | 'Ö' | '_' | '-' | ' ')
}

/// One user in `users_online`: who is in the room and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatus {
    /// The user's (validated, trimmed) name.
    pub username: String,
    /// When the user connected; written as whole-second RFC 3339 UTC.
    #[serde(with = "crate::timestamp")]
    pub connected_at: DateTime<Utc>,
}

/// One stored chat message, as `message_history` lists it.
///
/// Also the shape in which history is stored, hence `Deserialize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Who sent the message.
    pub username: String,
    /// The message text, as broadcast.
    pub message: String,
    /// When the server received the message; written as whole-second RFC
    /// 3339 UTC.
    #[serde(with = "crate::timestamp")]
    pub timestamp: DateTime<Utc>,
}

/// A room as `all_rooms` and `room_create` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's (validated, trimmed) name.
    pub room_name: String,
    /// The user who created the room.
    pub room_creator: String,
    /// Names of the users currently in the room.
    pub connected_users: Vec<String>,
}

/// Events a client sends.
///
/// Anything else (invalid JSON, a non-object, a missing or wrongly typed
/// field, an unknown `event_type`, or a server-only event type such as
/// `user_join`) is `Err(InvalidFormat)`. Strings are taken as sent: the
/// caller trims and validates them. Fields the event does not use are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The first frame of every connection: the name the user asks for.
    ConnectionRequest {
        /// The requested name, untrimmed.
        username: String,
    },
    /// A chat message for the sender's current room.
    Message {
        /// The name the client claims to be; the caller checks it is the
        /// sender's.
        username: String,
        /// The message text, untrimmed.
        message: String,
    },
    /// The user started or stopped typing.
    Typing {
        /// The name the client claims to be.
        username: String,
        /// Whether the user is typing now.
        is_typing: bool,
    },
    /// A request to create a room.
    ///
    /// Only `room.room_name` matters; `room_creator` and `connected_users`
    /// may be absent and are ignored whatever they hold (the server sets
    /// them).
    RoomCreate {
        /// The requested room name, untrimmed.
        room_name: String,
    },
    /// A request to move to another room.
    RoomSwitchRequest {
        /// The room to move to.
        room_name: String,
    },
    /// A request to empty a room's history.
    RoomChatClear {
        /// The name the client claims to be.
        username: String,
        /// The room to clear.
        room_name: String,
    },
}

/// A frame that is not a valid client event.
///
/// Deliberately carries no detail: the client is only ever told
/// [`INVALID_FORMAT`], whatever was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid message format")]
pub struct InvalidFormat;

impl ClientEvent {
    /// Decodes one text frame sent by a client.
    ///
    /// Decoding is strict about shape (the frame must be a JSON object, every
    /// field the event uses must be present with the right JSON type) and
    /// lenient about extras (unknown fields are ignored).
    pub fn decode(text: &str) -> Result<ClientEvent, InvalidFormat> {
        let value: Value = serde_json::from_str(text).map_err(|_| InvalidFormat)?;
        let fields = value.as_object().ok_or(InvalidFormat)?;
        let event = match str_field(fields, "event_type")? {
            "connection_request" => ClientEvent::ConnectionRequest {
                username: string_field(fields, "username")?,
            },
            "message" => ClientEvent::Message {
                username: string_field(fields, "username")?,
                message: string_field(fields, "message")?,
            },
            "typing" => ClientEvent::Typing {
                username: string_field(fields, "username")?,
                is_typing: fields
                    .get("is_typing")
                    .and_then(Value::as_bool)
                    .ok_or(InvalidFormat)?,
            },
            "room_create" => {
                let room = fields
                    .get("room")
                    .and_then(Value::as_object)
                    .ok_or(InvalidFormat)?;
                ClientEvent::RoomCreate {
                    room_name: string_field(room, "room_name")?,
                }
            }
            "room_switch_request" => ClientEvent::RoomSwitchRequest {
                room_name: string_field(fields, "room_name")?,
            },
            "room_chat_clear" => ClientEvent::RoomChatClear {
                username: string_field(fields, "username")?,
                room_name: string_field(fields, "room_name")?,
            },
            _ => return Err(InvalidFormat),
        };
        Ok(event)
    }
}

/// The string held by `fields[key]`, borrowed.
fn str_field<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<&'a str, InvalidFormat> {
    fields.get(key).and_then(Value::as_str).ok_or(InvalidFormat)
}

/// The string held by `fields[key]`, owned.
fn string_field(fields: &Map<String, Value>, key: &str) -> Result<String, InvalidFormat> {
    str_field(fields, key).map(str::to_owned)
}

/// Severity of a `system` event; the browser client styles the text by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something the user asked for worked.
    Success,
    /// Neutral information.
    Info,
    /// Something others should notice, such as a spoofed username.
    Warning,
    /// The user's request was refused.
    Error,
}

/// Events the server sends, borrowing what they carry.
///
/// Each variant's fields are declared in the order they appear on the wire,
/// after the leading `event_type`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum ServerEvent<'a> {
    /// The connection was accepted under `username`.
    ConnectionResponse {
        /// The trimmed name the user is known by.
        username: &'a str,
        /// A fresh random (v4) id for this connection.
        user_id: Uuid,
    },
    /// The connection was refused; the server closes the socket next.
    ConnectionReject {
        /// Why, e.g. a [`NameError`]'s display text.
        response: &'a str,
    },
    /// A notice from the server, styled by `severity`.
    System {
        /// How the client should present the notice.
        severity: Severity,
        /// The notice text, e.g. [`INVALID_FORMAT`].
        message: &'a str,
    },
    /// The stored messages of the room just entered, oldest first.
    MessageHistory {
        /// The room's history.
        messages: &'a [HistoryEntry],
    },
    /// A chat message, relayed to everyone in the room.
    Message {
        /// Who sent it.
        username: &'a str,
        /// The text.
        message: &'a str,
    },
    /// A user started or stopped typing.
    Typing {
        /// Who is typing.
        username: &'a str,
        /// Whether they are typing now.
        is_typing: bool,
    },
    /// The other users in the room just entered.
    UsersOnline {
        /// Everyone in the room except the newcomer.
        users: &'a [UserStatus],
    },
    /// A user entered the room.
    UserJoin {
        /// Who entered.
        username: &'a str,
    },
    /// A user left the room (switched rooms or disconnected).
    UserLeave {
        /// Who left.
        username: &'a str,
    },
    /// Every room on the server.
    AllRooms {
        /// The rooms, [`GLOBAL_ROOM`] first.
        rooms: &'a [RoomInfo],
    },
    /// A room was created.
    RoomCreate {
        /// The new room.
        room: &'a RoomInfo,
    },
    /// A `room_create` request was refused.
    RoomCreateReject {
        /// Why.
        response: &'a str,
    },
    /// A room's history was emptied.
    RoomChatClear {
        /// Who cleared it.
        username: &'a str,
        /// The room cleared.
        room_name: &'a str,
    },
    /// The user is now in `room_name`.
    RoomSwitchResponse {
        /// The room entered.
        room_name: &'a str,
    },
    /// A `room_switch_request` was refused; the user stays where it was.
    RoomSwitchReject {
        /// Why.
        response: &'a str,
    },
}

impl ServerEvent<'_> {
    /// The JSON text of the frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self)
            .expect("server events hold only strings, numbers, bools and string-keyed objects")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Timelike};

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(2025, 11, 3)
            .and_then(|d| d.and_hms_opt(h, m, s))
            .expect("valid test date")
            .and_utc()
    }

    fn decode(text: &str) -> ClientEvent {
        ClientEvent::decode(text).unwrap_or_else(|_| panic!("should decode: {text}"))
    }

    fn alice_and_bob() -> RoomInfo {
        RoomInfo {
            room_name: "General".into(),
            room_creator: "alice".into(),
            connected_users: vec!["alice".into(), "bob".into()],
        }
    }

    // ---- decoding client events (seed examples) ----

    #[test]
    fn decodes_connection_request() {
        let text = r#"{"event_type": "connection_request", "username": "alice"}"#;
        assert_eq!(
            decode(text),
            ClientEvent::ConnectionRequest {
                username: "alice".into()
            }
        );
    }

    #[test]
    fn decodes_message() {
        let text = r#"{
            "event_type": "message",
            "username": "alice",
            "message": "How's everyone doing today?"
        }"#;
        assert_eq!(
            decode(text),
            ClientEvent::Message {
                username: "alice".into(),
                message: "How's everyone doing today?".into()
            }
        );
    }

    #[test]
    fn decodes_typing_true_and_false() {
        for is_typing in [true, false] {
            let text =
                format!(r#"{{"event_type":"typing","username":"bob","is_typing":{is_typing}}}"#);
            assert_eq!(
                decode(&text),
                ClientEvent::Typing {
                    username: "bob".into(),
                    is_typing
                }
            );
        }
    }

    #[test]
    fn decodes_room_create_with_full_room_object() {
        let text = r#"{
            "event_type": "room_create",
            "room": {"room_name": "Support", "room_creator": "alice", "connected_users": []}
        }"#;
        assert_eq!(
            decode(text),
            ClientEvent::RoomCreate {
                room_name: "Support".into()
            }
        );
    }

    #[test]
    fn decodes_room_create_with_only_room_name() {
        let text = r#"{"event_type":"room_create","room":{"room_name":"Support"}}"#;
        assert_eq!(
            decode(text),
            ClientEvent::RoomCreate {
                room_name: "Support".into()
            }
        );
    }

    #[test]
    fn room_create_ignores_client_supplied_creator_and_users_whatever_their_type() {
        let text = r#"{"event_type":"room_create","room":{"room_name":"Support","room_creator":null,"connected_users":"x"}}"#;
        assert_eq!(
            decode(text),
            ClientEvent::RoomCreate {
                room_name: "Support".into()
            }
        );
    }

    #[test]
    fn decodes_room_switch_request() {
        let text = r#"{"event_type":"room_switch_request","room_name":"Developers"}"#;
        assert_eq!(
            decode(text),
            ClientEvent::RoomSwitchRequest {
                room_name: "Developers".into()
            }
        );
    }

    #[test]
    fn decodes_room_chat_clear() {
        let text =
            r#"{"event_type":"room_chat_clear","username":"moderator01","room_name":"General"}"#;
        assert_eq!(
            decode(text),
            ClientEvent::RoomChatClear {
                username: "moderator01".into(),
                room_name: "General".into()
            }
        );
    }

    #[test]
    fn decode_keeps_strings_as_sent_without_trimming() {
        let text = r#"{"event_type":"message","username":"  alice ","message":"  hi\n"}"#;
        assert_eq!(
            decode(text),
            ClientEvent::Message {
                username: "  alice ".into(),
                message: "  hi\n".into()
            }
        );
    }

    #[test]
    fn decode_ignores_unknown_fields() {
        let text =
            r#"{"x":{"y":2},"event_type":"connection_request","username":"alice","user_id":"u"}"#;
        assert_eq!(
            decode(text),
            ClientEvent::ConnectionRequest {
                username: "alice".into()
            }
        );
    }

    // ---- InvalidFormat ----

    fn assert_invalid(text: &str) {
        assert_eq!(
            ClientEvent::decode(text),
            Err(InvalidFormat),
            "should be invalid: {text}"
        );
    }

    #[test]
    fn text_that_is_not_json_is_invalid() {
        assert_invalid("not json");
        assert_invalid("");
        assert_invalid(r#"{"event_type":"message","username":"a","message":"b""#);
        assert_invalid(r#"{"event_type":"connection_request","username":"a"} trailing"#);
    }

    #[test]
    fn json_that_is_not_an_object_is_invalid() {
        assert_invalid("[]");
        assert_invalid(r#"["connection_request","alice"]"#);
        assert_invalid(r#""x""#);
        assert_invalid("5");
        assert_invalid("null");
        assert_invalid("true");
    }

    #[test]
    fn object_without_event_type_is_invalid() {
        assert_invalid("{}");
        assert_invalid(r#"{"username":"alice"}"#);
    }

    #[test]
    fn event_type_that_is_not_a_string_is_invalid() {
        assert_invalid(r#"{"event_type":5}"#);
        assert_invalid(r#"{"event_type":null,"username":"a"}"#);
        assert_invalid(r#"{"event_type":["message"],"username":"a","message":"b"}"#);
    }

    #[test]
    fn unknown_event_type_is_invalid() {
        assert_invalid(r#"{"event_type":"nope"}"#);
        assert_invalid(r#"{"event_type":"Message","username":"a","message":"b"}"#);
        assert_invalid(r#"{"event_type":"","username":"a"}"#);
    }

    #[test]
    fn every_server_only_event_type_is_invalid_from_a_client() {
        for event_type in [
            "connection_response",
            "connection_reject",
            "system",
            "message_history",
            "users_online",
            "user_join",
            "user_leave",
            "all_rooms",
            "room_create_reject",
            "room_switch_response",
            "room_switch_reject",
        ] {
            // Give each one every field a client event could carry, so only
            // the event type can be at fault.
            assert_invalid(&format!(
                r#"{{"event_type":"{event_type}","username":"a","message":"b","room_name":"c","response":"d","severity":"info"}}"#
            ));
        }
    }

    #[test]
    fn missing_field_is_invalid() {
        assert_invalid(r#"{"event_type":"connection_request"}"#);
        assert_invalid(r#"{"event_type":"message","username":"a"}"#);
        assert_invalid(r#"{"event_type":"message","message":"b"}"#);
        assert_invalid(r#"{"event_type":"typing","username":"a"}"#);
        assert_invalid(r#"{"event_type":"room_switch_request"}"#);
        assert_invalid(r#"{"event_type":"room_chat_clear","username":"a"}"#);
        assert_invalid(r#"{"event_type":"room_chat_clear","room_name":"General"}"#);
    }

    #[test]
    fn wrongly_typed_field_is_invalid() {
        assert_invalid(r#"{"event_type":"typing","username":"a","is_typing":"yes"}"#);
        assert_invalid(r#"{"event_type":"typing","username":"a","is_typing":1}"#);
        assert_invalid(r#"{"event_type":"typing","username":"a","is_typing":null}"#);
        assert_invalid(r#"{"event_type":"connection_request","username":null}"#);
        assert_invalid(r#"{"event_type":"connection_request","username":42}"#);
        assert_invalid(r#"{"event_type":"message","username":"a","message":["b"]}"#);
        assert_invalid(r#"{"event_type":"room_switch_request","room_name":{"room_name":"x"}}"#);
    }

    #[test]
    fn room_create_without_a_room_name_object_is_invalid() {
        assert_invalid(r#"{"event_type":"room_create"}"#);
        assert_invalid(r#"{"event_type":"room_create","room_name":"Support"}"#);
        assert_invalid(r#"{"event_type":"room_create","room":{}}"#);
        assert_invalid(r#"{"event_type":"room_create","room":{"room_creator":"alice"}}"#);
        assert_invalid(r#"{"event_type":"room_create","room":{"room_name":7}}"#);
        assert_invalid(r#"{"event_type":"room_create","room":"Support"}"#);
        assert_invalid(r#"{"event_type":"room_create","room":["Support","alice",[]]}"#);
    }

    #[test]
    fn invalid_format_displays_the_text_sent_to_clients() {
        assert_eq!(InvalidFormat.to_string(), INVALID_FORMAT);
        assert_eq!(INVALID_FORMAT, "Invalid message format");
    }

    // ---- encoding server events (exact bytes) ----

    #[test]
    fn encodes_connection_response() {
        let user_id = Uuid::parse_str("b8c1d7e9-3a22-4c12-8221-ffe72e8e8b2c").expect("valid uuid");
        let event = ServerEvent::ConnectionResponse {
            username: "alice",
            user_id,
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"connection_response","username":"alice","user_id":"b8c1d7e9-3a22-4c12-8221-ffe72e8e8b2c"}"#
        );
    }

    #[test]
    fn encodes_connection_reject() {
        let event = ServerEvent::ConnectionReject {
            response: "Username is already taken",
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"connection_reject","response":"Username is already taken"}"#
        );
    }

    #[test]
    fn encodes_system_with_each_severity_in_lowercase() {
        for (severity, text) in [
            (Severity::Success, "success"),
            (Severity::Info, "info"),
            (Severity::Warning, "warning"),
            (Severity::Error, "error"),
        ] {
            let event = ServerEvent::System {
                severity,
                message: INVALID_FORMAT,
            };
            assert_eq!(
                event.encode(),
                format!(
                    r#"{{"event_type":"system","severity":"{text}","message":"Invalid message format"}}"#
                )
            );
        }
    }

    #[test]
    fn encodes_message_history_with_whole_second_utc_timestamps() {
        let messages = [
            HistoryEntry {
                username: "alice".into(),
                message: "Hi everyone!".into(),
                timestamp: at(0, 45, 12)
                    .with_nanosecond(999_999_999)
                    .expect("valid nanos"),
            },
            HistoryEntry {
                username: "bob".into(),
                message: "Hey Alice!".into(),
                timestamp: at(0, 46, 1),
            },
        ];
        let event = ServerEvent::MessageHistory {
            messages: &messages,
        };
        assert_eq!(
            event.encode(),
            concat!(
                r#"{"event_type":"message_history","messages":["#,
                r#"{"username":"alice","message":"Hi everyone!","timestamp":"2025-11-03T00:45:12Z"},"#,
                r#"{"username":"bob","message":"Hey Alice!","timestamp":"2025-11-03T00:46:01Z"}]}"#
            )
        );
    }

    #[test]
    fn encodes_empty_message_history() {
        let event = ServerEvent::MessageHistory { messages: &[] };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"message_history","messages":[]}"#
        );
    }

    #[test]
    fn encodes_message() {
        let event = ServerEvent::Message {
            username: "alice",
            message: "How's everyone doing today?",
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"message","username":"alice","message":"How's everyone doing today?"}"#
        );
    }

    #[test]
    fn encodes_message_escaping_json_and_keeping_non_ascii() {
        let event = ServerEvent::Message {
            username: "Åsa",
            message: "say \"hej\"\n</script> ä",
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"message","username":"Åsa","message":"say \"hej\"\n</script> ä"}"#
        );
    }

    #[test]
    fn encodes_typing() {
        let event = ServerEvent::Typing {
            username: "bob",
            is_typing: true,
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"typing","username":"bob","is_typing":true}"#
        );
    }

    #[test]
    fn encodes_users_online_with_whole_second_utc_timestamps() {
        let users = [
            UserStatus {
                username: "alice".into(),
                connected_at: at(0, 45, 12)
                    .with_nanosecond(500_000_000)
                    .expect("valid nanos"),
            },
            UserStatus {
                username: "bob".into(),
                connected_at: at(0, 46, 1),
            },
        ];
        let event = ServerEvent::UsersOnline { users: &users };
        assert_eq!(
            event.encode(),
            concat!(
                r#"{"event_type":"users_online","users":["#,
                r#"{"username":"alice","connected_at":"2025-11-03T00:45:12Z"},"#,
                r#"{"username":"bob","connected_at":"2025-11-03T00:46:01Z"}]}"#
            )
        );
    }

    #[test]
    fn encodes_user_join() {
        let event = ServerEvent::UserJoin {
            username: "charlie",
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"user_join","username":"charlie"}"#
        );
    }

    #[test]
    fn encodes_user_leave() {
        let event = ServerEvent::UserLeave { username: "bob" };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"user_leave","username":"bob"}"#
        );
    }

    #[test]
    fn encodes_all_rooms() {
        let rooms = [
            alice_and_bob(),
            RoomInfo {
                room_name: "Developers".into(),
                room_creator: "charlie".into(),
                connected_users: vec!["charlie".into()],
            },
        ];
        let event = ServerEvent::AllRooms { rooms: &rooms };
        assert_eq!(
            event.encode(),
            concat!(
                r#"{"event_type":"all_rooms","rooms":["#,
                r#"{"room_name":"General","room_creator":"alice","connected_users":["alice","bob"]},"#,
                r#"{"room_name":"Developers","room_creator":"charlie","connected_users":["charlie"]}]}"#
            )
        );
    }

    #[test]
    fn encodes_room_create() {
        let room = RoomInfo {
            room_name: "Support".into(),
            room_creator: "alice".into(),
            connected_users: vec![],
        };
        let event = ServerEvent::RoomCreate { room: &room };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"room_create","room":{"room_name":"Support","room_creator":"alice","connected_users":[]}}"#
        );
    }

    #[test]
    fn encodes_room_create_reject() {
        let event = ServerEvent::RoomCreateReject {
            response: "Room name already exists.",
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"room_create_reject","response":"Room name already exists."}"#
        );
    }

    #[test]
    fn encodes_room_chat_clear() {
        let event = ServerEvent::RoomChatClear {
            username: "moderator01",
            room_name: "General",
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"room_chat_clear","username":"moderator01","room_name":"General"}"#
        );
    }

    #[test]
    fn encodes_room_switch_response() {
        let event = ServerEvent::RoomSwitchResponse {
            room_name: "Developers",
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"room_switch_response","room_name":"Developers"}"#
        );
    }

    #[test]
    fn encodes_room_switch_reject() {
        let event = ServerEvent::RoomSwitchReject {
            response: "Room Nowhere not found",
        };
        assert_eq!(
            event.encode(),
            r#"{"event_type":"room_switch_reject","response":"Room Nowhere not found"}"#
        );
    }

    // ---- reading stored data back ----

    #[test]
    fn user_status_deserialises_from_the_seed() {
        let status: UserStatus = serde_json::from_str(
            r#"{"username": "alice", "connected_at": "2025-11-03T00:45:12Z"}"#,
        )
        .expect("seed user status");
        assert_eq!(
            status,
            UserStatus {
                username: "alice".into(),
                connected_at: at(0, 45, 12)
            }
        );
    }

    #[test]
    fn history_entry_deserialises_from_the_seed() {
        let entry: HistoryEntry = serde_json::from_str(
            r#"{"username": "bob", "message": "Hey Alice!", "timestamp": "2025-11-03T00:46:01Z"}"#,
        )
        .expect("seed history entry");
        assert_eq!(
            entry,
            HistoryEntry {
                username: "bob".into(),
                message: "Hey Alice!".into(),
                timestamp: at(0, 46, 1)
            }
        );
    }

    #[test]
    fn room_info_deserialises_from_the_seed() {
        let room: RoomInfo = serde_json::from_str(
            r#"{"room_name": "General", "room_creator": "alice", "connected_users": ["alice", "bob", "charlie"]}"#,
        )
        .expect("seed room info");
        assert_eq!(
            room,
            RoomInfo {
                room_name: "General".into(),
                room_creator: "alice".into(),
                connected_users: vec!["alice".into(), "bob".into(), "charlie".into()],
            }
        );
    }

    #[test]
    fn timestamps_with_an_offset_or_fraction_are_read_and_converted_to_utc() {
        let entry: HistoryEntry = serde_json::from_str(
            r#"{"username":"a","message":"m","timestamp":"2025-11-03T02:45:12.250+02:00"}"#,
        )
        .expect("offset timestamp");
        assert_eq!(
            entry.timestamp,
            at(0, 45, 12)
                .with_nanosecond(250_000_000)
                .expect("valid nanos")
        );
        let status: UserStatus =
            serde_json::from_str(r#"{"username":"a","connected_at":"2025-11-02T23:45:12-01:00"}"#)
                .expect("negative offset timestamp");
        assert_eq!(status.connected_at, at(0, 45, 12));
    }

    #[test]
    fn stored_data_reads_back_from_an_owned_json_value() {
        let value = serde_json::json!({
            "username": "alice",
            "message": "Hi \"everyone\"!",
            "timestamp": "2025-11-03T00:45:12Z"
        });
        let entry: HistoryEntry = serde_json::from_value(value).expect("entry from value");
        assert_eq!(entry.timestamp, at(0, 45, 12));
        assert_eq!(entry.message, "Hi \"everyone\"!");
    }

    #[test]
    fn timestamps_that_are_not_rfc_3339_are_refused() {
        for timestamp in [
            r#""2025-11-03 00:45:12""#,
            r#""2025-11-03T00:45:12""#,
            r#""yesterday""#,
            "1762130712",
        ] {
            let text = format!(r#"{{"username":"a","connected_at":{timestamp}}}"#);
            assert!(
                serde_json::from_str::<UserStatus>(&text).is_err(),
                "should refuse {timestamp}"
            );
        }
    }

    #[test]
    fn history_entry_round_trips_at_whole_second_precision() {
        let entry = HistoryEntry {
            username: "alice".into(),
            message: "hi".into(),
            timestamp: at(0, 45, 12)
                .with_nanosecond(123_456_789)
                .expect("valid nanos"),
        };
        let text = serde_json::to_string(&entry).expect("serialise entry");
        let back: HistoryEntry = serde_json::from_str(&text).expect("read entry back");
        assert_eq!(
            back,
            HistoryEntry {
                timestamp: at(0, 45, 12),
                ..entry
            }
        );
    }

    // ---- names ----

    #[test]
    fn check_name_accepts_plain_names() {
        assert_eq!(check_name("alice"), Ok("alice".into()));
        assert_eq!(check_name("7"), Ok("7".into()));
    }

    #[test]
    fn check_name_trims_surrounding_whitespace() {
        assert_eq!(check_name("  bob  "), Ok("bob".into()));
        assert_eq!(check_name("\tbob\n"), Ok("bob".into()));
    }

    #[test]
    fn check_name_accepts_swedish_letters_digits_underscore_dash_and_inner_space() {
        assert_eq!(check_name("Åsa_ö-1 x"), Ok("Åsa_ö-1 x".into()));
        assert_eq!(check_name("ÅÄÖåäö"), Ok("ÅÄÖåäö".into()));
    }

    #[test]
    fn check_name_accepts_exactly_twenty_characters() {
        let name = "a".repeat(MAX_NAME_CHARS);
        assert_eq!(check_name(&name), Ok(name.clone()));
        assert_eq!(check_name(&format!("  {name}  ")), Ok(name));
    }

    #[test]
    fn check_name_counts_characters_not_bytes() {
        let name = "ä".repeat(20);
        assert_eq!(name.len(), 40);
        assert_eq!(check_name(&name), Ok(name.clone()));
    }

    #[test]
    fn check_name_rejects_twenty_one_characters_as_too_long() {
        assert_eq!(check_name(&"a".repeat(21)), Err(NameError::TooLong));
        assert_eq!(check_name(&"ö".repeat(21)), Err(NameError::TooLong));
    }

    #[test]
    fn check_name_reports_too_long_before_invalid_characters() {
        assert_eq!(check_name(&";".repeat(21)), Err(NameError::TooLong));
        assert_eq!(
            check_name("<script>alert(1)</script>"),
            Err(NameError::TooLong)
        );
    }

    #[test]
    fn check_name_rejects_empty_and_blank_names() {
        assert_eq!(check_name(""), Err(NameError::InvalidCharacters));
        assert_eq!(check_name("   "), Err(NameError::InvalidCharacters));
        assert_eq!(check_name(" \t\n "), Err(NameError::InvalidCharacters));
    }

    #[test]
    fn check_name_rejects_forbidden_characters() {
        for name in [
            "a;b", "a.b", "a/b", "é", "<script>", "a\tb", "a\nb", "a\u{a0}b", "a\u{308}", "ü",
            "a@b", "a'b",
        ] {
            assert_eq!(
                check_name(name),
                Err(NameError::InvalidCharacters),
                "should reject {name:?}"
            );
        }
    }

    #[test]
    fn name_error_display_texts_are_exact() {
        assert_eq!(NameError::TooLong.to_string(), "Username is too long");
        assert_eq!(
            NameError::InvalidCharacters.to_string(),
            "Username contains invalid characters"
        );
    }

    #[test]
    fn global_room_name_passes_the_name_rules() {
        assert_eq!(check_name(GLOBAL_ROOM), Ok(GLOBAL_ROOM.to_owned()));
    }
}
