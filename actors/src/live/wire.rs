//! JSON frames of the live presence + friends protocol (`CherryTree`, `GET /live`).
//!
//! Clients send `{type, message?, id?}`; the server answers
//! `{id?, type, message?, data}`. Existing clients were written against the
//! seed document, so the text on the wire is fixed exactly: `id` is echoed
//! whenever the request had one, `message` is left out when there is none,
//! `data` is always there (`""` when it carries nothing), and keys come in
//! the order `id`, `type`, `count` (only for `get`), `message`, `data`.
//!
//! This module only turns text into [`Request`]s and [`Reply`]s into text; it
//! knows nothing about connections, users or the store, so every frame shape
//! can be tested byte for byte on its own.

use crate::metrics::ProtocolErrorKind;
use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What the client asks for.
    pub kind: RequestKind,
    /// The argument (game, username or user id, depending on `kind`); whether
    /// it is required is the handler's business, not the wire's.
    pub message: Option<String>,
    /// The client's correlation id, echoed in the reply so it can await it.
    pub id: Option<String>,
}

/// The request types of the protocol, one per wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `ping`: liveness check, answered with `pong`.
    Ping,
    /// `now-playing`: the client launched the game in `message`; friends get a popup.
    NowPlaying,
    /// `get`: how many distinct users are online.
    Get,
    /// `send-friend-request`: `message` is the target's username.
    SendFriendRequest,
    /// `get-friend-requests`: the caller's incoming pending requests.
    GetFriendRequests,
    /// `accept-friend-request`: `message` is the requester's user id.
    AcceptFriendRequest,
    /// `reject-friend-request`: `message` is the requester's user id.
    RejectFriendRequest,
    /// `remove-friend`: `message` is the friend's user id.
    RemoveFriend,
    /// `get-friends`: the caller's friends with presence.
    GetFriends,
}

impl RequestKind {
    /// Every kind, so tables (tests, docs, metrics) cannot miss one.
    pub const ALL: [RequestKind; 9] = [
        RequestKind::Ping,
        RequestKind::NowPlaying,
        RequestKind::Get,
        RequestKind::SendFriendRequest,
        RequestKind::GetFriendRequests,
        RequestKind::AcceptFriendRequest,
        RequestKind::RejectFriendRequest,
        RequestKind::RemoveFriend,
        RequestKind::GetFriends,
    ];

    /// The name of this kind on the wire, e.g. for logs and metrics labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Ping => "ping",
            RequestKind::NowPlaying => "now-playing",
            RequestKind::Get => "get",
            RequestKind::SendFriendRequest => "send-friend-request",
            RequestKind::GetFriendRequests => "get-friend-requests",
            RequestKind::AcceptFriendRequest => "accept-friend-request",
            RequestKind::RejectFriendRequest => "reject-friend-request",
            RequestKind::RemoveFriend => "remove-friend",
            RequestKind::GetFriends => "get-friends",
        }
    }

    /// The kind with wire name `name` (case-sensitive, as the seed spells them).
    fn from_wire(name: &str) -> Option<RequestKind> {
        RequestKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// Why a frame is not a request.
///
/// The Display text is the `message` of the `{type:"error"}` reply, and the
/// connection stays open. `id` is kept whenever it could be read so the
/// client awaiting that id still gets its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BadRequest {
    /// The request's `id`, if the frame was an object with a string `id`.
    pub id: Option<String>,
    /// What is wrong, in words meant for the client's developer.
    pub reason: String,
    /// What kind of mistake it is, for `switchboard_protocol_errors_total`.
    pub kind: ProtocolErrorKind,
}

impl BadRequest {
    fn new(id: Option<String>, reason: impl Into<String>) -> Self {
        Self {
            id,
            reason: reason.into(),
            kind: ProtocolErrorKind::Malformed,
        }
    }

    /// The error frame answering this bad request, with its `id` if known.
    #[must_use]
    pub fn encode(&self) -> String {
        Reply::Error(&self.reason).encode(self.id.as_deref())
    }
}

