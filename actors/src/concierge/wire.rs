//! Wire format of the concierge gateway (the `ert-concierge` WebSocket protocol).
//!
//! Every text frame carries one JSON object tagged by a `"type"` field whose value is
//! in SCREAMING_SNAKE_CASE, e.g. `{"type":"SELF_SUBSCRIBE","service":"weather"}`.
//! Clients send [`PayloadIn`]s, the server answers with [`PayloadOut`]s and relays
//! `MESSAGE`s with [`encode_message`]. The format must stay byte-compatible with the
//! reference implementation so its existing clients keep working: fields appear in
//! declaration order, an absent optional value is written as `null` (never omitted),
//! and uuids are hyphenated lowercase strings.
//!
//! Replies are sequenced: [`PayloadOut::encode`] with `Some(seq)` puts `"seq"` first,
//! followed by the payload's own fields, as in `{"seq":3,"type":"OK"}`. Broadcasts
//! caused by other clients carry no `seq` at all.
//!
//! The `data` of a `MESSAGE` is opaque to the server. Decoding borrows it as raw JSON
//! text from the frame, and relaying writes that text back verbatim, so the bytes a
//! client sent are the bytes its peers receive (whitespace, number spelling and
//! escapes included) and the server never pays for re-serialising it.
//!
//! Decoding distinguishes two failures (see [`DecodeError`]): a frame that is not a
//! decodable payload (`ERROR_PROTOCOL`, or close code [`close::FATAL_DECODE`] before
//! identification) and a well-formed payload of a type the server does not accept
//! (`ERROR_UNSUPPORTED`). Unknown extra fields are ignored, including an `origin` that
//! a client may put on its `MESSAGE`: the server stamps the real origin itself.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Protocol version the server announces in `HELLO`.
pub const PROTOCOL_VERSION: &str = "0.2.0";

/// WebSocket subprotocol clients request and the server echoes.
pub const SUBPROTOCOL: &str = "ert-concierge";

/// The concierge's close codes, kept in the broker's
/// [close-code table](crate::close::concierge).
pub use crate::close::concierge as close;

/// Public description of a connected client, as carried by fetch results and broadcasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Unique name chosen at identification.
    pub name: String,
    /// Free-form display name; `null` on the wire when unset.
    pub nickname: Option<String>,
    /// Identifier assigned by the server, also the client's file-server key.
    pub uuid: Uuid,
    /// Tags given at identification.
    pub tags: Vec<String>,
}

/// Public description of a service, as carried by fetch results and broadcasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Unique service name.
    pub name: String,
    /// Free-form display name; `null` on the wire when unset.
    pub nickname: Option<String>,
    /// Uuid of the client that created (and alone may delete) the service.
    pub owner_uuid: Uuid,
    /// Uuids of the subscribed clients.
    pub subscribers: Vec<Uuid>,
}

/// MESSAGE target, tagged by "type": `{"type":"NAME","name"}`, `{"type":"UUID","uuid"}`,
/// `{"type":"SERVICE","service"}`, `{"type":"SERVICE_CLIENT_UUID","service","uuid"}`,
/// `{"type":"ALL"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Target {
    /// The client identified with this name.
    Name {
        /// The recipient's name.
        name: String,
    },
    /// The client with this uuid.
    Uuid {
        /// The recipient's uuid.
        uuid: Uuid,
    },
    /// A service: from its owner to every subscriber, from a subscriber to the owner.
    Service {
        /// The service's name.
        service: String,
    },
    /// One subscriber of a service, reachable this way by the service's owner only.
    ServiceClientUuid {
        /// The service's name.
        service: String,
        /// The subscriber's uuid.
        uuid: Uuid,
    },
    /// Every connected client, the sender included.
    All,
}

/// IDENTIFY's fields. `nickname` and `secret` optional (missing or null), `tags` defaults
/// to `[]` when missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    /// Requested client name, checked with [`valid_client_name`].
    pub name: String,
    /// Free-form display name.
    pub nickname: Option<String>,
    /// Client's protocol version, expected to be semver.
    pub version: String,
    /// Shared secret, required when the gateway has one configured.
    pub secret: Option<String>,
    /// Tags describing the client.
    pub tags: Vec<String>,
}

/// Payloads a client sends. `data` of MESSAGE borrows the raw JSON text of the frame
/// verbatim (never re-serialised); a client-sent `origin` is ignored.
#[derive(Debug)]
pub enum PayloadIn<'a> {
    /// First payload of a connection, naming the client.
    Identify(Identify),
    /// Data to relay to `target`.
    Message {
        /// Where the message goes.
        target: Target,
        /// The client's `data` value, exactly as it appears in the frame.
        data: &'a RawValue,
    },
    /// Subscribe the sender to a service.
    SelfSubscribe {
        /// The service's name.
        service: String,
    },
    /// Unsubscribe the sender from a service.
    SelfUnsubscribe {
        /// The service's name.
        service: String,
    },
    /// Fetch the sender's own info and subscriptions.
    SelfFetch,
    /// Reset the sender's sequence counter so that this payload gets `seq`.
    SelfSetSeq {
        /// The new sequence number.
        seq: u64,
    },
    /// Create a service owned by the sender.
    ServiceCreate {
        /// The new service's name.
        service: String,
        /// The new service's display name.
        nickname: Option<String>,
    },
    /// Delete a service the sender owns.
    ServiceDelete {
        /// The service's name.
        service: String,
    },
    /// Fetch one service's info.
    ServiceFetch {
        /// The service's name.
        service: String,
    },
    /// Fetch every service's info.
    ServiceFetchAll,
    /// Fetch one client's info and subscriptions.
    ClientFetch {
        /// The client's uuid.
        uuid: Uuid,
    },
    /// Fetch every client's info.
    ClientFetchAll,
}

/// Why a text frame is not a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, not an object with a string "type", or a known type whose fields do not
    /// decode (missing/wrong-typed fields, bad uuid, missing `data`...). Answered with
    /// ERROR_PROTOCOL {desc}; before identification, close 4002. The String is a
    /// human-readable description.
    #[error("{0}")]
    Malformed(String),
    /// A well-formed object whose "type" is not one of the inbound types (this includes
    /// outbound-only types such as "HELLO" or "OK"). Answered with ERROR_UNSUPPORTED.
    #[error("unsupported payload type `{0}`")]
    Unsupported(String),
}

