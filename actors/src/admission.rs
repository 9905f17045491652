//! Admission control at the WebSocket upgrade: a total and a per-IP cap.
//!
//! An upgrade takes a [`Ticket`]; the connection actor holds it for its whole
//! life and dropping it gives the place back, so the counts cannot drift even
//! when a connection ends abnormally.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `limits.max_connections` open connections already.
    #[error("the broker is at its connection limit")]
    Total,
    /// `limits.max_connections_per_ip` open connections from this address already.
    #[error("too many connections from this address")]
    PerIp,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The shared admission counters.
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

/// A place taken by one open connection; released on drop.
pub struct Ticket {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
}

impl Admission {
    /// Caps from `limits.max_connections` and `limits.max_connections_per_ip`.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Takes a place for a connection from `ip` (unknown peers count only
    /// towards the total), or says why not.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Ticket, Refused> {
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Refused::Total);
        }
        if let Some(ip) = ip {
            let n = counts.per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        counts.total += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            ip,
        })
    }

    /// Connections admitted and not yet released.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_ip_and_in_total_and_releases_on_drop() {
        let a = Admission::new(3, 2);
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        let t1 = a.admit(Some(ip1)).unwrap();
        let _t2 = a.admit(Some(ip1)).unwrap();
        assert_eq!(a.admit(Some(ip1)).err(), Some(Refused::PerIp));
        let _t3 = a.admit(Some(ip2)).unwrap();
        assert_eq!(a.admit(Some(ip2)).err(), Some(Refused::Total));
        drop(t1);
        assert_eq!(a.open(), 2);
        assert!(a.admit(Some(ip1)).is_ok());
        assert_eq!(a.open(), 2, "the ticket above was dropped at once");
    }
}