impl Request {
    /// Reads one text frame.
    ///
    /// Unknown extra keys are ignored, so newer clients keep working. A
    /// `message` or `id` that is `null` counts as absent, because JavaScript
    /// clients commonly send `null` for an unset optional field.
    ///
    /// # Errors
    ///
    /// A [`BadRequest`] whose reason is the protocol's error text when the
    /// frame is not a JSON object, has no string `type`, names an unknown
    /// type, or has a `message` or `id` that is not a string.
    pub fn decode(text: &str) -> Result<Request, BadRequest> {
        let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(text) else {
            return Err(BadRequest::new(None, "invalid JSON"));
        };
        let id = take_optional_string(&mut fields, "id")
            .map_err(|()| BadRequest::new(None, "`id` must be a string"))?;
        let kind = match fields.get("type") {
            Some(Value::String(name)) => match RequestKind::from_wire(name) {
                Some(kind) => kind,
                None => {
                    return Err(BadRequest {
                        kind: ProtocolErrorKind::UnknownType,
                        ..BadRequest::new(id, format!("unknown type `{name}`"))
                    })
                }
            },
            _ => return Err(BadRequest::new(id, "missing type")),
        };
        let Ok(message) = take_optional_string(&mut fields, "message") else {
            return Err(BadRequest::new(id, "`message` must be a string"));
        };
        Ok(Request { kind, message, id })
    }
}

/// Removes `key` from `fields`: `Ok(None)` if absent or null, `Err` if not a string.
fn take_optional_string(fields: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ()> {
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(()),
    }
}

/// One incoming friend request, as listed by `retrieveFriendRequests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FriendRequest {
    /// The requester's user id; what `accept-friend-request` takes.
    pub user_id: String,
    /// The requester's username, for display.
    pub username: String,
    /// When the request was sent; on the wire as RFC 3339 UTC with `Z` and
    /// whole seconds, like every Switchboard timestamp.
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub sent_at: DateTime<Utc>,
}

/// One friend, as listed by `retrieveFriends`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Friend {
    /// The friend's user id; what `remove-friend` takes.
    pub user_id: String,
    /// The friend's username, for display.
    pub username: String,
    /// Whether the friend has at least one live connection.
    pub online: bool,
    /// The game the friend last announced with `now-playing`; `null` when not playing.
    pub playing: Option<String>,
}

/// A popup the client shows; each names the user it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Popup<'a> {
    /// A friend launched a game.
    NowPlaying {
        /// The friend's username.
        name: &'a str,
        /// The game, as the friend's client named it.
        game: &'a str,
    },
    /// A friend went from offline to online.
    Online {
        /// The friend's username.
        name: &'a str,
    },
    /// Someone sent the recipient a friend request.
    FriendRequest {
        /// The requester's username.
        name: &'a str,
    },
    /// Someone accepted the recipient's friend request.
    FriendRequestAccepted {
        /// The accepter's username.
        name: &'a str,
    },
}

impl Popup<'_> {
    /// The popup's heading, fixed per kind.
    #[must_use]
    pub fn title(&self) -> &'static str {
        match self {
            Popup::NowPlaying { .. } => "Now playing",
            Popup::Online { .. } => "Online",
            Popup::FriendRequest { .. } => "Friend request",
            Popup::FriendRequestAccepted { .. } => "Friend request accepted",
        }
    }

    /// The popup's sentence, naming the user (and game).
    #[must_use]
    pub fn description(&self) -> String {
        match self {
            Popup::NowPlaying { name, game } => format!("{name} is now playing {game}."),
            Popup::Online { name } => format!("{name} is now online."),
            Popup::FriendRequest { name } => format!("{name} sent you a friend request."),
            Popup::FriendRequestAccepted { name } => {
                format!("{name} accepted your friend request.")
            }
        }
    }

    /// The `{"title","description"}` object as JSON text, which the protocol
    /// carries as a string inside the frame's `message`.
    fn message_text(&self) -> String {
        #[derive(Serialize)]
        struct PopupText<'t> {
            title: &'t str,
            description: &'t str,
        }
        let description = self.description();
        serde_json::to_string(&PopupText {
            title: self.title(),
            description: &description,
        })
        .expect("an object of two strings always serialises")
    }
}

