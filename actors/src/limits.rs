//! Per-connection limits shared by every protocol (`[limits]` in the config).
//!
//! They live here, beside the actors that enforce them, so the connection
//! mechanic, the fan-out and the admission check read one typed value.

use std::time::{Duration, Instant};

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// The `[limits]` section: what one connection may do and how long the
/// broker waits for it. Defaults come from the embedded `config/switchboard.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest inbound message (a fragmented message counts whole); larger closes with 1009.
    pub max_frame_size: ByteSize,
    /// Bound of each connection's mailbox, in messages; fan-out never queues more.
    pub outbound_queue: usize,
    /// Bound of each connection's mailbox, in bytes of queued text: a client
    /// that stops reading cannot pin more than this, whatever the frame size.
    pub outbound_queue_bytes: ByteSize,
    /// Consecutive fan-out drops after which a member is removed as a slow consumer.
    pub slow_consumer_drops: u32,
    /// Kernel-level deadline (TCP_USER_TIMEOUT) for a peer that stops reading.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Sustained inbound messages per second per connection (token bucket rate).
    pub messages_per_second: u32,
    /// Inbound messages a connection may send at once above the rate (bucket size).
    pub burst: u32,
    /// Open WebSocket connections in total; over it an upgrade answers 503.
    pub max_connections: usize,
    /// Open WebSocket connections per peer IP address; over it an upgrade answers 503.
    pub max_connections_per_ip: usize,
    /// Rooms and services one connection may hold at once: permissioned
    /// rooms entered, concierge services owned plus subscribed. Over it the
    /// request is refused with the protocol's error; the connection stays.
    pub max_rooms_per_client: usize,
    /// How often the server sends a WebSocket ping.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A connection silent for this long (no frame, no pong) is closed.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
}

impl Limits {
    /// `max_frame_size` in bytes, as the WebSocket codec wants it.
    pub fn max_frame_bytes(&self) -> usize {
        usize::try_from(self.max_frame_size.as_u64()).unwrap_or(usize::MAX)
    }

    /// `outbound_queue_bytes` in bytes, as the outbox counts them.
    pub fn outbound_queue_byte_bound(&self) -> usize {
        usize::try_from(self.outbound_queue_bytes.as_u64()).unwrap_or(usize::MAX)
    }

    /// Checks the relations between values that types alone cannot express;
    /// the error names the offending key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("limits.outbound_queue", self.outbound_queue as u64),
            (
                "limits.outbound_queue_bytes",
                self.outbound_queue_bytes.as_u64(),
            ),
            (
                "limits.slow_consumer_drops",
                u64::from(self.slow_consumer_drops),
            ),
            (
                "limits.messages_per_second",
                u64::from(self.messages_per_second),
            ),
            ("limits.burst", u64::from(self.burst)),
            ("limits.max_connections", self.max_connections as u64),
            (
                "limits.max_connections_per_ip",
                self.max_connections_per_ip as u64,
            ),
            ("limits.max_frame_size", self.max_frame_size.as_u64()),
            (
                "limits.max_rooms_per_client",
                self.max_rooms_per_client as u64,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err((key, "must be greater than 0".into()));
            }
        }
        if self.heartbeat_interval.is_zero() {
            return Err(("limits.heartbeat_interval", "must be greater than 0".into()));
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return Err((
                "limits.heartbeat_timeout",
                "must be longer than limits.heartbeat_interval".into(),
            ));
        }
        Ok(())
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up. One
/// per connection for its inbound messages, and one per client address for
/// the chat's HTTP API.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilling at `rate` a second from `now`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes a token at `now`; false when none is left.
    pub fn take(&mut self, now: Instant) -> bool {
        self.tokens = self.tokens_at(now);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely by `now` (it is then the
    /// same as a new one).
    pub fn is_full(&self, now: Instant) -> bool {
        self.tokens_at(now) >= self.burst
    }

    /// When a token was last asked for.
    pub fn last_used(&self) -> Instant {
        self.last
    }

    fn tokens_at(&self, now: Instant) -> f64 {
        let idle = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + idle * self.rate).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10, 3, start);
        assert!(b.take(start) && b.take(start) && b.take(start));
        assert!(!b.take(start), "the burst is spent");
        let later = start + Duration::from_millis(100);
        assert!(b.take(later), "one token back after 1/rate");
        assert!(!b.take(later));
        assert!(!b.is_full(later));
        let much_later = later + Duration::from_secs(60);
        assert!(b.is_full(much_later));
        for _ in 0..3 {
            assert!(b.take(much_later));
        }
        assert!(!b.take(much_later), "never more than the burst saved up");
    }
}
