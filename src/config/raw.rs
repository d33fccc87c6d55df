//! The configuration as TOML spells it: serde's layer, with the documented defaults and
//! unknown keys rejected, turned into the typed [`super::Config`] by one conversion that checks
//! every value and names the key of the first bad one.
//!
//! The structs keep the names serde has always reported ("expected struct AppConfig"), so the
//! parser's messages are the ones operators already know.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, IpNet, MIN_ADMIN_TOKEN_CHARS, StoreBackend, normalize_origin, parent_of};
use crate::seal::Secret;

/// The longest enrolment window: a window that never closes is no window.
const MAX_ENROLMENT_WINDOW_MINUTES: u64 = 30 * 24 * 60;

/// Where a configuration came from, to name it in an error.
#[derive(Clone, Copy)]
struct Origin<'a>(&'a str);

impl Origin<'_> {
    /// `key` holds a value that cannot be used, for `reason`.
    fn invalid(self, key: &'static str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: self.0.to_string(),
            key,
            reason: reason.to_string(),
        }
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Config {
    /// `[http]`, all defaults when absent.
    #[serde(default)]
    http: HttpConfig,
    /// `[app]`, required: it holds the password.
    app: AppConfig,
    /// `[store]`, all defaults when absent.
    #[serde(default)]
    store: StoreConfig,
    /// `[devices]`, all defaults when absent.
    #[serde(default)]
    devices: DevicesConfig,
    /// `[websocket]`, all defaults when absent.
    #[serde(default)]
    websocket: WebsocketConfig,
    /// `[provisioning]`, all defaults when absent.
    #[serde(default)]
    provisioning: ProvisioningConfig,
    /// `[tls]`, empty (no HTTPS) when absent.
    #[serde(default)]
    tls: TlsConfig,
    /// `[admin]`, all defaults (no admin door) when absent.
    #[serde(default)]
    admin: AdminConfig,
    /// `[redirect.<vendor>]`, none (no zero touch) when absent.
    #[serde(default)]
    redirect: RedirectConfig,
}

impl Config {
    /// Checks every value and converts it, in the order the keys have always been checked (so
    /// a file with several mistakes is told about the same one first).
    pub(super) fn typed(self, origin: &str) -> Result<super::Config, ConfigError> {
        let origin = Origin(origin);
        let http = self.http.typed(origin)?;
        let enrol_from = nets(&self.provisioning.enrol_from)
            .map_err(|reason| origin.invalid("provisioning.enrol_from", &reason))?;
        let app = self.app.typed(origin)?;
        let store = self.store.typed(origin)?;
        self.devices.check_sysclient_url(origin)?;
        self.websocket.check_logins(origin)?;
        let devices = self.devices.typed(origin)?;
        let provisioning = self.provisioning.typed(&app.path, enrol_from, origin)?;
        let admin = self.admin.typed(origin)?;
        let tls = self.tls.typed(origin)?;
        let websocket = self.websocket.typed(origin)?;
        let redirect = self.redirect.typed(origin, provisioning.public_url.is_some())?;
        Ok(super::Config {
            http,
            app,
            store,
            devices,
            websocket,
            provisioning,
            tls,
            admin,
            redirect,
        })
    }
}

/// `[redirect]`: one table per vendor service (interface.md "Zero touch").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectConfig {
    /// `[redirect.yealink]`: Yealink RPS.
    #[serde(default)]
    yealink: Option<YealinkRedirect>,
    /// `[redirect.snom]`: Snom SRAPS.
    #[serde(default)]
    snom: Option<HawkRedirect>,
    /// `[redirect.gigaset_p]`: Gigaset GRAPE (P-series).
    #[serde(default)]
    gigaset_p: Option<HawkRedirect>,
    /// `[redirect.gigaset]`: Gigaset's MAC-ID redirect server (Nx70).
    #[serde(default)]
    gigaset: Option<GigasetRedirect>,
    /// `[redirect.fanvil]`: Fanvil FDPS.
    #[serde(default)]
    fanvil: Option<FanvilRedirect>,
    /// `[redirect.poly]`: Poly ZTP.
    #[serde(default)]
    poly: Option<PolyRedirect>,
}