/// Wire names of the inbound payload types, shared by decoding and [`PayloadIn::kind`]
/// so the two cannot drift apart.
mod kind {
    pub const IDENTIFY: &str = "IDENTIFY";
    pub const MESSAGE: &str = "MESSAGE";
    pub const SELF_SUBSCRIBE: &str = "SELF_SUBSCRIBE";
    pub const SELF_UNSUBSCRIBE: &str = "SELF_UNSUBSCRIBE";
    pub const SELF_FETCH: &str = "SELF_FETCH";
    pub const SELF_SET_SEQ: &str = "SELF_SET_SEQ";
    pub const SERVICE_CREATE: &str = "SERVICE_CREATE";
    pub const SERVICE_DELETE: &str = "SERVICE_DELETE";
    pub const SERVICE_FETCH: &str = "SERVICE_FETCH";
    pub const SERVICE_FETCH_ALL: &str = "SERVICE_FETCH_ALL";
    pub const CLIENT_FETCH: &str = "CLIENT_FETCH";
    pub const CLIENT_FETCH_ALL: &str = "CLIENT_FETCH_ALL";
}

impl<'a> PayloadIn<'a> {
    /// Decodes one text frame.
    ///
    /// The frame is read twice: once for its `"type"`, then as the fields of that type.
    /// (serde's internally tagged enums buffer their content and so cannot lend out the
    /// borrowed raw `data` of a `MESSAGE`.)
    pub fn decode(text: &'a str) -> Result<PayloadIn<'a>, DecodeError> {
        let TypeTag(tag) = serde_json::from_str(text)
            .map_err(|err| DecodeError::Malformed(format!("malformed payload: {err}")))?;
        let payload = match tag.as_ref() {
            kind::IDENTIFY => {
                let fields: IdentifyFields = fields_of(text, kind::IDENTIFY)?;
                PayloadIn::Identify(Identify {
                    name: fields.name,
                    nickname: fields.nickname,
                    version: fields.version,
                    secret: fields.secret,
                    tags: fields.tags,
                })
            }
            kind::MESSAGE => {
                let fields: MessageFields<'a> = fields_of(text, kind::MESSAGE)?;
                PayloadIn::Message {
                    target: fields.target,
                    data: fields.data,
                }
            }
            kind::SELF_SUBSCRIBE => PayloadIn::SelfSubscribe {
                service: fields_of::<ServiceField>(text, kind::SELF_SUBSCRIBE)?.service,
            },
            kind::SELF_UNSUBSCRIBE => PayloadIn::SelfUnsubscribe {
                service: fields_of::<ServiceField>(text, kind::SELF_UNSUBSCRIBE)?.service,
            },
            kind::SELF_FETCH => PayloadIn::SelfFetch,
            kind::SELF_SET_SEQ => PayloadIn::SelfSetSeq {
                seq: fields_of::<SeqField>(text, kind::SELF_SET_SEQ)?.seq,
            },
            kind::SERVICE_CREATE => {
                let fields: ServiceCreateFields = fields_of(text, kind::SERVICE_CREATE)?;
                PayloadIn::ServiceCreate {
                    service: fields.service,
                    nickname: fields.nickname,
                }
            }
            kind::SERVICE_DELETE => PayloadIn::ServiceDelete {
                service: fields_of::<ServiceField>(text, kind::SERVICE_DELETE)?.service,
            },
            kind::SERVICE_FETCH => PayloadIn::ServiceFetch {
                service: fields_of::<ServiceField>(text, kind::SERVICE_FETCH)?.service,
            },
            kind::SERVICE_FETCH_ALL => PayloadIn::ServiceFetchAll,
            kind::CLIENT_FETCH => PayloadIn::ClientFetch {
                uuid: fields_of::<UuidField>(text, kind::CLIENT_FETCH)?.uuid,
            },
            kind::CLIENT_FETCH_ALL => PayloadIn::ClientFetchAll,
            _ => return Err(DecodeError::Unsupported(tag.into_owned())),
        };
        Ok(payload)
    }

    /// The wire "type" of this payload, e.g. "SELF_FETCH" (for logs/metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            PayloadIn::Identify(_) => kind::IDENTIFY,
            PayloadIn::Message { .. } => kind::MESSAGE,
            PayloadIn::SelfSubscribe { .. } => kind::SELF_SUBSCRIBE,
            PayloadIn::SelfUnsubscribe { .. } => kind::SELF_UNSUBSCRIBE,
            PayloadIn::SelfFetch => kind::SELF_FETCH,
            PayloadIn::SelfSetSeq { .. } => kind::SELF_SET_SEQ,
            PayloadIn::ServiceCreate { .. } => kind::SERVICE_CREATE,
            PayloadIn::ServiceDelete { .. } => kind::SERVICE_DELETE,
            PayloadIn::ServiceFetch { .. } => kind::SERVICE_FETCH,
            PayloadIn::ServiceFetchAll => kind::SERVICE_FETCH_ALL,
            PayloadIn::ClientFetch { .. } => kind::CLIENT_FETCH,
            PayloadIn::ClientFetchAll => kind::CLIENT_FETCH_ALL,
        }
    }
}

/// Decodes the fields of a payload whose type is already known to be `type_name`. Fields
/// the type does not have (`"type"` itself, a client-sent `origin`...) are ignored.
fn fields_of<'a, T: Deserialize<'a>>(
    text: &'a str,
    type_name: &'static str,
) -> Result<T, DecodeError> {
    serde_json::from_str(text)
        .map_err(|err| DecodeError::Malformed(format!("malformed {type_name} payload: {err}")))
}

/// The `"type"` of a payload. Deserialises only from a JSON object (unlike a derived
/// struct, which would also accept an array) and borrows the value unless it contains
/// escapes.
struct TypeTag<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for TypeTag<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TagVisitor;

        impl<'de> Visitor<'de> for TagVisitor {
            type Value = TypeTag<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object with a string `type` field")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut tag = None;
                while let Some(CowStr(key)) = map.next_key()? {
                    if key == "type" {
                        if tag.is_some() {
                            return Err(de::Error::duplicate_field("type"));
                        }
                        let CowStr(value) = map.next_value()?;
                        tag = Some(value);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                tag.map(TypeTag)
                    .ok_or_else(|| de::Error::missing_field("type"))
            }
        }

        deserializer.deserialize_map(TagVisitor)
    }
}

