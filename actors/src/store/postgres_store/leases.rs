//! Leases: which instance holds each phone's Devices link (design.md, flow step 8).
//!
//! A lease row names its owner, lasts until `expires_at` on the database's clock and carries a
//! fencing token, new whenever the owner changes. While leases are on, the store writes a
//! phone's record only for the owner holding the current token (checked in the write's own
//! statement, with the lease row locked), so a paused former owner can never overwrite what
//! the new owner stored. The tokens this instance holds live in `OwnLeases::held`.
//! [`PostgresLeases`] shows them to the rest of the service as the core's
//! [`Leases`](innoprov::store::Leases) trait.
//!
//! Why two instances cannot both claim one phone: a claim is `INSERT … ON CONFLICT DO UPDATE
//! … WHERE expired or ours`. Under READ COMMITTED, PostgreSQL waits for a concurrent writer
//! of the row, locks it, and evaluates the `WHERE` once, on that latest version (PostgreSQL's
//! isolation spec `src/test/isolation/specs/insert-conflict-do-update-3.spec` and the
//! `INSERT` reference, "ON CONFLICT DO UPDATE guarantees an atomic INSERT or UPDATE
//! outcome"): the second claimer sees the first one's unexpired lease and takes nothing.
//!
//! Why a crashed instance's phones are taken over in seconds, not a lease: each instance
//! holds a session-level advisory lock on its owner name on its LISTEN connection
//! ([`listener`](super::listener)), which PostgreSQL releases when that session ends, and
//! only then ("a session-level advisory lock is held until explicitly released or the
//! session ends", PostgreSQL manual §13.3.5 *Advisory Locks*). The others test it with
//! `pg_try_advisory_xact_lock_shared`, which never waits and holds nothing past the
//! statement (§9.28.10 *Advisory Lock Functions*). A paused instance keeps its session, so
//! its lock and its phones; one cut off from the database keeps its lock until the server's
//! keepalive gives up on the connection, and its leases meanwhile run out as before. The
//! guarantees and their limits: docs/failover.md.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innoprov::store::{Claim, Leases, Renewal, StoreError, Token, reconcile};
use innoprov::{Mac, PhoneRecord};
use tokio_postgres::Row;

use super::{PostgresStore, backend, key, mac_of, run};

/// The channel every instance LISTENs on; payloads: `changed <mac>`, `released`,
/// `wanted <mac> <owner>`, `handed <mac> <owner>`.
pub const CHANNEL: &str = "innoprov";

/// The advisory-lock namespace of the instances' session locks ("inno"): the first of the
/// two `int4` keys, the second is `hashtext(owner)`. Two-key locks never collide with the
/// one-`bigint` locks of `update_setting` (PostgreSQL manual, §9.28.10: the two key spaces
/// do not overlap).
pub const SESSION_LOCKS: i32 = 0x696e_6e6f;

/// The other owners of unexpired leases whose session lock is free (their session ended),
/// provided this instance's own lock is held (its own session is alive).
const DEPARTED: &str = "SELECT o.owner FROM       (SELECT DISTINCT owner FROM leases WHERE owner <> $1 AND expires_at > now()) o     WHERE NOT pg_try_advisory_xact_lock_shared($2, hashtext($1))       AND pg_try_advisory_xact_lock_shared($2, hashtext(o.owner))";

/// Ends the unexpired leases of the named owners whose session lock is still free.
const EXPIRE_DEPARTED: &str = "UPDATE leases SET expires_at = now() - interval '1 millisecond'     WHERE owner = ANY($1) AND owner <> $2 AND expires_at > now()       AND pg_try_advisory_xact_lock_shared($3, hashtext(owner))";

/// This instance's side of the leases.
pub struct OwnLeases {
    /// Who this instance is in the `owner` column (host, process, random: unique per run).
    pub owner: String,
    /// How long a lease lasts unless renewed.
    pub lease: Duration,
    /// The phones this instance holds, with their fencing tokens.
    held: Mutex<HashMap<Mac, Token>>,
    /// Since when the LISTEN connection holds this instance's session lock (`None`: not
    /// now); set by the listener, read before judging other instances departed.
    pub(super) session_since: Arc<Mutex<Option<Instant>>>,
}