/// `[redirect.gigaset]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GigasetRedirect {
    /// `url`: the XML-RPC endpoint.
    #[serde(default = "default_gigaset_url")]
    url: String,
    /// `user`: the provisioner account.
    user: String,
    /// `password`, wrapped at once.
    #[serde(default, deserialize_with = "optional_secret")]
    password: Option<Secret>,
    /// `password_file`.
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// `provider_name`: the "Provider" label of the registrations.
    #[serde(default = "default_server_name")]
    provider_name: String,
}

/// docs/redirect/snom-gigaset.md §3.1: the endpoint both clients use.
fn default_gigaset_url() -> String {
    "https://prov.gigaset.net/apxml/rpc.do".into()
}

impl GigasetRedirect {
    fn typed(self, origin: Origin<'_>) -> Result<super::GigasetRedirectConfig, ConfigError> {
        let keys = AccountKeys::of("gigaset");
        let password = basic_account(
            &self.url,
            &self.user,
            (self.password, self.password_file),
            origin,
            &keys,
        )?;
        if !label_ok(&self.provider_name) {
            return Err(origin.invalid("redirect.gigaset.provider_name", LABEL_RULE));
        }
        Ok(super::GigasetRedirectConfig {
            url: self.url,
            user: self.user,
            password,
            provider_name: self.provider_name,
        })
    }
}

/// The keys of a table with an account, for the errors.
struct AccountKeys {
    /// `redirect.<vendor>.url`
    url: &'static str,
    /// `redirect.<vendor>.user`
    user: &'static str,
    /// `redirect.<vendor>.password`
    password: &'static str,
}

impl AccountKeys {
    fn of(vendor: &'static str) -> AccountKeys {
        match vendor {
            "yealink" => AccountKeys {
                url: "redirect.yealink.url",
                user: "redirect.yealink.user",
                password: "redirect.yealink.password",
            },
            "fanvil" => AccountKeys {
                url: "redirect.fanvil.url",
                user: "redirect.fanvil.user",
                password: "redirect.fanvil.password",
            },
            _ => AccountKeys {
                url: "redirect.gigaset.url",
                user: "redirect.gigaset.user",
                password: "redirect.gigaset.password",
            },
        }
    }
}

/// An account table of an XML-RPC service with HTTP Basic: an http(s) `url`, a `user`, and
/// exactly one of `password` and `password_file`.
fn basic_account(
    url: &str,
    user: &str,
    (password, file): (Option<Secret>, Option<PathBuf>),
    origin: Origin<'_>,
    keys: &AccountKeys,
) -> Result<super::SecretSource, ConfigError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(origin.invalid(keys.url, "must be an http(s) URL"));
    }
    if user.trim().is_empty() {
        return Err(origin.invalid(keys.user, "must not be empty"));
    }
    secret_source(password, file, origin, keys.password)
}

/// What the services take in a name they show (docs/redirect/yealink.md for RPS).
const LABEL_RULE: &str = "must be 1 to 64 of A-z 0-9 - _ . and space";

/// Whether `name` keeps [`LABEL_RULE`].
fn label_ok(name: &str) -> bool {
    !name.trim().is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
}

/// `[redirect.fanvil]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FanvilRedirect {
    /// `url`: the FDPS XML-RPC endpoint.
    #[serde(default = "default_fdps_url")]
    url: String,
    /// `user`: the FDPS account.
    user: String,
    /// `password`, wrapped at once.
    #[serde(default, deserialize_with = "optional_secret")]
    password: Option<Secret>,
    /// `password_file`.
    #[serde(default)]
    password_file: Option<PathBuf>,
}

/// docs/redirect/fanvil-poly-grandstream.md §1: the endpoint the clients use.
fn default_fdps_url() -> String {
    "https://fdps.fanvil.com/xmlrpc.php".into()
}