/// A JSON string, borrowed from the input when it holds no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CowStrVisitor;

        impl<'de> Visitor<'de> for CowStrVisitor {
            type Value = CowStr<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(CowStrVisitor)
    }
}

// The fields of each inbound type that carries any, as they appear on the wire.

#[derive(Deserialize)]
struct IdentifyFields {
    name: String,
    #[serde(default)]
    nickname: Option<String>,
    version: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct MessageFields<'a> {
    target: Target,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct ServiceField {
    service: String,
}

#[derive(Deserialize)]
struct SeqField {
    seq: u64,
}

#[derive(Deserialize)]
struct ServiceCreateFields {
    service: String,
    #[serde(default)]
    nickname: Option<String>,
}

#[derive(Deserialize)]
struct UuidField {
    uuid: Uuid,
}

/// Payloads the server sends (borrowing what they carry, so encoding copies nothing it
/// does not write).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayloadOut<'a> {
    /// Generic success.
    Ok,
    /// Generic refusal: the client is not allowed to do that.
    Bad,
    /// Successful identification: the client's uuid and the server's protocol version.
    Hello {
        /// The uuid assigned to the client.
        uuid: Uuid,
        /// The server's protocol version, normally [`PROTOCOL_VERSION`].
        version: &'a str,
        /// The client's file-server key when `concierge.fs_key = "secret"`
        /// (absent otherwise: the uuid is the key).
        #[serde(skip_serializing_if = "Option::is_none")]
        fs_key: Option<&'a str>,
    },
    /// Answer to `SELF_SUBSCRIBE`; `successful` is false if already subscribed.
    SelfSubscribeResult {
        /// Whether a new subscription was made.
        successful: bool,
        /// The service, after the change.
        service: &'a ServiceInfo,
    },
    /// Answer to `SELF_UNSUBSCRIBE`; `successful` is false if not subscribed.
    SelfUnsubscribeResult {
        /// Whether a subscription was removed.
        successful: bool,
        /// The service, after the change.
        service: &'a ServiceInfo,
    },
    /// Answer to `SELF_FETCH`.
    SelfFetchResult {
        /// The requesting client.
        client: &'a ClientInfo,
        /// The services it is subscribed to.
        subscriptions: &'a [ServiceInfo],
    },
    /// Answer to `SERVICE_CREATE` (and broadcast when `successful`); `successful` is
    /// false if the name is taken.
    ServiceCreateResult {
        /// Whether the service was created.
        successful: bool,
        /// The new service, or the existing one of that name.
        service: &'a ServiceInfo,
    },
    /// Answer to `SERVICE_DELETE`, also broadcast: the service no longer exists.
    ServiceDeleteResult {
        /// The deleted service.
        service: &'a ServiceInfo,
    },
    /// Answer to `SERVICE_FETCH`.
    ServiceFetchResult {
        /// The requested service.
        service: &'a ServiceInfo,
    },
    /// Answer to `SERVICE_FETCH_ALL`.
    ServiceFetchAllResult {
        /// Every service.
        services: &'a [ServiceInfo],
    },
    /// Answer to `CLIENT_FETCH`.
    ClientFetchResult {
        /// The requested client.
        client: &'a ClientInfo,
        /// The services it is subscribed to.
        subscriptions: &'a [ServiceInfo],
    },
    /// Answer to `CLIENT_FETCH_ALL`.
    ClientFetchAllResult {
        /// Every client.
        clients: &'a [ClientInfo],
    },
    /// Broadcast: a client identified.
    ClientJoined {
        /// The new client.
        client: &'a ClientInfo,
    },
    /// Broadcast: a client disconnected.
    ClientLeft {
        /// The departed client.
        client: &'a ClientInfo,
    },
    /// To a service's subscribers: a client subscribed.
    ServiceClientSubscribed {
        /// The new subscriber.
        client: &'a ClientInfo,
        /// The service, after the change.
        service: &'a ServiceInfo,
    },
    /// To a service's subscribers: a client unsubscribed.
    ServiceClientUnsubscribed {
        /// The former subscriber.
        client: &'a ClientInfo,
        /// The service, after the change.
        service: &'a ServiceInfo,
    },
    /// The server failed internally while handling the payload.
    ErrorInternal {
        /// What went wrong.
        desc: &'a str,
    },
    /// The payload's type is not accepted (see [`DecodeError::Unsupported`]).
    ErrorUnsupported,
    /// The payload could not be decoded (see [`DecodeError::Malformed`]).
    ErrorProtocol {
        /// Why decoding failed.
        desc: &'a str,
    },
    /// No client has this name.
    InvalidName {
        /// The unknown name.
        name: &'a str,
    },
    /// No client has this uuid.
    InvalidUuid {
        /// The unknown uuid.
        uuid: Uuid,
    },
    /// No service has this name.
    InvalidService {
        /// The unknown service name.
        service: &'a str,
    },
}

/// Why `serde_json::to_string` cannot fail on this module's output types: they hold only
/// strings, booleans, integers, uuids, sequences, raw JSON and structs, never maps with
/// non-string keys or values whose `Serialize` can fail.
const INFALLIBLE: &str = "wire payloads always serialise to JSON";

/// A reply: `seq` first, then the payload's own fields.
#[derive(Serialize)]
struct Sequenced<'p, 'a> {
    seq: u64,
    #[serde(flatten)]
    payload: &'p PayloadOut<'a>,
}

impl PayloadOut<'_> {
    /// The JSON text; with `Some(seq)` the frame is `{"seq":N,"type":...}` (seq first),
    /// with None there is no seq field.
    pub fn encode(&self, seq: Option<u64>) -> String {
        match seq {
            Some(seq) => serde_json::to_string(&Sequenced { seq, payload: self }),
            None => serde_json::to_string(self),
        }
        .expect(INFALLIBLE)
    }
}

/// Outbound `MESSAGE`, as written by [`encode_message`].
#[derive(Serialize)]
struct MessageOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    origin: Origin<'a>,
    target: &'a Target,
    data: &'a RawValue,
}

/// The sender of a relayed message: its client info plus the service it went through.
#[derive(Serialize)]
struct Origin<'a> {
    name: &'a str,
    nickname: Option<&'a str>,
    uuid: Uuid,
    tags: &'a [String],
    service: Option<OriginService<'a>>,
}

