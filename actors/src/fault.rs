//! Fault injection for the supervision tests (feature `fault-injection`,
//! enabled only by the test build, never by `cargo build`).
//!
//! An actix actor fails by stopping; its [`actix::Supervisor`] then calls
//! `restarting` and starts it again with the state it had. [`InjectFault`]
//! makes a chat room do exactly that, so a test can check that the restart
//! is counted and that the room, its members and every other room carry on.
//!
//! [`fail_store_writes`] makes every store write fail (reads still work), so
//! the durability tests can check that nothing is acknowledged or broadcast
//! that was not committed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use actix::{ActorContext, Handler, Message};

use crate::chat::Room;

/// Makes the receiving room actor fail (stop) as if a handler had given up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectFault;

impl Handler<InjectFault> for Room {
    type Result = ();
    fn handle(&mut self, _: InjectFault, ctx: &mut Self::Context) {
        log::warn!("fault injected: a chat room stops");
        ctx.stop();
    }
}

static STORE_WRITES_FAIL: AtomicBool = AtomicBool::new(false);

/// While `on`, every store write answers [`StoreError::Injected`](crate::store::StoreError::Injected)
/// without touching the database.
pub fn fail_store_writes(on: bool) {
    STORE_WRITES_FAIL.store(on, Ordering::SeqCst);
    log::warn!(
        "fault injected: store writes {}",
        if on { "fail" } else { "succeed again" }
    );
}

/// Whether store writes are made to fail.
pub fn store_writes_fail() -> bool {
    STORE_WRITES_FAIL.load(Ordering::SeqCst)
}

static STORE_WRITE_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// Makes every store write wait `delay` on the store's thread before it is
/// done (zero: no wait).
pub fn slow_store_writes(delay: Duration) {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    STORE_WRITE_DELAY_MS.store(ms, Ordering::SeqCst);
    log::warn!("fault injected: store writes take {ms} ms longer");
}

/// How much longer every store write is made to take.
pub fn store_write_delay() -> Duration {
    Duration::from_millis(STORE_WRITE_DELAY_MS.load(Ordering::SeqCst))
}
