//! The service configuration (interface.md): TOML with the documented keys, unknown keys
//! rejected, every value checked before anything starts.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Shortest `admin.token` accepted.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

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
    /// Serving phones their files.
    #[serde(default)]
    pub provisioning: ProvisioningConfig,
    /// HTTPS listener.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The admin doors.
    #[serde(default)]
    pub admin: AdminConfig,
}

/// `[admin]`: who may administer (interface.md "Operating").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token of the REST API and `/metrics`; unset, those answer 404.
    pub token: Option<String>,
    /// App object name whose AppWebsocket logins may administer.
    pub app: Option<String>,
    /// The admin page's file name (`<parent>/<page>.htm`), when it differs from the App
    /// object's name (innovaphone's own apps: App object `users`, page `innovaphone-users`).
    pub page: Option<String>,
    /// Origins (`https://host[:port]`) besides the page's own that myApps' `url` argument may
    /// name for the page's websocket (a reverse proxy or cache serving the page).
    #[serde(default)]
    pub url_origins: Vec<String>,
    /// Minutes a phone's link may be down before the admin app's badge counts it.
    #[serde(default = "default_badge_link_down_minutes")]
    pub badge_link_down_minutes: u32,
}

fn default_badge_link_down_minutes() -> u32 {
    10
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            app: None,
            page: None,
            url_origins: Vec::new(),
            badge_link_down_minutes: default_badge_link_down_minutes(),
        }
    }
}

/// An origin as the admin page compares them: `scheme://host[:port]`, lowercase, the scheme
/// `http`/`https` (a `ws`/`wss` origin is its HTTP twin); `None` when `text` is no origin.
pub fn normalize_origin(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    let scheme = match url.scheme() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        _ => return None,
    };
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return None;
    }
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// `[provisioning]`: phone downloads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningConfig {
    /// URL path phones fetch under; default `<parent of app.path>/prov`.
    pub path: Option<String>,
    /// The URL phones are told to fetch from (ending in `/`); default: as the phone reached us.
    pub public_url: Option<String>,
    /// Minutes after ProvisioningPhone during which the phone's files are served without
    /// credentials (until it has used its own).
    #[serde(default = "default_enrolment_minutes")]
    pub enrolment_window_minutes: u64,
    /// Hand a phone's own file out only once without credentials inside the window: every
    /// later request needs the credentials that file carried (challenge-answering phones then
    /// enrol at once, and a second party gets 401). Off by default, as interface.md serves the
    /// whole window until the phone has used its credentials.
    #[serde(default)]
    pub enrolment_once: bool,
    /// Networks (CIDR blocks or addresses) to which a phone's file may be served without
    /// credentials; empty, any. Requests from elsewhere are refused and counted as misses.
    #[serde(default)]
    pub enrol_from: Vec<String>,
    /// Minutes between the phones' periodic re-checks, written into their files.
    #[serde(default = "default_recheck_minutes")]
    pub recheck_minutes: u32,
    /// Operator templates overriding the built-in ones (`<vendor>.j2`, `<vendor>-<model>.j2`).
    pub template_dir: Option<PathBuf>,
    /// Operator vendor catalogue (TOML, `[[vendor]]` entries) merged over the built-in one:
    /// more OUIs, file names and User-Agent patterns, or whole new vendors.
    pub vendors_file: Option<PathBuf>,
    /// PEM file of the CAs that sign the PBX's SIP-TLS certificate (and innoprov's HTTPS
    /// certificate): served to the phones and installed in each vendor's documented way.
    pub trust_anchors: Option<PathBuf>,
    /// Misses (unknown files or MACs, bad credentials) one address may have per minute before
    /// it gets 429.
    #[serde(default = "default_misses_per_minute")]
    pub misses_per_minute: u32,
    /// Downloads kept in each phone's audit.
    #[serde(default = "default_audit_entries")]
    pub audit_entries: usize,
    /// Send a SIP NOTIFY (check-sync) when a phone's configuration changes.
    #[serde(default = "default_true")]
    pub notify: bool,
    /// UDP port the NOTIFY goes to (on the address the phone last fetched from).
    #[serde(default = "default_notify_port")]
    pub notify_port: u16,
    /// Most NOTIFYs per second, service-wide.
    #[serde(default = "default_notify_per_second")]
    pub notify_per_second: u32,
}

/// The longest enrolment window: a window that never closes is no window.
const MAX_ENROLMENT_WINDOW_MINUTES: u64 = 30 * 24 * 60;