/// Service info without subscribers (see [`encode_message`]).
#[derive(Serialize)]
struct OriginService<'a> {
    name: &'a str,
    nickname: Option<&'a str>,
    owner_uuid: Uuid,
    subscribers: [Uuid; 0],
}

/// A relayed MESSAGE, encoded once by the server:
/// `{"type":"MESSAGE","origin":{"name":..,"nickname":..,"uuid":..,"tags":[..],"service":null
/// or {"name":..,"nickname":..,"owner_uuid":..,"subscribers":[]}},"target":{...},"data":<the
/// client's raw data bytes verbatim>}`.
///
/// The origin's service ALWAYS has an empty subscribers list, whatever
/// `service.subscribers` holds (the full list would make a broadcast O(N²) bytes).
pub fn encode_message(
    origin: &ClientInfo,
    service: Option<&ServiceInfo>,
    target: &Target,
    data: &RawValue,
) -> String {
    let message = MessageOut {
        kind: kind::MESSAGE,
        origin: Origin {
            name: &origin.name,
            nickname: origin.nickname.as_deref(),
            uuid: origin.uuid,
            tags: &origin.tags,
            service: service.map(|service| OriginService {
                name: &service.name,
                nickname: service.nickname.as_deref(),
                owner_uuid: service.owner_uuid,
                subscribers: [],
            }),
        },
        target,
        data,
    };
    serde_json::to_string(&message).expect(INFALLIBLE)
}