impl FanvilRedirect {
    fn typed(self, origin: Origin<'_>) -> Result<super::FanvilRedirectConfig, ConfigError> {
        let keys = AccountKeys::of("fanvil");
        let password = basic_account(
            &self.url,
            &self.user,
            (self.password, self.password_file),
            origin,
            &keys,
        )?;
        Ok(super::FanvilRedirectConfig {
            url: self.url,
            user: self.user,
            password,
        })
    }
}

/// `[redirect.poly]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolyRedirect {
    /// `url`: the ZTP API base.
    #[serde(default = "default_ztp_url")]
    url: String,
    /// `api_key`, wrapped at once.
    #[serde(default, deserialize_with = "optional_secret")]
    api_key: Option<Secret>,
    /// `api_key_file`.
    #[serde(default)]
    api_key_file: Option<PathBuf>,
}

/// docs/redirect/fanvil-poly-grandstream.md §2: the base current clients use.
fn default_ztp_url() -> String {
    "https://api.ztp.poly.com/v1/".into()
}

impl PolyRedirect {
    fn typed(self, origin: Origin<'_>) -> Result<super::PolyRedirectConfig, ConfigError> {
        if !((self.url.starts_with("https://") || self.url.starts_with("http://")) && self.url.ends_with('/'))
        {
            return Err(origin.invalid("redirect.poly.url", "must be an http(s) URL ending in '/'"));
        }
        let api_key = secret_source(self.api_key, self.api_key_file, origin, "redirect.poly.api_key")?;
        Ok(super::PolyRedirectConfig {
            url: self.url,
            api_key,
        })
    }
}

/// `[redirect.snom]` (SRAPS) and `[redirect.gigaset_p]` (GRAPE): a Hawk access key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HawkRedirect {
    /// `url`: the API base (default: the vendor's).
    #[serde(default)]
    url: Option<String>,
    /// `key_id`: the access key id.
    key_id: String,
    /// `key_secret`, wrapped at once.
    #[serde(default, deserialize_with = "optional_secret")]
    key_secret: Option<Secret>,
    /// `key_secret_file`.
    #[serde(default)]
    key_secret_file: Option<PathBuf>,
}

/// The keys of one Hawk table, for the errors.
struct HawkKeys {
    /// `redirect.<vendor>.url`
    url: &'static str,
    /// `redirect.<vendor>.key_id`
    key_id: &'static str,
    /// `redirect.<vendor>.key_secret`
    key_secret: &'static str,
    /// The vendor's API base (docs/redirect/snom-gigaset.md §1.1, §3.2).
    default_url: &'static str,
}

const SNOM_KEYS: HawkKeys = HawkKeys {
    url: "redirect.snom.url",
    key_id: "redirect.snom.key_id",
    key_secret: "redirect.snom.key_secret",
    default_url: "https://secure-provisioning.snom.com/api/v1/",
};

const GRAPE_KEYS: HawkKeys = HawkKeys {
    url: "redirect.gigaset_p.url",
    key_id: "redirect.gigaset_p.key_id",
    key_secret: "redirect.gigaset_p.key_secret",
    default_url: "https://api.grape.gigaset.net/api/v1/",
};

impl HawkRedirect {
    fn typed(self, origin: Origin<'_>, keys: &HawkKeys) -> Result<super::HawkRedirectConfig, ConfigError> {
        let url = self.url.unwrap_or_else(|| keys.default_url.to_string());
        if !((url.starts_with("https://") || url.starts_with("http://")) && url.ends_with('/')) {
            return Err(origin.invalid(keys.url, "must be an http(s) URL ending in '/'"));
        }
        if self.key_id.trim().is_empty()
            || !self
                .key_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(origin.invalid(
                keys.key_id,
                "must be the access key id (letters, digits, - and _)",
            ));
        }
        let key_secret = secret_source(self.key_secret, self.key_secret_file, origin, keys.key_secret)?;
        Ok(super::HawkRedirectConfig {
            url,
            key_id: self.key_id,
            key_secret,
        })
    }
}

/// `[redirect.yealink]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YealinkRedirect {
    /// `url`: the RPS XML-RPC endpoint.
    #[serde(default = "default_yealink_rps_url")]
    url: String,
    /// `user`: the RPS account.
    user: String,
    /// `password`, wrapped at once.
    #[serde(default, deserialize_with = "optional_secret")]
    password: Option<Secret>,
    /// `password_file`.
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// `server_name`: the server entry the phones are registered under.
    #[serde(default = "default_server_name")]
    server_name: String,
}

