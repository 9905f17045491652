//! The baseline that `switchboard bench fanout --raw` drives: a WebSocket
//! relay that writes every text frame it receives to every other connection
//! and does nothing else (no parsing, no rooms, no limits, no metrics).
//!
//! It is close to the most a tokio + tungstenite process can do for one
//! broadcast, so the broker's fan-out is stated as a ratio of it, measured in
//! the same run on the same machine.
//!
//! The binary (`cargo run --release -p switchboard-relay -- 127.0.0.1:9100`)
//! serves it; tests call [`serve`] on a listener of their own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Every open connection's outbound queue, by connection number.
type Peers = Arc<RwLock<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

/// Relays on `listener` until accepting fails.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let peers = Peers::default();
    let next_id = AtomicU64::new(0);
    loop {
        let (stream, peer) = listener.accept().await?;
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(relay(stream, peer, id, peers.clone()));
    }
}

/// One connection: a writer task drains the queue (flushing only when it is
/// empty, so bursts leave in few syscalls) while this task reads and relays.
async fn relay(stream: TcpStream, peer: SocketAddr, id: u64, peers: Peers) {
    let _ = stream.set_nodelay(true);
    let ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("relay: handshake with {peer} failed: {e}");
            return;
        }
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    peers.write().expect("peers lock").insert(id, tx);

    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.feed(message).await.is_err() {
                return;
            }
            while let Ok(message) = rx.try_recv() {
                if sink.feed(message).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });

    while let Some(Ok(message)) = source.next().await {
        match message {
            // Text frames share their bytes: cloning one is a reference count.
            Message::Text(_) => {
                let peers = peers.read().expect("peers lock");
                for (other, queue) in peers.iter() {
                    if *other != id {
                        let _ = queue.send(message.clone());
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    peers.write().expect("peers lock").remove(&id);
    writer.abort();
}