/// interface.md: "default 60 minutes after ProvisioningPhone or an admin's reopening".
fn default_enrolment_minutes() -> u64 {
    60
}
fn default_recheck_minutes() -> u32 {
    60
}
fn default_misses_per_minute() -> u32 {
    30
}
fn default_audit_entries() -> usize {
    100
}
fn default_true() -> bool {
    true
}
fn default_notify_port() -> u16 {
    5060
}
fn default_notify_per_second() -> u32 {
    20
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            path: None,
            public_url: None,
            enrolment_window_minutes: default_enrolment_minutes(),
            enrolment_once: false,
            enrol_from: Vec::new(),
            recheck_minutes: default_recheck_minutes(),
            template_dir: None,
            vendors_file: None,
            trust_anchors: None,
            misses_per_minute: default_misses_per_minute(),
            audit_entries: default_audit_entries(),
            notify: true,
            notify_port: default_notify_port(),
            notify_per_second: default_notify_per_second(),
        }
    }
}

/// `[tls]`: an HTTPS listener beside `http.listen`, for phones (and the PBX).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the HTTPS listener, `ip:port`; set together with `cert` and `key`.
    pub listen: Option<String>,
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the one listener (websockets, phone downloads, admin), `ip:port`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Reverse proxies (CIDR or single addresses) whose `Forwarded` / `X-Forwarded-For` /
    /// `X-Forwarded-Proto` / `X-Forwarded-Host` headers are believed; from anyone else they are
    /// ignored, so a client cannot choose the address its misses are counted against.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            trusted_proxies: Vec::new(),
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
    /// The App object's own SIP name on the PBX: when set, only a login as that object may
    /// act as the PBX (PbxInfo, Services); unset, any App-object login without `pbxObj` may.
    #[serde(default)]
    pub object: Option<String>,
    /// SIP names of the App Services that may send ProvisioningPhone (the Users service's App
    /// object); unset, any login but a myApps user's may.
    #[serde(default)]
    pub provisioners: Option<Vec<String>>,
}

fn default_app_path() -> String {
    "/example.com/innoprov/innoprov".into()
}

fn default_title() -> String {
    "Third-party phones".into()
}

/// Which store holds the phones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// The embedded sled directory at `store.path` (one machine).
    #[default]
    Sled,
    /// A PostgreSQL database at `store.url`.
    Postgres,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sled` (default) or `postgres`.
    #[serde(default)]
    pub backend: StoreBackend,
    /// The sled directory, created if missing; the seal key file lives in it unless
    /// `seal_key_file` says otherwise.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// PostgreSQL connection URL (`postgres://user@host:port/db`), for `backend = "postgres"`.
    /// A password in it is accepted but better kept in `password_file` or `$PGPASSWORD`.
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the PostgreSQL password (one line); else `$PGPASSWORD`, else the URL's.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL connections held.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// The seal key file; default `<path>/seal.key`. Every instance sharing one database
    /// must have the same key.
    #[serde(default)]
    pub seal_key_file: Option<PathBuf>,
    /// PostgreSQL only: how long an instance's hold on a phone (its lease) lasts unless
    /// renewed; an instance that dies has its phones taken over by the others after this.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u32,
}

fn default_lease_secs() -> u32 {
    15
}

fn default_store_path() -> PathBuf {
    "data".into()
}

fn default_pool_size() -> u32 {
    4
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::default(),
            path: default_store_path(),
            url: None,
            password_file: None,
            pool_size: default_pool_size(),
            seal_key_file: None,
            lease_secs: default_lease_secs(),
        }
    }
}