/// docs/redirect/yealink.md: the endpoint current clients use.
fn default_yealink_rps_url() -> String {
    "https://api-dm.yealink.com:8443/xmlrpc".into()
}

fn default_server_name() -> String {
    "innoprov".into()
}

impl RedirectConfig {
    fn typed(self, origin: Origin<'_>, public_url: bool) -> Result<super::RedirectConfig, ConfigError> {
        let needs_url = |table: &'static str| match public_url {
            true => Ok(()),
            false => Err(origin.invalid(
                table,
                "needs provisioning.public_url: the URL a phone out of the box is sent to",
            )),
        };
        let yealink = match self.yealink {
            Some(y) => Some(needs_url("redirect.yealink").and_then(|()| y.typed(origin))?),
            None => None,
        };
        let snom = match self.snom {
            Some(s) => Some(needs_url("redirect.snom").and_then(|()| s.typed(origin, &SNOM_KEYS))?),
            None => None,
        };
        let gigaset_p = match self.gigaset_p {
            Some(g) => Some(needs_url("redirect.gigaset_p").and_then(|()| g.typed(origin, &GRAPE_KEYS))?),
            None => None,
        };
        let gigaset = match self.gigaset {
            Some(g) => Some(needs_url("redirect.gigaset").and_then(|()| g.typed(origin))?),
            None => None,
        };
        let fanvil = match self.fanvil {
            Some(f) => Some(needs_url("redirect.fanvil").and_then(|()| f.typed(origin))?),
            None => None,
        };
        let poly = match self.poly {
            Some(p) => Some(needs_url("redirect.poly").and_then(|()| p.typed(origin))?),
            None => None,
        };
        Ok(super::RedirectConfig {
            yealink,
            snom,
            gigaset_p,
            gigaset,
            fanvil,
            poly,
        })
    }
}

/// A secret given either inline or as a file, never both: `key` names the inline key for the
/// error.
fn secret_source(
    inline: Option<Secret>,
    file: Option<PathBuf>,
    origin: Origin<'_>,
    key: &'static str,
) -> Result<super::SecretSource, ConfigError> {
    match (inline, file) {
        (Some(secret), None) => Ok(super::SecretSource::Inline(secret)),
        (None, Some(file)) => Ok(super::SecretSource::File(file)),
        _ => {
            let name = key.rsplit('.').next().unwrap_or(key);
            Err(origin.invalid(key, &format!("set exactly one of {name} and {name}_file")))
        }
    }
}

impl YealinkRedirect {
    fn typed(self, origin: Origin<'_>) -> Result<super::YealinkRedirectConfig, ConfigError> {
        let keys = AccountKeys::of("yealink");
        let password = basic_account(
            &self.url,
            &self.user,
            (self.password, self.password_file),
            origin,
            &keys,
        )?;
        if !label_ok(&self.server_name) {
            return Err(origin.invalid("redirect.yealink.server_name", LABEL_RULE));
        }
        Ok(super::YealinkRedirectConfig {
            url: self.url,
            user: self.user,
            password,
            server_name: self.server_name,
        })
    }
}

/// A list of address blocks as written in the config.
fn nets(texts: &[String]) -> Result<Vec<IpNet>, String> {
    texts.iter().map(|text| text.parse::<IpNet>()).collect()
}

/// `[http]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpConfig {
    /// `http.listen`, `ip:port`.
    #[serde(default = "default_listen")]
    listen: String,
    /// `http.trusted_proxies`, CIDR blocks or addresses.
    #[serde(default)]
    trusted_proxies: Vec<String>,
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

