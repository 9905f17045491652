//! A small pool of arbiters (event-loop threads) for room-like actors.
//!
//! Connection actors run on the HTTP worker threads; rooms, services and
//! listings are spread round-robin over this pool so fan-out work uses every
//! core instead of queueing on one thread.

use std::sync::atomic::{AtomicUsize, Ordering};

use actix::{Arbiter, ArbiterHandle};

/// Round-robin placement of actors over a fixed set of arbiters.
pub struct ArbiterPool {
    arbiters: Vec<Arbiter>,
    next: AtomicUsize,
}

impl ArbiterPool {
    /// Starts `size` arbiters (at least one).
    pub fn new(size: usize) -> Self {
        let arbiters = (0..size.max(1)).map(|_| Arbiter::new()).collect();
        ArbiterPool {
            arbiters,
            next: AtomicUsize::new(0),
        }
    }

    /// The arbiter the next actor should start on.
    pub fn next(&self) -> ArbiterHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters[i].handle()
    }

    /// Asks every arbiter to stop once its current work is done.
    pub fn stop(&self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}
