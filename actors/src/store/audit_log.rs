//! The download audit, batched: every download is recorded in memory at once and written to
//! the store with the phone's earlier entries every half second (and at shutdown), one write
//! per phone per batch instead of one per download. What the store lacks is merged in on read,
//! so nothing recorded is ever missing from [`AuditLog::recent`]. A download waits with its texts
//! shared with the phone's previous one where equal, and is formatted into an [`AuditEntry`]
//! only when written or read: a phone re-checking costs the download path no allocation here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use innoprov::provisioning::{AuditEntry, ENROLMENT_ENTRIES, is_enrolment_outcome, trim_audit_by};
use innoprov::{Mac, Store, StoreError};

/// How often pending entries are written.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Pending entries and what the notifier needs.
#[derive(Default)]
struct Pending {
    /// Entries not yet in the store, per phone, oldest first.
    entries: HashMap<Mac, Vec<PendingEntry>>,
    /// Where each phone last fetched a file from successfully, as which vendor, and when.
    last_fetch: HashMap<Mac, LastFetch>,
}

/// A download as the handler knows it, borrowed: a phone checking again with the texts of its
/// previous download is recorded without an allocation.
#[derive(Debug, Clone, Copy)]
pub struct Download<'a> {
    /// When (Unix seconds).
    pub at: u64,
    /// The client with its port.
    pub client: SocketAddr,
    /// The User-Agent, already shortened.
    pub user_agent: &'a str,
    /// The requested file.
    pub file: &'a str,
    /// The vendor it was served as.
    pub vendor: &'a str,
    /// HTTP status sent.
    pub status: u16,
    /// What happened, in words.
    pub outcome: &'a str,
    /// The configuration version served.
    pub config_version: u64,
}

/// An entry not yet written. A download keeps its texts shared (with the phone's previous
/// download where equal) and becomes an [`AuditEntry`] only when written or read, on the
/// writer's thread or the admin's, not the download's.
#[derive(Debug, Clone)]
enum PendingEntry {
    /// A download.
    Download {
        /// Order among all entries.
        seq: u64,
        /// When (Unix seconds).
        at: u64,
        /// The client with its port.
        client: SocketAddr,
        /// User-Agent, file, vendor, outcome.
        texts: [Arc<str>; 4],
        /// HTTP status sent.
        status: u16,
        /// The configuration version served.
        config_version: u64,
    },
    /// Anything else (a state change), as it is.
    Other(AuditEntry),
}

impl PendingEntry {
    fn to_entry(&self) -> AuditEntry {
        match self {
            PendingEntry::Download {
                seq,
                at,
                client,
                texts: [user_agent, file, vendor, outcome],
                status,
                config_version,
            } => AuditEntry {
                seq: *seq,
                at: *at,
                client: client.to_string(),
                user_agent: user_agent.to_string(),
                file: file.to_string(),
                vendor: vendor.to_string(),
                status: *status,
                outcome: outcome.to_string(),
                config_version: *config_version,
                state: None,
            },
            PendingEntry::Other(entry) => entry.clone(),
        }
    }

    fn is_enrolment(&self) -> bool {
        match self {
            PendingEntry::Download { texts, .. } => is_enrolment_outcome(&texts[3]),
            PendingEntry::Other(entry) => entry.is_enrolment(),
        }
    }
}

/// `text` as a shared string: `previous` itself when it says the same.
fn shared(previous: Option<&Arc<str>>, text: &str) -> Arc<str> {
    match previous {
        Some(p) if innoprov::provisioning::vendor::same_bytes(p.as_bytes(), text.as_bytes()) => Arc::clone(p),
        _ => Arc::from(text),
    }
}

/// A phone's last successful fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFetch {
    /// Where from.
    pub client: SocketAddr,
    /// As which vendor.
    pub vendor: String,
    /// When (Unix seconds).
    pub at: u64,
    /// The download's order among all entries (0 when read back from the store): the newest
    /// of the shards' answers is the last fetch.
    pub seq: u64,
}

/// Shards of the pending entries. Threads take them in turn at their first record, so the two
/// HTTP workers normally record into different ones and do not wait for each other's lock (or
/// pull its cache lines across) on a download. A phone's pending entries are bounded per shard.
const SHARDS: usize = 8;