impl HttpConfig {
    /// The listener's address and the proxies' blocks, parsed.
    fn typed(self, origin: Origin<'_>) -> Result<super::HttpConfig, ConfigError> {
        let listen = self.listen.parse::<SocketAddr>().map_err(|_| {
            origin.invalid(
                "http.listen",
                &format!("{:?} is not an ip:port address", self.listen),
            )
        })?;
        let trusted_proxies =
            nets(&self.trusted_proxies).map_err(|reason| origin.invalid("http.trusted_proxies", &reason))?;
        Ok(super::HttpConfig {
            listen,
            trusted_proxies,
        })
    }
}

/// `[app]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppConfig {
    /// `app.path`, the App object URL's path.
    #[serde(default = "default_app_path")]
    path: String,
    /// `app.password`, wrapped at once so that no Debug ever shows it.
    #[serde(deserialize_with = "secret")]
    password: Secret,
    /// `app.title`.
    #[serde(default = "default_title")]
    title: String,
    /// `app.object`.
    #[serde(default)]
    object: Option<String>,
    /// `app.provisioners`.
    #[serde(default)]
    provisioners: Option<Vec<String>>,
}

fn default_app_path() -> String {
    "/example.com/innoprov/innoprov".into()
}

fn default_title() -> String {
    "Third-party phones".into()
}

/// A TOML string read straight into a [`Secret`].
fn secret<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
    String::deserialize(deserializer).map(Secret::new)
}

/// An optional TOML string read straight into a [`Secret`].
fn optional_secret<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    Option::<String>::deserialize(deserializer).map(|text| text.map(Secret::new))
}

impl AppConfig {
    /// The path, password and title checked.
    fn typed(self, origin: Origin<'_>) -> Result<super::AppConfig, ConfigError> {
        let path = &self.path;
        if !path.starts_with('/') || path.ends_with('/') || path.len() < 2 {
            return Err(origin.invalid(
                "app.path",
                "must start with '/' and name the app, e.g. /example.com/innoprov/innoprov",
            ));
        }
        if path
            .split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(origin.invalid("app.path", "has an empty, '.' or '..' segment"));
        }
        if path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(origin.invalid("app.path", "contains whitespace, control characters, '?' or '#'"));
        }
        if self.password.expose().is_empty() {
            return Err(origin.invalid("app.password", "must not be empty"));
        }
        if self.title.trim().is_empty() {
            return Err(origin.invalid("app.title", "must not be empty"));
        }
        Ok(super::AppConfig {
            path: self.path,
            password: self.password,
            title: self.title,
            object: self.object,
            provisioners: self.provisioners,
        })
    }
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreConfig {
    /// `store.backend`.
    #[serde(default)]
    backend: StoreBackend,
    /// `store.path`.
    #[serde(default = "default_store_path")]
    path: PathBuf,
    /// `store.url`; it may hold a password, hence a [`Secret`].
    #[serde(default, deserialize_with = "optional_secret")]
    url: Option<Secret>,
    /// `store.password_file`.
    #[serde(default)]
    password_file: Option<PathBuf>,
    /// `store.pool_size`.
    #[serde(default = "default_pool_size")]
    pool_size: u32,
    /// `store.seal_key_file`.
    #[serde(default)]
    seal_key_file: Option<PathBuf>,
    /// `store.lease_secs`.
    #[serde(default = "default_lease_secs")]
    lease_secs: u32,
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

impl StoreConfig {
    /// The path, the PostgreSQL URL, the pool and the lease checked.
    fn typed(self, origin: Origin<'_>) -> Result<super::StoreConfig, ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(origin.invalid("store.path", "must not be empty"));
        }
        if self.backend == StoreBackend::Postgres {
            let Some(url) = &self.url else {
                return Err(origin.invalid("store.url", "is required with backend = \"postgres\""));
            };
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(origin.invalid("store.url", "must start with postgres:// or postgresql://"));
            }
        }
        if !(1..=64).contains(&self.pool_size) {
            return Err(origin.invalid("store.pool_size", "must be 1 to 64"));
        }
        if !(3..=600).contains(&self.lease_secs) {
            return Err(origin.invalid("store.lease_secs", "must be 3 to 600"));
        }
        Ok(super::StoreConfig {
            backend: self.backend,
            path: self.path,
            url: self.url,
            password_file: self.password_file,
            pool_size: self.pool_size,
            seal_key_file: self.seal_key_file,
            lease: Duration::from_secs(u64::from(self.lease_secs)),
        })
    }
}

