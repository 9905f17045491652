//! Wire format of the "permissioned rooms" WebSocket protocol (seed 004,
//! PROTOCOLS.md section 5).
//!
//! Every frame is a JSON object tagged by a lowercase `"type"`. This module is
//! deliberately pure: it only turns text frames into [`Command`]s and
//! [`Event`]s into text frames, so the connection handler can stay focused on
//! sessions, permissions and the store, and the exact bytes on the wire can be
//! tested without a socket.
//!
//! Decoding is done field by field rather than through a derived
//! `Deserialize`, because the protocol requires specific error texts
//! (`invalid JSON`, `missing type`, ``unknown type `t` ``,
//! ``invalid `t` command: ...``) that a derived, internally tagged enum cannot
//! produce, and because every error should name the offending field.
//!
//! The session `key` is decoded as optional: a missing key is not a malformed
//! frame but an authorisation failure, which the caller reports as
//! `invalid session key` after comparing [`Command::key`] with the
//! connection's key.

use crate::metrics::ProtocolErrorKind;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// A client -> server command, decoded from one text frame.
///
/// Owned data, because a command outlives the frame buffer it came from (it is
/// handed to the room logic after the socket read returns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Client liveness probe; answered with a `pong` carrying the same `time`.
    Ping {
        /// Client timestamp to echo back.
        time: i64,
    },
    /// Answer to a server `ping`; `time` must equal the pinged value or the
    /// client is eventually disconnected.
    Pong {
        /// Server timestamp being echoed.
        time: i64,
    },
    /// Create a room; the creator becomes its admin and a member.
    Create {
        /// Session key of this connection (checked by the caller).
        key: Option<String>,
        /// Display name of the room.
        name: String,
        /// Whether only invited users and admins may enter (`false` if absent).
        closed: bool,
    },
    /// Join a room to send and receive its messages.
    Enter {
        /// Session key of this connection (checked by the caller).
        key: Option<String>,
        /// Room to enter.
        room_id: Uuid,
    },
    /// Leave a room.
    Exit {
        /// Session key of this connection (checked by the caller).
        key: Option<String>,
        /// Room to leave.
        room_id: Uuid,
    },
    /// Send a message to every member of a room.
    Message {
        /// Session key of this connection (checked by the caller).
        key: Option<String>,
        /// Message text; never stored by the server.
        content: String,
        /// Destination room.
        room_id: Uuid,
    },
    /// Mark a message as read; the seed defines this command without a key.
    Read {
        /// Id of the message within its room.
        message_id: u64,
        /// Room the message belongs to.
        room_id: Uuid,
    },
    /// Invite a user into a room (admins only when the room is closed).
    Invite {
        /// Session key of this connection (checked by the caller).
        key: Option<String>,
        /// User to invite.
        user_id: String,
        /// Room to invite to.
        room_id: Uuid,
    },
    /// Remove a user from a room (admins only), optionally banning them.
    Kick {
        /// Session key of this connection (checked by the caller).
        key: Option<String>,
        /// User to kick.
        user_id: String,
        /// Room to kick from.
        room_id: Uuid,
        /// Reason shown to the kicked user, if any (`null` or absent = none).
        message: Option<String>,
        /// Whether the kick is a ban that survives reconnects (`false` if absent).
        permanent: bool,
    },
}

