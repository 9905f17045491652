//! Wire codec of the session list protocol.
//!
//! The session list is a WebSocket protocol spoken by an existing game client,
//! so its text frames must match that client's line format byte for byte. This
//! module owns that format and nothing else: it turns messages into frames and
//! frames into messages, without actors, sockets or shared state, so every rule
//! of the format can be tested in isolation.
//!
//! # Frame format
//!
//! One text frame is one message. Its lines are separated by `\n` (no trailing
//! newline); the first line is the command and the others are its parameters
//! in a fixed order. Epochs and counts are decimal `i32`s, booleans are `true`
//! or `false`, and dates are RFC 3339 in UTC with a `Z` suffix (fractional
//! seconds only when non-zero); any RFC 3339 date is accepted when decoding and
//! converted to UTC.
//!
//! | command       | parameters |
//! |---------------|------------|
//! | `reset`       | epoch, expected_client_version |
//! | `remove`      | epoch, session_id |
//! | `add`         | epoch, session_id, active_users, joined_users, host_username, host_registration_date, host_is_patron, host_is_mentor, session_name, session_begin_time, users |
//! | `update`      | epoch, session_id, session_name, active_users, joined_users |
//! | `add_user`    | epoch, session_id, user_id, username, registration_date, is_patron, is_mentor |
//! | `remove_user` | epoch, session_id, user_id, username |
//! | `error`       | epoch, reason |
//! | `connect`     | user_id, username, version (the only client message) |
//!
//! The `users` parameter of `add` is a single line holding every user's five
//! fields (user_id, username, registration_date, is_patron, is_mentor) joined
//! with `\r`, user after user; it is empty when the session has no users.
//!
//! Encoding never fails and does not escape anything, so text that reaches a
//! message must first pass [`check_field`] (or [`Session::check_framing`] /
//! [`SessionUser::check_framing`]). [`WireError`] texts are already safe to
//! send back in an `error` message.

use crate::metrics::ProtocolErrorKind;
use std::fmt::Display;
use std::str::Split;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Generation number carried by every server message (the seed's
/// `current_connection_id`); after a `reset`, clients drop every session not
/// tagged with the new epoch.
pub type Epoch = i32;

/// Separates the lines (command and parameters) of a frame.
const LINE: char = '\n';
/// Separates the fields inside the `users` parameter of `add`.
const USER_FIELD: char = '\r';
/// Number of fields describing one user.
const USER_FIELDS: usize = 5;
/// Longest prefix of an offending input echoed back in a [`WireError`].
const MAX_ECHO: usize = 64;

const RESET: &str = "reset";
const REMOVE: &str = "remove";
const ADD: &str = "add";
const UPDATE: &str = "update";
const ADD_USER: &str = "add_user";
const REMOVE_USER: &str = "remove_user";
const ERROR: &str = "error";
const CONNECT: &str = "connect";

/// Commands only the server may send.
const SERVER_COMMANDS: [&str; 7] = [RESET, REMOVE, ADD, UPDATE, ADD_USER, REMOVE_USER, ERROR];

/// One user in a session; also the JSON shape of a user in the host HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionUser {
    /// Stable identifier of the user.
    pub user_id: String,
    /// Display name of the user.
    pub username: String,
    /// When the user registered.
    pub registration_date: DateTime<Utc>,
    /// Whether the user is a patron.
    pub is_patron: bool,
    /// Whether the user is a mentor.
    pub is_mentor: bool,
}

/// One listed game session; also the JSON body of the host HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// Identifier of the session; optional in request bodies, where callers
    /// fill it from the path.
    #[serde(default)]
    pub session_id: String,
    /// Name shown in the list.
    pub session_name: String,
    /// Users currently in the session.
    pub active_users: i32,
    /// Users who have joined the session so far.
    pub joined_users: i32,
    /// Display name of the host.
    pub host_username: String,
    /// When the host registered.
    pub host_registration_date: DateTime<Utc>,
    /// Whether the host is a patron.
    pub host_is_patron: bool,
    /// Whether the host is a mentor.
    pub host_is_mentor: bool,
    /// When the session started.
    pub session_begin_time: DateTime<Utc>,
    /// Users in the session; optional in request bodies.
    #[serde(default)]
    pub users: Vec<SessionUser>,
}

