//! `PostgresStore`: the [`Store`] in a PostgreSQL database (`store.backend = "postgres"`), for
//! installations that need more than one machine's sled directory. It passes the same
//! conformance suite as sled and memory (tests/postgres.rs, against a real server).
//!
//! - Schema: versioned migrations (`actors/migrations`, refinery) run at open.
//! - Values are the sled store's bytes (JSON), so a record compares equal in either store.
//! - Durability: every write is its own committed statement or transaction, durable when it
//!   returns (PostgreSQL's default `synchronous_commit`); `flush` has nothing left to do. The
//!   phone jobs' record writes come in groups ([`checked`]: one transaction of pipelined
//!   statements, each checking the stored generation and the lease's token itself, one
//!   commit).
//! - Connections: `pool_size` clients. Their connections run on the store's own runtime
//!   thread; a call blocks the calling thread for its round trip, driving the query future
//!   itself, as the sled store blocks on its disk.
//! - A lost connection is opened again with backoff, and the call retried, for at most
//!   [`RETRY_FOR`]; after that the call fails with the reason, so a ProvisioningPhone is answered
//!   `failed` instead of acknowledged without durability.
//! - The seal key: the `installation` row holds a value sealed with the key of the instance
//!   that created the database; an instance with another key is refused at open.
//! - Several instances: with leases on ([`PostgresSettings::lease`]), a phone's record is
//!   written only by the instance holding its lease's current fencing token ([`leases`]).
//!   Every record and download-state write notifies the others in its own transaction; their
//!   LISTEN connection ([`listener`]) bumps their write epoch, so their download paths re-read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innoprov::provisioning::{AuditEntry, PhoneAccess};
use innoprov::seal::{SealPurpose, Sealed, Sealer, Secret};
use innoprov::store::{
    CheckedWrite, Freshness, Store, StoreError, WriteOutcome, appended, decode_json, decode_record, encode,
    encode_json, latest,
};
use innoprov::{Mac, PhoneRecord};
use tokio_postgres::{Client, NoTls};

mod checked;
pub mod leases;
pub mod listener;

pub use leases::{CHANNEL, PostgresLeases};
pub use listener::StoreEvent;

refinery::embed_migrations!("migrations");

/// How long a call keeps retrying over a lost connection before it fails.
pub const RETRY_FOR: Duration = Duration::from_secs(10);
/// What the installation check seals.
const CHECK_TEXT: &str = "innoprov installation";

/// Where and how to connect.
#[derive(Clone)]
pub struct PostgresSettings {
    /// The connection URL (a password in it is never logged).
    pub url: String,
    /// The password, when not in the URL.
    pub password: Option<Secret>,
    /// Connections held.
    pub pool_size: usize,
    /// Leases on (several instances): how long one lasts. `None`: this instance is the only
    /// writer and writes are not fenced.
    pub lease: Option<Duration>,
}

/// The PostgreSQL store.
pub struct PostgresStore {
    /// The parsed connection settings, for reconnects.
    config: tokio_postgres::Config,
    /// The clients; a call takes the next free one.
    clients: Vec<Mutex<Conn>>,
    /// Spreads calls over the clients.
    next: AtomicUsize,
    /// Runs the connections' I/O; calls only wait on their results. `None` once dropped.
    runtime: Option<tokio::runtime::Runtime>,
    /// Bumped by every record or download-state write, of this instance or (through the
    /// LISTEN connection) another.
    epoch: Arc<AtomicU64>,
    /// This instance's leases, when on.
    leases: Option<leases::OwnLeases>,
    /// Lease messages from the database, for the registry.
    events: tokio::sync::broadcast::Sender<StoreEvent>,
}

/// One connection and the statements prepared on it: a hot statement is parsed and planned
/// once per connection instead of on every call (half the round trips; the server's parser
/// was its largest cost under load).
struct Conn {
    /// The connection.
    client: Client,
    /// Prepared statements by their text.
    statements: std::collections::HashMap<&'static str, tokio_postgres::Statement>,
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn {
            client,
            statements: std::collections::HashMap::new(),
        }
    }

    /// `sql` prepared on this connection (once).
    async fn prepared(
        &mut self,
        sql: &'static str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

fn backend(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}

/// The server and database a URL names, for messages (never the password).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres {host}:{port}/{}",
        config.get_dbname().unwrap_or("(default)")
    )
}