impl Command {
    /// Decodes one text frame into a command.
    ///
    /// `key` is optional here so that a missing key can be refused with the
    /// protocol's `invalid session key` rather than a parse error; `closed`
    /// and `permanent` default to `false` and kick's `message` to `None` when
    /// absent or `null`. Unknown extra fields are ignored, so clients may send
    /// more than the protocol requires.
    ///
    /// # Errors
    ///
    /// Returns a [`BadCommand`] whose `Display` is the text to send back in an
    /// `error` event; the connection is expected to stay open.
    pub fn decode(text: &str) -> Result<Command, BadCommand> {
        let value: Value =
            serde_json::from_str(text).map_err(|_| BadCommand::malformed("invalid JSON"))?;
        let Value::Object(map) = value else {
            return Err(BadCommand::malformed("invalid JSON"));
        };
        let Some(Value::String(kind)) = map.get("type") else {
            return Err(BadCommand::malformed("missing type"));
        };
        let f = Fields { map: &map, kind };
        let command = match kind.as_str() {
            "ping" => Command::Ping {
                time: f.required("time")?,
            },
            "pong" => Command::Pong {
                time: f.required("time")?,
            },
            "create" => Command::Create {
                key: f.optional("key")?,
                name: f.required("name")?,
                closed: f.flag("closed")?,
            },
            "enter" => Command::Enter {
                key: f.optional("key")?,
                room_id: f.required("room_id")?,
            },
            "exit" => Command::Exit {
                key: f.optional("key")?,
                room_id: f.required("room_id")?,
            },
            "message" => Command::Message {
                key: f.optional("key")?,
                content: f.required("content")?,
                room_id: f.required("room_id")?,
            },
            "read" => Command::Read {
                message_id: f.required("message_id")?,
                room_id: f.required("room_id")?,
            },
            "invite" => Command::Invite {
                key: f.optional("key")?,
                user_id: f.required("user_id")?,
                room_id: f.required("room_id")?,
            },
            "kick" => Command::Kick {
                key: f.optional("key")?,
                user_id: f.required("user_id")?,
                room_id: f.required("room_id")?,
                message: f.optional("message")?,
                permanent: f.flag("permanent")?,
            },
            other => {
                return Err(BadCommand {
                    reason: format!("unknown type `{other}`"),
                    kind: ProtocolErrorKind::UnknownType,
                })
            }
        };
        Ok(command)
    }

    /// The session key carried by a keyed command, so the caller can check it
    /// in one place instead of per variant.
    ///
    /// Returns `None` for commands the protocol defines without a key (`ping`,
    /// `pong`, `read`), `Some(None)` for a keyed command whose key is missing,
    /// and `Some(Some(key))` otherwise.
    pub fn key(&self) -> Option<Option<&str>> {
        match self {
            Command::Ping { .. } | Command::Pong { .. } | Command::Read { .. } => None,
            Command::Create { key, .. }
            | Command::Enter { key, .. }
            | Command::Exit { key, .. }
            | Command::Message { key, .. }
            | Command::Invite { key, .. }
            | Command::Kick { key, .. } => Some(key.as_deref()),
        }
    }
}

/// Why a text frame is not a valid command.
///
/// The `Display` text is exactly what is sent back to the client as
/// `{"type":"error","message":...}`, so the handler needs no mapping of its
/// own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BadCommand {
    /// The text sent back.
    pub reason: String,
    /// What kind of mistake it is, for `switchboard_protocol_errors_total`.
    pub kind: ProtocolErrorKind,
}

impl BadCommand {
    fn malformed(reason: impl Into<String>) -> Self {
        BadCommand {
            reason: reason.into(),
            kind: ProtocolErrorKind::Malformed,
        }
    }
}

/// Typed access to the fields of one command object, producing
/// protocol-shaped errors that name the command type and the field.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    kind: &'a str,
}

impl Fields<'_> {
    /// A field that must be present and of type `T`.
    fn required<T: DeserializeOwned>(&self, name: &str) -> Result<T, BadCommand> {
        match self.map.get(name) {
            Some(value) => self.parse(name, value),
            None => Err(self.bad(format_args!("missing field `{name}`"))),
        }
    }

    /// A field that may be absent or `null`; if present it must be of type `T`.
    fn optional<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, BadCommand> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => self.parse(name, value).map(Some),
        }
    }

    /// A boolean that defaults to `false` when absent or `null`.
    fn flag(&self, name: &str) -> Result<bool, BadCommand> {
        Ok(self.optional(name)?.unwrap_or(false))
    }

    fn parse<T: DeserializeOwned>(&self, name: &str, value: &Value) -> Result<T, BadCommand> {
        T::deserialize(value).map_err(|e| self.bad(format_args!("field `{name}`: {e}")))
    }

    fn bad(&self, detail: std::fmt::Arguments<'_>) -> BadCommand {
        BadCommand::malformed(format!("invalid `{}` command: {detail}", self.kind))
    }
}

