//! Real JWTs for the protocols that authenticate with one (live, rooms).

use std::time::Duration;

use switchboard_actors::auth::TokenKeys;

use super::Options;

/// The JWT secret of every token test broker.
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdefgh";

/// The test defaults plus `auth.jwt_secret`; everything else, rooms'
/// `require_uuid_user_ids` included, keeps its default, so the suites test
/// the configuration a broker ships with.
pub fn options() -> Options {
    Options::default().env("AUTH__JWT_SECRET", JWT_SECRET)
}

/// A token for `id`/`name`, valid for an hour. Live takes any `id`; rooms
/// wants a UUID (`common::rooms::ALICE`, ...), and refuses anything else.
pub fn token(id: &str, name: &str) -> String {
    TokenKeys::new(JWT_SECRET.as_bytes()).mint(id, name, Duration::from_secs(3600))
}

/// Asserts that the WebSocket upgrade of `url` answers 401.
pub async fn upgrade_refused(url: &str, bearer: Option<&str>) {
    let mut client = awc::Client::new().ws(url);
    if let Some(token) = bearer {
        client = client.bearer_auth(token);
    }
    match client.connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => {
            assert_eq!(s.as_u16(), 401, "{url}")
        }
        Err(other) => panic!("{url}: {other}"),
        Ok(_) => panic!("{url}: upgraded without a valid token"),
    }
}

/// Base64url without padding, for hand-made (forged) tokens.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