/// A frame the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Answer to `ping`: `{"type":"pong","data":""}`.
    Pong,
    /// Answer to `get`: `{"type":"get","count":N,"data":"N"}`; `count` for
    /// clients that read numbers, `data` for those that follow the common shape.
    Count(usize),
    /// A request that changed state went through: `{"type":"success","data":""}`.
    Success,
    /// A request failed: `{"type":"error","message":reason,"data":""}`.
    Error(&'a str),
    /// Answer to `get-friend-requests`: `{"type":"retrieveFriendRequests","data":[..]}`.
    FriendRequests(&'a [FriendRequest]),
    /// Answer to `get-friends`: `{"type":"retrieveFriends","data":[..]}`.
    Friends(&'a [Friend]),
    /// A popup pushed to a client: `{"type":"message","message":"{..}","data":""}`.
    Popup(Popup<'a>),
}

/// The shape shared by every outgoing frame; field order is wire order.
#[derive(Serialize)]
struct Frame<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Cow<'a, str>>,
    data: Data<'a>,
}

/// What a frame's `data` holds.
#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Text(String),
    FriendRequests(&'a [FriendRequest]),
    Friends(&'a [Friend]),
}

impl Reply<'_> {
    /// The exact JSON text of this frame; `id` is the request's id, echoed first.
    ///
    /// # Panics
    ///
    /// Never in practice: a frame holds only strings, numbers, booleans and
    /// arrays of plain structs, which always serialise.
    #[must_use]
    pub fn encode(&self, id: Option<&str>) -> String {
        let nothing = || Data::Text(String::new());
        let (kind, count, message, data) = match *self {
            Reply::Pong => ("pong", None, None, nothing()),
            Reply::Count(n) => ("get", Some(n), None, Data::Text(n.to_string())),
            Reply::Success => ("success", None, None, nothing()),
            Reply::Error(reason) => ("error", None, Some(Cow::Borrowed(reason)), nothing()),
            Reply::FriendRequests(list) => (
                "retrieveFriendRequests",
                None,
                None,
                Data::FriendRequests(list),
            ),
            Reply::Friends(list) => ("retrieveFriends", None, None, Data::Friends(list)),
            Reply::Popup(popup) => (
                "message",
                None,
                Some(Cow::Owned(popup.message_text())),
                nothing(),
            ),
        };
        let frame = Frame {
            id,
            kind,
            count,
            message,
            data,
        };
        serde_json::to_string(&frame)
            .expect("a frame holds only strings, numbers, booleans and arrays of structs of them")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn request(kind: RequestKind, message: Option<&str>, id: Option<&str>) -> Request {
        Request {
            kind,
            message: message.map(str::to_owned),
            id: id.map(str::to_owned),
        }
    }

    fn bad(id: Option<&str>, reason: &str) -> BadRequest {
        BadRequest::new(id.map(str::to_owned), reason)
    }

    #[test]
    fn wire_names_are_the_seeds() {
        let names: Vec<&str> = RequestKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "ping",
                "now-playing",
                "get",
                "send-friend-request",
                "get-friend-requests",
                "accept-friend-request",
                "reject-friend-request",
                "remove-friend",
                "get-friends",
            ]
        );
    }

    #[test]
    fn decodes_every_type_bare() {
        for kind in RequestKind::ALL {
            let text = format!(r#"{{"type":"{}"}}"#, kind.as_str());
            assert_eq!(Request::decode(&text), Ok(request(kind, None, None)));
        }
    }

    #[test]
    fn decodes_every_type_with_message() {
        for kind in RequestKind::ALL {
            let text = format!(r#"{{"type":"{}","message":"m"}}"#, kind.as_str());
            assert_eq!(Request::decode(&text), Ok(request(kind, Some("m"), None)));
        }
    }

    #[test]
    fn decodes_every_type_with_id() {
        for kind in RequestKind::ALL {
            let text = format!(r#"{{"id":"42","type":"{}"}}"#, kind.as_str());
            assert_eq!(Request::decode(&text), Ok(request(kind, None, Some("42"))));
        }
    }

    #[test]
    fn decodes_every_type_with_message_and_id() {
        for kind in RequestKind::ALL {
            let text = format!(
                r#"{{"message":"Half-Life \"2\"","type":"{}","id":"a-1"}}"#,
                kind.as_str()
            );
            assert_eq!(
                Request::decode(&text),
                Ok(request(kind, Some("Half-Life \"2\""), Some("a-1")))
            );
        }
    }

    #[test]
    fn ignores_unknown_keys_and_treats_null_as_absent() {
        assert_eq!(
            Request::decode(r#"{"type":"ping","message":null,"id":null,"extra":[1,2]}"#),
            Ok(request(RequestKind::Ping, None, None))
        );
    }

    #[test]
    fn non_json_or_non_object_is_invalid_json() {
        for text in ["", "not json", "{", "[]", r#""ping""#, "42", "null", "true"] {
            assert_eq!(
                Request::decode(text),
                Err(bad(None, "invalid JSON")),
                "{text:?}"
            );
        }
    }

    #[test]
    fn missing_or_non_string_type_is_missing_type() {
        assert_eq!(Request::decode("{}"), Err(bad(None, "missing type")));
        assert_eq!(
            Request::decode(r#"{"type":5,"id":"3"}"#),
            Err(bad(Some("3"), "missing type"))
        );
        assert_eq!(
            Request::decode(r#"{"type":null,"message":"x"}"#),
            Err(bad(None, "missing type"))
        );
    }

    #[test]
    fn unknown_type_names_it_and_keeps_id() {
        let unknown = |id, reason| BadRequest {
            kind: ProtocolErrorKind::UnknownType,
            ..bad(id, reason)
        };
        assert_eq!(
            Request::decode(r#"{"type":"nope","id":"7"}"#),
            Err(unknown(Some("7"), "unknown type `nope`"))
        );
        assert_eq!(
            Request::decode(r#"{"type":"PING"}"#),
            Err(unknown(None, "unknown type `PING`"))
        );
    }

    #[test]
    fn non_string_message_is_refused_and_keeps_id() {
        assert_eq!(
            Request::decode(r#"{"type":"now-playing","message":{"game":"x"},"id":"9"}"#),
            Err(bad(Some("9"), "`message` must be a string"))
        );
        assert_eq!(
            Request::decode(r#"{"type":"ping","message":1}"#),
            Err(bad(None, "`message` must be a string"))
        );
    }

    #[test]
    fn non_string_id_is_refused_without_id() {
        assert_eq!(
            Request::decode(r#"{"type":"ping","id":7}"#),
            Err(bad(None, "`id` must be a string"))
        );
    }

    #[test]
    fn bad_request_displays_its_reason_and_encodes_an_error_frame() {
        let err = Request::decode(r#"{"type":"nope","id":"7"}"#).expect_err("unknown type");
        assert_eq!(err.to_string(), "unknown type `nope`");
        assert_eq!(
            err.encode(),
            r#"{"id":"7","type":"error","message":"unknown type `nope`","data":""}"#
        );
    }

    #[test]
    fn encodes_pong() {
        assert_eq!(Reply::Pong.encode(None), r#"{"type":"pong","data":""}"#);
        assert_eq!(
            Reply::Pong.encode(Some("7")),
            r#"{"id":"7","type":"pong","data":""}"#
        );
    }

    #[test]
    fn encodes_count() {
        assert_eq!(
            Reply::Count(3).encode(None),
            r#"{"type":"get","count":3,"data":"3"}"#
        );
        assert_eq!(
            Reply::Count(0).encode(Some("c")),
            r#"{"id":"c","type":"get","count":0,"data":"0"}"#
        );
    }

    #[test]
    fn encodes_success() {
        assert_eq!(
            Reply::Success.encode(None),
            r#"{"type":"success","data":""}"#
        );
        assert_eq!(
            Reply::Success.encode(Some("s")),
            r#"{"id":"s","type":"success","data":""}"#
        );
    }

    #[test]
    fn encodes_error() {
        assert_eq!(
            Reply::Error("unknown user").encode(None),
            r#"{"type":"error","message":"unknown user","data":""}"#
        );
        assert_eq!(
            Reply::Error("unknown user").encode(Some("1")),
            r#"{"id":"1","type":"error","message":"unknown user","data":""}"#
        );
    }

    #[test]
    fn encodes_friend_requests_with_whole_second_utc_times() {
        let sent_at = Utc
            .with_ymd_and_hms(2025, 11, 3, 0, 45, 12)
            .single()
            .expect("valid date")
            + chrono::Duration::milliseconds(789);
        let list = [FriendRequest {
            user_id: "u3".to_owned(),
            username: "carol".to_owned(),
            sent_at,
        }];
        assert_eq!(
            Reply::FriendRequests(&list).encode(None),
            r#"{"type":"retrieveFriendRequests","data":[{"user_id":"u3","username":"carol","sent_at":"2025-11-03T00:45:12Z"}]}"#
        );
        assert_eq!(
            Reply::FriendRequests(&[]).encode(Some("r")),
            r#"{"id":"r","type":"retrieveFriendRequests","data":[]}"#
        );
    }

    #[test]
    fn encodes_friends() {
        let list = [
            Friend {
                user_id: "u2".to_owned(),
                username: "bob".to_owned(),
                online: true,
                playing: None,
            },
            Friend {
                user_id: "u4".to_owned(),
                username: "dave".to_owned(),
                online: false,
                playing: Some("Tetris".to_owned()),
            },
        ];
        assert_eq!(
            Reply::Friends(&list[..1]).encode(None),
            r#"{"type":"retrieveFriends","data":[{"user_id":"u2","username":"bob","online":true,"playing":null}]}"#
        );
        assert_eq!(
            Reply::Friends(&list).encode(Some("f")),
            r#"{"id":"f","type":"retrieveFriends","data":[{"user_id":"u2","username":"bob","online":true,"playing":null},{"user_id":"u4","username":"dave","online":false,"playing":"Tetris"}]}"#
        );
    }

    #[test]
    fn encodes_every_popup() {
        let cases = [
            (
                Popup::NowPlaying {
                    name: "bob",
                    game: "Tetris",
                },
                r#"{"type":"message","message":"{\"title\":\"Now playing\",\"description\":\"bob is now playing Tetris.\"}","data":""}"#,
            ),
            (
                Popup::Online { name: "bob" },
                r#"{"type":"message","message":"{\"title\":\"Online\",\"description\":\"bob is now online.\"}","data":""}"#,
            ),
            (
                Popup::FriendRequest { name: "bob" },
                r#"{"type":"message","message":"{\"title\":\"Friend request\",\"description\":\"bob sent you a friend request.\"}","data":""}"#,
            ),
            (
                Popup::FriendRequestAccepted { name: "bob" },
                r#"{"type":"message","message":"{\"title\":\"Friend request accepted\",\"description\":\"bob accepted your friend request.\"}","data":""}"#,
            ),
        ];
        for (popup, expected) in cases {
            assert_eq!(Reply::Popup(popup).encode(None), expected);
        }
        assert_eq!(
            Reply::Popup(Popup::Online { name: "bob" }).encode(Some("p")),
            r#"{"id":"p","type":"message","message":"{\"title\":\"Online\",\"description\":\"bob is now online.\"}","data":""}"#
        );
    }

    #[test]
    fn popup_with_quotes_round_trips_through_json() {
        let popup = Popup::NowPlaying {
            name: r#"o"brien\"#,
            game: r#"Half-Life "2""#,
        };
        let frame: Value =
            serde_json::from_str(&Reply::Popup(popup).encode(Some("q"))).expect("frame is JSON");
        assert_eq!(frame["id"], "q");
        assert_eq!(frame["type"], "message");
        assert_eq!(frame["data"], "");
        let inner: Value = serde_json::from_str(frame["message"].as_str().expect("string message"))
            .expect("message is JSON text");
        assert_eq!(inner["title"], "Now playing");
        assert_eq!(
            inner["description"],
            r#"o"brien\ is now playing Half-Life "2"."#
        );
    }
}