/// `[devices]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// Overrides the sysclient URL learnt from the PBX's Services API.
    pub sysclient_url: Option<String>,
    /// PEM file of extra CAs trusted for `wss://` to Devices (an App Platform with its own or a
    /// self-signed certificate), beside the public web PKI.
    pub ca_file: Option<PathBuf>,
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
            ca_file: None,
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
    /// Seconds a connection may stay without logging in.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_secs: u64,
    /// Connections that have not logged in yet, service-wide (addresses that logged in before
    /// keep a reserve of 64 beyond it); more are refused with 503 before the upgrade.
    #[serde(default = "default_max_pending_logins")]
    pub max_pending_logins: usize,
    /// Connections that have not logged in yet, per address.
    #[serde(default = "default_pending_logins_per_address")]
    pub pending_logins_per_address: usize,
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
fn default_login_timeout() -> u64 {
    30
}
fn default_max_pending_logins() -> usize {
    1024
}
fn default_pending_logins_per_address() -> usize {
    256
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig {
            max_message_bytes: default_max_message_bytes(),
            ping_interval_secs: default_ping_interval(),
            idle_timeout_secs: default_idle_timeout(),
            login_timeout_secs: default_login_timeout(),
            max_pending_logins: default_max_pending_logins(),
            pending_logins_per_address: default_pending_logins_per_address(),
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
            let mut message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            // "invalid type: integer `1234`, expected a string" would print a mistyped password.
            if message.starts_with("invalid type") || message.starts_with("invalid value") {
                let mut parts = message.splitn(3, '`');
                if let (Some(head), Some(_value), Some(tail)) = (parts.next(), parts.next(), parts.next()) {
                    message = format!("{head}(value not shown){tail}");
                }
            }
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
        self.trusted_proxies()
            .map_err(|r| invalid("http.trusted_proxies", &r))?;
        self.enrol_from()
            .map_err(|r| invalid("provisioning.enrol_from", &r))?;
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
        if self.store.backend == StoreBackend::Postgres {
            let Some(url) = &self.store.url else {
                return Err(invalid("store.url", "is required with backend = \"postgres\""));
            };
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(
                    "store.url",
                    "must start with postgres:// or postgresql://",
                ));
            }
        }
        if !(1..=64).contains(&self.store.pool_size) {
            return Err(invalid("store.pool_size", "must be 1 to 64"));
        }
        if !(3..=600).contains(&self.store.lease_secs) {
            return Err(invalid("store.lease_secs", "must be 3 to 600"));
        }
        if let Some(url) = &self.devices.sysclient_url
            && (!(url.starts_with("ws://") || url.starts_with("wss://")) || url.len() < 7)
        {
            return Err(invalid("devices.sysclient_url", "must be a ws:// or wss:// URL"));
        }
        if self.websocket.max_pending_logins == 0 || self.websocket.pending_logins_per_address == 0 {
            return Err(invalid(
                "websocket.max_pending_logins",
                "max_pending_logins and pending_logins_per_address must be at least 1",
            ));
        }
        if self.websocket.login_timeout_secs == 0 {
            return Err(invalid("websocket.login_timeout_secs", "must be at least 1"));
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
        let prov = &self.provisioning;
        if let Some(path) = &prov.path {
            if !path.starts_with('/') || path.ends_with('/') || path.contains("//") {
                return Err(invalid(
                    "provisioning.path",
                    "must start with '/' and not end with '/'",
                ));
            }
            if path.split('/').skip(1).any(|seg| seg == "." || seg == "..")
                || path
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#' || c == '%')
            {
                return Err(invalid(
                    "provisioning.path",
                    "has a '.' or '..' segment, white space, '?', '#' or '%'",
                ));
            }
            if path == &self.app.path || path == self.app_parent() {
                return Err(invalid(
                    "provisioning.path",
                    "must differ from app.path and its parent (the websocket paths)",
                ));
            }
        }
        if prov.enrolment_window_minutes > MAX_ENROLMENT_WINDOW_MINUTES {
            return Err(invalid(
                "provisioning.enrolment_window_minutes",
                "must be at most 43200 (30 days); reopen a phone's window instead",
            ));
        }
        if let Some(url) = &prov.public_url
            && (!(url.starts_with("http://") || url.starts_with("https://")) || !url.ends_with('/'))
        {
            return Err(invalid(
                "provisioning.public_url",
                "must be an http(s) URL ending in '/'",
            ));
        }
        if prov.recheck_minutes == 0 {
            return Err(invalid("provisioning.recheck_minutes", "must be at least 1"));
        }
        if prov.misses_per_minute == 0 || prov.notify_per_second == 0 || prov.audit_entries == 0 {
            return Err(invalid(
                "provisioning",
                "misses_per_minute, notify_per_second and audit_entries must be at least 1",
            ));
        }
        for origin in &self.admin.url_origins {
            if normalize_origin(origin).is_none() {
                return Err(invalid(
                    "admin.url_origins",
                    &format!("{origin:?} is not an origin like \"https://apps.example.com\""),
                ));
            }
        }
        if let Some(token) = self.admin.token.as_deref() {
            if token.is_empty() {
                return Err(invalid(
                    "admin.token",
                    "must not be empty (leave it out to switch the REST API off)",
                ));
            }
            // A bearer token is guessed offline-fast if short or patterned; 48 random hex
            // digits (as the package writes) pass, "change-me-admin" or "aaaa..." do not.
            let distinct = token.chars().collect::<std::collections::HashSet<_>>().len();
            if token.chars().count() < MIN_ADMIN_TOKEN_CHARS || distinct < 8 {
                return Err(invalid(
                    "admin.token",
                    "must be at least 32 characters and look random (e.g. `openssl rand -hex 24`)",
                ));
            }
        }
        let tls = &self.tls;
        match (&tls.listen, &tls.cert, &tls.key) {
            (None, None, None) => {}
            (Some(listen), Some(_), Some(_)) => {
                listen
                    .parse::<SocketAddr>()
                    .map_err(|_| invalid("tls.listen", "is not an ip:port address"))?;
            }
            _ => return Err(invalid("tls", "listen, cert and key go together")),
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

    /// The networks enrolment is allowed from (empty: any).
    pub fn enrol_from(&self) -> Result<Vec<IpNet>, String> {
        parse_nets(&self.provisioning.enrol_from)
    }

    /// The proxies whose forwarding headers are believed.
    pub fn trusted_proxies(&self) -> Result<Vec<IpNet>, String> {
        parse_nets(&self.http.trusted_proxies)
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

    /// The REST API's path (`<parent of app.path>/api/v1`).
    pub fn api_path(&self) -> String {
        format!("{}/api/v1", self.app_parent())
    }

    /// The URL path phones fetch under.
    pub fn prov_path(&self) -> String {
        self.provisioning
            .path
            .clone()
            .unwrap_or_else(|| format!("{}/prov", self.app_parent()))
    }

    /// Where the seal key lives: `store.seal_key_file`, else inside the store directory, so
    /// backups take both or neither.
    pub fn seal_key_path(&self) -> PathBuf {
        match &self.store.seal_key_file {
            Some(file) => file.clone(),
            None => self.store.path.join("seal.key"),
        }
    }
}

/// A list of address blocks as written in the config.
fn parse_nets(texts: &[String]) -> Result<Vec<IpNet>, String> {
    texts.iter().map(|text| text.parse::<IpNet>()).collect()
}

/// An address block (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The network's address (host bits cleared).
    network: IpAddr,
    /// Prefix length in bits.
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let bad = || format!("{text:?} is not an address or CIDR block");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix {
            Some(p) => p.trim().parse().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        let network = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(IpNet { network, prefix })
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
        assert_eq!(c.prov_path(), "/example.com/innoprov/prov");
        assert_eq!(c.provisioning.enrolment_window_minutes, 60);
    }

    #[test]
    fn address_blocks() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "::/129", "1.2.3.4/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
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
            (
                "[app]\npassword = \"pw\"\n[admin]\ntoken = \"a\"\n",
                "admin.token",
            ),
            (
                "[app]\npassword = \"pw\"\n[admin]\ntoken = \"change-me-admin\"\n",
                "admin.token",
            ),
            (
                "[app]\npassword = \"pw\"\n[admin]\ntoken = \"abababababababababababababababababab\"\n",
                "admin.token",
            ),
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
            (
                "[app]\npassword = \"pw\"\n[tls]\nlisten = \"127.0.0.1:8443\"\n",
                "tls",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npublic_url = \"ftp://x/\"\n",
                "provisioning.public_url",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npath = \"prov\"\n",
                "provisioning.path",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\nrecheck_minutes = 0\n",
                "provisioning.recheck_minutes",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\nenrolment_window_minutes = 18446744073709551615\n",
                "provisioning.enrolment_window_minutes",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npath = \"/example.com/innoprov/innoprov\"\n",
                "provisioning.path",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npath = \"/example.com/innoprov\"\n",
                "provisioning.path",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npath = \"/a/../prov\"\n",
                "provisioning.path",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npath = \"/prov?x\"\n",
                "provisioning.path",
            ),
            (
                "[app]\npassword = \"pw\"\n[devices]\nconnects_per_second = 0\n",
                "devices.connects_per_second",
            ),
            ("[app\n", "config t"),
            (
                "[app]\npassword = \"pw\"\n[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "http.trusted_proxies",
            ),
            ("[app]\npassword = 1234567\n", "value not shown"),
        ];
        for (text, needle) in cases {
            let err = Config::parse(text, "t").unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }
}
