//! Metrics of every HTTP request, as middleware around the whole app.
//!
//! Each answered request counts once in `switchboard_http_requests_total`
//! and its latency (to the response's head) in
//! `switchboard_http_request_duration_seconds`. Requests are labelled by the
//! route *pattern* that served them (`/api/rooms/{id}`), never the raw path,
//! so a client cannot grow the series by inventing paths: a request no route
//! took counts as `unmatched`, one a middleware refused before any handler
//! (an error with no response yet) as `refused`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::Error;
use switchboard_actors::metrics::metrics;

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The route label of a request that ended in an error before a route's
/// handler answered (the pattern is not known then).
pub const REFUSED: &str = "refused";

/// Times one request and counts it under its method, route pattern and
/// status; wrap the app with it:
/// `App::new().wrap(middleware::from_fn(http::metrics::record))`.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let result = next.call(req).await;
    let seconds = started.elapsed().as_secs_f64();
    let http = &metrics().http;
    match &result {
        Ok(res) => {
            let route = res.request().match_pattern();
            http.request(
                method.as_str(),
                route.as_deref().unwrap_or(UNMATCHED),
                res.status().as_u16(),
                seconds,
            );
        }
        Err(e) => http.request(
            method.as_str(),
            REFUSED,
            e.as_response_error().status_code().as_u16(),
            seconds,
        ),
    }
    result
}
