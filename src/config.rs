//! The service configuration (interface.md): TOML with the documented keys, unknown keys
//! rejected, every value checked before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration cannot be used; the text names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file named.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type.
    #[error("config {origin}: {message}")]
    Parse {
        /// The file (or "built-in default").
        origin: String,
        /// The parser's message, on one line.
        message: String,
    },
    /// A value is well-formed TOML but not usable.
    #[error("config {origin}: {key}: {reason}")]
    Invalid {
        /// The file (or "built-in default").
        origin: String,
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The one HTTP listener.
    #[serde(default)]
    pub http: HttpConfig,
    /// The App object this service answers for.
    pub app: AppConfig,
    /// Where state lives.
    #[serde(default)]
    pub store: StoreConfig,
    /// How to reach innovaphone Devices.
    #[serde(default)]
    pub devices: DevicesConfig,
    /// Limits and timers of the AppWebsocket connections.
    #[serde(default)]
    pub websocket: WebsocketConfig,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the one listener (websockets, phone downloads, admin), `ip:port`.
    #[serde(default = "default_listen")]
    pub listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
        }
    }
}

/// `[app]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Path of the App object URL, e.g. `/example.com/innoprov/innoprov`.
    #[serde(default = "default_app_path")]
    pub path: String,
    /// The App object's password: the shared secret of every login.
    pub password: String,
    /// Title published for `com.innovaphone.provisioning`.
    #[serde(default = "default_title")]
    pub title: String,
}

fn default_app_path() -> String {
    "/example.com/innoprov/innoprov".into()
}

fn default_title() -> String {
    "Third-party phones".into()
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The sled directory, created if missing; the seal key file lives in it.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
}

fn default_store_path() -> PathBuf {
    "data".into()
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store_path(),
        }
    }
}

/// `[devices]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// Overrides the sysclient URL learnt from the PBX's Services API.
    pub sysclient_url: Option<String>,
    /// Most sysclient connection attempts per second, service-wide (restarts, Devices restarts).
    #[serde(default = "default_connects_per_second")]
    pub connects_per_second: u32,
    /// Seconds a ProvisioningPhone waits for the complete configuration before "failed".
    #[serde(default = "default_provisioning_timeout")]
    pub provisioning_timeout_secs: u64,
    /// First reconnect delay of a link, milliseconds (doubling, jittered).
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay of a link, seconds.
    #[serde(default = "default_reconnect_max_secs")]
    pub reconnect_max_secs: u64,
}

fn default_connects_per_second() -> u32 {
    500
}
fn default_provisioning_timeout() -> u64 {
    60
}
fn default_reconnect_min_ms() -> u64 {
    1000
}
fn default_reconnect_max_secs() -> u64 {
    60
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            sysclient_url: None,
            connects_per_second: default_connects_per_second(),
            provisioning_timeout_secs: default_provisioning_timeout(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_secs: default_reconnect_max_secs(),
        }
    }
}

/// `[websocket]`: the project's own section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketConfig {
    /// Largest inbound AppWebsocket message (after reassembling fragments), bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Seconds between websocket pings to a peer.
    #[serde(default = "default_ping_interval")]
    pub ping_interval_secs: u64,
    /// Seconds of silence (no frame, no pong) after which a peer is dropped.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
}

