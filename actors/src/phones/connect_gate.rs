//! The connect gate: every Devices sysclient connection attempt of every phone passes it, so
//! the service never opens more than `devices.connects_per_second` connections in any second,
//! whether after a restart of the service, a restart of Devices, or a burst of provisioning.
//! Attempts get evenly spaced slots; the jitter comes from each link's backoff.

use std::sync::Mutex;

use tokio::time::Instant;

use crate::ops::limits::Pacer;

/// A shared slot allocator.
#[derive(Debug)]
pub struct ConnectGate {
    /// The slots, shared by every phone's connection attempts.
    pacer: Mutex<Pacer>,
}

impl ConnectGate {
    /// A gate admitting `per_second` attempts a second (at least 1).
    pub fn new(per_second: u32) -> ConnectGate {
        ConnectGate {
            pacer: Mutex::new(Pacer::new(per_second)),
        }
    }

    /// Waits for this attempt's slot.
    pub async fn admit(&self) {
        // The critical section cannot panic, so a poisoned lock still holds a valid pacer.
        let slot = self
            .pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now());
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced() {
        let gate = std::sync::Arc::new(ConnectGate::new(10));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..30 {
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                gate.admit().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap() - start);
        }
        times.sort();
        // 30 attempts at 10/s: the last one 2.9 s after the first, none closer than 100 ms.
        assert_eq!(times[29], Duration::from_millis(2900));
        assert!(
            times
                .windows(2)
                .all(|w| w[1] - w[0] >= Duration::from_millis(100))
        );
    }
}