/// A message from the server to a session list client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// `reset`: sent first on every connection; the client drops sessions of
    /// older epochs and may warn when its version differs from the expected one.
    Reset {
        /// The new epoch.
        epoch: Epoch,
        /// Client version the server expects.
        expected_client_version: String,
    },
    /// `remove`: the session is gone.
    Remove {
        /// Epoch of the sender.
        epoch: Epoch,
        /// The removed session.
        session_id: String,
    },
    /// `add`: a session to list, with its users.
    Add {
        /// Epoch of the sender.
        epoch: Epoch,
        /// The whole session.
        session: Session,
    },
    /// `update`: new values for the mutable details of a session.
    Update {
        /// Epoch of the sender.
        epoch: Epoch,
        /// The updated session.
        session_id: String,
        /// New name.
        session_name: String,
        /// New number of active users.
        active_users: i32,
        /// New number of joined users.
        joined_users: i32,
    },
    /// `add_user`: a user entered a session.
    AddUser {
        /// Epoch of the sender.
        epoch: Epoch,
        /// The session entered.
        session_id: String,
        /// The user who entered.
        user: SessionUser,
    },
    /// `remove_user`: a user left a session.
    RemoveUser {
        /// Epoch of the sender.
        epoch: Epoch,
        /// The session left.
        session_id: String,
        /// Identifier of the user who left.
        user_id: String,
        /// Display name of the user who left.
        username: String,
    },
    /// `error`: something the client should log.
    Error {
        /// Epoch of the sender.
        epoch: Epoch,
        /// What went wrong, on one line.
        reason: String,
    },
}

impl ServerMessage {
    /// Writes the message as one frame.
    ///
    /// Text fields are written as they are: check them with [`check_field`]
    /// (or the `check_framing` methods) before they reach a message.
    pub fn encode(&self) -> String {
        match self {
            Self::Reset {
                epoch,
                expected_client_version,
            } => Frame::new(RESET)
                .param(epoch)
                .param(expected_client_version),
            Self::Remove { epoch, session_id } => Frame::new(REMOVE).param(epoch).param(session_id),
            Self::Add { epoch, session } => Frame::new(ADD)
                .param(epoch)
                .param(&session.session_id)
                .param(session.active_users)
                .param(session.joined_users)
                .param(&session.host_username)
                .param(format_date(&session.host_registration_date))
                .param(session.host_is_patron)
                .param(session.host_is_mentor)
                .param(&session.session_name)
                .param(format_date(&session.session_begin_time))
                .param(encode_users(&session.users)),
            Self::Update {
                epoch,
                session_id,
                session_name,
                active_users,
                joined_users,
            } => Frame::new(UPDATE)
                .param(epoch)
                .param(session_id)
                .param(session_name)
                .param(active_users)
                .param(joined_users),
            Self::AddUser {
                epoch,
                session_id,
                user,
            } => user_fields(user).into_iter().fold(
                Frame::new(ADD_USER).param(epoch).param(session_id),
                Frame::param,
            ),
            Self::RemoveUser {
                epoch,
                session_id,
                user_id,
                username,
            } => Frame::new(REMOVE_USER)
                .param(epoch)
                .param(session_id)
                .param(user_id)
                .param(username),
            Self::Error { epoch, reason } => Frame::new(ERROR).param(epoch).param(reason),
        }
        .finish()
    }

    /// Reads one frame sent by the server.
    ///
    /// `connect` is a client command, so it is reported as
    /// [`WireError::UnknownCommand`] here.
    pub fn decode(frame: &str) -> Result<ServerMessage, WireError> {
        let (command, lines) = split_command(frame)?;
        // Struct literals evaluate their fields in the order written, which
        // is the wire order of the parameters.
        match command {
            RESET => {
                let mut p = Params::new(RESET, 2, lines)?;
                Ok(Self::Reset {
                    epoch: p.epoch()?,
                    expected_client_version: p.text()?,
                })
            }
            REMOVE => {
                let mut p = Params::new(REMOVE, 2, lines)?;
                Ok(Self::Remove {
                    epoch: p.epoch()?,
                    session_id: p.text()?,
                })
            }
            ADD => {
                let mut p = Params::new(ADD, 11, lines)?;
                let epoch = p.epoch()?;
                let session = Session {
                    session_id: p.text()?,
                    active_users: p.i32("active_users")?,
                    joined_users: p.i32("joined_users")?,
                    host_username: p.text()?,
                    host_registration_date: p.date("host_registration_date")?,
                    host_is_patron: p.bool("host_is_patron")?,
                    host_is_mentor: p.bool("host_is_mentor")?,
                    session_name: p.text()?,
                    session_begin_time: p.date("session_begin_time")?,
                    users: parse_users(p.next_param()?)?,
                };
                Ok(Self::Add { epoch, session })
            }
            UPDATE => {
                let mut p = Params::new(UPDATE, 5, lines)?;
                Ok(Self::Update {
                    epoch: p.epoch()?,
                    session_id: p.text()?,
                    session_name: p.text()?,
                    active_users: p.i32("active_users")?,
                    joined_users: p.i32("joined_users")?,
                })
            }
            ADD_USER => {
                let mut p = Params::new(ADD_USER, 7, lines)?;
                let epoch = p.epoch()?;
                let session_id = p.text()?;
                let fields = [
                    p.next_param()?,
                    p.next_param()?,
                    p.next_param()?,
                    p.next_param()?,
                    p.next_param()?,
                ];
                Ok(Self::AddUser {
                    epoch,
                    session_id,
                    user: parse_user(&fields, &PARAM_USER)?,
                })
            }
            REMOVE_USER => {
                let mut p = Params::new(REMOVE_USER, 4, lines)?;
                Ok(Self::RemoveUser {
                    epoch: p.epoch()?,
                    session_id: p.text()?,
                    user_id: p.text()?,
                    username: p.text()?,
                })
            }
            ERROR => {
                let mut p = Params::new(ERROR, 2, lines)?;
                Ok(Self::Error {
                    epoch: p.epoch()?,
                    reason: p.text()?,
                })
            }
            other => Err(WireError::UnknownCommand(other.to_owned())),
        }
    }
}