fn default_max_message_bytes() -> usize {
    1024 * 1024
}
fn default_ping_interval() -> u64 {
    20
}
fn default_idle_timeout() -> u64 {
    60
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig {
            max_message_bytes: default_max_message_bytes(),
            ping_interval_secs: default_ping_interval(),
            idle_timeout_secs: default_idle_timeout(),
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: origin.clone(),
            source,
        })?;
        Config::parse(&text, &origin)
    }

    /// Parses and checks configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            ConfigError::Parse {
                origin: origin.to_string(),
                message: match line {
                    Some(line) => format!("line {line}: {message}"),
                    None => message,
                },
            }
        })?;
        config.check(origin)?;
        Ok(config)
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            reason: reason.to_string(),
        };
        self.listen_addr().map_err(|r| invalid("http.listen", &r))?;
        let path = &self.app.path;
        if !path.starts_with('/') || path.ends_with('/') || path.len() < 2 {
            return Err(invalid(
                "app.path",
                "must start with '/' and name the app, e.g. /example.com/innoprov/innoprov",
            ));
        }
        if path
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(invalid("app.path", "has an empty, '.' or '..' segment"));
        }
        if path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(invalid(
                "app.path",
                "contains whitespace, control characters, '?' or '#'",
            ));
        }
        if self.app.password.is_empty() {
            return Err(invalid("app.password", "must not be empty"));
        }
        if self.app.title.trim().is_empty() {
            return Err(invalid("app.title", "must not be empty"));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty"));
        }
        if let Some(url) = &self.devices.sysclient_url
            && (!(url.starts_with("ws://") || url.starts_with("wss://")) || url.len() < 7)
        {
            return Err(invalid("devices.sysclient_url", "must be a ws:// or wss:// URL"));
        }
        let devices = &self.devices;
        if devices.connects_per_second == 0 {
            return Err(invalid("devices.connects_per_second", "must be at least 1"));
        }
        if devices.provisioning_timeout_secs == 0 {
            return Err(invalid("devices.provisioning_timeout_secs", "must be at least 1"));
        }
        if devices.reconnect_min_ms == 0
            || devices.reconnect_min_ms > devices.reconnect_max_secs.saturating_mul(1000)
        {
            return Err(invalid(
                "devices.reconnect_min_ms",
                "must be at least 1 and not above devices.reconnect_max_secs",
            ));
        }
        let ws = &self.websocket;
        if !(1024..=64 * 1024 * 1024).contains(&ws.max_message_bytes) {
            return Err(invalid(
                "websocket.max_message_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        if ws.ping_interval_secs == 0 || ws.idle_timeout_secs <= ws.ping_interval_secs {
            return Err(invalid(
                "websocket.idle_timeout_secs",
                "must be longer than websocket.ping_interval_secs, which must be at least 1",
            ));
        }
        Ok(())
    }

    /// The listener address.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.http
            .listen
            .parse()
            .map_err(|_| format!("{:?} is not an ip:port address", self.http.listen))
    }

    /// The app name: the last segment of `app.path`, as the PBX sends it in AppLogin.
    pub fn app_name(&self) -> &str {
        self.app.path.rsplit('/').next().unwrap_or_default()
    }

    /// The parent of `app.path` (websocket upgrades are accepted there too; phone files live
    /// under its `prov/`).
    pub fn app_parent(&self) -> &str {
        match self.app.path.rfind('/') {
            Some(0) | None => "",
            Some(i) => &self.app.path[..i],
        }
    }

    /// The instance's own domain: the first segment of `app.path`.
    pub fn app_domain(&self) -> &str {
        self.app.path.split('/').nth(1).unwrap_or_default()
    }

    /// Where the seal key lives: inside the store directory, so backups take both or neither.
    pub fn seal_key_path(&self) -> PathBuf {
        self.store.path.join("seal.key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[app]\npassword = \"pw\"\n";

    #[test]
    fn the_repository_default_parses() {
        let c = Config::parse(include_str!("../config.toml"), "config.toml").unwrap();
        assert_eq!(c.app.path, "/example.com/innoprov/innoprov");
        assert_eq!(
            (c.app_name(), c.app_parent(), c.app_domain()),
            ("innoprov", "/example.com/innoprov", "example.com")
        );
        assert_eq!(c.listen_addr().unwrap().to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn defaults_fill_the_rest() {
        let c = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(c.websocket.max_message_bytes, 1024 * 1024);
        assert_eq!(c.store.path, PathBuf::from("data"));
    }

    #[test]
    fn bad_configs_name_the_key() {
        let cases = [
            ("[app]\npassword = \"pw\"\ncolour = 1\n", "colour"),
            (
                "[app]\npassword = \"pw\"\n[http]\nlisten = \"nowhere\"\n",
                "http.listen",
            ),
            ("[app]\npassword = \"\"\n", "app.password"),
            ("[app]\npassword = \"pw\"\npath = \"noslash\"\n", "app.path"),
            ("[app]\npassword = \"pw\"\npath = \"/a//b\"\n", "app.path"),
            (
                "[app]\npassword = \"pw\"\n[devices]\nsysclient_url = \"http://x/\"\n",
                "devices.sysclient_url",
            ),
            (
                "[app]\npassword = \"pw\"\n[websocket]\nping_interval_secs = 0\n",
                "websocket",
            ),
            ("[nope]\n", "nope"),
            ("[app\n", "config t"),
        ];
        for (text, needle) in cases {
            let err = Config::parse(text, "t").unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }
}
