//! The store's LISTEN connection: other instances' writes and lease messages arrive here as
//! PostgreSQL notifications, sent in the writing transaction and so delivered only once it
//! committed (PostgreSQL `NOTIFY` reference: "if a NOTIFY is executed inside a transaction,
//! the notify events are not delivered until and unless the transaction is committed").
//! Notifications sent while this connection was down are lost, hence
//! [`StoreEvent::Listening`] after every reconnect. A `changed` bumps the write epoch, so this instance's download path re-reads
//! what another instance wrote; lease messages go to [`StoreEvent`] subscribers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use innoprov::Mac;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use super::leases::{CHANNEL, SESSION_LOCKS};

/// A message from the database for this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// The LISTEN connection is (again) open: notifications may have been missed meanwhile.
    Listening,
    /// Some instance released leases: free phones may be claimed now.
    Released,
    /// An instance (`by`, its owner name) asks the owner of `mac`'s lease to hand it over.
    Wanted {
        /// The phone.
        mac: Mac,
        /// The asking instance.
        by: String,
    },
    /// `mac`'s lease was handed over to `to`.
    Handed {
        /// The phone.
        mac: Mac,
        /// The new owner.
        to: String,
    },
}

/// This instance's session lock, held on the LISTEN connection so that it lives exactly as
/// long as that session (leases.rs says why).
pub struct SessionLock {
    /// This instance's owner name: the lock's key is `(SESSION_LOCKS, hashtext(owner))`.
    pub owner: String,
    /// Since when the lock is held; `None` while the connection is down or the lock not
    /// yet taken again.
    pub since: Arc<Mutex<Option<Instant>>>,
}

impl SessionLock {
    fn set(&self, since: Option<Instant>) {
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = since;
    }
}

/// How often the session lock is tried again while another session still holds it (this
/// instance's previous one, until the server notices it is gone).
const LOCK_RETRY: Duration = Duration::from_millis(250);

/// Runs the LISTEN connection on `runtime` for the store's life, reconnecting after a loss;
/// with `lock`, it also holds this instance's session lock.
pub fn spawn(
    runtime: &tokio::runtime::Handle,
    config: tokio_postgres::Config,
    epoch: Arc<AtomicU64>,
    events: broadcast::Sender<StoreEvent>,
    lock: Option<SessionLock>,
) {
    runtime.spawn(async move {
        loop {
            let outcome = listen(&config, &epoch, &events, lock.as_ref()).await;
            if let Some(lock) = &lock {
                lock.set(None);
            }
            if let Err(e) = outcome {
                log::warn!(
                    "{}: LISTEN connection: {e}; again in 1 s",
                    super::describe(&config)
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Takes the session lock on `client`, trying again until this session holds it.
async fn take_session_lock(
    client: &tokio_postgres::Client,
    lock: &SessionLock,
) -> Result<(), tokio_postgres::Error> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&SESSION_LOCKS, &lock.owner],
            )
            .await?;
        if row.get::<_, bool>(0) {
            lock.set(Some(Instant::now()));
            return Ok(());
        }
        if !warned && started.elapsed() > Duration::from_secs(5) {
            warned = true;
            log::warn!(
                "the session lock of {} is still held by another session (the previous one, until the server drops it); trying again",
                lock.owner
            );
        }
        tokio::time::sleep(LOCK_RETRY).await;
    }
}

async fn listen(
    config: &tokio_postgres::Config,
    epoch: &AtomicU64,
    events: &broadcast::Sender<StoreEvent>,
    lock: Option<&SessionLock>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    log::warn!("LISTEN connection ended: {e}");
                    break;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    if let Some(lock) = lock {
        take_session_lock(&client, lock).await?;
    }
    // Whatever changed while not listening is unknown: every cache re-reads.
    epoch.fetch_add(1, Ordering::AcqRel);
    let _ = events.send(StoreEvent::Listening);
    while let Some(payload) = rx.recv().await {
        match parse(&payload) {
            Some(Notice::Changed) => {
                epoch.fetch_add(1, Ordering::AcqRel);
            }
            Some(Notice::Event(event)) => {
                let _ = events.send(event);
            }
            None => log::warn!("ignoring a notification on {CHANNEL}: {payload:?}"),
        }
    }
    driver.abort();
    drop(client);
    Ok(())
}

enum Notice {
    Changed,
    Event(StoreEvent),
}

fn parse(payload: &str) -> Option<Notice> {
    let mut words = payload.split(' ');
    match (words.next()?, words.next(), words.next()) {
        ("changed", Some(_), None) => Some(Notice::Changed),
        ("released", None, None) => Some(Notice::Event(StoreEvent::Released)),
        ("wanted", Some(mac), Some(by)) => Some(Notice::Event(StoreEvent::Wanted {
            mac: mac.parse().ok()?,
            by: by.to_string(),
        })),
        ("handed", Some(mac), Some(to)) => Some(Notice::Event(StoreEvent::Handed {
            mac: mac.parse().ok()?,
            to: to.to_string(),
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert!(matches!(parse("changed 001565000001"), Some(Notice::Changed)));
        assert!(matches!(
            parse("released"),
            Some(Notice::Event(StoreEvent::Released))
        ));
        match parse("wanted 001565000001 host/12/abcd") {
            Some(Notice::Event(StoreEvent::Wanted { mac, by })) => {
                assert_eq!(mac.to_string(), "001565000001");
                assert_eq!(by, "host/12/abcd");
            }
            _ => panic!("wanted not parsed"),
        }
        match parse("handed 001565000001 host/13/ef01") {
            Some(Notice::Event(StoreEvent::Handed { mac, to })) => {
                assert_eq!(mac.to_string(), "001565000001");
                assert_eq!(to, "host/13/ef01");
            }
            _ => panic!("handed not parsed"),
        }
        assert!(parse("wanted nonsense host").is_none());
        assert!(parse("released extra").is_none());
        assert!(parse("").is_none());
    }
}