/// A message from a session list client to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// `connect`: identifies the client, for usage metrics.
    Connect {
        /// Identifier of the connecting user.
        user_id: String,
        /// Display name of the connecting user.
        username: String,
        /// Version of the client.
        version: String,
    },
}

impl ClientMessage {
    /// Reads one frame sent by a client; a server command is
    /// [`WireError::ServerOnly`].
    pub fn decode(frame: &str) -> Result<ClientMessage, WireError> {
        let (command, lines) = split_command(frame)?;
        match command {
            CONNECT => {
                let mut p = Params::new(CONNECT, 3, lines)?;
                Ok(Self::Connect {
                    user_id: p.text()?,
                    username: p.text()?,
                    version: p.text()?,
                })
            }
            other if SERVER_COMMANDS.contains(&other) => {
                Err(WireError::ServerOnly(other.to_owned()))
            }
            other => Err(WireError::UnknownCommand(other.to_owned())),
        }
    }

    /// Writes the message as one frame; like [`ServerMessage::encode`], text
    /// fields are written as they are.
    pub fn encode(&self) -> String {
        match self {
            Self::Connect {
                user_id,
                username,
                version,
            } => Frame::new(CONNECT)
                .param(user_id)
                .param(username)
                .param(version)
                .finish(),
        }
    }
}

/// Why a frame could not be decoded.
///
/// The `Display` texts are sent to clients in `error` messages, so they are
/// short single-line English: echoed input is cut to 64 characters and its
/// control characters (line breaks included) are escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame is empty, or its command line is.
    #[error("empty message: expected a command")]
    Empty,
    /// The command is not one this side accepts.
    #[error("unknown command `{}`", echo(.0))]
    UnknownCommand(String),
    /// A client sent a command only the server may send.
    #[error("`{}` is a server command", echo(.0))]
    ServerOnly(String),
    /// The command got the wrong number of parameters.
    #[error("`{}` takes {expected} parameters, got {got}", echo(.command))]
    Arity {
        /// The command.
        command: &'static str,
        /// Parameters the command takes.
        expected: usize,
        /// Parameters the frame had.
        got: usize,
    },
    /// A parameter could not be parsed.
    #[error("bad `{}`: `{}` is not {}", echo(.field), echo(.value), expectation(.field))]
    BadField {
        /// The parameter, e.g. `active_users` or `users.is_patron`.
        field: &'static str,
        /// The offending text, as received.
        value: String,
    },
}

impl WireError {
    /// What kind of mistake it is, for `switchboard_protocol_errors_total`.
    pub fn kind(&self) -> ProtocolErrorKind {
        match self {
            WireError::UnknownCommand(_) | WireError::ServerOnly(_) => {
                ProtocolErrorKind::UnknownType
            }
            WireError::Empty | WireError::Arity { .. } | WireError::BadField { .. } => {
                ProtocolErrorKind::Malformed
            }
        }
    }
}

/// A field that cannot be written in a frame: text with `\n` or `\r`
/// (it would break the line framing), or a date whose UTC year is not four
/// digits (no client could read it back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` {problem}")]
pub struct FramingError {
    /// The field, e.g. `session_name` or `users[2].username`.
    pub field: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

const LINE_BREAK: &str = "must not contain a line break";
const DATE_RANGE: &str = "must be a date between the years 0000 and 9999 in UTC";

/// Whether `date` is written with a four-digit year, as RFC 3339 requires.
fn writable_date(date: &DateTime<Utc>) -> bool {
    (0..=9999).contains(&date.year())
}

fn check_date(field: &str, date: &DateTime<Utc>) -> Result<(), FramingError> {
    if writable_date(date) {
        Ok(())
    } else {
        Err(FramingError {
            field: field.to_owned(),
            problem: DATE_RANGE,
        })
    }
}

impl Session {
    /// Checks that no text field of the session or of its users contains a
    /// line break, naming the first one that does.
    pub fn check_framing(&self) -> Result<(), FramingError> {
        check_field("session_id", &self.session_id)?;
        check_field("session_name", &self.session_name)?;
        check_field("host_username", &self.host_username)?;
        check_date("host_registration_date", &self.host_registration_date)?;
        check_date("session_begin_time", &self.session_begin_time)?;
        for (index, user) in self.users.iter().enumerate() {
            user.check_framing().map_err(|error| FramingError {
                field: format!("users[{index}].{}", error.field),
                problem: error.problem,
            })?;
        }
        Ok(())
    }
}

impl SessionUser {
    /// Checks that no text field of the user contains a line break and
    /// that its date can be written.
    pub fn check_framing(&self) -> Result<(), FramingError> {
        check_field("user_id", &self.user_id)?;
        check_field("username", &self.username)?;
        check_date("registration_date", &self.registration_date)
    }
}

/// Checks that `value` contains neither `\n` nor `\r`, so it can be one
/// parameter (or one field of a user) in a frame; `field` names it in the error.
pub fn check_field(field: &str, value: &str) -> Result<(), FramingError> {
    if value.contains([LINE, USER_FIELD]) {
        Err(FramingError {
            field: field.to_owned(),
            problem: LINE_BREAK,
        })
    } else {
        Ok(())
    }
}

/// A frame being written, one line at a time.
struct Frame(String);

impl Frame {
    /// Starts a frame with its command line.
    fn new(command: &str) -> Self {
        Self(command.to_owned())
    }