/// A PostgreSQL store opened for the service: the rooms above see the core's traits only.
pub struct Opened {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Its leases and lease messages, when leases are on.
    pub leases: Option<crate::store::LeaseHandle>,
    /// The server and database, for messages.
    pub name: String,
}

/// Opens the store [`PostgresStore::open`] does, as the service holds it.
pub fn open_shared(settings: &PostgresSettings, sealer: &Sealer) -> Result<Opened, StoreError> {
    let store = Arc::new(PostgresStore::open(settings, sealer)?);
    Ok(Opened {
        name: store.name(),
        leases: PostgresStore::lease_handle(&store),
        store,
    })
}

/// The server and database `url` names, for `innoprov check` (never the password); an
/// unparsable URL is the error.
pub fn describe_url(url: &str) -> Result<String, StoreError> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| backend("store.url", e))?;
    Ok(describe(&config))
}

impl PostgresStore {
    /// Connects, migrates the schema and checks the seal key against the database's.
    pub fn open(settings: &PostgresSettings, sealer: &Sealer) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(|e| backend("store.url", e))?;
        // A dead server or a half-open connection is noticed in seconds, not hours (the LISTEN
        // connection carries the other instances' messages), unless the URL says otherwise.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        if let Some(password) = &settings.password {
            config.password(password.expose());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres-io")
            .enable_all()
            .build()
            .map_err(|e| backend("postgres runtime", e))?;
        // Held by the store from here on, so that a failed open drops the runtime the way
        // `Drop` does (this may run on an async thread, where a plain drop panics).
        let mut store = PostgresStore {
            config,
            clients: Vec::new(),
            next: AtomicUsize::new(0),
            runtime: Some(runtime),
            epoch: Arc::new(AtomicU64::new(0)),
            leases: settings.lease.map(leases::OwnLeases::new),
            events: tokio::sync::broadcast::channel(1024).0,
        };
        for _ in 0..settings.pool_size.max(1) {
            let handle = store.runtime.as_ref().map(|r| r.handle().clone());
            let handle = handle.ok_or_else(|| StoreError::Backend("the store is closed".into()))?;
            let client = connect(&handle, &store.config)?;
            store.clients.push(Mutex::new(Conn::new(client)));
        }
        store.migrate()?;
        store.check_seal_key(sealer)?;
        if let Some(runtime) = &store.runtime {
            let lock = store.leases.as_ref().map(|own| listener::SessionLock {
                owner: own.owner.clone(),
                since: Arc::clone(&own.session_since),
            });
            listener::spawn(
                runtime.handle(),
                store.config.clone(),
                Arc::clone(&store.epoch),
                store.events.clone(),
                lock,
            );
        }
        store.wait_for_session_lock()?;
        match store.owner() {
            Some(owner) => log::info!(
                "store: {} ({} connections), this instance holds leases as {owner}",
                store.name(),
                store.clients.len()
            ),
            None => log::info!("store: {} ({} connections)", store.name(), store.clients.len()),
        }
        Ok(store)
    }

    /// Waits (at most [`RETRY_FOR`]) until the LISTEN connection holds this instance's
    /// session lock: before that the other instances would take it for departed and end the
    /// leases it is about to claim.
    fn wait_for_session_lock(&self) -> Result<(), StoreError> {
        let Some(own) = &self.leases else { return Ok(()) };
        let deadline = Instant::now() + RETRY_FOR;
        while !self.holds_session_lock() {
            if Instant::now() > deadline {
                return Err(StoreError::Backend(format!(
                    "{}: this instance's session lock ({}) was not taken within {RETRY_FOR:?}",
                    self.name(),
                    own.owner
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Whether this instance's session lock is held now (always false without leases).
    pub fn holds_session_lock(&self) -> bool {
        self.leases.as_ref().is_some_and(|own| {
            own.session_since
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
        })
    }

    /// Lease messages from the database (and [`StoreEvent::Listening`] after every reconnect).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// This instance's leases with the database's lease messages, for the rooms above the
    /// store; `None` when the store was opened without leases.
    pub fn lease_handle(store: &Arc<PostgresStore>) -> Option<crate::store::LeaseHandle> {
        Some(crate::store::LeaseHandle {
            leases: Arc::new(PostgresLeases::of(store)?),
            events: store.events.clone(),
        })
    }

    /// The server and database, for messages.
    pub fn name(&self) -> String {
        describe(&self.config)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let name = self.name();
        self.with_client(|client| {
            // refinery takes the client by `&mut`; a runner holds no state between calls.
            futures_executor::block_on(migrations::runner().run_async(&mut client.client))
                .map(|_| ())
                .map_err(|e| backend(&format!("migrating {name}"), e))
        })
    }

    fn check_seal_key(&self, sealer: &Sealer) -> Result<(), StoreError> {
        let sealed = sealer
            .seal(&Secret::new(CHECK_TEXT), &SealPurpose::InstallationCheck)
            .map_err(|e| backend("sealing the installation check", e))?;
        let text = serde_json::to_value(&sealed)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        // The first instance to get here sets the check; every later one reads it.
        self.retrying("installation check", |client| {
            run(client.execute(
                "INSERT INTO installation (id, seal_check) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                &[&text],
            ))?;
            let row = run(client.query_one("SELECT seal_check FROM installation WHERE id = 1", &[]))?;
            Ok(row.get::<_, String>(0))
        })
        .and_then(|stored| {
            let stored: Sealed = serde_json::from_value(serde_json::Value::String(stored))
                .map_err(|e| backend("installation check", e))?;
            match sealer.open(&stored, &SealPurpose::InstallationCheck) {
                Ok(secret) if secret.expose() == CHECK_TEXT => Ok(()),
                _ => Err(StoreError::Backend(format!(
                    "{}: the seal key (store.seal_key_file) is not the one this database's secrets are sealed with; every instance sharing a database needs the same key file",
                    self.name()
                ))),
            }
        })
    }

    /// Runs `call` on a free client (waiting for one if all are busy).
    fn with_client<T>(&self, call: impl FnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.clients.len();
        let slot = (0..n)
            .find_map(|i| self.clients[(start + i) % n].try_lock().ok())
            .unwrap_or_else(|| self.clients[start % n].lock().unwrap_or_else(|p| p.into_inner()));
        let mut client = slot;
        if client.is_closed() {
            let runtime = self
                .runtime
                .as_ref()
                .ok_or_else(|| StoreError::Backend("the store is closed".into()))?;
            *client = Conn::new(connect(runtime.handle(), &self.config)?);
        }
        call(&mut client)
    }

    /// Runs `call`, opening the connection again and retrying while the failure is a lost
    /// connection, for at most [`RETRY_FOR`]. `call` must be safe to repeat (every write here
    /// is an upsert, a delete or a transaction).
    fn retrying<T>(
        &self,
        what: &str,
        mut call: impl FnMut(&mut Conn) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut delay = Duration::from_millis(50);
        loop {
            let outcome = self.with_client(|client| Ok(call(client)));
            let error = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if !lost(&e) => return Err(backend(&format!("{}: {what}", self.name()), e)),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() + delay > deadline {
                return Err(StoreError::Backend(format!(
                    "{}: {what}: connection lost and not back within {RETRY_FOR:?}: {error}",
                    self.name()
                )));
            }
            log::warn!("{}: {what}: {error}; retrying in {delay:?}", self.name());
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether `e` means the connection is gone (so a new one may succeed), not a refusal.
fn lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_none() && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        || e.code().is_some_and(|c| {
            // admin_shutdown, crash_shutdown, cannot_connect_now: the server is restarting.
            let c = c.code();
            c == "57P01" || c == "57P02" || c == "57P03"
        })
}

/// Drives `future` to its end on the calling thread.
fn run<T>(future: impl Future<Output = T>) -> T {
    futures_executor::block_on(future)
}

/// Opens a connection whose I/O runs on `runtime` (connecting there too: the caller may be on
/// a runtime of its own, where a nested `block_on` is not allowed).
fn connect(runtime: &tokio::runtime::Handle, config: &tokio_postgres::Config) -> Result<Client, StoreError> {
    let name = describe(config);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let config = config.clone();
    let task_name = name.clone();
    runtime.spawn(async move {
        match config.connect(NoTls).await {
            Ok((client, connection)) => {
                let _ = tx.send(Ok(client));
                if let Err(e) = connection.await {
                    log::warn!("{task_name}: connection ended: {e}");
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    match run(rx) {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(backend(&format!("connecting to {name}"), e)),
        Err(_) => Err(backend(
            &format!("connecting to {name}"),
            "the store's runtime stopped",
        )),
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a runtime's own thread (where the last reference
        // may go) does not allow; let its threads wind down by themselves.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Writes a record and notifies the other instances, in one statement.
const WRITE_RECORD: &str = "WITH written AS (INSERT INTO phones (mac, record, generation) VALUES ($1, $2, $5) \
      ON CONFLICT (mac) DO UPDATE SET record = EXCLUDED.record, generation = EXCLUDED.generation RETURNING 1) \
    SELECT pg_notify($3, $4) FROM written";
/// The same only while `$6` owns the phone's lease with token `$7` (the lease row locked until
/// the statement commits); no row back: nothing written.
const WRITE_FENCED_RECORD: &str = "WITH fence AS (SELECT 1 FROM leases \
      WHERE mac = $1 AND owner = $6 AND token = $7 FOR SHARE), \
    written AS (INSERT INTO phones (mac, record, generation) SELECT $1, $2, $5 WHERE EXISTS (SELECT 1 FROM fence) \
      ON CONFLICT (mac) DO UPDATE SET record = EXCLUDED.record, generation = EXCLUDED.generation RETURNING 1) \
    SELECT pg_notify($3, $4) FROM written";

/// A record's generation as its column holds it.
fn generation_of(record: &PhoneRecord) -> Result<i64, StoreError> {
    i64::try_from(record.generation)
        .map_err(|_| backend(&format!("write {}", record.mac), "a generation beyond 2^63"))
}

fn key(mac: &Mac) -> Vec<u8> {
    mac.bytes().to_vec()
}

/// The MAC a stored key names.
fn mac_of(key: &[u8]) -> Result<Mac, String> {
    <[u8; 6]>::try_from(key)
        .map(Mac::from_bytes)
        .map_err(|_| format!("a key of {} bytes", key.len()))
}

/// The notification every record or download-state write sends in its transaction.
fn changed(mac: &Mac) -> String {
    format!("changed {mac}")
}

impl PostgresStore {
    /// Writes a phone's record, fenced with `token` when leases are on: the write happens only
    /// while that token is the phone's current one and this instance its owner.
    fn write_record(
        &self,
        record: &PhoneRecord,
        token: Option<innoprov::store::Token>,
    ) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let mac = key(&record.mac);
        let notice = changed(&record.mac);
        let generation = generation_of(record)?;
        let fence = match (&self.leases, token) {
            (Some(leases), Some(token)) => Some((leases.owner.as_str(), token)),
            _ => None,
        };

        // One statement, so one round trip: the lease row is locked while the record is
        // written (a takeover waits for it, or it sees the takeover and writes nothing).
        let written = self.retrying(&format!("write {}", record.mac), |conn| {
            run(async {
                match fence {
                    None => {
                        let statement = conn.prepared(WRITE_RECORD).await?;
                        conn.query(&statement, &[&mac, &bytes, &CHANNEL, &notice, &generation])
                            .await
                    }
                    Some((owner, token)) => {
                        let statement = conn.prepared(WRITE_FENCED_RECORD).await?;
                        conn.query(
                            &statement,
                            &[&mac, &bytes, &CHANNEL, &notice, &generation, &owner, &token],
                        )
                        .await
                    }
                }
            })
        });
        self.bump();
        match written {
            Ok(rows) if rows.is_empty() => {
                // Forgotten only if it is the token refused (a late write of an older job of
                // this instance does not end the lease its successor holds).
                if let (Some(leases), Some(token)) = (&self.leases, token) {
                    let mut held = leases.held();
                    if held.get(&record.mac) == Some(&token) {
                        held.remove(&record.mac);
                    }
                }
                Err(innoprov::store::taken_over(&record.mac))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A table holding one JSON value per phone that is changed in place: its statements.
struct LockedValue {
    /// What the value is, in messages.
    what: &'static str,
    /// Inserts the default value (`$2`) unless the phone has one.
    insert: &'static str,
    /// Reads the value with its row locked.
    select: &'static str,
    /// Writes the changed value (`$2`).
    update: &'static str,
    /// Whether other instances are told (a download-state write; the audit is not cached).
    notify: bool,
}

/// The phones' download states.
const ACCESS: LockedValue = LockedValue {
    what: "access",
    insert: "INSERT INTO access (mac, state) VALUES ($1, $2) ON CONFLICT (mac) DO NOTHING",
    select: "SELECT state FROM access WHERE mac = $1 FOR UPDATE",
    update: "UPDATE access SET state = $2 WHERE mac = $1",
    notify: true,
};

/// The phones' download audits.
const AUDIT: LockedValue = LockedValue {
    what: "audit",
    insert: "INSERT INTO audit (mac, entries) VALUES ($1, $2) ON CONFLICT (mac) DO NOTHING",
    select: "SELECT entries FROM audit WHERE mac = $1 FOR UPDATE",
    update: "UPDATE audit SET entries = $2 WHERE mac = $1",
    notify: false,
};

impl PostgresStore {
    /// Reads, changes and writes `mac`'s value in `table` in one transaction with its row
    /// locked: no other writer, in this instance or another, comes in between. A stored value
    /// that cannot be read is kept, not overwritten.
    fn change_locked<T>(
        &self,
        mac: &Mac,
        table: &LockedValue,
        change: &mut dyn FnMut(&mut T),
    ) -> Result<T, StoreError>
    where
        T: Default + serde::Serialize + serde::de::DeserializeOwned,
    {
        let k = key(mac);
        let notice = changed(mac);
        let default = encode_json(table.what, &T::default())?;
        let outcome = self.retrying(&format!("write {} of {mac}", table.what), |client| {
            run(async {
                let tx = client.transaction().await?;
                tx.execute(table.insert, &[&k, &default]).await?;
                let row = tx.query_one(table.select, &[&k]).await?;
                let mut value = match decode_json::<T>(&k, &row.get::<_, Vec<u8>>(0)) {
                    Ok(value) => value,
                    Err(e) => return Ok(Err(e)),
                };
                change(&mut value);
                let bytes = match encode_json(table.what, &value) {
                    Ok(bytes) => bytes,
                    Err(e) => return Ok(Err(e)),
                };
                tx.execute(table.update, &[&k, &bytes]).await?;
                if table.notify {
                    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &notice])
                        .await?;
                }
                tx.commit().await?;
                Ok(Ok(value))
            })
        });
        outcome?
    }
}

impl Store for PostgresStore {
    fn put_phone(&self, record: &PhoneRecord) -> Result<(), StoreError> {
        let token = match &self.leases {
            None => None,
            Some(leases) => Some(leases.token(&record.mac).ok_or_else(|| {
                StoreError::Backend(format!(
                    "phone {}: this instance does not hold its lease",
                    record.mac
                ))
            })?),
        };
        self.write_record(record, token)
    }

    fn get_phone(&self, mac: &Mac) -> Result<Option<PhoneRecord>, StoreError> {
        match self.get_phone_bytes(mac)? {
            Some(bytes) => decode_record(mac, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn get_phone_bytes(&self, mac: &Mac) -> Result<Option<Vec<u8>>, StoreError> {
        let k = key(mac);
        let row = self.retrying(&format!("read {mac}"), |conn| {
            run(async {
                let statement = conn.prepared("SELECT record FROM phones WHERE mac = $1").await?;
                conn.query_opt(&statement, &[&k]).await
            })
        })?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    }

    fn phone_changed(&self, mac: &Mac, cached: &[u8]) -> Result<Freshness, StoreError> {
        Ok(match self.get_phone_bytes(mac)? {
            None => Freshness::Missing,
            Some(bytes) if bytes == cached => Freshness::Unchanged,
            Some(bytes) => Freshness::Changed(bytes),
        })
    }

    fn delete_phone(&self, mac: &Mac) -> Result<bool, StoreError> {
        let k = key(mac);
        let notice = changed(mac);
        if let Some(leases) = &self.leases {
            leases.held().remove(mac);
        }
        let deleted = self.retrying(&format!("delete {mac}"), |client| {
            run(async {
                let tx = client.transaction().await?;
                tx.execute("DELETE FROM access WHERE mac = $1", &[&k]).await?;
                tx.execute("DELETE FROM audit WHERE mac = $1", &[&k]).await?;
                // The owner's next renewal finds the lease gone and ends the phone's link.
                tx.execute("DELETE FROM leases WHERE mac = $1", &[&k]).await?;
                let n = tx.execute("DELETE FROM phones WHERE mac = $1", &[&k]).await?;
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &notice])
                    .await?;
                tx.commit().await?;
                Ok(n > 0)
            })
        });
        self.bump();
        deleted
    }

    fn phones(&self) -> Result<Vec<PhoneRecord>, StoreError> {
        let rows = self.retrying("scan", |client| {
            run(client.query("SELECT mac, record FROM phones ORDER BY mac", &[]))
        })?;
        rows.iter()
            .map(|row| {
                let mac = mac_of(&row.get::<_, Vec<u8>>(0)).map_err(|e| backend("scan", e))?;
                let bytes: Vec<u8> = row.get(1);
                decode_record(&mac, &bytes)
            })
            .collect()
    }

    fn phones_with_access(&self) -> Result<Vec<(PhoneRecord, PhoneAccess)>, StoreError> {
        let rows = self.retrying("scan", |client| {
            run(client.query(
                "SELECT p.mac, p.record, a.state FROM phones p LEFT JOIN access a ON a.mac = p.mac ORDER BY p.mac",
                &[],
            ))
        })?;
        rows.iter()
            .map(|row| {
                let mac = mac_of(&row.get::<_, Vec<u8>>(0)).map_err(|e| backend("scan", e))?;
                let record = decode_record(&mac, &row.get::<_, Vec<u8>>(1))?;
                let access = match row.get::<_, Option<Vec<u8>>>(2) {
                    Some(state) => decode_json(&mac.bytes(), &state)?,
                    None => PhoneAccess::default(),
                };
                Ok((record, access))
            })
            .collect()
    }

    fn get_access(&self, mac: &Mac) -> Result<PhoneAccess, StoreError> {
        let k = key(mac);
        let row = self.retrying(&format!("read {mac}"), |client| {
            run(client.query_opt("SELECT state FROM access WHERE mac = $1", &[&k]))
        })?;
        match row {
            Some(row) => decode_json(&mac.bytes(), &row.get::<_, Vec<u8>>(0)),
            None => Ok(PhoneAccess::default()),
        }
    }

    fn update_access(
        &self,
        mac: &Mac,
        change: &mut dyn FnMut(&mut PhoneAccess),
    ) -> Result<PhoneAccess, StoreError> {
        let access = self.change_locked(mac, &ACCESS, change);
        self.bump();
        access
    }

    fn put_audit(&self, mac: &Mac, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let bytes = encode_json("audit", &entries)?;
        let k = key(mac);
        self.retrying(&format!("audit {mac}"), |client| {
            run(client.execute(
                "INSERT INTO audit (mac, entries) VALUES ($1, $2) ON CONFLICT (mac) DO UPDATE SET entries = EXCLUDED.entries",
                &[&k, &bytes],
            ))
        })
        .map(|_| ())
    }

    fn append_audit(&self, mac: &Mac, new: Vec<AuditEntry>, keep: usize) -> Result<(), StoreError> {
        // Under the row lock: two instances flushing the same phone's downloads each keep the
        // other's.
        self.change_locked(mac, &AUDIT, &mut |entries: &mut Vec<AuditEntry>| {
            *entries = appended(std::mem::take(entries), new.clone(), keep);
        })
        .map(|_| ())
    }

    fn audit(&self, mac: &Mac, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let k = key(mac);
        let row = self.retrying(&format!("audit {mac}"), |client| {
            run(client.query_opt("SELECT entries FROM audit WHERE mac = $1", &[&k]))
        })?;
        let entries: Vec<AuditEntry> = match row {
            Some(row) => decode_json(&k, &row.get::<_, Vec<u8>>(0))?,
            None => Vec::new(),
        };
        Ok(latest(entries, limit))
    }

    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.retrying(&format!("setting {key}"), |client| {
            run(client.query_opt("SELECT value FROM settings WHERE key = $1", &[&key]))
        })?;
        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
    }

    fn put_setting(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.retrying(&format!("setting {key}"), |client| match value {
            Some(value) => run(client.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &value],
            )),
            None => run(client.execute("DELETE FROM settings WHERE key = $1", &[&key])),
        })
        .map(|_| ())
    }

    fn update_setting(
        &self,
        key: &str,
        change: &mut dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.retrying(&format!("setting {key}"), |client| {
            run(async {
                let tx = client.transaction().await?;
                // A lock on the key's name, held to the commit: it also serialises the first
                // write of a setting no row holds yet (FOR UPDATE locks only rows that exist).
                tx.execute("SELECT pg_advisory_xact_lock(hashtext('settings:' || $1))", &[&key])
                    .await?;
                let row = tx
                    .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
                    .await?;
                match change(row.map(|r| r.get::<_, Vec<u8>>(0))) {
                    Some(value) => {
                        tx.execute(
                            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                            &[&key, &value],
                        )
                        .await?
                    }
                    None => {
                        tx.execute("DELETE FROM settings WHERE key = $1", &[&key])
                            .await?
                    }
                };
                tx.commit().await
            })
        })
    }

    fn write_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every write above returned only once committed.
        Ok(())
    }

    fn put_phones_checked(&self, writes: &[CheckedWrite<'_>]) -> Result<Vec<WriteOutcome>, StoreError> {
        self.write_checked(writes)
    }

    fn concurrent_writes(&self) -> usize {
        self.clients.len()
    }
}