/// A server -> client event.
///
/// Borrows its strings so that fanning a message out to every member of a
/// room encodes from the shared original without cloning it per recipient.
/// The derived serialization writes `type` first and then the fields in
/// declaration order, which is the byte layout the protocol documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event<'a> {
    /// First frame of every connection: the key later commands must carry.
    Session {
        /// Random per-connection session key.
        key: &'a str,
        /// Authenticated user (JWT `sub`).
        user_id: &'a str,
    },
    /// Server liveness probe; the client must `pong` the same `time`.
    Ping {
        /// Server timestamp to echo back.
        time: i64,
    },
    /// Answer to a client `ping`, echoing its `time`.
    Pong {
        /// Client timestamp being echoed.
        time: i64,
    },
    /// Acknowledges `create` to the creator.
    Created {
        /// Id of the new room.
        room_id: Uuid,
        /// Room name as given.
        name: &'a str,
        /// Whether the room is closed.
        closed: bool,
    },
    /// A message delivered to every member of the room, sender included.
    Message {
        /// UNIX time in milliseconds when the server accepted the message.
        time: i64,
        /// Message text.
        content: &'a str,
        /// Author.
        user_id: &'a str,
        /// Strictly increasing id within the room.
        message_id: u64,
        /// Room the message was sent to.
        room_id: Uuid,
    },
    /// Read receipt broadcast to the room.
    Read {
        /// Message that was read.
        message_id: u64,
        /// User who read it.
        user_id: &'a str,
        /// Room of the message.
        room_id: Uuid,
    },
    /// Tells the invitee it may `enter` the room.
    Invite {
        /// Inviter.
        user_id: &'a str,
        /// Room invited to.
        room_id: Uuid,
    },
    /// Tells a user it was removed from a room.
    Kick {
        /// Room kicked from.
        room_id: Uuid,
        /// Reason, encoded as `null` when none was given.
        message: Option<&'a str>,
        /// Whether the user is banned from the room.
        permanent: bool,
    },
    /// A user entered the room (also the acknowledgement to that user).
    Enter {
        /// User who entered.
        user_id: &'a str,
        /// Room entered.
        room_id: Uuid,
    },
    /// A user left the room.
    Exit {
        /// User who left.
        user_id: &'a str,
        /// Room left.
        room_id: Uuid,
    },
    /// A refused command; the connection stays open.
    Error {
        /// Human-readable reason, e.g. `invalid session key`.
        message: &'a str,
    },
}

