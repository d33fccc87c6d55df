//! The process's logger: `env_logger` on stderr (`RUST_LOG`, the caller's default level), with
//! a ceiling per third-party target that no `RUST_LOG` can lift. Those crates log what passes
//! through them at their finest levels (websocket frames with sysclient passwords and
//! provisioning codes, HTTP heads with tokens, SQL parameters with sealed records): the service
//! promises that no secret reaches a log at any level, so their frame traces never do.

use log::{LevelFilter, Log, Metadata, Record};

/// Third-party log targets (and everything below them) with the finest level they may log at.
pub const CEILINGS: [(&str, LevelFilter); 8] = [
    ("tungstenite", LevelFilter::Debug),
    ("tokio_tungstenite", LevelFilter::Debug),
    ("actix_http", LevelFilter::Debug),
    ("actix_codec", LevelFilter::Debug),
    ("actix_ws", LevelFilter::Debug),
    ("actix_web", LevelFilter::Debug),
    ("rustls", LevelFilter::Debug),
    ("tokio_postgres", LevelFilter::Info),
];

/// The ceiling of `target`, if it is one of [`CEILINGS`] or below one.
fn ceiling(target: &str) -> Option<LevelFilter> {
    CEILINGS.iter().find_map(|(crate_name, level)| {
        let below = target
            .strip_prefix(crate_name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        below.then_some(*level)
    })
}

/// `env_logger` with the ceilings applied.
struct CappedLogger {
    /// What `RUST_LOG` asks for.
    inner: env_logger::Logger,
}

impl Log for CappedLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        ceiling(metadata.target()).is_none_or(|max| metadata.level() <= max) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger: `RUST_LOG`, else `default_level`, under the ceilings.
pub fn init(default_level: &str) {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level)).build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(CappedLogger { inner })).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_hold_for_the_crates_and_their_modules_only() {
        assert_eq!(ceiling("tungstenite"), Some(LevelFilter::Debug));
        assert_eq!(ceiling("tungstenite::protocol::frame"), Some(LevelFilter::Debug));
        assert_eq!(ceiling("tokio_postgres::query"), Some(LevelFilter::Info));
        assert_eq!(ceiling("tungstenite_other"), None);
        assert_eq!(ceiling("innoprov_actors::edge::app_session"), None);
    }
}