    /// Appends one parameter line.
    fn param(mut self, value: impl Display) -> Self {
        self.0.push(LINE);
        self.0.push_str(&value.to_string());
        self
    }

    /// The finished frame.
    fn finish(self) -> String {
        self.0
    }
}

/// Formats a date the way the client expects: RFC 3339, `Z`, no useless
/// fractional digits.
fn format_date(date: &DateTime<Utc>) -> String {
    date.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The five wire fields of a user, in order.
fn user_fields(user: &SessionUser) -> [String; USER_FIELDS] {
    [
        user.user_id.clone(),
        user.username.clone(),
        format_date(&user.registration_date),
        user.is_patron.to_string(),
        user.is_mentor.to_string(),
    ]
}

/// The `users` parameter of `add`: all users' fields joined with `\r`.
fn encode_users(users: &[SessionUser]) -> String {
    let fields: Vec<String> = users.iter().flat_map(user_fields).collect();
    fields.join(&USER_FIELD.to_string())
}

/// Splits a frame into its command and the lines of its parameters.
fn split_command(frame: &str) -> Result<(&str, Split<'_, char>), WireError> {
    let mut lines = frame.split(LINE);
    match lines.next() {
        Some(command) if !command.is_empty() => Ok((command, lines)),
        _ => Err(WireError::Empty),
    }
}

/// The parameters of one command, read in order after their count is checked.
struct Params<'a> {
    command: &'static str,
    expected: usize,
    got: usize,
    lines: Split<'a, char>,
}

impl<'a> Params<'a> {
    /// Checks that `lines` holds exactly `expected` parameters for `command`.
    fn new(
        command: &'static str,
        expected: usize,
        lines: Split<'a, char>,
    ) -> Result<Self, WireError> {
        let got = lines.clone().count();
        if got != expected {
            return Err(WireError::Arity {
                command,
                expected,
                got,
            });
        }
        Ok(Self {
            command,
            expected,
            got,
            lines,
        })
    }

    /// The next parameter, raw.
    fn next_param(&mut self) -> Result<&'a str, WireError> {
        self.lines.next().ok_or(WireError::Arity {
            command: self.command,
            expected: self.expected,
            got: self.got,
        })
    }

    /// The next parameter as free text.
    fn text(&mut self) -> Result<String, WireError> {
        self.next_param().map(str::to_owned)
    }

    /// The next parameter as the message's epoch.
    fn epoch(&mut self) -> Result<Epoch, WireError> {
        self.i32("epoch")
    }

    /// The next parameter as a decimal `i32`.
    fn i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        parse_i32(field, self.next_param()?)
    }

    /// The next parameter as `true` or `false`.
    fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        parse_bool(field, self.next_param()?)
    }

    /// The next parameter as an RFC 3339 date, in UTC.
    fn date(&mut self, field: &'static str) -> Result<DateTime<Utc>, WireError> {
        parse_date(field, self.next_param()?)
    }
}

/// The error for a parameter that does not parse.
fn bad_field(field: &'static str, value: &str) -> WireError {
    WireError::BadField {
        field,
        value: value.to_owned(),
    }
}

/// Reads a decimal `i32`.
fn parse_i32(field: &'static str, value: &str) -> Result<i32, WireError> {
    value.parse().map_err(|_| bad_field(field, value))
}

/// Reads exactly `true` or `false`.
fn parse_bool(field: &'static str, value: &str) -> Result<bool, WireError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad_field(field, value)),
    }
}

/// Reads any RFC 3339 date and converts it to UTC.
fn parse_date(field: &'static str, value: &str) -> Result<DateTime<Utc>, WireError> {
    DateTime::parse_from_rfc3339(value)
        .map(|date| date.with_timezone(&Utc))
        .ok()
        .filter(writable_date)
        .ok_or_else(|| bad_field(field, value))
}

