//! The operator console's live feed under the broker's one slow-consumer
//! policy: a console that stops reading is not fed without bound, it loses
//! pushes (counted) and is removed like any slow client.

mod common;

use std::time::Duration;

use common::{metric, wait_for_metric, Broker, Options, ADMIN_KEY};

#[actix_rt::test]
async fn a_console_that_stops_reading_is_removed_as_a_slow_consumer() {
    // Fast samples fill a stalled socket in a few seconds instead of minutes.
    let broker = Broker::with(Options::default().env("ADMIN__CONSOLE_INTERVAL", "5ms"));
    let mut stalled = common::stalled_socket(&broker.addr, "/api/admin/live");
    common::send_raw_text(&mut stalled, &format!(r#"{{"key":"{ADMIN_KEY}"}}"#));

    wait_for_metric(
        &broker,
        "switchboard_slow_consumers_total{protocol=\"console\"}",
        1.0,
        Duration::from_secs(60),
    )
    .await;
    let dropped = metric(
        &broker,
        "switchboard_messages_dropped_total{protocol=\"console\",reason=\"slow\"}",
    )
    .await;
    assert_eq!(
        dropped,
        Some(5.0),
        "five pushes lost in a row, then removed"
    );

    // A console that reads still gets its feed.
    let mut reader = common::WsClient::connect(&broker.ws_url("/api/admin/live")).await;
    reader.send(&format!(r#"{{"key":"{ADMIN_KEY}"}}"#)).await;
    assert_eq!(reader.recv_json().await["type"], "history");
    assert_eq!(reader.recv_json().await["type"], "sample");
    drop(stalled);
}