/// `[devices]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesConfig {
    /// `devices.sysclient_url`.
    sysclient_url: Option<String>,
    /// `devices.ca_file`.
    ca_file: Option<PathBuf>,
    /// `devices.connects_per_second`.
    #[serde(default = "default_connects_per_second")]
    connects_per_second: u32,
    /// `devices.provisioning_timeout_secs`.
    #[serde(default = "default_provisioning_timeout")]
    provisioning_timeout_secs: u64,
    /// `devices.reconnect_min_ms`.
    #[serde(default = "default_reconnect_min_ms")]
    reconnect_min_ms: u64,
    /// `devices.reconnect_max_secs`.
    #[serde(default = "default_reconnect_max_secs")]
    reconnect_max_secs: u64,
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

impl DevicesConfig {
    /// `devices.sysclient_url`, when set, is a websocket URL.
    fn check_sysclient_url(&self, origin: Origin<'_>) -> Result<(), ConfigError> {
        if let Some(url) = &self.sysclient_url
            && (!(url.starts_with("ws://") || url.starts_with("wss://")) || url.len() < 7)
        {
            return Err(origin.invalid("devices.sysclient_url", "must be a ws:// or wss:// URL"));
        }
        Ok(())
    }

    /// The rate and the timers checked and made durations (the URL is checked before).
    fn typed(self, origin: Origin<'_>) -> Result<super::DevicesConfig, ConfigError> {
        if self.connects_per_second == 0 {
            return Err(origin.invalid("devices.connects_per_second", "must be at least 1"));
        }
        if self.provisioning_timeout_secs == 0 {
            return Err(origin.invalid("devices.provisioning_timeout_secs", "must be at least 1"));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_secs.saturating_mul(1000)
        {
            return Err(origin.invalid(
                "devices.reconnect_min_ms",
                "must be at least 1 and not above devices.reconnect_max_secs",
            ));
        }
        Ok(super::DevicesConfig {
            sysclient_url: self.sysclient_url,
            ca_file: self.ca_file,
            connects_per_second: self.connects_per_second,
            provisioning_timeout: Duration::from_secs(self.provisioning_timeout_secs),
            reconnect_min: Duration::from_millis(self.reconnect_min_ms),
            reconnect_max: Duration::from_secs(self.reconnect_max_secs),
        })
    }
}

/// `[websocket]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebsocketConfig {
    /// `websocket.max_message_bytes`.
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
    /// `websocket.ping_interval_secs`.
    #[serde(default = "default_ping_interval")]
    ping_interval_secs: u64,
    /// `websocket.idle_timeout_secs`.
    #[serde(default = "default_idle_timeout")]
    idle_timeout_secs: u64,
    /// `websocket.login_timeout_secs`.
    #[serde(default = "default_login_timeout")]
    login_timeout_secs: u64,
    /// `websocket.max_pending_logins`.
    #[serde(default = "default_max_pending_logins")]
    max_pending_logins: usize,
    /// `websocket.pending_logins_per_address`.
    #[serde(default = "default_pending_logins_per_address")]
    pending_logins_per_address: usize,
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

impl WebsocketConfig {
    /// The caps on connections not yet logged in, and their timeout.
    fn check_logins(&self, origin: Origin<'_>) -> Result<(), ConfigError> {
        if self.max_pending_logins == 0 || self.pending_logins_per_address == 0 {
            return Err(origin.invalid(
                "websocket.max_pending_logins",
                "max_pending_logins and pending_logins_per_address must be at least 1",
            ));
        }
        if self.login_timeout_secs == 0 {
            return Err(origin.invalid("websocket.login_timeout_secs", "must be at least 1"));
        }
        Ok(())
    }