/// Names of a user's typed fields in errors, which depend on where the user
/// was read from.
struct UserFieldNames {
    registration_date: &'static str,
    is_patron: &'static str,
    is_mentor: &'static str,
}

/// A user given as parameters of `add_user`.
const PARAM_USER: UserFieldNames = UserFieldNames {
    registration_date: "registration_date",
    is_patron: "is_patron",
    is_mentor: "is_mentor",
};

/// A user inside the `users` parameter of `add`.
const LISTED_USER: UserFieldNames = UserFieldNames {
    registration_date: "users.registration_date",
    is_patron: "users.is_patron",
    is_mentor: "users.is_mentor",
};

/// Reads a user from its five wire fields.
fn parse_user(fields: &[&str], names: &UserFieldNames) -> Result<SessionUser, WireError> {
    let [user_id, username, registration_date, is_patron, is_mentor] = fields else {
        return Err(bad_field("users", &fields.join(&USER_FIELD.to_string())));
    };
    Ok(SessionUser {
        user_id: (*user_id).to_owned(),
        username: (*username).to_owned(),
        registration_date: parse_date(names.registration_date, registration_date)?,
        is_patron: parse_bool(names.is_patron, is_patron)?,
        is_mentor: parse_bool(names.is_mentor, is_mentor)?,
    })
}

/// Reads the `users` parameter of `add`; an empty line means no users.
fn parse_users(value: &str) -> Result<Vec<SessionUser>, WireError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let fields: Vec<&str> = value.split(USER_FIELD).collect();
    if !fields.len().is_multiple_of(USER_FIELDS) {
        return Err(bad_field("users", value));
    }
    fields
        .chunks_exact(USER_FIELDS)
        .map(|user| parse_user(user, &LISTED_USER))
        .collect()
}

