//! JSON Web Tokens shared by the live-presence and permissioned-rooms protocols.
//!
//! Switchboard has no account system of its own: an external one issues
//! HS256 tokens signed with `auth.jwt_secret`, and Switchboard only has to
//! decide, before a WebSocket upgrade, whether a token is genuine and current
//! and who it names. Everything here is deliberately strict, because a token
//! is the only thing standing between the internet and someone else's friend
//! list:
//!
//! * the algorithm is pinned to HS256, so `alg:none`, other HMAC strengths
//!   and asymmetric algorithms (the classic key-confusion attack) are refused
//!   whatever the token's header claims;
//! * `exp` is required and checked with zero leeway, and a token is already
//!   expired at the second its `exp` names (RFC 7519 §4.1.4);
//! * `nbf`, when present, is honoured with zero leeway too;
//! * `sub` (user id) and `name` (username) must be present and non-empty,
//!   because every protocol that reads the claims keys users by them.
//!
//! [`token_from`] finds the token in an HTTP request using only strings, so
//! this module stays independent of the web framework.

use std::fmt;
use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims Switchboard reads from a token.
///
/// Other claims the issuer adds (`iat`, `iss`, ...) are ignored, so tokens
/// from an account system that says more than Switchboard needs still work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id; the key under which users, friendships and rooms are stored.
    pub sub: String,
    /// The username, shown to other users in popups and lists.
    pub name: String,
    /// Expiry in seconds since the Unix epoch; required, so no token lives forever.
    pub exp: i64,
}

/// Why a token was refused.
///
/// The text is safe to log (it never contains the token or the secret); the
/// HTTP answer stays a plain 401 so a caller learns nothing from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The request carried no token at all.
    #[error("no token")]
    Missing,
    /// The token was genuine but its `exp` has passed; worth telling apart in
    /// logs because it points at a client that forgot to refresh, not an attack.
    #[error("token expired")]
    Expired,
    /// Anything else: malformed, wrongly signed, wrong algorithm, missing or
    /// empty claims, not yet valid. The text says which.
    #[error("bad token: {0}")]
    Invalid(String),
}

/// Verifies and mints HS256 tokens with one shared secret.
///
/// Build it once from config and share it (it is cheap to clone); each
/// [`verify`](Self::verify) is independent, so it can be used from any
/// number of connections at once.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenKeys {
    /// Keeps the secret out of logs and panic messages: the keys hold it in clear.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("algorithm", &Algorithm::HS256)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys for `secret`, used as raw bytes (not base64-decoded).
    ///
    /// An empty or short secret is accepted here because this type cannot
    /// know the deployment's policy; config validation is the place to refuse it.
    #[must_use]
    pub fn new(secret: &[u8]) -> Self {
        select_crypto_provider();

        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Switchboard has no audience of its own to compare `aud` against; the
        // shared secret is the trust boundary, so a token that carries `aud`
        // for the issuer's own purposes must not be refused for it.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);

        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The claims of `token` if it is a genuine, current HS256 token naming a user.
    ///
    /// # Errors
    ///
    /// [`TokenError::Missing`] for an empty string, [`TokenError::Expired`]
    /// for a genuine token whose `exp` has been reached, and
    /// [`TokenError::Invalid`] for everything else that is not acceptable.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| refusal(&err))?
            .claims;

        // The library lets a token through during the very second its `exp`
        // names; RFC 7519 says it must already be refused then.
        if claims.exp <= Utc::now().timestamp() {
            return Err(TokenError::Expired);
        }
        if claims.sub.is_empty() {
            return Err(TokenError::Invalid("`sub` is empty".to_owned()));
        }
        if claims.sub == crate::admin::SERVER_NAME {
            return Err(TokenError::Invalid(format!(
                "`sub` {:?} is reserved for the server",
                crate::admin::SERVER_NAME
            )));
        }
        if claims.name.is_empty() {
            return Err(TokenError::Invalid("`name` is empty".to_owned()));
        }
        Ok(claims)
    }

    /// Mints a token for `sub`/`name` valid for `ttl` from now, for the
    /// `switchboard token` command and for tests.
    ///
    /// A sub-second remainder of `ttl` rounds up, so a token is never minted
    /// already expired. Empty `sub` or `name` are not refused here (the
    /// command validates its input), but [`verify`](Self::verify) refuses the
    /// resulting token.
    ///
    /// # Panics
    ///
    /// Never in practice: HS256 signing with an HMAC key cannot fail and the
    /// claims are plain strings and an integer.
    #[must_use]
    pub fn mint(&self, sub: &str, name: &str, ttl: Duration) -> String {
        let ttl_secs = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0));
        let ttl_secs = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: sub.to_owned(),
            name: name.to_owned(),
            exp: Utc::now().timestamp().saturating_add(ttl_secs),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect(
            "HS256 with an HMAC key signs any byte string, and Claims serialises without fail",
        )
    }
}

