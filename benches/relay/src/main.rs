//! `switchboard-relay [ADDR]`: the baseline relay of `switchboard bench
//! fanout --raw` (see the library's documentation), on `127.0.0.1:9100` by
//! default.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("relay listening on ws://{}", listener.local_addr()?);
    switchboard_relay::serve(listener).await
}