impl OwnLeases {
    /// Leases for a new owner name of this process.
    pub fn new(lease: Duration) -> OwnLeases {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "innoprov".into());
        let mut random = [0u8; 4];
        let _ = getrandom::fill(&mut random);
        OwnLeases {
            owner: format!("{host}/{}/{}", std::process::id(), hex::encode(random)),
            lease,
            held: Mutex::new(HashMap::new()),
            session_since: Arc::new(Mutex::new(None)),
        }
    }

    /// Whether this instance's own session lock has been held long enough to judge others:
    /// a third of a lease, so that after a database restart every live instance has taken
    /// its lock again before any is found departed.
    fn may_judge(&self) -> bool {
        let since = *self.session_since.lock().unwrap_or_else(|p| p.into_inner());
        since.is_some_and(|since| since.elapsed() >= self.lease / 3)
    }

    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Mac, Token>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fencing token this instance holds for `mac`.
    pub fn token(&self, mac: &Mac) -> Option<Token> {
        self.held().get(mac).copied()
    }
}

impl PostgresStore {
    fn leases(&self) -> Result<&OwnLeases, StoreError> {
        self.leases
            .as_ref()
            .ok_or_else(|| StoreError::Backend("leases are not enabled for this store".into()))
    }

    /// This instance's owner name, when leases are on.
    pub(super) fn owner(&self) -> Option<&str> {
        self.leases.as_ref().map(|l| l.owner.as_str())
    }

    /// The fencing token held for `mac`, when leases are on.
    fn fence(&self, mac: &Mac) -> Option<Token> {
        self.leases.as_ref().and_then(|l| l.token(mac))
    }

    /// Takes `mac`'s lease if it is free, expired or already ours.
    fn claim(&self, mac: &Mac) -> Result<Claim, StoreError> {
        let leases = self.leases()?;
        let k = key(mac);
        let secs = leases.lease.as_secs_f64();
        let row = self.retrying(&format!("lease {mac}"), |conn| {
            run(async {
                let statement = conn
                    .prepared(
                        "INSERT INTO leases (mac, owner, token, expires_at) \
                 VALUES ($1, $2, nextval('lease_tokens'), now() + make_interval(secs => $3)) \
                 ON CONFLICT (mac) DO UPDATE SET owner = EXCLUDED.owner, \
                   token = CASE WHEN leases.owner = EXCLUDED.owner THEN leases.token ELSE EXCLUDED.token END, \
                   expires_at = EXCLUDED.expires_at \
                 WHERE leases.owner = EXCLUDED.owner OR leases.expires_at < now() \
                 RETURNING token",
                    )
                    .await?;
                conn.query_opt(&statement, &[&k, &leases.owner, &secs]).await
            })
        })?;
        if let Some(row) = row {
            leases.held().insert(*mac, row.get(0));
            return Ok(Claim::Held);
        }
        leases.held().remove(mac);
        let owner = self.retrying(&format!("lease {mac}"), |client| {
            run(client.query_opt("SELECT owner FROM leases WHERE mac = $1", &[&k]))
        })?;
        // Gone between the two statements (released or deleted): free now, but let the caller
        // claim again rather than loop here.
        Ok(Claim::HeldBy(
            owner
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_else(|| "(released)".into()),
        ))
    }

    /// Takes the leases of up to `limit` stored phones that nobody holds (never leased, expired
    /// or released); the phones now held.
    fn claim_free(&self, limit: usize) -> Result<Vec<Mac>, StoreError> {
        let leases = self.leases()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let secs = leases.lease.as_secs_f64();
        let rows = self.retrying("claim free leases", |client| {
            run(client.query(
                "INSERT INTO leases (mac, owner, token, expires_at) \
                 SELECT p.mac, $1, nextval('lease_tokens'), now() + make_interval(secs => $2) \
                 FROM phones p LEFT JOIN leases l ON l.mac = p.mac \
                 WHERE l.mac IS NULL OR l.expires_at < now() \
                 ORDER BY p.mac LIMIT $3 \
                 ON CONFLICT (mac) DO UPDATE SET owner = EXCLUDED.owner, token = EXCLUDED.token, \
                   expires_at = EXCLUDED.expires_at \
                 WHERE leases.expires_at < now() \
                 RETURNING mac, token",
                &[&leases.owner, &secs, &limit],
            ))
        })?;
        let claimed = tokens(&rows)?;
        let mut held = leases.held();
        Ok(claimed
            .into_iter()
            .map(|(mac, token)| {
                held.insert(mac, token);
                mac
            })
            .collect())
    }

