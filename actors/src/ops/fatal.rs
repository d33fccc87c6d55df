//! The service-wide singletons (persistence, registry, directory, notifier, the audit writer)
//! are not restarted in place: each holds what the others address (the one store writer, the
//! one map of jobs), and a restarted copy would have to win back every reference. Instead a
//! singleton that ends outside a shutdown, a panic included (actix runs `stopped` while the dead
//! context is dropped), reports here; the service then shuts down as cleanly as it still can
//! and the process exits with status 1 and one log line naming the actor, so that systemd (or
//! whatever runs it) starts it again. Everything acknowledged is in the store, and a new
//! process resumes every stored phone.
//!
//! Per-phone failures are contained instead: a phone's job is restarted by the registry, a
//! job's socket task by its job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Where singletons report their end.
#[derive(Clone)]
pub struct Fatal {
    /// The first report (who, and why).
    report: Arc<watch::Sender<Option<String>>>,
    /// Set once a shutdown is under way: ends are expected then.
    stopping: Arc<AtomicBool>,
}

impl Default for Fatal {
    fn default() -> Self {
        Fatal {
            report: Arc::new(watch::channel(None).0),
            stopping: Arc::default(),
        }
    }
}

impl Fatal {
    /// `who` ended (`why`): outside a shutdown, the service must go down.
    pub fn report(&self, who: &str, why: &str) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let message = format!("{who} {why}");
        log::error!("{message}: the service cannot go on without it and stops (exit status 1)");
        self.report.send_if_modified(|first| {
            if first.is_none() {
                *first = Some(message);
                true
            } else {
                false
            }
        });
    }

    /// Marks the start of a shutdown: ends from now on are expected.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Waits for the first report.
    pub async fn wait(&self) -> String {
        let mut rx = self.report.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(report) => report.clone().unwrap_or_default(),
            // The sender lives in `self`: it cannot be gone while this waits.
            Err(_) => std::future::pending().await,
        }
    }

    /// The first report, if any.
    pub fn reported(&self) -> Option<String> {
        self.report.borrow().clone()
    }
}

#[cfg(feature = "simulators")]
/// Fault injection for the supervision tests: the singleton that gets it panics.
#[doc(hidden)]
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct InjectFault;
