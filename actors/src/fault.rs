//! Fault injection for the supervision tests (feature `fault-injection`,
//! enabled only by the test build, never by `cargo build`).
//!
//! An actix actor fails by stopping; its [`actix::Supervisor`] then calls
//! `restarting` and starts it again with the state it had. [`InjectFault`]
//! makes a chat room do exactly that, so a test can check that the restart
//! is counted and that the room, its members and every other room carry on.

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
