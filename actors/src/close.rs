//! Every way the broker ends a WebSocket connection, in one table.
//!
//! A client tells a deliberate close from a fault, and a retry from a
//! give-up, by the close code alone, so each code means one thing wherever
//! it is sent. The codes of RFC 6455 (1000-1015) are shared by every
//! protocol; the concierge defines its own in 4000-4009 (its reference
//! clients switch on them). A [`Disconnect`] carries a code and the reason
//! text sent with it; the constructors below are the only places that pair
//! them, and [`ConnectionCore`](crate::connection::ConnectionCore) is the
//! only place that sends them.

use actix_http::ws::CloseCode;

use crate::connection::Disconnect;

/// The protocol ended the conversation as designed (the chat after
/// `connection_reject`).
pub const NORMAL: u16 = 1000;
/// The broker is shutting down, or the client stopped answering heartbeats.
pub const GOING_AWAY: u16 = 1001;
/// The client broke the WebSocket framing rules.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// The client broke a rule of the service: the rate limit, or an operator
/// closed it.
pub const POLICY: u16 = 1008;
/// A message larger than `limits.max_frame_bytes`.
pub const TOO_BIG: u16 = 1009;
/// The broker failed to set the connection up; the client may retry.
pub const INTERNAL_ERROR: u16 = 1011;
/// The client did not read what it was sent fast enough (slow consumer);
/// it may reconnect and resynchronise.
pub const TRY_AGAIN_LATER: u16 = 1013;

/// The concierge gateway's own codes (its reference implementation's).
pub mod concierge {
    /// Internal server error.
    pub const UNKNOWN: u16 = 4000;
    /// The first payload could not be decoded.
    pub const FATAL_DECODE: u16 = 4002;
    /// A payload other than `IDENTIFY` was sent before identification.
    pub const NO_AUTH: u16 = 4003;
    /// No `IDENTIFY` arrived within the identification timeout.
    pub const AUTH_FAILED: u16 = 4004;
    /// The requested name is already taken by a connected client.
    pub const DUPLICATE_AUTH: u16 = 4005;
    /// The secret is missing or does not match the gateway's.
    pub const BAD_SECRET: u16 = 4006;
    /// The client's version is unparseable or not compatible with the gateway.
    pub const BAD_VERSION: u16 = 4007;
    /// The requested name (or another identity field) is not valid.
    pub const BAD_NAME: u16 = 4008;
    /// The client stayed silent longer than the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
}

impl Disconnect {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Disconnect {
            code,
            reason: reason.into(),
        }
    }

    /// The protocol is done with the client: `reason` says why.
    pub fn normal(reason: impl Into<String>) -> Self {
        Self::new(NORMAL, reason)
    }

    /// The broker is shutting down.
    pub fn shutdown() -> Self {
        Self::new(GOING_AWAY, "server shutting down")
    }

    /// The client was silent past the heartbeat timeout.
    pub fn heartbeat_timeout() -> Self {
        Self::new(GOING_AWAY, "heartbeat timeout")
    }

    /// The client did not answer a protocol-level ping in time (rooms).
    pub fn no_pong() -> Self {
        Self::new(GOING_AWAY, "no pong in time")
    }

    /// The client kept sending past the rate limit.
    pub fn rate_limited() -> Self {
        Self::new(POLICY, "rate limit exceeded")
    }

    /// An operator ends the connection, telling the client why.
    pub fn by_operator(reason: impl Into<String>) -> Self {
        Self::new(POLICY, reason)
    }

    /// The connection's queue stayed full while others were served.
    pub fn slow_consumer() -> Self {
        Self::new(TRY_AGAIN_LATER, "slow consumer")
    }

    /// The broker could not set the connection up.
    pub fn internal_error() -> Self {
        Self::new(INTERNAL_ERROR, "internal error")
    }

    /// A message over the size limit.
    pub fn too_big() -> Self {
        Self::new(TOO_BIG, "message too big")
    }

    /// A text message that is not UTF-8.
    pub fn not_utf8() -> Self {
        Self::new(INVALID_PAYLOAD, "text message is not UTF-8")
    }

    /// The client broke the WebSocket framing rules.
    pub fn protocol_error(reason: impl Into<String>) -> Self {
        Self::new(PROTOCOL_ERROR, reason)
    }

    /// A concierge close with one of [`concierge`]'s codes.
    pub fn concierge(code: u16, reason: impl Into<String>) -> Self {
        debug_assert!((4000..4010).contains(&code), "a concierge code: {code}");
        Self::new(code, reason)
    }

    /// The code as the close frame carries it.
    pub fn close_code(&self) -> CloseCode {
        CloseCode::from(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_close_has_its_code() {
        let table = [
            (Disconnect::normal("bye"), 1000),
            (Disconnect::shutdown(), 1001),
            (Disconnect::heartbeat_timeout(), 1001),
            (Disconnect::no_pong(), 1001),
            (Disconnect::protocol_error("bad frame"), 1002),
            (Disconnect::not_utf8(), 1007),
            (Disconnect::rate_limited(), 1008),
            (Disconnect::by_operator("bye"), 1008),
            (Disconnect::too_big(), 1009),
            (Disconnect::internal_error(), 1011),
            (Disconnect::slow_consumer(), 1013),
            (Disconnect::concierge(concierge::BAD_VERSION, "old"), 4007),
        ];
        for (close, code) in table {
            assert_eq!(close.code, code, "{close:?}");
            assert_eq!(u16::from(close.close_code()), code);
        }
    }
}
