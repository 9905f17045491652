//! The wire timestamps of the JSON protocols (chat, live): RFC 3339 UTC
//! with whole seconds and a `Z` suffix, e.g. `2025-11-03T00:45:12Z`; any
//! RFC 3339 text is accepted when reading and converted to UTC. One serde
//! adapter, so every protocol writes times the same way.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{de, Deserialize, Deserializer, Serializer};

/// Writes `at` without its sub-second part (truncated, not rounded).
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Reads an RFC 3339 timestamp with any offset, keeping sub-seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(de::Error::custom)
}