/// Makes the aws-lc-rs provider the process default if nothing chose one yet.
///
/// jsonwebtoken 10 picks its provider from its cargo features and panics on
/// first use when both backends end up enabled through feature unification
/// (another crate in the graph asking for `rust_crypto`). Installing ours
/// explicitly removes that failure mode; if a provider is already installed,
/// that choice stands, which is why the result is ignored. aws-lc-rs rather
/// than `rust_crypto` because the latter pulls in `rsa` (RUSTSEC-2023-0071).
fn select_crypto_provider() {
    let _already_chosen = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// Turns a library error into a loggable refusal.
fn refusal(err: &jsonwebtoken::errors::Error) -> TokenError {
    let reason = match err.kind() {
        ErrorKind::ExpiredSignature => return TokenError::Expired,
        ErrorKind::InvalidSignature => "signature does not match".to_owned(),
        ErrorKind::InvalidAlgorithm => "algorithm is not HS256".to_owned(),
        ErrorKind::InvalidToken => "not a JWT".to_owned(),
        ErrorKind::ImmatureSignature => "not valid yet (`nbf`)".to_owned(),
        _ => err.to_string(),
    };
    TokenError::Invalid(reason)
}

/// The token of an HTTP request, if it carries one.
///
/// The `token` query parameter wins (browsers cannot set headers on a
/// WebSocket upgrade); otherwise `Authorization: Bearer <token>`, with the
/// scheme matched case-insensitively as RFC 7235 requires. `query` is the
/// raw query string without `?`, decoded as `application/x-www-form-urlencoded`
/// (percent escapes, `+` as space) like the web framework's own query parser.
/// An empty token counts as none, so `?token=` falls through to the header.
pub fn token_from(query: Option<&str>, authorization: Option<&str>) -> Option<String> {
    query
        .and_then(token_from_query)
        .or_else(|| authorization.and_then(token_from_authorization))
}

/// The first non-empty `token` parameter of a raw query string.
fn token_from_query(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| form_decode(key) == "token")
        .map(|(_, value)| form_decode(value))
        .find(|value| !value.is_empty())
}

/// The credentials of a `Bearer` authorization header value.
fn token_from_authorization(header: &str) -> Option<String> {
    let (scheme, credentials) = header.trim().split_once(char::is_whitespace)?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty())
        .then(|| credentials.to_owned())
}