    /// Extends every lease this instance holds, in one statement.
    fn renew(&self) -> Result<Renewal, StoreError> {
        let leases = self.leases()?;
        let secs = leases.lease.as_secs_f64();
        // Claims, hand-overs and releases may run while the statement does: only what was
        // held before it and is still held unchanged can be lost, and only what was neither
        // held before nor is now can be adopted.
        let before = leases.held().clone();
        let rows = self.retrying("renew leases", |client| {
            run(client.query(
                "UPDATE leases SET expires_at = now() + make_interval(secs => $2) WHERE owner = $1 \
                 RETURNING mac, token",
                &[&leases.owner, &secs],
            ))
        })?;
        let ours: HashMap<Mac, Token> = tokens(&rows)?.into_iter().collect();
        Ok(reconcile(&before, &ours, &mut leases.held()))
    }

    /// Forgets every lease locally (the database could not be reached for too long to be sure
    /// of them); [`renew`](Self::renew) adopts those still ours once it is back.
    fn forget_leases(&self) {
        if let Some(leases) = &self.leases {
            leases.held().clear();
        }
    }

    /// Gives up `macs` (their links are closed) so that any instance may take them at once.
    fn release(&self, macs: &[Mac]) -> Result<(), StoreError> {
        let leases = self.leases()?;
        let keys: Vec<Vec<u8>> = macs.iter().map(key).collect();
        self.retrying("release leases", |client| {
            run(async {
                client
                    .execute(
                        "DELETE FROM leases WHERE owner = $1 AND mac = ANY($2)",
                        &[&leases.owner, &keys],
                    )
                    .await?;
                client
                    .execute("SELECT pg_notify($1, 'released')", &[&CHANNEL])
                    .await
            })
        })?;
        let mut held = leases.held();
        for mac in macs {
            held.remove(mac);
        }
        Ok(())
    }

    /// Gives up every lease this instance holds (a graceful shutdown, after its links closed).
    fn release_all(&self) -> Result<usize, StoreError> {
        let macs: Vec<Mac> = self.leases()?.held().keys().copied().collect();
        self.release(&macs)?;
        Ok(macs.len())
    }

    /// Hands `mac`'s lease straight to `to` (who asked for it), with a new token.
    fn hand_over(&self, mac: &Mac, to: &str) -> Result<bool, StoreError> {
        let leases = self.leases()?;
        let k = key(mac);
        let secs = leases.lease.as_secs_f64();
        let notice = format!("handed {mac} {to}");
        // The new owner hears of it at once (it waits for this instead of polling fast).
        let moved = self.retrying(&format!("hand over {mac}"), |client| {
            run(client.query(
                "WITH moved AS (UPDATE leases SET owner = $3, token = nextval('lease_tokens'), \
                   expires_at = now() + make_interval(secs => $4) \
                 WHERE mac = $1 AND owner = $2 RETURNING 1) \
                 SELECT pg_notify($5, $6) FROM moved",
                &[&k, &leases.owner, &to, &secs, &CHANNEL, &notice],
            ))
        })?;
        leases.held().remove(mac);
        Ok(moved.len() == 1)
    }

    /// The phones whose unexpired lease another instance holds.
    fn held_elsewhere(&self) -> Result<HashSet<Mac>, StoreError> {
        let owner = self.leases()?.owner.clone();
        let rows = self.retrying("read leases", |client| {
            run(client.query(
                "SELECT mac, token FROM leases WHERE owner <> $1 AND expires_at > now()",
                &[&owner],
            ))
        })?;
        Ok(tokens(&rows)?.into_iter().map(|(mac, _)| mac).collect())
    }