impl Event<'_> {
    /// Encodes the event as the exact JSON text of one frame.
    pub fn encode(&self) -> String {
        serde_json::to_string(self)
            .expect("events hold only strings, integers, bools and UUIDs, which always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "6f1c2a3e-9b7d-4c5e-8a1f-0123456789ab";

    fn room() -> Uuid {
        Uuid::parse_str(ROOM).expect("test UUID is valid")
    }

    fn ok(text: &str) -> Command {
        Command::decode(text).unwrap_or_else(|e| panic!("{text} should decode: {e}"))
    }

    fn err(text: &str) -> String {
        Command::decode(text)
            .expect_err("frame should be rejected")
            .to_string()
    }

    #[test]
    fn decodes_ping_and_pong() {
        assert_eq!(
            ok(r#"{"type":"ping","time":1700000000000}"#),
            Command::Ping {
                time: 1_700_000_000_000
            }
        );
        assert_eq!(
            ok(r#"{"type":"pong","time":-5}"#),
            Command::Pong { time: -5 }
        );
    }

    #[test]
    fn decodes_create_with_and_without_optional_fields() {
        assert_eq!(
            ok(r#"{"type":"create","key":"k1","name":"general","closed":true}"#),
            Command::Create {
                key: Some("k1".into()),
                name: "general".into(),
                closed: true
            }
        );
        assert_eq!(
            ok(r#"{"type":"create","name":"general"}"#),
            Command::Create {
                key: None,
                name: "general".into(),
                closed: false
            }
        );
    }

    #[test]
    fn decodes_enter_and_exit() {
        assert_eq!(
            ok(&format!(
                r#"{{"type":"enter","key":"k","room_id":"{ROOM}"}}"#
            )),
            Command::Enter {
                key: Some("k".into()),
                room_id: room()
            }
        );
        assert_eq!(
            ok(&format!(r#"{{"type":"exit","room_id":"{ROOM}"}}"#)),
            Command::Exit {
                key: None,
                room_id: room()
            }
        );
    }

    #[test]
    fn decodes_message() {
        assert_eq!(
            ok(&format!(
                r#"{{"type":"message","key":"k","content":"hello","room_id":"{ROOM}"}}"#
            )),
            Command::Message {
                key: Some("k".into()),
                content: "hello".into(),
                room_id: room()
            }
        );
    }

    #[test]
    fn decodes_read_without_key() {
        assert_eq!(
            ok(&format!(
                r#"{{"type":"read","message_id":42,"room_id":"{ROOM}"}}"#
            )),
            Command::Read {
                message_id: 42,
                room_id: room()
            }
        );
    }

    #[test]
    fn decodes_invite() {
        assert_eq!(
            ok(&format!(
                r#"{{"type":"invite","key":"k","user_id":"u2","room_id":"{ROOM}"}}"#
            )),
            Command::Invite {
                key: Some("k".into()),
                user_id: "u2".into(),
                room_id: room()
            }
        );
    }

    #[test]
    fn decodes_kick_with_all_fields() {
        assert_eq!(
            ok(&format!(
                r#"{{"type":"kick","key":"k","user_id":"u2","room_id":"{ROOM}","message":"spam","permanent":true}}"#
            )),
            Command::Kick {
                key: Some("k".into()),
                user_id: "u2".into(),
                room_id: room(),
                message: Some("spam".into()),
                permanent: true
            }
        );
    }

    #[test]
    fn decodes_kick_with_null_or_absent_optionals() {
        let expected = Command::Kick {
            key: Some("k".into()),
            user_id: "u2".into(),
            room_id: room(),
            message: None,
            permanent: false,
        };
        assert_eq!(
            ok(&format!(
                r#"{{"type":"kick","key":"k","user_id":"u2","room_id":"{ROOM}","message":null}}"#
            )),
            expected
        );
        assert_eq!(
            ok(&format!(
                r#"{{"type":"kick","key":"k","user_id":"u2","room_id":"{ROOM}"}}"#
            )),
            expected
        );
    }

    #[test]
    fn ignores_unknown_fields_and_accepts_uppercase_uuid() {
        assert_eq!(
            ok(&format!(
                r#"{{"type":"enter","key":"k","room_id":"{}","extra":[1]}}"#,
                ROOM.to_uppercase()
            )),
            Command::Enter {
                key: Some("k".into()),
                room_id: room()
            }
        );
    }

    #[test]
    fn key_reports_keyed_and_unkeyed_commands() {
        let r = room();
        let k = || Some("k".to_owned());
        assert_eq!(Command::Ping { time: 1 }.key(), None);
        assert_eq!(Command::Pong { time: 1 }.key(), None);
        assert_eq!(
            Command::Read {
                message_id: 1,
                room_id: r
            }
            .key(),
            None
        );
        let keyed = [
            Command::Create {
                key: k(),
                name: "n".into(),
                closed: false,
            },
            Command::Enter {
                key: k(),
                room_id: r,
            },
            Command::Exit {
                key: k(),
                room_id: r,
            },
            Command::Message {
                key: k(),
                content: "c".into(),
                room_id: r,
            },
            Command::Invite {
                key: k(),
                user_id: "u".into(),
                room_id: r,
            },
            Command::Kick {
                key: k(),
                user_id: "u".into(),
                room_id: r,
                message: None,
                permanent: false,
            },
        ];
        for command in keyed {
            assert_eq!(command.key(), Some(Some("k")), "{command:?}");
        }
        assert_eq!(
            Command::Enter {
                key: None,
                room_id: r
            }
            .key(),
            Some(None)
        );
    }

    #[test]
    fn rejects_text_that_is_not_json() {
        assert_eq!(err("not json"), "invalid JSON");
        assert_eq!(err(""), "invalid JSON");
    }

    #[test]
    fn rejects_json_that_is_not_an_object() {
        assert_eq!(err("[]"), "invalid JSON");
        assert_eq!(err(r#""ping""#), "invalid JSON");
    }

    #[test]
    fn rejects_missing_or_non_string_type() {
        assert_eq!(err("{}"), "missing type");
        assert_eq!(err(r#"{"type":7}"#), "missing type");
        assert_eq!(err(r#"{"type":null}"#), "missing type");
    }

    #[test]
    fn rejects_unknown_and_server_only_types() {
        assert_eq!(err(r#"{"type":"created"}"#), "unknown type `created`");
        assert_eq!(err(r#"{"type":"session"}"#), "unknown type `session`");
        assert_eq!(err(r#"{"type":"error"}"#), "unknown type `error`");
        assert_eq!(err(r#"{"type":"Ping","time":1}"#), "unknown type `Ping`");
    }

    #[test]
    fn rejects_missing_field_naming_it() {
        assert_eq!(
            err(r#"{"type":"enter","key":"k"}"#),
            "invalid `enter` command: missing field `room_id`"
        );
        assert_eq!(
            err(r#"{"type":"ping"}"#),
            "invalid `ping` command: missing field `time`"
        );
    }

    #[test]
    fn rejects_room_id_that_is_not_a_uuid() {
        let message = err(r#"{"type":"enter","key":"k","room_id":"nope"}"#);
        assert!(
            message.starts_with("invalid `enter` command: field `room_id`: "),
            "{message}"
        );
    }

    #[test]
    fn rejects_wrongly_typed_fields() {
        let message = err(r#"{"type":"ping","time":"x"}"#);
        assert!(
            message.starts_with("invalid `ping` command: field `time`: "),
            "{message}"
        );
        let message = err(&format!(
            r#"{{"type":"read","message_id":-1,"room_id":"{ROOM}"}}"#
        ));
        assert!(
            message.starts_with("invalid `read` command: field `message_id`: "),
            "{message}"
        );
        let message = err(r#"{"type":"create","key":5,"name":"n"}"#);
        assert!(
            message.starts_with("invalid `create` command: field `key`: "),
            "{message}"
        );
        let message = err(&format!(
            r#"{{"type":"kick","key":"k","user_id":"u","room_id":"{ROOM}","permanent":"yes"}}"#
        ));
        assert!(
            message.starts_with("invalid `kick` command: field `permanent`: "),
            "{message}"
        );
    }

    #[test]
    fn encodes_session_ping_pong() {
        assert_eq!(
            Event::Session {
                key: "abc",
                user_id: "u1"
            }
            .encode(),
            r#"{"type":"session","key":"abc","user_id":"u1"}"#
        );
        assert_eq!(
            Event::Ping { time: 7 }.encode(),
            r#"{"type":"ping","time":7}"#
        );
        assert_eq!(
            Event::Pong { time: 8 }.encode(),
            r#"{"type":"pong","time":8}"#
        );
    }

    #[test]
    fn encodes_created() {
        assert_eq!(
            Event::Created {
                room_id: room(),
                name: "general",
                closed: true
            }
            .encode(),
            format!(r#"{{"type":"created","room_id":"{ROOM}","name":"general","closed":true}}"#)
        );
    }

    #[test]
    fn encodes_message() {
        assert_eq!(
            Event::Message {
                time: 1_700_000_000_000,
                content: "hi",
                user_id: "u1",
                message_id: 3,
                room_id: room()
            }
            .encode(),
            format!(
                r#"{{"type":"message","time":1700000000000,"content":"hi","user_id":"u1","message_id":3,"room_id":"{ROOM}"}}"#
            )
        );
    }

    #[test]
    fn encodes_read_invite_enter_exit() {
        let r = room();
        assert_eq!(
            Event::Read {
                message_id: 9,
                user_id: "u1",
                room_id: r
            }
            .encode(),
            format!(r#"{{"type":"read","message_id":9,"user_id":"u1","room_id":"{ROOM}"}}"#)
        );
        assert_eq!(
            Event::Invite {
                user_id: "u1",
                room_id: r
            }
            .encode(),
            format!(r#"{{"type":"invite","user_id":"u1","room_id":"{ROOM}"}}"#)
        );
        assert_eq!(
            Event::Enter {
                user_id: "u1",
                room_id: r
            }
            .encode(),
            format!(r#"{{"type":"enter","user_id":"u1","room_id":"{ROOM}"}}"#)
        );
        assert_eq!(
            Event::Exit {
                user_id: "u1",
                room_id: r
            }
            .encode(),
            format!(r#"{{"type":"exit","user_id":"u1","room_id":"{ROOM}"}}"#)
        );
    }

    #[test]
    fn encodes_kick_with_and_without_message() {
        assert_eq!(
            Event::Kick {
                room_id: room(),
                message: None,
                permanent: true
            }
            .encode(),
            format!(r#"{{"type":"kick","room_id":"{ROOM}","message":null,"permanent":true}}"#)
        );
        assert_eq!(
            Event::Kick {
                room_id: room(),
                message: Some("bye"),
                permanent: false
            }
            .encode(),
            format!(r#"{{"type":"kick","room_id":"{ROOM}","message":"bye","permanent":false}}"#)
        );
    }

    #[test]
    fn encodes_error() {
        assert_eq!(
            Event::Error {
                message: "invalid session key"
            }
            .encode(),
            r#"{"type":"error","message":"invalid session key"}"#
        );
    }

    #[test]
    fn encodes_room_id_as_lowercase_hyphenated() {
        let upper = Uuid::parse_str(&ROOM.to_uppercase()).expect("test UUID is valid");
        let text = Event::Invite {
            user_id: "u",
            room_id: upper,
        }
        .encode();
        assert!(text.contains(ROOM), "{text}");
    }

    #[test]
    fn content_with_quotes_and_unicode_round_trips() {
        let content = "say \"hi\" \\ 👋 é\n\u{0}";
        let frame = serde_json::json!({
            "type": "message",
            "key": "k",
            "content": content,
            "room_id": ROOM,
        })
        .to_string();
        let Command::Message {
            content: decoded, ..
        } = ok(&frame)
        else {
            panic!("expected a message command");
        };
        assert_eq!(decoded, content);

        let encoded = Event::Message {
            time: 1,
            content: &decoded,
            user_id: "u1",
            message_id: 1,
            room_id: room(),
        }
        .encode();
        let value: Value = serde_json::from_str(&encoded).expect("encoded event is JSON");
        assert_eq!(value["content"], content);
    }

    #[test]
    fn new_random_room_ids_round_trip() {
        let id = Uuid::new_v4();
        let frame = format!(r#"{{"type":"exit","key":"k","room_id":"{id}"}}"#);
        assert_eq!(
            ok(&frame),
            Command::Exit {
                key: Some("k".into()),
                room_id: id
            }
        );
    }
}