/// Decodes one `application/x-www-form-urlencoded` component.
///
/// A `%` not followed by two hex digits is kept as is, and bytes that do not
/// form UTF-8 become U+FFFD: the result only has to reach
/// [`TokenKeys::verify`], which refuses such a token with a clear reason.
fn form_decode(component: &str) -> String {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one ASCII hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"correct horse battery staple";
    const HOUR: Duration = Duration::from_secs(3600);

    fn keys() -> TokenKeys {
        TokenKeys::new(SECRET)
    }

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    /// Unpadded base64url, enough to hand-build tokens the library would not mint.
    fn b64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    /// A token signed with `SECRET` under `alg` whose payload is `payload` verbatim.
    fn signed(alg: Algorithm, payload: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            payload,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("HMAC signing does not fail")
    }

    fn assert_invalid(result: &Result<Claims, TokenError>) {
        assert!(
            matches!(result, Err(TokenError::Invalid(_))),
            "expected Invalid, got {result:?}"
        );
    }

    #[test]
    fn mint_then_verify_round_trips() {
        let keys = keys();
        let claims = keys
            .verify(&keys.mint("u1", "alice", HOUR))
            .expect("fresh token");
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.name, "alice");
        assert!((claims.exp - (now() + 3600)).abs() <= 1);
    }

    #[test]
    fn sub_second_ttl_is_not_minted_expired() {
        let keys = keys();
        let token = keys.mint("u1", "alice", Duration::from_nanos(1));
        assert!(keys.verify(&token).is_ok());
    }

    #[test]
    fn huge_ttl_saturates_instead_of_overflowing() {
        let keys = keys();
        let claims = keys
            .verify(&keys.mint("u1", "alice", Duration::MAX))
            .expect("far-future token");
        assert_eq!(claims.exp, i64::MAX);
    }

    #[test]
    fn token_expired_one_second_ago_is_expired() {
        let token = signed(
            Algorithm::HS256,
            &serde_json::json!({"sub": "u1", "name": "alice", "exp": now() - 1}),
        );
        assert_eq!(keys().verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn token_expiring_this_second_is_expired() {
        let token = signed(
            Algorithm::HS256,
            &serde_json::json!({"sub": "u1", "name": "alice", "exp": now()}),
        );
        assert_eq!(keys().verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn wrong_secret_is_invalid() {
        let token = TokenKeys::new(b"another secret").mint("u1", "alice", HOUR);
        assert_eq!(
            keys().verify(&token),
            Err(TokenError::Invalid("signature does not match".to_owned()))
        );
    }

    #[test]
    fn tampered_payload_is_invalid() {
        let keys = keys();
        let token = keys.mint("u1", "alice", HOUR);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64url(
            serde_json::json!({"sub": "admin", "name": "alice", "exp": now() + 3600})
                .to_string()
                .as_bytes(),
        );
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(
            keys.verify(&tampered),
            Err(TokenError::Invalid("signature does not match".to_owned()))
        );
    }

    #[test]
    fn alg_none_is_invalid() {
        let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64url(
            serde_json::json!({"sub": "u1", "name": "alice", "exp": now() + 3600})
                .to_string()
                .as_bytes(),
        );
        assert_invalid(&keys().verify(&format!("{header}.{payload}.")));
    }

    #[test]
    fn hs512_with_the_same_secret_is_invalid() {
        let token = signed(
            Algorithm::HS512,
            &serde_json::json!({"sub": "u1", "name": "alice", "exp": now() + 3600}),
        );
        assert_eq!(
            keys().verify(&token),
            Err(TokenError::Invalid("algorithm is not HS256".to_owned()))
        );
    }

    #[test]
    fn rs256_header_is_invalid() {
        let hs256 = keys().mint("u1", "alice", HOUR);
        let parts: Vec<&str> = hs256.split('.').collect();
        let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
        let token = format!("{header}.{}.{}", parts[1], parts[2]);
        assert_invalid(&keys().verify(&token));
    }

    #[test]
    fn missing_exp_is_invalid() {
        let token = signed(
            Algorithm::HS256,
            &serde_json::json!({"sub": "u1", "name": "alice"}),
        );
        assert_invalid(&keys().verify(&token));
    }

    #[test]
    fn missing_sub_or_name_is_invalid() {
        let exp = now() + 3600;
        for payload in [
            serde_json::json!({"name": "alice", "exp": exp}),
            serde_json::json!({"sub": "u1", "exp": exp}),
            serde_json::json!({"sub": null, "name": "alice", "exp": exp}),
            serde_json::json!({"sub": 7, "name": "alice", "exp": exp}),
        ] {
            assert_invalid(&keys().verify(&signed(Algorithm::HS256, &payload)));
        }
    }

    #[test]
    fn empty_sub_or_name_is_invalid() {
        let keys = keys();
        assert_eq!(
            keys.verify(&keys.mint("", "alice", HOUR)),
            Err(TokenError::Invalid("`sub` is empty".to_owned()))
        );
        assert_eq!(
            keys.verify(&keys.mint("u1", "", HOUR)),
            Err(TokenError::Invalid("`name` is empty".to_owned()))
        );
    }

    #[test]
    fn the_servers_own_name_is_no_users_sub() {
        let keys = keys();
        assert_eq!(
            keys.verify(&keys.mint("@server", "mallory", HOUR)),
            Err(TokenError::Invalid(
                "`sub` \"@server\" is reserved for the server".to_owned()
            ))
        );
    }

    #[test]
    fn future_nbf_is_invalid() {
        let token = signed(
            Algorithm::HS256,
            &serde_json::json!({"sub": "u1", "name": "alice", "exp": now() + 3600, "nbf": now() + 600}),
        );
        assert_invalid(&keys().verify(&token));
    }

    #[test]
    fn extra_claims_including_aud_are_ignored() {
        let token = signed(
            Algorithm::HS256,
            &serde_json::json!({"sub": "u1", "name": "alice", "exp": now() + 3600,
                                "iat": now(), "iss": "accounts", "aud": "cherries"}),
        );
        assert_eq!(keys().verify(&token).map(|c| c.sub), Ok("u1".to_owned()));
    }

    #[test]
    fn garbage_is_invalid() {
        let keys = keys();
        for token in ["garbage", "a.b.c", "...", "eyJ.eyJ.", "Bearer x"] {
            assert_invalid(&keys.verify(token));
        }
    }

    #[test]
    fn empty_token_is_missing() {
        assert_eq!(keys().verify(""), Err(TokenError::Missing));
    }

    #[test]
    fn error_text_is_loggable() {
        assert_eq!(TokenError::Missing.to_string(), "no token");
        assert_eq!(TokenError::Expired.to_string(), "token expired");
        assert_eq!(
            TokenError::Invalid("not a JWT".to_owned()).to_string(),
            "bad token: not a JWT"
        );
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let shown = format!("{:?}", keys());
        assert_eq!(shown, "TokenKeys { algorithm: HS256, .. }");
    }

    #[test]
    fn token_from_query_parameter() {
        assert_eq!(token_from(Some("token=abc"), None), Some("abc".to_owned()));
    }

    #[test]
    fn token_from_query_is_percent_decoded_among_other_parameters() {
        assert_eq!(
            token_from(Some("a=1&token=x%2By"), None),
            Some("x+y".to_owned())
        );
    }

    #[test]
    fn token_from_query_keeps_a_stray_percent() {
        assert_eq!(
            token_from(Some("token=a%zz%4"), None),
            Some("a%zz%4".to_owned())
        );
    }

    #[test]
    fn token_from_bearer_header() {
        assert_eq!(
            token_from(None, Some("Bearer abc.def.ghi")),
            Some("abc.def.ghi".to_owned())
        );
    }

    #[test]
    fn token_from_bearer_scheme_is_case_insensitive() {
        assert_eq!(token_from(None, Some("bearer abc")), Some("abc".to_owned()));
        assert_eq!(token_from(None, Some("BEARER abc")), Some("abc".to_owned()));
    }

    #[test]
    fn token_from_other_schemes_is_none() {
        assert_eq!(token_from(None, Some("Basic dXNlcjpwYXNz")), None);
        assert_eq!(token_from(None, Some("Bearerabc")), None);
    }

    #[test]
    fn token_from_query_wins_over_header() {
        assert_eq!(
            token_from(Some("token=fromquery"), Some("Bearer fromheader")),
            Some("fromquery".to_owned())
        );
    }

    #[test]
    fn token_from_neither_is_none() {
        assert_eq!(token_from(None, None), None);
        assert_eq!(token_from(Some("a=1&b=2"), None), None);
    }

    #[test]
    fn token_from_empty_token_is_none() {
        assert_eq!(token_from(Some("token="), None), None);
        assert_eq!(token_from(None, Some("Bearer ")), None);
        assert_eq!(token_from(None, Some("Bearer")), None);
        assert_eq!(token_from(Some(""), Some("")), None);
    }

    #[test]
    fn token_from_empty_query_token_falls_back_to_header() {
        assert_eq!(
            token_from(Some("token="), Some("Bearer fromheader")),
            Some("fromheader".to_owned())
        );
    }
}
