//! The admin-key check shared by every state-changing HTTP API and the
//! operator console.
//!
//! Handlers take an [`Admin`] argument (first, so a missing key answers 401
//! before the body is even read). The key is compared in constant time.

use std::future::{ready, Ready};

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// Proof that the request carried `Authorization: Bearer <admin.api_key>`.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(check(req).then_some(Admin).ok_or(ApiError::Unauthorized))
    }
}

fn check(req: &HttpRequest) -> bool {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return false;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| is_admin_key(state, given))
}

/// Whether `given` is the configured admin key (never, when none is set).
/// For callers that cannot send a header, such as the console's WebSocket.
pub fn is_admin_key(state: &AppState, given: &str) -> bool {
    state
        .config
        .admin
        .api_key
        .as_ref()
        .is_some_and(|expected| keys_match(given.trim().as_bytes(), expected.expose().as_bytes()))
}

/// Constant-time comparison (the length is not secret).
fn keys_match(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

#[cfg(test)]
mod tests {
    use super::keys_match;

    #[test]
    fn only_the_exact_key_matches() {
        assert!(keys_match(b"k3y-0123456789ab", b"k3y-0123456789ab"));
        assert!(!keys_match(b"k3y-0123456789aB", b"k3y-0123456789ab"));
        assert!(!keys_match(b"k3y", b"k3y-0123456789ab"));
        assert!(!keys_match(b"", b"k3y-0123456789ab"));
    }
}