thread_local! {
    /// This thread's shard, given out in turn at a thread's first record.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}
/// The shard the next thread gets.
static NEXT_SHARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The audit of every phone's downloads.
pub struct AuditLog {
    /// Where entries end up.
    store: Arc<dyn Store>,
    /// Entries kept per phone.
    keep: usize,
    /// Not yet written, per recording thread's shard; a phone's entries may be in several,
    /// put back in order by their `seq` when read or written.
    pending: [Mutex<Pending>; SHARDS],
    /// Orders entries; taken under the recording shard's lock, so that a flush holding every
    /// shard's lock sees, with any entry, every older one.
    seq: AtomicU64,
    /// One flush at a time (the writer thread's and the one at shutdown), so that no phone's
    /// append is read and written by two at once.
    flushing: Mutex<()>,
    /// Fault injection for the supervision tests: the writer panics at its next round.
    #[cfg(feature = "simulators")]
    fault: std::sync::atomic::AtomicBool,
}

fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // Every mutation is a single insert or push: a poisoned lock still holds consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuditLog {
    /// This thread's shard of the pending entries, locked.
    fn own(&self) -> std::sync::MutexGuard<'_, Pending> {
        lock(&self.pending[SHARD.with(|s| *s)])
    }

    /// Every shard locked, in index order (the only order any code takes more than one).
    fn all(&self) -> Vec<std::sync::MutexGuard<'_, Pending>> {
        self.pending.iter().map(lock).collect()
    }

    /// An audit log over `store`, keeping `keep` entries per phone, with its writer thread.
    pub fn start(store: Arc<dyn Store>, keep: usize, fatal: crate::ops::fatal::Fatal) -> Arc<AuditLog> {
        let log = Arc::new(AuditLog {
            store,
            keep,
            pending: Default::default(),
            seq: AtomicU64::new(0),
            flushing: Mutex::new(()),
            #[cfg(feature = "simulators")]
            fault: Default::default(),
        });
        let weak: Weak<AuditLog> = Arc::downgrade(&log);
        let spawned = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    let Some(log) = weak.upgrade() else { return };
                    // A panic here would end the thread silently: it takes the service down
                    // instead (see `fatal`).
                    let round = || {
                        #[cfg(feature = "simulators")]
                        if log.fault.load(Ordering::Acquire) {
                            panic!("fault injected into the audit writer");
                        }
                        log.flush()
                    };
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(round)) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => log::warn!("audit write failed: {e}"),
                        Err(_) => return fatal.report("the audit writer", "panicked"),
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("no audit writer thread ({e}); audits are written at shutdown only");
        }
        log
    }

    /// Records an entry that is not a download (a state change).
    pub fn record(&self, mac: Mac, mut entry: AuditEntry) {
        let mut pending = self.own();
        entry.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let entries = pending.entries.entry(mac).or_default();
        self.push(entries, PendingEntry::Other(entry));
    }

    /// Records one download.
    pub fn record_download(&self, mac: Mac, download: Download<'_>) {
        let mut pending = self.own();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let Download {
            at, client, status, ..
        } = download;
        if status == 200 || status == 304 {
            match pending.last_fetch.get_mut(&mac) {
                // The common case, a phone checking again from where it was: no new vendor text.
                Some(last)
                    if last.client == client
                        && innoprov::provisioning::vendor::same_bytes(
                            last.vendor.as_bytes(),
                            download.vendor.as_bytes(),
                        ) =>
                {
                    (last.at, last.seq) = (at, seq);
                }
                _ => {
                    let vendor = download.vendor.to_string();
                    let last = LastFetch {
                        client,
                        vendor,
                        at,
                        seq,
                    };
                    pending.last_fetch.insert(mac, last);
                }
            }
        }
        let entries = pending.entries.entry(mac).or_default();
        let previous = entries.iter().rev().find_map(|e| match e {
            PendingEntry::Download { texts, .. } => Some(texts),
            PendingEntry::Other(_) => None,
        });
        let text = |i: usize, new: &str| shared(previous.map(|t| &t[i]), new);
        let texts = [
            text(0, download.user_agent),
            text(1, download.file),
            text(2, download.vendor),
            text(3, download.outcome),
        ];
        let entry = PendingEntry::Download {
            seq,
            at,
            client,
            texts,
            status,
            config_version: download.config_version,
        };
        self.push(entries, entry);
    }

    /// Adds `entry` to a phone's pending `entries`, trimming them past the bound.
    fn push(&self, entries: &mut Vec<PendingEntry>, entry: PendingEntry) {
        entries.push(entry);
        // Trimmed at twice the bound, down to it: trimming at the bound itself would go over
        // the whole list on every download once a phone has its enrolment entries. Any order
        // of trims keeps the same entries (one trimmed away has `keep` newer of its kind).
        if entries.len() > 2 * (self.keep + ENROLMENT_ENTRIES) {
            trim_audit_by(entries, self.keep, PendingEntry::is_enrolment);
        }
    }

    /// The phone's latest `limit` downloads, oldest first.
    pub fn recent(&self, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = self.store.audit(mac, limit)?;
        let mut pending: Vec<AuditEntry> = Vec::new();
        for shard in self.all() {
            if let Some(found) = shard.entries.get(mac) {
                pending.extend(found.iter().map(PendingEntry::to_entry));
            }
        }
        pending.sort_by_key(|e| e.seq);
        entries.extend(pending);
        let skip = entries.len().saturating_sub(limit);
        entries.drain(..skip);
        Ok(entries)
    }

    /// Where the phone last fetched from, as which vendor, and when: from memory once seen
    /// since start, else from its stored audit.
    pub fn last_fetch(&self, mac: &Mac) -> Option<LastFetch> {
        let newest = self
            .pending
            .iter()
            .filter_map(|shard| lock(shard).last_fetch.get(mac).cloned())
            .max_by_key(|last| last.seq);
        if let Some(found) = newest {
            return Some(found);
        }
        let entries = self.store.audit(mac, self.keep + ENROLMENT_ENTRIES).ok()?;
        let last = entries
            .into_iter()
            .rev()
            .find(|e| e.status == 200 || e.status == 304)?;
        let found = LastFetch {
            client: last.client.parse().ok()?,
            vendor: last.vendor,
            at: last.at,
            seq: 0,
        };
        // A fetch recorded meanwhile is newer than the store's: it stays.
        let mut pending = self.own();
        Some(pending.last_fetch.entry(*mac).or_insert(found).clone())
    }

    /// Forgets a deleted phone: its last fetch (a phone provisioned again under its MAC is not
    /// told to check where the old one fetched from) and its entries not yet written.
    pub fn forget(&self, mac: &Mac) {
        for mut shard in self.all() {
            shard.last_fetch.remove(mac);
            shard.entries.remove(mac);
        }
    }

    /// Fault injection for the supervision tests: the writer thread panics at its next round.
    #[cfg(feature = "simulators")]
    #[doc(hidden)]
    pub fn inject_fault(&self) {
        self.fault.store(true, Ordering::Release);
    }

    /// Writes everything pending (the writer thread, and shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch: HashMap<Mac, Vec<PendingEntry>> = HashMap::new();
        // All shards at once: an entry recorded later than one taken here is newer than all.
        for mut shard in self.all() {
            for (mac, entries) in std::mem::take(&mut shard.entries) {
                batch.entry(mac).or_default().extend(entries);
            }
        }
        for (mac, new) in batch {
            // A deleted phone's late downloads are not written back.
            if self.store.get_phone_bytes(&mac)?.is_none() {
                continue;
            }
            let mut new: Vec<AuditEntry> = new.iter().map(PendingEntry::to_entry).collect();
            new.sort_by_key(|e| e.seq);
            self.store.append_audit(&mac, new, self.keep)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use innoprov::store::MemoryStore;
    use innoprov::store::conformance::sample_record;

    /// A store holding one phone, and an audit log over it keeping 5 entries per phone.
    fn stored_phone_and_log() -> (Arc<dyn Store>, Mac, Arc<AuditLog>) {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mac: Mac = "0015651a2b3c".parse().unwrap();
        store.put_phone(&sample_record("0015651a2b3c", 1)).unwrap();
        let log = AuditLog::start(Arc::clone(&store), 5, crate::ops::fatal::Fatal::default());
        (store, mac, log)
    }

    /// Records `entry` as the download it describes.
    fn record(log: &AuditLog, mac: Mac, entry: &AuditEntry) {
        log.record_download(
            mac,
            Download {
                at: entry.at,
                client: entry.client.parse().expect("an address"),
                user_agent: &entry.user_agent,
                file: &entry.file,
                vendor: &entry.vendor,
                status: entry.status,
                outcome: &entry.outcome,
                config_version: entry.config_version,
            },
        );
    }

    fn entry(n: u64) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: n,
            client: format!("127.0.0.1:{}", 1000 + n),
            user_agent: "Yealink".into(),
            file: "x.cfg".into(),
            vendor: "yealink".into(),
            status: 200,
            outcome: "served".into(),
            config_version: 1,
            state: None,
        }
    }

    #[test]
    fn a_phone_checking_again_shares_its_texts_and_reads_back_as_recorded() {
        let (_store, mac, log) = stored_phone_and_log();
        let (first, mut again) = (entry(1), entry(2));
        record(&log, mac, &first);
        record(&log, mac, &again);
        again.outcome = "not modified".into();
        record(&log, mac, &again);
        {
            let pending = log.own();
            let texts: Vec<&[Arc<str>; 4]> = pending.entries[&mac]
                .iter()
                .filter_map(|e| match e {
                    PendingEntry::Download { texts, .. } => Some(texts),
                    PendingEntry::Other(_) => None,
                })
                .collect();
            assert!(
                (0..4).all(|i| Arc::ptr_eq(&texts[0][i], &texts[1][i])),
                "the same texts, shared"
            );
            assert!(
                Arc::ptr_eq(&texts[1][0], &texts[2][0]),
                "the same User-Agent still shared"
            );
            assert!(
                !Arc::ptr_eq(&texts[1][3], &texts[2][3]),
                "a new outcome is its own"
            );
        }
        let read: Vec<(String, String, String)> = log
            .recent(&mac, 10)
            .unwrap()
            .into_iter()
            .map(|e| (e.client, e.user_agent, e.outcome))
            .collect();
        assert_eq!(
            read,
            [
                ("127.0.0.1:1001".into(), "Yealink".into(), "served".into()),
                ("127.0.0.1:1002".into(), "Yealink".into(), "served".into()),
                ("127.0.0.1:1002".into(), "Yealink".into(), "not modified".into()),
            ]
        );
    }

    #[test]
    fn downloads_recorded_on_several_threads_read_and_write_back_in_order() {
        let (store, mac, log) = stored_phone_and_log();
        // One after the other, each on a new thread: each thread records into the next shard,
        // and nine go once round the eight, so the shards' own order is not the recording's.
        for n in 1..=9 {
            std::thread::scope(|s| {
                s.spawn(|| record(&log, mac, &entry(n)));
            });
        }
        let read: Vec<u64> = log.recent(&mac, 10).unwrap().iter().map(|e| e.at).collect();
        assert_eq!(
            read,
            [1, 2, 3, 4, 5, 6, 7, 8, 9],
            "in the order recorded, across shards"
        );
        assert_eq!(
            log.last_fetch(&mac).unwrap().client.port(),
            1009,
            "the newest fetch"
        );
        log.flush().unwrap();
        let stored: Vec<u64> = store.audit(&mac, 10).unwrap().iter().map(|e| e.at).collect();
        assert_eq!(stored, [5, 6, 7, 8, 9], "written in order, bounded to 5");
    }

    #[test]
    fn a_deleted_phone_is_forgotten_with_its_last_fetch() {
        let (store, mac, log) = stored_phone_and_log();
        record(&log, mac, &entry(1));
        assert!(log.last_fetch(&mac).is_some());
        store.delete_phone(&mac).unwrap();
        log.forget(&mac);
        assert_eq!(log.last_fetch(&mac), None, "nothing left to send a NOTIFY to");
        assert!(log.recent(&mac, 10).unwrap().is_empty());
    }

    #[test]
    fn pending_entries_are_visible_and_flushed_bounded() {
        let (store, mac, log) = stored_phone_and_log();
        for n in 0..4 {
            record(&log, mac, &entry(n));
        }
        assert_eq!(log.recent(&mac, 10).unwrap().len(), 4, "visible before the write");
        log.flush().unwrap();
        for n in 4..8 {
            record(&log, mac, &entry(n));
        }
        let recent: Vec<u64> = log.recent(&mac, 10).unwrap().iter().map(|e| e.at).collect();
        assert_eq!(recent, [0, 1, 2, 3, 4, 5, 6, 7], "stored and pending, in order");
        log.flush().unwrap();
        let stored: Vec<u64> = store.audit(&mac, 100).unwrap().iter().map(|e| e.at).collect();
        assert_eq!(stored, [3, 4, 5, 6, 7], "bounded to 5");
        assert_eq!(log.last_fetch(&mac).unwrap().client.port(), 1007);
        // A deleted phone's pending entries are not written back.
        record(&log, mac, &entry(9));
        store.delete_phone(&mac).unwrap();
        log.flush().unwrap();
        assert!(store.audit(&mac, 10).unwrap().is_empty());
    }
}