/// Makes input safe to quote in an error: at most [`MAX_ECHO`] characters,
/// with control characters (line breaks included) escaped.
fn echo(value: &str) -> String {
    let mut out = String::new();
    for (index, c) in value.chars().enumerate() {
        if index == MAX_ECHO {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// What a parameter should have been, for [`WireError::BadField`] texts.
fn expectation(field: &str) -> &'static str {
    match field.rsplit_once('.').map_or(field, |(_, last)| last) {
        "epoch" | "active_users" | "joined_users" => "an i32",
        "registration_date" | "host_registration_date" | "session_begin_time" => "an RFC 3339 date",
        "is_patron" | "is_mentor" | "host_is_patron" | "host_is_mentor" => "`true` or `false`",
        "users" => "a list of users with 5 fields each",
        _ => "valid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn alice() -> SessionUser {
        SessionUser {
            user_id: "u1".into(),
            username: "alice".into(),
            registration_date: date("2025-01-02T03:04:05Z"),
            is_patron: true,
            is_mentor: false,
        }
    }

    fn bob() -> SessionUser {
        SessionUser {
            user_id: "u2".into(),
            username: "bob".into(),
            registration_date: date("2024-06-30T23:59:59.25Z"),
            is_patron: false,
            is_mentor: true,
        }
    }

    fn session() -> Session {
        Session {
            session_id: "s1".into(),
            session_name: "Friday night".into(),
            active_users: 3,
            joined_users: 5,
            host_username: "host".into(),
            host_registration_date: date("2025-11-03T00:45:12Z"),
            host_is_patron: true,
            host_is_mentor: false,
            session_begin_time: date("2025-11-03T01:00:00Z"),
            users: vec![alice(), bob()],
        }
    }

    /// One message of each server kind, with its exact frame.
    fn server_samples() -> Vec<(ServerMessage, &'static str)> {
        vec![
            (
                ServerMessage::Reset {
                    epoch: 7,
                    expected_client_version: "1.2.3".into(),
                },
                "reset\n7\n1.2.3",
            ),
            (
                ServerMessage::Remove {
                    epoch: 7,
                    session_id: "s1".into(),
                },
                "remove\n7\ns1",
            ),
            (
                ServerMessage::Add {
                    epoch: 7,
                    session: session(),
                },
                "add\n7\ns1\n3\n5\nhost\n2025-11-03T00:45:12Z\ntrue\nfalse\nFriday night\n\
                 2025-11-03T01:00:00Z\n\
                 u1\ralice\r2025-01-02T03:04:05Z\rtrue\rfalse\r\
                 u2\rbob\r2024-06-30T23:59:59.250Z\rfalse\rtrue",
            ),
            (
                ServerMessage::Update {
                    epoch: 7,
                    session_id: "s1".into(),
                    session_name: "Saturday night".into(),
                    active_users: 2,
                    joined_users: 6,
                },
                "update\n7\ns1\nSaturday night\n2\n6",
            ),
            (
                ServerMessage::AddUser {
                    epoch: 7,
                    session_id: "s1".into(),
                    user: alice(),
                },
                "add_user\n7\ns1\nu1\nalice\n2025-01-02T03:04:05Z\ntrue\nfalse",
            ),
            (
                ServerMessage::RemoveUser {
                    epoch: 7,
                    session_id: "s1".into(),
                    user_id: "u2".into(),
                    username: "bob".into(),
                },
                "remove_user\n7\ns1\nu2\nbob",
            ),
            (
                ServerMessage::Error {
                    epoch: 7,
                    reason: "unknown command `foo`".into(),
                },
                "error\n7\nunknown command `foo`",
            ),
        ]
    }

    /// The message encodes to exactly `frame`, and `frame` decodes back to it.
    fn assert_server_wire(message: &ServerMessage, frame: &str) {
        assert_eq!(message.encode(), frame);
        assert_eq!(ServerMessage::decode(frame).as_ref(), Ok(message));
    }

    fn add_frame_with_users(users: &str) -> String {
        format!(
            "add\n7\ns1\n3\n5\nhost\n2025-11-03T00:45:12Z\ntrue\nfalse\nFriday night\n\
             2025-11-03T01:00:00Z\n{users}"
        )
    }

    #[test]
    fn reset_is_epoch_then_expected_version() {
        let (message, frame) = &server_samples()[0];
        assert_server_wire(message, frame);
    }

    #[test]
    fn remove_is_named_remove_not_reset() {
        let (message, frame) = &server_samples()[1];
        assert_server_wire(message, frame);
    }

    #[test]
    fn add_lists_users_on_one_line_joined_by_carriage_returns() {
        let (message, frame) = &server_samples()[2];
        assert_server_wire(message, frame);
        let users_line = frame.rsplit('\n').next().unwrap();
        assert_eq!(users_line.matches('\r').count(), 9);
    }

    #[test]
    fn update_is_name_then_active_then_joined() {
        let (message, frame) = &server_samples()[3];
        assert_server_wire(message, frame);
    }

    #[test]
    fn add_user_puts_each_user_field_on_its_own_line() {
        let (message, frame) = &server_samples()[4];
        assert_server_wire(message, frame);
    }

    #[test]
    fn remove_user_is_session_then_user_id_then_username() {
        let (message, frame) = &server_samples()[5];
        assert_server_wire(message, frame);
    }

    #[test]
    fn error_is_epoch_then_reason() {
        let (message, frame) = &server_samples()[6];
        assert_server_wire(message, frame);
    }

    #[test]
    fn connect_is_user_id_username_version() {
        let message = ClientMessage::Connect {
            user_id: "u1".into(),
            username: "alice".into(),
            version: "1.2.3".into(),
        };
        let frame = "connect\nu1\nalice\n1.2.3";
        assert_eq!(message.encode(), frame);
        assert_eq!(ClientMessage::decode(frame), Ok(message));
    }

    #[test]
    fn add_without_users_ends_with_an_empty_line() {
        let mut empty = session();
        empty.users.clear();
        let message = ServerMessage::Add {
            epoch: 7,
            session: empty,
        };
        let frame = message.encode();
        assert!(frame.ends_with("2025-11-03T01:00:00Z\n"));
        assert_eq!(frame, add_frame_with_users(""));
        assert_eq!(ServerMessage::decode(&frame), Ok(message));
    }

    #[test]
    fn negative_epochs_round_trip() {
        let message = ServerMessage::Reset {
            epoch: -1,
            expected_client_version: "1.2.3".into(),
        };
        assert_server_wire(&message, "reset\n-1\n1.2.3");
        let lowest = ServerMessage::Error {
            epoch: i32::MIN,
            reason: "x".into(),
        };
        assert_server_wire(&lowest, "error\n-2147483648\nx");
    }

    #[test]
    fn dates_keep_nonzero_fractions_and_are_read_in_any_offset() {
        let user = SessionUser {
            registration_date: date("2025-01-02T03:04:05.123456Z"),
            ..alice()
        };
        let message = ServerMessage::AddUser {
            epoch: 1,
            session_id: "s1".into(),
            user,
        };
        assert_server_wire(
            &message,
            "add_user\n1\ns1\nu1\nalice\n2025-01-02T03:04:05.123456Z\ntrue\nfalse",
        );
        let shifted = "add_user\n7\ns1\nu1\nalice\n2025-01-02T05:04:05+02:00\ntrue\nfalse";
        assert_eq!(
            ServerMessage::decode(shifted),
            Ok(ServerMessage::AddUser {
                epoch: 7,
                session_id: "s1".into(),
                user: alice(),
            })
        );
    }

    #[test]
    fn empty_frames_and_blank_commands_are_empty() {
        assert_eq!(ServerMessage::decode(""), Err(WireError::Empty));
        assert_eq!(ClientMessage::decode(""), Err(WireError::Empty));
        assert_eq!(
            ClientMessage::decode("\nu1\nalice\n1"),
            Err(WireError::Empty)
        );
    }

    #[test]
    fn unknown_commands_are_named() {
        let error = ClientMessage::decode("foo\n1").unwrap_err();
        assert_eq!(error, WireError::UnknownCommand("foo".into()));
        assert_eq!(error.to_string(), "unknown command `foo`");
        assert_eq!(
            ServerMessage::decode("connect\nu1\nalice\n1.2.3"),
            Err(WireError::UnknownCommand("connect".into()))
        );
        assert_eq!(
            ClientMessage::decode("Connect\nu1\nalice\n1.2.3"),
            Err(WireError::UnknownCommand("Connect".into()))
        );
    }

    #[test]
    fn server_commands_from_a_client_are_server_only() {
        for (message, frame) in server_samples() {
            let command = frame.split('\n').next().unwrap();
            assert_eq!(
                ClientMessage::decode(&message.encode()),
                Err(WireError::ServerOnly(command.into()))
            );
        }
        assert_eq!(
            ClientMessage::decode("reset\n1\n2")
                .unwrap_err()
                .to_string(),
            "`reset` is a server command"
        );
    }

    #[test]
    fn wrong_parameter_counts_are_arity_errors() {
        let error = ClientMessage::decode("connect\nu1").unwrap_err();
        assert_eq!(
            error,
            WireError::Arity {
                command: "connect",
                expected: 3,
                got: 1,
            }
        );
        assert_eq!(error.to_string(), "`connect` takes 3 parameters, got 1");
        assert_eq!(
            ClientMessage::decode("connect\nu1\nalice\n1.2.3\n"),
            Err(WireError::Arity {
                command: "connect",
                expected: 3,
                got: 4,
            })
        );
        assert_eq!(
            ServerMessage::decode("reset"),
            Err(WireError::Arity {
                command: "reset",
                expected: 2,
                got: 0,
            })
        );
        let without_users_line = add_frame_with_users("");
        let without_users_line = without_users_line.trim_end_matches('\n');
        assert_eq!(
            ServerMessage::decode(without_users_line),
            Err(WireError::Arity {
                command: "add",
                expected: 11,
                got: 10,
            })
        );
    }

    #[test]
    fn bad_integers_name_their_field() {
        let error = ServerMessage::decode("update\n7\ns1\nname\nx\n5").unwrap_err();
        assert_eq!(
            error,
            WireError::BadField {
                field: "active_users",
                value: "x".into(),
            }
        );
        assert_eq!(error.to_string(), "bad `active_users`: `x` is not an i32");
        assert_eq!(
            ServerMessage::decode("reset\n2147483648\n1.2.3"),
            Err(WireError::BadField {
                field: "epoch",
                value: "2147483648".into(),
            })
        );
    }

    #[test]
    fn bad_booleans_name_their_field() {
        let frame = "add_user\n7\ns1\nu1\nalice\n2025-01-02T03:04:05Z\nTrue\nfalse";
        let error = ServerMessage::decode(frame).unwrap_err();
        assert_eq!(
            error,
            WireError::BadField {
                field: "is_patron",
                value: "True".into(),
            }
        );
        assert_eq!(
            error.to_string(),
            "bad `is_patron`: `True` is not `true` or `false`"
        );
        let listed = add_frame_with_users("u1\ralice\r2025-01-02T03:04:05Z\ryes\rfalse");
        assert_eq!(
            ServerMessage::decode(&listed),
            Err(WireError::BadField {
                field: "users.is_patron",
                value: "yes".into(),
            })
        );
    }

    #[test]
    fn bad_dates_name_their_field() {
        let frame = "add_user\n7\ns1\nu1\nalice\n2025-01-02 03:04:05\ntrue\nfalse";
        let error = ServerMessage::decode(frame).unwrap_err();
        assert_eq!(
            error,
            WireError::BadField {
                field: "registration_date",
                value: "2025-01-02 03:04:05".into(),
            }
        );
        assert_eq!(
            error.to_string(),
            "bad `registration_date`: `2025-01-02 03:04:05` is not an RFC 3339 date"
        );
        let without_offset =
            add_frame_with_users("").replace("2025-11-03T01:00:00Z", "2025-11-03T01:00:00");
        assert_eq!(
            ServerMessage::decode(&without_offset),
            Err(WireError::BadField {
                field: "session_begin_time",
                value: "2025-11-03T01:00:00".into(),
            })
        );
    }

    #[test]
    fn users_must_come_in_groups_of_five_fields() {
        let users = "u1\ralice\r2025-01-02T03:04:05Z\rtrue";
        let error = ServerMessage::decode(&add_frame_with_users(users)).unwrap_err();
        assert_eq!(
            error,
            WireError::BadField {
                field: "users",
                value: users.into(),
            }
        );
        assert!(error
            .to_string()
            .starts_with("bad `users`: `u1\\ralice\\r2025-01-02T03:04:05Z\\rtrue` is not"));
    }

    #[test]
    fn framing_checks_name_the_field_with_a_line_break() {
        type Breaker = fn(&mut Session);
        let cases: [(&str, Breaker); 6] = [
            ("session_id", |s| s.session_id = "s\n1".into()),
            ("session_name", |s| s.session_name = "Friday\nnight".into()),
            ("session_name", |s| s.session_name = "Friday\rnight".into()),
            ("host_username", |s| s.host_username = "ho\rst".into()),
            ("users[1].username", |s| {
                s.users[1].username = "b\nob".into()
            }),
            ("users[0].user_id", |s| s.users[0].user_id = "u\r1".into()),
        ];
        assert_eq!(session().check_framing(), Ok(()));
        for (field, breaker) in cases {
            let mut broken = session();
            breaker(&mut broken);
            let error = broken.check_framing().unwrap_err();
            assert_eq!(error.field, field);
            assert_eq!(
                error.to_string(),
                format!("field `{field}` must not contain a line break")
            );
        }
    }

    #[test]
    fn a_date_whose_utc_year_is_not_four_digits_is_refused() {
        // Found by the sessions fuzz target: these parse, but in UTC they
        // would be written as -0001-12-31T23:00:00Z and +10000-01-01T...Z.
        for date in ["0000-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"] {
            let frame = format!("add_user\n7\ns1\nu1\nalice\n{date}\ntrue\nfalse");
            assert!(
                matches!(
                    ServerMessage::decode(&frame),
                    Err(WireError::BadField { .. })
                ),
                "{date}"
            );
        }
        let late = SessionUser {
            registration_date: date("9999-12-31T23:59:59-01:00"),
            ..alice()
        };
        assert_eq!(
            late.check_framing(),
            Err(FramingError {
                field: "registration_date".into(),
                problem: DATE_RANGE,
            })
        );
        let edge = SessionUser {
            registration_date: date("9999-12-31T23:59:59Z"),
            ..alice()
        };
        assert_eq!(edge.check_framing(), Ok(()));
    }

    #[test]
    fn user_and_field_checks_catch_both_line_breaks() {
        assert_eq!(alice().check_framing(), Ok(()));
        let broken = SessionUser {
            username: "al\rice".into(),
            ..alice()
        };
        assert_eq!(
            broken.check_framing(),
            Err(FramingError {
                field: "username".into(),
                problem: LINE_BREAK,
            })
        );
        assert_eq!(
            check_field("reason", "fine, with `ticks` and tabs\t"),
            Ok(())
        );
        assert!(check_field("reason", "a\nb").is_err());
        assert!(check_field("reason", "a\rb").is_err());
    }

    #[test]
    fn host_body_without_session_id_or_users_deserialises() {
        let body = r#"{
            "session_name": "Friday night",
            "active_users": 3,
            "joined_users": 5,
            "host_username": "host",
            "host_registration_date": "2025-11-03T02:45:12+02:00",
            "host_is_patron": true,
            "host_is_mentor": false,
            "session_begin_time": "2025-11-03T01:00:00Z"
        }"#;
        let parsed: Session = serde_json::from_str(body).unwrap();
        let expected = Session {
            session_id: String::new(),
            users: Vec::new(),
            ..session()
        };
        assert_eq!(parsed, expected);
    }

    #[test]
    fn unknown_json_fields_are_rejected() {
        let mut body = serde_json::to_value(session()).unwrap();
        body["colour"] = "red".into();
        assert!(serde_json::from_value::<Session>(body).is_err());
        let mut user = serde_json::to_value(alice()).unwrap();
        user["age"] = 30.into();
        assert!(serde_json::from_value::<SessionUser>(user).is_err());
    }

    #[test]
    fn serialised_sessions_use_z_dates_and_round_trip() {
        let json = serde_json::to_value(session()).unwrap();
        assert_eq!(json["host_registration_date"], "2025-11-03T00:45:12Z");
        assert_eq!(json["session_begin_time"], "2025-11-03T01:00:00Z");
        assert_eq!(
            json["users"][0]["registration_date"],
            "2025-01-02T03:04:05Z"
        );
        assert!(json["users"][1]["registration_date"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        assert_eq!(serde_json::from_value::<Session>(json).unwrap(), session());
    }

    #[test]
    fn error_texts_never_contain_line_breaks() {
        let long = format!("{}\n{}", "x".repeat(100), "y".repeat(100));
        let errors = [
            ClientMessage::decode("evil\r\ninjected").unwrap_err(),
            ClientMessage::decode("bad\rcommand\nu1\nalice\n1").unwrap_err(),
            ServerMessage::decode(&add_frame_with_users("a\rb\rc")).unwrap_err(),
            ServerMessage::decode("reset\n1\r2\nv").unwrap_err(),
            WireError::UnknownCommand(long.clone()),
            WireError::ServerOnly("re\nset".into()),
            WireError::BadField {
                field: "epoch",
                value: long,
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains(['\n', '\r']), "{text:?}");
            assert!(text.chars().count() < 160, "{text:?}");
        }
        assert_eq!(
            ClientMessage::decode("evil\r").unwrap_err().to_string(),
            "unknown command `evil\\r`"
        );
    }
}