    /// The other owners whose session ended while their leases run, when this instance may
    /// judge.
    fn departed(&self) -> Result<Vec<String>, StoreError> {
        let leases = self.leases()?;
        if !leases.may_judge() {
            return Ok(Vec::new());
        }
        let rows = self.retrying("look for departed instances", |client| {
            run(client.query(DEPARTED, &[&leases.owner, &SESSION_LOCKS]))
        })?;
        let mut owners: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        owners.sort();
        Ok(owners)
    }

    /// Ends the leases of `owners` whose session is still gone, and tells every instance
    /// that phones are free.
    fn expire_departed(&self, owners: &[String]) -> Result<usize, StoreError> {
        let leases = self.leases()?;
        let ended = self.retrying("end departed instances' leases", |client| {
            run(async {
                let ended = client
                    .execute(EXPIRE_DEPARTED, &[&owners, &leases.owner, &SESSION_LOCKS])
                    .await?;
                if ended > 0 {
                    client
                        .execute("SELECT pg_notify($1, 'released')", &[&CHANNEL])
                        .await?;
                }
                Ok(ended)
            })
        })?;
        Ok(usize::try_from(ended).unwrap_or(usize::MAX))
    }

    /// Asks `mac`'s owner (through NOTIFY) to hand its lease to this instance.
    fn want(&self, mac: &Mac) -> Result<(), StoreError> {
        let payload = format!("wanted {mac} {}", self.leases()?.owner);
        self.retrying(&format!("ask for {mac}"), |client| {
            run(client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]))
        })
        .map(|_| ())
    }
}

fn tokens(rows: &[Row]) -> Result<Vec<(Mac, Token)>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok((
                mac_of(&row.get::<_, Vec<u8>>(0)).map_err(|e| backend("leases", e))?,
                row.get(1),
            ))
        })
        .collect()
}

/// This instance's leases in the database as the core's [`Leases`] trait: what the registry,
/// the phone jobs, persistence and the admin core hold instead of the store itself.
pub struct PostgresLeases {
    /// The store whose lease rows these are; it keeps the tokens its fenced writes check.
    store: Arc<PostgresStore>,
    /// This instance's owner name (copied: the store's leases are on for its whole life).
    owner: String,
    /// How long a lease lasts.
    lease: Duration,
}

impl PostgresLeases {
    /// The leases of `store`, `None` when it was opened without them.
    pub fn of(store: &Arc<PostgresStore>) -> Option<PostgresLeases> {
        let own = store.leases.as_ref()?;
        Some(PostgresLeases {
            owner: own.owner.clone(),
            lease: own.lease,
            store: Arc::clone(store),
        })
    }
}

impl Leases for PostgresLeases {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn token(&self, mac: &Mac) -> Option<Token> {
        self.store.fence(mac)
    }

    fn claim(&self, mac: &Mac) -> Result<Claim, StoreError> {
        self.store.claim(mac)
    }

    fn claim_free(&self, limit: usize) -> Result<Vec<Mac>, StoreError> {
        self.store.claim_free(limit)
    }

    fn renew(&self) -> Result<Renewal, StoreError> {
        self.store.renew()
    }

    fn forget(&self) {
        self.store.forget_leases();
    }

    fn release(&self, macs: &[Mac]) -> Result<(), StoreError> {
        self.store.release(macs)
    }

    fn release_all(&self) -> Result<usize, StoreError> {
        self.store.release_all()
    }

    fn hand_over(&self, mac: &Mac, to: &str) -> Result<bool, StoreError> {
        self.store.hand_over(mac, to)
    }

    fn want(&self, mac: &Mac) -> Result<(), StoreError> {
        self.store.want(mac)
    }

    fn held_elsewhere(&self) -> Result<HashSet<Mac>, StoreError> {
        self.store.held_elsewhere()
    }

    fn departed(&self) -> Result<Vec<String>, StoreError> {
        self.store.departed()
    }

    fn expire_departed(&self, owners: &[String]) -> Result<usize, StoreError> {
        self.store.expire_departed(owners)
    }

    fn put_phone_fenced(&self, record: &PhoneRecord, fence: Token) -> Result<(), StoreError> {
        self.store.write_record(record, Some(fence))
    }
}
