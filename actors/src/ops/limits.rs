//! The two kinds of limiter the service uses, each written once:
//!
//! - [`Pacer`]: evenly spaced slots, at most `per_second` a second (the Devices connect gate,
//!   SIP NOTIFY). A burst waits for its slots instead of being refused.
//! - [`MinuteCounts`]: events per key in a fixed one-minute window, with a bound on the keys
//!   held (phone-file misses per address, failed logins per address). Under a flood from more
//!   addresses than the bound, expired windows go first, then everything: the limit is per
//!   address, the memory is not.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// The window of [`MinuteCounts`].
const WINDOW: Duration = Duration::from_secs(60);

/// Evenly spaced slots.
#[derive(Debug)]
pub struct Pacer {
    /// Time between two slots.
    spacing: Duration,
    /// The earliest moment of the next slot.
    next_slot: Instant,
}

impl Pacer {
    /// A pacer of `per_second` slots a second (at least 1).
    pub fn new(per_second: u32) -> Pacer {
        Pacer {
            spacing: Duration::from_secs(1) / per_second.max(1),
            next_slot: Instant::now(),
        }
    }

    /// Takes the next slot: `now` if the pacer has been idle, else one spacing after the last.
    pub fn take(&mut self, now: Instant) -> Instant {
        let slot = self.next_slot.max(now);
        self.next_slot = slot + self.spacing;
        slot
    }
}

/// Counts per key in the current minute of each key.
#[derive(Debug)]
pub struct MinuteCounts<K> {
    /// Start of each key's window and its count.
    counts: HashMap<K, (Instant, u32)>,
    /// Most keys held.
    max_keys: usize,
}

impl<K: Hash + Eq> MinuteCounts<K> {
    /// Counts for at most `max_keys` keys at once.
    pub fn new(max_keys: usize) -> MinuteCounts<K> {
        MinuteCounts {
            counts: HashMap::new(),
            max_keys,
        }
    }

    /// Counts one event for `key`; returns its count in its current minute.
    pub fn add(&mut self, key: K) -> u32 {
        if self.counts.len() >= self.max_keys {
            self.counts.retain(|_, (since, _)| since.elapsed() < WINDOW);
            if self.counts.len() >= self.max_keys {
                self.counts.clear();
            }
        }
        let entry = self.counts.entry(key).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        entry.1
    }

    /// `key`'s count in its current minute (0 once the minute is over).
    pub fn count(&self, key: &K) -> u32 {
        self.counts
            .get(key)
            .filter(|(since, _)| since.elapsed() < WINDOW)
            .map_or(0, |(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pacer_spaces_a_burst_and_starts_at_once_after_idling() {
        let mut pacer = Pacer::new(4);
        let start = Instant::now();
        let slots: Vec<Duration> = (0..3).map(|_| pacer.take(Instant::now()) - start).collect();
        assert_eq!(slots, [0, 250, 500].map(Duration::from_millis));
        tokio::time::advance(Duration::from_secs(5)).await;
        let now = Instant::now();
        assert_eq!(pacer.take(now), now, "an idle pacer has its slot free");
    }

    #[tokio::test(start_paused = true)]
    async fn counts_reset_after_a_minute_and_the_keys_held_are_bounded() {
        let mut counts = MinuteCounts::new(3);
        assert_eq!((counts.add("a"), counts.add("a"), counts.count(&"a")), (1, 2, 2));
        tokio::time::advance(WINDOW).await;
        assert_eq!(counts.count(&"a"), 0, "the minute is over");
        assert_eq!(counts.add("a"), 1, "a new minute");
        counts.add("b");
        counts.add("c");
        // A fourth key: nothing has expired, so everything is forgotten rather than grown.
        assert_eq!(counts.add("d"), 1);
        assert_eq!((counts.count(&"a"), counts.counts.len()), (0, 1));
        tokio::time::advance(WINDOW).await;
        counts.add("e");
        counts.add("f");
        // At the bound again: the expired "d" goes, the live ones stay.
        assert_eq!(counts.add("g"), 1);
        assert_eq!((counts.count(&"e"), counts.counts.len()), (1, 3));
    }
}