    /// The message size and the ping and idle timers checked, the timers made durations
    /// (the login caps are checked before).
    fn typed(self, origin: Origin<'_>) -> Result<super::WebsocketConfig, ConfigError> {
        if !(1024..=64 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(origin.invalid("websocket.max_message_bytes", "must be between 1024 and 67108864"));
        }
        if self.ping_interval_secs == 0 || self.idle_timeout_secs <= self.ping_interval_secs {
            return Err(origin.invalid(
                "websocket.idle_timeout_secs",
                "must be longer than websocket.ping_interval_secs, which must be at least 1",
            ));
        }
        Ok(super::WebsocketConfig {
            max_message_bytes: self.max_message_bytes,
            ping_interval: Duration::from_secs(self.ping_interval_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            login_timeout: Duration::from_secs(self.login_timeout_secs),
            max_pending_logins: self.max_pending_logins,
            pending_logins_per_address: self.pending_logins_per_address,
        })
    }
}

/// `[provisioning]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisioningConfig {
    /// `provisioning.path`; unset, `<parent of app.path>/prov`.
    path: Option<String>,
    /// `provisioning.public_url`.
    public_url: Option<String>,
    /// `provisioning.enrolment_window_minutes`.
    #[serde(default = "default_enrolment_minutes")]
    enrolment_window_minutes: u64,
    /// `provisioning.enrolment_once`.
    #[serde(default)]
    enrolment_once: bool,
    /// `provisioning.enrol_from`, CIDR blocks or addresses.
    #[serde(default)]
    enrol_from: Vec<String>,
    /// `provisioning.recheck_minutes`.
    #[serde(default = "default_recheck_minutes")]
    recheck_minutes: u32,
    /// `provisioning.template_dir`.
    template_dir: Option<PathBuf>,
    /// `provisioning.vendors_file`.
    vendors_file: Option<PathBuf>,
    /// `provisioning.trust_anchors`.
    trust_anchors: Option<PathBuf>,
    /// `provisioning.misses_per_minute`.
    #[serde(default = "default_misses_per_minute")]
    misses_per_minute: u32,
    /// `provisioning.audit_entries`.
    #[serde(default = "default_audit_entries")]
    audit_entries: usize,
    /// `provisioning.notify`.
    #[serde(default = "default_true")]
    notify: bool,
    /// `provisioning.notify_port`.
    #[serde(default = "default_notify_port")]
    notify_port: u16,
    /// `provisioning.notify_per_second`.
    #[serde(default = "default_notify_per_second")]
    notify_per_second: u32,
}

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

impl ProvisioningConfig {
    /// Everything checked (`enrol_from` is parsed before, in its old place), the path
    /// resolved against `app_path`, the window made a duration.
    fn typed(
        self,
        app_path: &str,
        enrol_from: Vec<IpNet>,
        origin: Origin<'_>,
    ) -> Result<super::ProvisioningConfig, ConfigError> {
        let path = match self.path {
            Some(path) => check_prov_path(path, app_path, origin)?,
            None => format!("{}/prov", parent_of(app_path)),
        };
        if self.enrolment_window_minutes > MAX_ENROLMENT_WINDOW_MINUTES {
            return Err(origin.invalid(
                "provisioning.enrolment_window_minutes",
                "must be at most 43200 (30 days); reopen a phone's window instead",
            ));
        }
        if let Some(url) = &self.public_url
            && (!(url.starts_with("http://") || url.starts_with("https://")) || !url.ends_with('/'))
        {
            return Err(origin.invalid("provisioning.public_url", "must be an http(s) URL ending in '/'"));
        }
        if self.recheck_minutes == 0 {
            return Err(origin.invalid("provisioning.recheck_minutes", "must be at least 1"));
        }
        if self.misses_per_minute == 0 || self.notify_per_second == 0 || self.audit_entries == 0 {
            return Err(origin.invalid(
                "provisioning",
                "misses_per_minute, notify_per_second and audit_entries must be at least 1",
            ));
        }
        Ok(super::ProvisioningConfig {
            path,
            public_url: self.public_url,
            enrolment_window: Duration::from_secs(self.enrolment_window_minutes * 60),
            enrolment_once: self.enrolment_once,
            enrol_from,
            recheck_minutes: self.recheck_minutes,
            template_dir: self.template_dir,
            vendors_file: self.vendors_file,
            trust_anchors: self.trust_anchors,
            misses_per_minute: self.misses_per_minute,
            audit_entries: self.audit_entries,
            notify: self.notify,
            notify_port: self.notify_port,
            notify_per_second: self.notify_per_second,
        })
    }
}

/// `provisioning.path` as written: an absolute path without tricks, apart from the websocket
/// paths.
fn check_prov_path(path: String, app_path: &str, origin: Origin<'_>) -> Result<String, ConfigError> {
    if !path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err(origin.invalid("provisioning.path", "must start with '/' and not end with '/'"));
    }
    if path.split('/').skip(1).any(|seg| seg == "." || seg == "..")
        || path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#' || c == '%')
    {
        return Err(origin.invalid(
            "provisioning.path",
            "has a '.' or '..' segment, white space, '?', '#' or '%'",
        ));
    }
    if path == app_path || path == parent_of(app_path) {
        return Err(origin.invalid(
            "provisioning.path",
            "must differ from app.path and its parent (the websocket paths)",
        ));
    }
    Ok(path)
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsConfig {
    /// `tls.listen`, `ip:port`.
    listen: Option<String>,
    /// `tls.cert`.
    cert: Option<PathBuf>,
    /// `tls.key`.
    key: Option<PathBuf>,
}

impl TlsConfig {
    /// All three keys or none; the address parsed.
    fn typed(self, origin: Origin<'_>) -> Result<Option<super::TlsConfig>, ConfigError> {
        match (self.listen, self.cert, self.key) {
            (None, None, None) => Ok(None),
            (Some(listen), Some(cert), Some(key)) => {
                let listen = listen
                    .parse::<SocketAddr>()
                    .map_err(|_| origin.invalid("tls.listen", "is not an ip:port address"))?;
                Ok(Some(super::TlsConfig { listen, cert, key }))
            }
            _ => Err(origin.invalid("tls", "listen, cert and key go together")),
        }
    }
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminConfig {
    /// `admin.token`, wrapped at once so that no Debug ever shows it.
    #[serde(default, deserialize_with = "optional_secret")]
    token: Option<Secret>,
    /// `admin.app`.
    app: Option<String>,
    /// `admin.page`.
    page: Option<String>,
    /// `admin.url_origins`, as written.
    #[serde(default)]
    url_origins: Vec<String>,
    /// `admin.badge_link_down_minutes`.
    #[serde(default = "default_badge_link_down_minutes")]
    badge_link_down_minutes: u32,
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

impl AdminConfig {
    /// The origins normalised and the token checked.
    fn typed(self, origin: Origin<'_>) -> Result<super::AdminConfig, ConfigError> {
        let mut url_origins = Vec::with_capacity(self.url_origins.len());
        for text in &self.url_origins {
            let Some(normalized) = normalize_origin(text) else {
                return Err(origin.invalid(
                    "admin.url_origins",
                    &format!("{text:?} is not an origin like \"https://apps.example.com\""),
                ));
            };
            url_origins.push(normalized);
        }
        if let Some(token) = &self.token {
            check_admin_token(token.expose(), origin)?;
        }
        Ok(super::AdminConfig {
            token: self.token,
            app: self.app,
            page: self.page,
            url_origins,
            badge_link_down_minutes: self.badge_link_down_minutes,
        })
    }
}

/// `admin.token` is set to something hard to guess.
fn check_admin_token(token: &str, origin: Origin<'_>) -> Result<(), ConfigError> {
    if token.is_empty() {
        return Err(origin.invalid(
            "admin.token",
            "must not be empty (leave it out to switch the REST API off)",
        ));
    }
    // A bearer token is guessed offline-fast if short or patterned; 48 random hex digits (as
    // the package writes) pass, "change-me-admin" or "aaaa..." do not.
    let distinct = token.chars().collect::<std::collections::HashSet<_>>().len();
    if token.chars().count() < MIN_ADMIN_TOKEN_CHARS || distinct < 8 {
        return Err(origin.invalid(
            "admin.token",
            "must be at least 32 characters and look random (e.g. `openssl rand -hex 24`)",
        ));
    }
    Ok(())
}
