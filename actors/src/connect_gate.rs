//! The connect gate: every Devices sysclient connection attempt of every phone passes it, so
//! the service never opens more than `devices.connects_per_second` connections in any second,
//! whether after a restart of the service, a restart of Devices, or a burst of provisioning.
//! Attempts get evenly spaced slots; the jitter comes from each link's backoff.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A shared slot allocator.
#[derive(Debug)]
pub struct ConnectGate {
    /// Time between two connection attempts.
    spacing: Duration,
    /// The earliest moment the next attempt may start.
    next_slot: Mutex<Instant>,
}

impl ConnectGate {
    /// A gate admitting `per_second` attempts a second (at least 1).
    pub fn new(per_second: u32) -> ConnectGate {
        ConnectGate {
            spacing: Duration::from_secs(1) / per_second.max(1),
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this attempt's slot.
    pub async fn admit(&self) {
        let slot = {
            // The critical section cannot panic, so a poisoned lock still holds a valid slot.
            let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let slot = (*next).max(Instant::now());
            *next = slot + self.spacing;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