/// Client names: 1..=max_len ASCII letters, digits or '_' (close 4008 otherwise). Also
/// used as the client's file-server folder name, so it must never allow '.', '/', or
/// anything else path-significant.
pub fn valid_client_name(name: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE_UUID: Uuid = Uuid::from_u128(0x0d5f3a2e_8b41_4c6e_9f27_3c1a5b7d9e01);
    const BOB_UUID: Uuid = Uuid::from_u128(0x7a9c1e3b_52d4_4f80_a6b1_e2c4d6f8a0b2);

    const ALICE: &str = r#"{"name":"alice","nickname":"Alice","uuid":"0d5f3a2e-8b41-4c6e-9f27-3c1a5b7d9e01","tags":["sensor","lab"]}"#;
    const BOB: &str =
        r#"{"name":"bob","nickname":null,"uuid":"7a9c1e3b-52d4-4f80-a6b1-e2c4d6f8a0b2","tags":[]}"#;
    const WEATHER: &str = r#"{"name":"weather","nickname":"Weather feed","owner_uuid":"0d5f3a2e-8b41-4c6e-9f27-3c1a5b7d9e01","subscribers":["7a9c1e3b-52d4-4f80-a6b1-e2c4d6f8a0b2"]}"#;
    const CHAT: &str = r#"{"name":"chat","nickname":null,"owner_uuid":"7a9c1e3b-52d4-4f80-a6b1-e2c4d6f8a0b2","subscribers":[]}"#;

    fn alice() -> ClientInfo {
        ClientInfo {
            name: "alice".into(),
            nickname: Some("Alice".into()),
            uuid: ALICE_UUID,
            tags: vec!["sensor".into(), "lab".into()],
        }
    }

    fn bob() -> ClientInfo {
        ClientInfo {
            name: "bob".into(),
            nickname: None,
            uuid: BOB_UUID,
            tags: vec![],
        }
    }

    /// Owned by alice, bob subscribed.
    fn weather() -> ServiceInfo {
        ServiceInfo {
            name: "weather".into(),
            nickname: Some("Weather feed".into()),
            owner_uuid: ALICE_UUID,
            subscribers: vec![BOB_UUID],
        }
    }

    /// Owned by bob, nobody subscribed.
    fn chat() -> ServiceInfo {
        ServiceInfo {
            name: "chat".into(),
            nickname: None,
            owner_uuid: BOB_UUID,
            subscribers: vec![],
        }
    }

    fn decode(text: &str) -> PayloadIn<'_> {
        PayloadIn::decode(text).unwrap_or_else(|err| panic!("{text} failed to decode: {err}"))
    }

    fn assert_malformed(text: &str) {
        match PayloadIn::decode(text) {
            Err(DecodeError::Malformed(_)) => {}
            other => panic!("{text} should be malformed, got {other:?}"),
        }
    }

    /// Asserts the exact unsequenced frame, and that the sequenced one is the same
    /// object with `"seq"` inserted first.
    fn assert_wire(payload: &PayloadOut<'_>, expected: &str) {
        assert_eq!(payload.encode(None), expected);
        let fields = expected.strip_prefix('{').expect("a payload is an object");
        assert_eq!(payload.encode(Some(42)), format!(r#"{{"seq":42,{fields}"#));
    }

    // Inbound payloads.

    #[test]
    fn identify_with_every_field_decodes() {
        let text = r#"{"type":"IDENTIFY","name":"alice","nickname":"Alice","version":"0.2.0","secret":"hunter2","tags":["sensor","lab"]}"#;
        match decode(text) {
            PayloadIn::Identify(identify) => assert_eq!(
                identify,
                Identify {
                    name: "alice".into(),
                    nickname: Some("Alice".into()),
                    version: "0.2.0".into(),
                    secret: Some("hunter2".into()),
                    tags: vec!["sensor".into(), "lab".into()],
                }
            ),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn identify_without_nickname_secret_or_tags_defaults_them() {
        let text = r#"{"type":"IDENTIFY","name":"bob","version":"0.2.1"}"#;
        match decode(text) {
            PayloadIn::Identify(identify) => assert_eq!(
                identify,
                Identify {
                    name: "bob".into(),
                    nickname: None,
                    version: "0.2.1".into(),
                    secret: None,
                    tags: vec![],
                }
            ),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn identify_accepts_null_nickname_and_secret() {
        let text = r#"{"type":"IDENTIFY","name":"bob","nickname":null,"version":"0.2.0","secret":null,"tags":["x"]}"#;
        match decode(text) {
            PayloadIn::Identify(identify) => {
                assert_eq!(identify.nickname, None);
                assert_eq!(identify.secret, None);
                assert_eq!(identify.tags, vec!["x".to_string()]);
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn identify_requires_name_and_version() {
        assert_malformed(r#"{"type":"IDENTIFY","version":"0.2.0"}"#);
        assert_malformed(r#"{"type":"IDENTIFY","name":"bob"}"#);
        assert_malformed(r#"{"type":"IDENTIFY","name":"bob","version":"0.2.0","tags":"x"}"#);
    }

    #[test]
    fn self_subscribe_decodes_its_service() {
        match decode(r#"{"type":"SELF_SUBSCRIBE","service":"weather"}"#) {
            PayloadIn::SelfSubscribe { service } => assert_eq!(service, "weather"),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn self_unsubscribe_decodes_its_service() {
        match decode(r#"{"type":"SELF_UNSUBSCRIBE","service":"weather"}"#) {
            PayloadIn::SelfUnsubscribe { service } => assert_eq!(service, "weather"),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn self_fetch_decodes() {
        assert!(matches!(
            decode(r#"{"type":"SELF_FETCH"}"#),
            PayloadIn::SelfFetch
        ));
    }

    #[test]
    fn self_set_seq_decodes_any_u64() {
        match decode(r#"{"type":"SELF_SET_SEQ","seq":7}"#) {
            PayloadIn::SelfSetSeq { seq } => assert_eq!(seq, 7),
            other => panic!("decoded as {other:?}"),
        }
        match decode(r#"{"type":"SELF_SET_SEQ","seq":18446744073709551615}"#) {
            PayloadIn::SelfSetSeq { seq } => assert_eq!(seq, u64::MAX),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn self_set_seq_rejects_anything_but_a_non_negative_integer() {
        assert_malformed(r#"{"type":"SELF_SET_SEQ","seq":-1}"#);
        assert_malformed(r#"{"type":"SELF_SET_SEQ","seq":1.5}"#);
        assert_malformed(r#"{"type":"SELF_SET_SEQ","seq":"3"}"#);
        assert_malformed(r#"{"type":"SELF_SET_SEQ","seq":18446744073709551616}"#);
        assert_malformed(r#"{"type":"SELF_SET_SEQ"}"#);
    }

    #[test]
    fn service_create_decodes_with_and_without_nickname() {
        match decode(r#"{"type":"SERVICE_CREATE","service":"weather","nickname":"Weather feed"}"#) {
            PayloadIn::ServiceCreate { service, nickname } => {
                assert_eq!(service, "weather");
                assert_eq!(nickname.as_deref(), Some("Weather feed"));
            }
            other => panic!("decoded as {other:?}"),
        }
        for text in [
            r#"{"type":"SERVICE_CREATE","service":"chat"}"#,
            r#"{"type":"SERVICE_CREATE","service":"chat","nickname":null}"#,
        ] {
            match decode(text) {
                PayloadIn::ServiceCreate { service, nickname } => {
                    assert_eq!(service, "chat");
                    assert_eq!(nickname, None);
                }
                other => panic!("decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn service_delete_decodes_its_service() {
        match decode(r#"{"type":"SERVICE_DELETE","service":"chat"}"#) {
            PayloadIn::ServiceDelete { service } => assert_eq!(service, "chat"),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn service_fetch_decodes_its_service() {
        match decode(r#"{"type":"SERVICE_FETCH","service":"weather"}"#) {
            PayloadIn::ServiceFetch { service } => assert_eq!(service, "weather"),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn service_fetch_all_decodes() {
        assert!(matches!(
            decode(r#"{"type":"SERVICE_FETCH_ALL"}"#),
            PayloadIn::ServiceFetchAll
        ));
    }

    #[test]
    fn client_fetch_decodes_its_uuid() {
        match decode(r#"{"type":"CLIENT_FETCH","uuid":"7a9c1e3b-52d4-4f80-a6b1-e2c4d6f8a0b2"}"#) {
            PayloadIn::ClientFetch { uuid } => assert_eq!(uuid, BOB_UUID),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn client_fetch_all_decodes() {
        assert!(matches!(
            decode(r#"{"type":"CLIENT_FETCH_ALL"}"#),
            PayloadIn::ClientFetchAll
        ));
    }

    #[test]
    fn message_decodes_its_target_and_raw_data() {
        let text =
            r#"{"type":"MESSAGE","target":{"type":"NAME","name":"bob"},"data":{"temp":21.5}}"#;
        match decode(text) {
            PayloadIn::Message { target, data } => {
                assert_eq!(target, Target::Name { name: "bob".into() });
                assert_eq!(data.get(), r#"{"temp":21.5}"#);
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn every_inbound_type_reports_its_wire_name_as_kind() {
        let frames = [
            r#"{"type":"IDENTIFY","name":"a","version":"0.2.0"}"#,
            r#"{"type":"MESSAGE","target":{"type":"ALL"},"data":1}"#,
            r#"{"type":"SELF_SUBSCRIBE","service":"s"}"#,
            r#"{"type":"SELF_UNSUBSCRIBE","service":"s"}"#,
            r#"{"type":"SELF_FETCH"}"#,
            r#"{"type":"SELF_SET_SEQ","seq":0}"#,
            r#"{"type":"SERVICE_CREATE","service":"s"}"#,
            r#"{"type":"SERVICE_DELETE","service":"s"}"#,
            r#"{"type":"SERVICE_FETCH","service":"s"}"#,
            r#"{"type":"SERVICE_FETCH_ALL"}"#,
            r#"{"type":"CLIENT_FETCH","uuid":"7a9c1e3b-52d4-4f80-a6b1-e2c4d6f8a0b2"}"#,
            r#"{"type":"CLIENT_FETCH_ALL"}"#,
        ];
        for text in frames {
            let value: serde_json::Value = serde_json::from_str(text).expect("test frame is JSON");
            assert_eq!(Some(decode(text).kind()), value["type"].as_str(), "{text}");
        }
    }

    #[test]
    fn string_fields_may_contain_json_escapes() {
        let text = r#"{"type":"SERVICE_CREATE","service":"caf\u00e9","nickname":"say \"hi\"\n\\"}"#;
        match decode(text) {
            PayloadIn::ServiceCreate { service, nickname } => {
                assert_eq!(service, "café");
                assert_eq!(nickname.as_deref(), Some("say \"hi\"\n\\"));
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn type_key_and_value_may_be_spelled_with_escapes() {
        assert!(matches!(
            decode(r#"{"typ\u0065":"SELF_\u0046ETCH"}"#),
            PayloadIn::SelfFetch
        ));
    }

    #[test]
    fn field_order_whitespace_and_unknown_fields_do_not_matter() {
        let text = r#" { "service" : "weather" , "extra" : [1, {"x": null}] , "type" : "SERVICE_FETCH" } "#;
        match decode(text) {
            PayloadIn::ServiceFetch { service } => assert_eq!(service, "weather"),
            other => panic!("decoded as {other:?}"),
        }
    }

    // Decode failures.

    #[test]
    fn outbound_and_unknown_types_are_unsupported() {
        for (text, kind) in [
            (
                r#"{"type":"HELLO","uuid":"0d5f3a2e-8b41-4c6e-9f27-3c1a5b7d9e01","version":"0.2.0"}"#,
                "HELLO",
            ),
            (r#"{"type":"OK"}"#, "OK"),
            (r#"{"type":"NOPE"}"#, "NOPE"),
            (r#"{"type":"N\u004FPE","whatever":[]}"#, "NOPE"),
            (r#"{"type":"self_fetch"}"#, "self_fetch"),
        ] {
            assert_eq!(
                PayloadIn::decode(text).map(|payload| payload.kind()),
                Err(DecodeError::Unsupported(kind.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn frames_that_are_not_objects_with_a_string_type_are_malformed() {
        for text in [
            "not json",
            "",
            "[]",
            r#"["SELF_FETCH"]"#,
            "null",
            r#""SELF_FETCH""#,
            "{}",
            r#"{"type":5}"#,
            r#"{"type":null}"#,
            r#"{"type":"SELF_FETCH","type":"SELF_FETCH"}"#,
            r#"{"type":"SELF_FETCH"} trailing"#,
            r#"{"type":"SELF_FETCH""#,
        ] {
            assert_malformed(text);
        }
    }

    #[test]
    fn known_types_with_missing_or_bad_fields_are_malformed() {
        for text in [
            r#"{"type":"SELF_SUBSCRIBE"}"#,
            r#"{"type":"SELF_UNSUBSCRIBE","service":7}"#,
            r#"{"type":"SERVICE_DELETE","service":null}"#,
            r#"{"type":"CLIENT_FETCH","uuid":"nope"}"#,
            r#"{"type":"CLIENT_FETCH"}"#,
            r#"{"type":"MESSAGE","target":{"type":"ALL"}}"#,
            r#"{"type":"MESSAGE","data":1}"#,
            r#"{"type":"MESSAGE","target":{"type":"MOON"},"data":1}"#,
            r#"{"type":"MESSAGE","target":{"type":"NAME"},"data":1}"#,
            r#"{"type":"MESSAGE","target":{"type":"UUID","uuid":"nope"},"data":1}"#,
            r#"{"type":"MESSAGE","target":"ALL","data":1}"#,
        ] {
            assert_malformed(text);
        }
    }

    #[test]
    fn malformed_description_names_the_problem() {
        let err = PayloadIn::decode(r#"{"type":"SELF_SUBSCRIBE"}"#).expect_err("missing field");
        let desc = err.to_string();
        assert!(desc.contains("SELF_SUBSCRIBE"), "{desc}");
        assert!(desc.contains("service"), "{desc}");
    }

    #[test]
    fn unsupported_error_displays_the_type() {
        assert_eq!(
            DecodeError::Unsupported("NOPE".into()).to_string(),
            "unsupported payload type `NOPE`"
        );
    }

    // Outbound payloads.

    #[test]
    fn client_and_service_info_have_fixed_field_order_and_null_nicknames() {
        assert_eq!(serde_json::to_string(&alice()).expect("serialises"), ALICE);
        assert_eq!(serde_json::to_string(&bob()).expect("serialises"), BOB);
        assert_eq!(
            serde_json::to_string(&weather()).expect("serialises"),
            WEATHER
        );
        assert_eq!(serde_json::to_string(&chat()).expect("serialises"), CHAT);
    }

    #[test]
    fn client_and_service_info_decode_from_their_wire_form() {
        assert_eq!(
            serde_json::from_str::<ClientInfo>(ALICE).ok(),
            Some(alice())
        );
        assert_eq!(serde_json::from_str::<ClientInfo>(BOB).ok(), Some(bob()));
        assert_eq!(
            serde_json::from_str::<ServiceInfo>(WEATHER).ok(),
            Some(weather())
        );
        assert_eq!(serde_json::from_str::<ServiceInfo>(CHAT).ok(), Some(chat()));
    }

    #[test]
    fn sequenced_frame_puts_seq_first() {
        assert_eq!(PayloadOut::Ok.encode(Some(3)), r#"{"seq":3,"type":"OK"}"#);
        assert_eq!(PayloadOut::Bad.encode(Some(0)), r#"{"seq":0,"type":"BAD"}"#);
        assert_eq!(
            PayloadOut::InvalidName { name: "carol" }.encode(Some(u64::MAX)),
            r#"{"seq":18446744073709551615,"type":"INVALID_NAME","name":"carol"}"#
        );
    }

    #[test]
    fn unsequenced_frame_has_no_seq_field() {
        assert_eq!(PayloadOut::Ok.encode(None), r#"{"type":"OK"}"#);
    }

    #[test]
    fn ok_encodes() {
        assert_wire(&PayloadOut::Ok, r#"{"type":"OK"}"#);
    }

    #[test]
    fn bad_encodes() {
        assert_wire(&PayloadOut::Bad, r#"{"type":"BAD"}"#);
    }

    #[test]
    fn hello_carries_uuid_then_version() {
        assert_wire(
            &PayloadOut::Hello {
                uuid: ALICE_UUID,
                version: PROTOCOL_VERSION,
                fs_key: None,
            },
            r#"{"type":"HELLO","uuid":"0d5f3a2e-8b41-4c6e-9f27-3c1a5b7d9e01","version":"0.2.0"}"#,
        );
    }

    #[test]
    fn self_subscribe_result_encodes() {
        let service = weather();
        assert_wire(
            &PayloadOut::SelfSubscribeResult {
                successful: true,
                service: &service,
            },
            &format!(r#"{{"type":"SELF_SUBSCRIBE_RESULT","successful":true,"service":{WEATHER}}}"#),
        );
    }

    #[test]
    fn self_unsubscribe_result_encodes() {
        let service = chat();
        assert_wire(
            &PayloadOut::SelfUnsubscribeResult {
                successful: false,
                service: &service,
            },
            &format!(r#"{{"type":"SELF_UNSUBSCRIBE_RESULT","successful":false,"service":{CHAT}}}"#),
        );
    }

    #[test]
    fn self_fetch_result_encodes() {
        let client = alice();
        let subscriptions = [weather(), chat()];
        assert_wire(
            &PayloadOut::SelfFetchResult {
                client: &client,
                subscriptions: &subscriptions,
            },
            &format!(
                r#"{{"type":"SELF_FETCH_RESULT","client":{ALICE},"subscriptions":[{WEATHER},{CHAT}]}}"#
            ),
        );
    }

    #[test]
    fn service_create_result_encodes() {
        let service = weather();
        for successful in [true, false] {
            assert_wire(
                &PayloadOut::ServiceCreateResult {
                    successful,
                    service: &service,
                },
                &format!(
                    r#"{{"type":"SERVICE_CREATE_RESULT","successful":{successful},"service":{WEATHER}}}"#
                ),
            );
        }
    }

    #[test]
    fn service_delete_result_encodes() {
        let service = chat();
        assert_wire(
            &PayloadOut::ServiceDeleteResult { service: &service },
            &format!(r#"{{"type":"SERVICE_DELETE_RESULT","service":{CHAT}}}"#),
        );
    }

    #[test]
    fn service_fetch_result_encodes() {
        let service = weather();
        assert_wire(
            &PayloadOut::ServiceFetchResult { service: &service },
            &format!(r#"{{"type":"SERVICE_FETCH_RESULT","service":{WEATHER}}}"#),
        );
    }

    #[test]
    fn service_fetch_all_result_uses_its_own_type_name() {
        let services = [weather(), chat()];
        assert_wire(
            &PayloadOut::ServiceFetchAllResult {
                services: &services,
            },
            &format!(r#"{{"type":"SERVICE_FETCH_ALL_RESULT","services":[{WEATHER},{CHAT}]}}"#),
        );
        assert_wire(
            &PayloadOut::ServiceFetchAllResult { services: &[] },
            r#"{"type":"SERVICE_FETCH_ALL_RESULT","services":[]}"#,
        );
    }

    #[test]
    fn client_fetch_result_encodes() {
        let client = bob();
        let subscriptions = [weather()];
        assert_wire(
            &PayloadOut::ClientFetchResult {
                client: &client,
                subscriptions: &subscriptions,
            },
            &format!(
                r#"{{"type":"CLIENT_FETCH_RESULT","client":{BOB},"subscriptions":[{WEATHER}]}}"#
            ),
        );
        assert_wire(
            &PayloadOut::ClientFetchResult {
                client: &client,
                subscriptions: &[],
            },
            &format!(r#"{{"type":"CLIENT_FETCH_RESULT","client":{BOB},"subscriptions":[]}}"#),
        );
    }

    #[test]
    fn client_fetch_all_result_encodes() {
        let clients = [alice(), bob()];
        assert_wire(
            &PayloadOut::ClientFetchAllResult { clients: &clients },
            &format!(r#"{{"type":"CLIENT_FETCH_ALL_RESULT","clients":[{ALICE},{BOB}]}}"#),
        );
    }

    #[test]
    fn client_joined_encodes() {
        let client = alice();
        assert_wire(
            &PayloadOut::ClientJoined { client: &client },
            &format!(r#"{{"type":"CLIENT_JOINED","client":{ALICE}}}"#),
        );
    }

    #[test]
    fn client_left_encodes() {
        let client = bob();
        assert_wire(
            &PayloadOut::ClientLeft { client: &client },
            &format!(r#"{{"type":"CLIENT_LEFT","client":{BOB}}}"#),
        );
    }

    #[test]
    fn service_client_subscribed_carries_the_full_service_info() {
        let (client, service) = (bob(), weather());
        assert_wire(
            &PayloadOut::ServiceClientSubscribed {
                client: &client,
                service: &service,
            },
            &format!(
                r#"{{"type":"SERVICE_CLIENT_SUBSCRIBED","client":{BOB},"service":{WEATHER}}}"#
            ),
        );
    }

    #[test]
    fn service_client_unsubscribed_encodes() {
        let (client, service) = (bob(), chat());
        assert_wire(
            &PayloadOut::ServiceClientUnsubscribed {
                client: &client,
                service: &service,
            },
            &format!(r#"{{"type":"SERVICE_CLIENT_UNSUBSCRIBED","client":{BOB},"service":{CHAT}}}"#),
        );
    }

    #[test]
    fn error_internal_escapes_its_description() {
        assert_wire(
            &PayloadOut::ErrorInternal {
                desc: "lost \"state\"\n",
            },
            r#"{"type":"ERROR_INTERNAL","desc":"lost \"state\"\n"}"#,
        );
    }

    #[test]
    fn error_unsupported_encodes() {
        assert_wire(
            &PayloadOut::ErrorUnsupported,
            r#"{"type":"ERROR_UNSUPPORTED"}"#,
        );
    }

    #[test]
    fn error_protocol_carries_the_decode_error() {
        let err = PayloadIn::decode("[]").expect_err("not an object");
        let desc = err.to_string();
        assert_wire(
            &PayloadOut::ErrorProtocol { desc: &desc },
            &format!(
                r#"{{"type":"ERROR_PROTOCOL","desc":{}}}"#,
                serde_json::to_string(&desc).expect("serialises")
            ),
        );
        assert_wire(
            &PayloadOut::ErrorProtocol {
                desc: "expected value",
            },
            r#"{"type":"ERROR_PROTOCOL","desc":"expected value"}"#,
        );
    }

    #[test]
    fn invalid_name_encodes() {
        assert_wire(
            &PayloadOut::InvalidName { name: "carol" },
            r#"{"type":"INVALID_NAME","name":"carol"}"#,
        );
    }

    #[test]
    fn invalid_uuid_encodes_a_hyphenated_lowercase_uuid() {
        assert_wire(
            &PayloadOut::InvalidUuid { uuid: BOB_UUID },
            r#"{"type":"INVALID_UUID","uuid":"7a9c1e3b-52d4-4f80-a6b1-e2c4d6f8a0b2"}"#,
        );
    }

    #[test]
    fn invalid_service_encodes() {
        assert_wire(
            &PayloadOut::InvalidService { service: "radio" },
            r#"{"type":"INVALID_SERVICE","service":"radio"}"#,
        );
    }

    // Relayed messages.

    const ALICE_ORIGIN_FIELDS: &str = r#""name":"alice","nickname":"Alice","uuid":"0d5f3a2e-8b41-4c6e-9f27-3c1a5b7d9e01","tags":["sensor","lab"]"#;
    const BOB_ORIGIN: &str = r#"{"name":"bob","nickname":null,"uuid":"7a9c1e3b-52d4-4f80-a6b1-e2c4d6f8a0b2","tags":[],"service":null}"#;

    fn decode_message(text: &str) -> (Target, &RawValue) {
        match decode(text) {
            PayloadIn::Message { target, data } => (target, data),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn message_data_is_relayed_byte_for_byte() {
        let data_text = r#"{"b": 1,  "a":[1, 2.50, "x\u00e9"]}"#;
        let frame = format!(
            r#"{{"type":"MESSAGE","target":{{"type":"SERVICE","service":"weather"}},"data":  {data_text} }}"#
        );
        let (target, data) = decode_message(&frame);
        assert_eq!(data.get(), data_text);
        assert_eq!(
            encode_message(&alice(), Some(&weather()), &target, data),
            format!(
                r#"{{"type":"MESSAGE","origin":{{{ALICE_ORIGIN_FIELDS},"service":{{"name":"weather","nickname":"Weather feed","owner_uuid":"0d5f3a2e-8b41-4c6e-9f27-3c1a5b7d9e01","subscribers":[]}}}},"target":{{"type":"SERVICE","service":"weather"}},"data":{data_text}}}"#
            )
        );
    }

    #[test]
    fn message_data_may_be_any_json_value_including_null() {
        for data_text in ["null", "0", "-1.5e3", r#""line\nbreak""#, "[]", "true"] {
            let frame =
                format!(r#"{{"type":"MESSAGE","target":{{"type":"ALL"}},"data":{data_text}}}"#);
            let (target, data) = decode_message(&frame);
            assert_eq!(data.get(), data_text);
            assert_eq!(
                encode_message(&bob(), None, &target, data),
                format!(
                    r#"{{"type":"MESSAGE","origin":{BOB_ORIGIN},"target":{{"type":"ALL"}},"data":{data_text}}}"#
                )
            );
        }
    }

    #[test]
    fn message_origin_sent_by_the_client_is_ignored() {
        let frame = r#"{"type":"MESSAGE","origin":{"name":"mallory","nickname":null,"uuid":"00000000-0000-0000-0000-000000000000","tags":[],"service":null},"target":{"type":"NAME","name":"alice"},"data":"hi"}"#;
        let (target, data) = decode_message(frame);
        let relayed = encode_message(&bob(), None, &target, data);
        assert_eq!(
            relayed,
            format!(
                r#"{{"type":"MESSAGE","origin":{BOB_ORIGIN},"target":{{"type":"NAME","name":"alice"}},"data":"hi"}}"#
            )
        );
        assert!(!relayed.contains("mallory"));

        let (_, data) =
            decode_message(r#"{"type":"MESSAGE","target":{"type":"ALL"},"data":1,"origin":5}"#);
        assert_eq!(data.get(), "1");
    }

    #[test]
    fn message_origin_service_never_lists_subscribers() {
        let crowded = ServiceInfo {
            subscribers: (1..=100).map(Uuid::from_u128).collect(),
            ..chat()
        };
        let data = RawValue::from_string("{}".into()).expect("valid JSON");
        assert_eq!(
            encode_message(&alice(), Some(&crowded), &Target::All, &data),
            format!(
                r#"{{"type":"MESSAGE","origin":{{{ALICE_ORIGIN_FIELDS},"service":{{"name":"chat","nickname":null,"owner_uuid":"7a9c1e3b-52d4-4f80-a6b1-e2c4d6f8a0b2","subscribers":[]}}}},"target":{{"type":"ALL"}},"data":{{}}}}"#
            )
        );
    }

    #[test]
    fn every_target_variant_decodes_and_re_encodes() {
        let cases = [
            (
                r#"{"type":"NAME","name":"alice"}"#,
                Target::Name {
                    name: "alice".into(),
                },
            ),
            (
                r#"{"type":"UUID","uuid":"0d5f3a2e-8b41-4c6e-9f27-3c1a5b7d9e01"}"#,
                Target::Uuid { uuid: ALICE_UUID },
            ),
            (
                r#"{"type":"SERVICE","service":"weather"}"#,
                Target::Service {
                    service: "weather".into(),
                },
            ),
            (
                r#"{"type":"SERVICE_CLIENT_UUID","service":"weather","uuid":"7a9c1e3b-52d4-4f80-a6b1-e2c4d6f8a0b2"}"#,
                Target::ServiceClientUuid {
                    service: "weather".into(),
                    uuid: BOB_UUID,
                },
            ),
            (r#"{"type":"ALL"}"#, Target::All),
        ];
        for (target_text, expected) in cases {
            let frame = format!(r#"{{"type":"MESSAGE","target":{target_text},"data":[1,2]}}"#);
            let (target, data) = decode_message(&frame);
            assert_eq!(target, expected);
            assert_eq!(
                encode_message(&bob(), None, &target, data),
                format!(
                    r#"{{"type":"MESSAGE","origin":{BOB_ORIGIN},"target":{target_text},"data":[1,2]}}"#
                )
            );
        }
    }

    // Client names.

    #[test]
    fn client_names_of_ascii_letters_digits_and_underscores_are_valid() {
        for name in ["a", "A_1", "_", "Z9", "alice_2"] {
            assert!(valid_client_name(name, 64), "{name:?}");
        }
    }

    #[test]
    fn client_names_with_path_significant_or_other_characters_are_invalid() {
        for name in [
            "", "a b", "a-b", "a.b", "..", ".", "a/b", "a\\b", "é", "a\0", "a\n",
        ] {
            assert!(!valid_client_name(name, 64), "{name:?}");
        }
    }

    #[test]
    fn client_name_length_is_at_most_max_len() {
        assert!(valid_client_name(&"a".repeat(64), 64));
        assert!(!valid_client_name(&"a".repeat(65), 64));
        assert!(!valid_client_name("a", 0));
    }
}
