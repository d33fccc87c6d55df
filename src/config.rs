//! The service configuration (interface.md): TOML with the documented keys, unknown keys
//! rejected, every value checked before anything starts and parsed once into typed values
//! (addresses, address blocks, durations, secrets), so that no user of a [`Config`] handles a
//! parse error. The TOML layer itself (serde, defaults) is private, in `raw`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::seal::Secret;

mod raw;

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

/// The whole configuration, every value checked and parsed once (see [`Config::parse`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// `[http]`: where the one HTTP listener binds and whose forwarding headers count.
    pub http: HttpConfig,
    /// `[app]`: the App object this service answers for, and the secret of every login.
    pub app: AppConfig,
    /// `[store]`: where the phones' state lives.
    pub store: StoreConfig,
    /// `[devices]`: how the phones' links to innovaphone Devices are made and paced.
    pub devices: DevicesConfig,
    /// `[websocket]`: limits and timers of the AppWebsocket connections.
    pub websocket: WebsocketConfig,
    /// `[provisioning]`: how phones are served their files.
    pub provisioning: ProvisioningConfig,
    /// `[tls]`: the HTTPS listener, when `listen`, `cert` and `key` are all set; `None`, HTTP only.
    pub tls: Option<TlsConfig>,
    /// `[admin]`: who may administer, and the admin page's settings.
    pub admin: AdminConfig,
    /// `[redirect.<vendor>]`: the vendors' redirect services phones are registered with.
    pub redirect: RedirectConfig,
}

/// A secret written in the file or kept in a file of its own (read at start).
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Written in the configuration.
    Inline(Secret),
    /// `..._file`: the file holding it (trailing newline dropped).
    File(PathBuf),
}

impl SecretSource {
    /// The secret, reading its file if it has one.
    pub fn read(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|text| Secret::new(text.trim_end_matches(['\r', '\n'])))
                .map_err(|e| format!("{}: {e}", path.display())),
        }
    }
}

/// `[redirect]`: zero touch (interface.md "Zero touch"); a vendor without its table is
/// registered nowhere.
#[derive(Debug, Clone, Default)]
pub struct RedirectConfig {
    /// `[redirect.yealink]`: Yealink RPS.
    pub yealink: Option<YealinkRedirectConfig>,
    /// `[redirect.snom]`: Snom SRAPS.
    pub snom: Option<HawkRedirectConfig>,
    /// `[redirect.gigaset_p]`: Gigaset GRAPE (the P-series).
    pub gigaset_p: Option<HawkRedirectConfig>,
    /// `[redirect.gigaset]`: Gigaset's MAC-ID redirect server (the Nx70 bases).
    pub gigaset: Option<GigasetRedirectConfig>,
    /// `[redirect.fanvil]`: Fanvil FDPS.
    pub fanvil: Option<FanvilRedirectConfig>,
    /// `[redirect.poly]`: Poly ZTP.
    pub poly: Option<PolyRedirectConfig>,
}

/// `[redirect.gigaset]`: the provisioner account at Gigaset's redirect server
/// (docs/redirect/snom-gigaset.md §3.1).
#[derive(Debug, Clone)]
pub struct GigasetRedirectConfig {
    /// `url`: the XML-RPC endpoint.
    pub url: String,
    /// `user`: the account (HTTP Basic).
    pub user: String,
    /// `password` or `password_file`.
    pub password: SecretSource,
    /// `provider_name`: the "Provider" label of the registrations.
    pub provider_name: String,
}

/// `[redirect.fanvil]`: the FDPS XML-RPC account (docs/redirect/fanvil-poly-grandstream.md §1).
#[derive(Debug, Clone)]
pub struct FanvilRedirectConfig {
    /// `url`: the XML-RPC endpoint.
    pub url: String,
    /// `user`: the account (HTTP Basic).
    pub user: String,
    /// `password` or `password_file`: the account's password in clear.
    pub password: SecretSource,
}

/// `[redirect.poly]`: the ZTP API key (docs/redirect/fanvil-poly-grandstream.md §2).
#[derive(Debug, Clone)]
pub struct PolyRedirectConfig {
    /// `url`: the API base, ending in `/`.
    pub url: String,
    /// `api_key` or `api_key_file`.
    pub api_key: SecretSource,
}

/// `[redirect.snom]` and `[redirect.gigaset_p]`: the SRAPS or GRAPE access key
/// (docs/redirect/snom-gigaset.md).
#[derive(Debug, Clone)]
pub struct HawkRedirectConfig {
    /// `url`: the API base, ending in `/`.
    pub url: String,
    /// `key_id`: the access key id (Hawk's id).
    pub key_id: String,
    /// `key_secret` or `key_secret_file`.
    pub key_secret: SecretSource,
}

/// `[redirect.yealink]`: the RPS XML-RPC account (docs/redirect/yealink.md).
#[derive(Debug, Clone)]
pub struct YealinkRedirectConfig {
    /// `url`: the XML-RPC endpoint.
    pub url: String,
    /// `user`: the account (HTTP Basic).
    pub user: String,
    /// `password` or `password_file`.
    pub password: SecretSource,
    /// `server_name`: the RPS server entry the phones are registered under.
    pub server_name: String,
}

/// `[http]`: the one listener for websockets, phone downloads and the admin doors.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `http.listen`: the address the listener binds.
    pub listen: SocketAddr,
    /// `http.trusted_proxies`: the reverse proxies whose `Forwarded` / `X-Forwarded-*`
    /// headers are believed; from anyone else they are ignored, so a client cannot choose the
    /// address its misses are counted against.
    pub trusted_proxies: Vec<IpNet>,
}

/// `[app]`: the App object at the PBX.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// `app.path`: the App object URL's path; the websocket upgrade is accepted on it and on
    /// its parent.
    pub path: String,
    /// `app.password`: the App object's password, the shared secret of every login.
    pub password: Secret,
    /// `app.title`: the title published for `com.innovaphone.provisioning`.
    pub title: String,
    /// `app.object`: the App object's own SIP name on the PBX; when set, only a login as that
    /// object may act as the PBX (PbxInfo, Services); unset, the first one is pinned.
    pub object: Option<String>,
    /// `app.provisioners`: the SIP names of the App Services that may send ProvisioningPhone;
    /// unset, any login but a myApps user's may.
    pub provisioners: Option<Vec<String>>,
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

/// `[store]`: where state lives.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `store.backend`: sled (one machine) or PostgreSQL (several instances).
    pub backend: StoreBackend,
    /// `store.path`: the sled directory, created if missing; the seal key file lives in it
    /// unless `seal_key_file` says otherwise.
    pub path: PathBuf,
    /// `store.url`: the PostgreSQL connection URL, set (and checked) with `backend =
    /// "postgres"`; a secret because it may hold a password.
    pub url: Option<Secret>,
    /// `store.password_file`: a file holding the PostgreSQL password, so that it need not be
    /// in the URL.
    pub password_file: Option<PathBuf>,
    /// `store.pool_size`: the PostgreSQL connections held (1 to 64).
    pub pool_size: u32,
    /// `store.seal_key_file`: the seal key, which every instance sharing a database must
    /// share; `None`, `<path>/seal.key`.
    pub seal_key_file: Option<PathBuf>,
    /// `store.lease_secs`: how long an instance's hold on a phone lasts unless renewed; an
    /// instance that dies has its phones taken over after this.
    pub lease: Duration,
}

/// `[devices]`: the links to innovaphone Devices.
#[derive(Debug, Clone)]
pub struct DevicesConfig {
    /// `devices.sysclient_url`: overrides the sysclient URL learnt from the PBX's Services API.
    pub sysclient_url: Option<String>,
    /// `devices.ca_file`: extra CAs trusted for `wss://` to Devices (an App Platform with its
    /// own or a self-signed certificate), beside the public web PKI.
    pub ca_file: Option<PathBuf>,
    /// `devices.connects_per_second`: the service-wide cap on sysclient connection attempts,
    /// so that a restart does not storm Devices.
    pub connects_per_second: u32,
    /// `devices.provisioning_timeout_secs`: how long a ProvisioningPhone waits for the complete
    /// configuration before it is answered "failed".
    pub provisioning_timeout: Duration,
    /// `devices.reconnect_min_ms`: the first reconnect delay of a link (doubling, jittered).
    pub reconnect_min: Duration,
    /// `devices.reconnect_max_secs`: the longest reconnect delay of a link.
    pub reconnect_max: Duration,
}

/// `[websocket]`: the AppWebsocket connections' limits.
#[derive(Debug, Clone)]
pub struct WebsocketConfig {
    /// `websocket.max_message_bytes`: the largest inbound message after login (fragments
    /// reassembled), so that a peer cannot make the service buffer without bound.
    pub max_message_bytes: usize,
    /// `websocket.ping_interval_secs`: how often a peer is pinged, to notice dead connections.
    pub ping_interval: Duration,
    /// `websocket.idle_timeout_secs`: the silence (no frame, no pong) after which a peer is
    /// dropped.
    pub idle_timeout: Duration,
    /// `websocket.login_timeout_secs`: how long a connection may stay without logging in.
    pub login_timeout: Duration,
    /// `websocket.max_pending_logins`: connections not yet logged in, service-wide (addresses
    /// that logged in before keep a reserve beyond it); more get 503 before the upgrade.
    pub max_pending_logins: usize,
    /// `websocket.pending_logins_per_address`: the same cap per client address.
    pub pending_logins_per_address: usize,
}

/// `[provisioning]`: phone downloads.
#[derive(Debug, Clone)]
pub struct ProvisioningConfig {
    /// `provisioning.path`, resolved: the URL path phones fetch under (default `<parent of
    /// app.path>/prov`).
    pub path: String,
    /// `provisioning.public_url`: the URL phones are told to fetch from (ending in `/`);
    /// `None`, the scheme and host the phone used.
    pub public_url: Option<String>,
    /// `provisioning.enrolment_window_minutes`: how long after ProvisioningPhone (or an
    /// admin's reopening) a phone's files are served without credentials.
    pub enrolment_window: Duration,
    /// `provisioning.enrolment_once`: hand a phone's own file out only once without
    /// credentials inside the window, so that a second party gets 401.
    pub enrolment_once: bool,
    /// `provisioning.enrol_from`: the networks to which a phone's file may be served without
    /// credentials; empty, any.
    pub enrol_from: Vec<IpNet>,
    /// `provisioning.recheck_minutes`: the phones' periodic re-check interval, written into
    /// their files in minutes as the vendors take it.
    pub recheck_minutes: u32,
    /// `provisioning.template_dir`: operator templates overriding the built-in ones.
    pub template_dir: Option<PathBuf>,
    /// `provisioning.vendors_file`: an operator vendor catalogue merged over the built-in one.
    pub vendors_file: Option<PathBuf>,
    /// `provisioning.trust_anchors`: the CAs of the PBX's SIP-TLS (and innoprov's HTTPS)
    /// certificate, served to the phones and installed the vendors' way.
    pub trust_anchors: Option<PathBuf>,
    /// `provisioning.misses_per_minute`: misses one address may have per minute before 429,
    /// so that MACs cannot be guessed quickly.
    pub misses_per_minute: u32,
    /// `provisioning.audit_entries`: downloads kept in each phone's audit.
    pub audit_entries: usize,
    /// `provisioning.notify`: whether a configuration change sends the phone a SIP NOTIFY.
    pub notify: bool,
    /// `provisioning.notify_port`: the UDP port the NOTIFY goes to.
    pub notify_port: u16,
    /// `provisioning.notify_per_second`: the service-wide NOTIFY rate.
    pub notify_per_second: u32,
}

/// `[tls]`: an HTTPS listener beside `http.listen`, for phones (and the PBX); only ever
/// whole.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// `tls.listen`: the address the HTTPS listener binds.
    pub listen: SocketAddr,
    /// `tls.cert`: the PEM certificate chain it presents.
    pub cert: PathBuf,
    /// `tls.key`: the PEM private key of that certificate.
    pub key: PathBuf,
}

/// `[admin]`: who may administer (interface.md "Operating").
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `admin.token`: the bearer token of the REST API, `/metrics` and the standalone admin
    /// page; `None` switches those off (404).
    pub token: Option<Secret>,
    /// `admin.app`: the App object name whose AppWebsocket logins may administer.
    pub app: Option<String>,
    /// `admin.page`: the admin page's file name (`<parent>/<page>.htm`), when it differs from
    /// the App object's name (innovaphone's own apps: App object `users`, page
    /// `innovaphone-users`).
    pub page: Option<String>,
    /// `admin.url_origins`, normalised (`https://host[:port]`): the origins besides the
    /// page's own that myApps' `url` argument may name for the page's websocket.
    pub url_origins: Vec<String>,
    /// `admin.badge_link_down_minutes`: how long a phone's link may be down before the admin
    /// app's badge counts it (minutes, as the page shows it).
    pub badge_link_down_minutes: u32,
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

/// The parent of an App object path (`/a/b/c` → `/a/b`; `/a` → ``).
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "",
        Some(i) => &path[..i],
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
        let raw: raw::Config = toml::from_str(text).map_err(|e| {
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
        raw.typed(origin)
    }

    /// The app name: the last segment of `app.path`, as the PBX sends it in AppLogin.
    pub fn app_name(&self) -> &str {
        self.app.path.rsplit('/').next().unwrap_or_default()
    }

    /// The parent of `app.path` (websocket upgrades are accepted there too; phone files live
    /// under its `prov/`).
    pub fn app_parent(&self) -> &str {
        parent_of(&self.app.path)
    }

    /// The instance's own domain: the first segment of `app.path`.
    pub fn app_domain(&self) -> &str {
        self.app.path.split('/').nth(1).unwrap_or_default()
    }

    /// The REST API's path (`<parent of app.path>/api/v1`).
    pub fn api_path(&self) -> String {
        format!("{}/api/v1", self.app_parent())
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
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn defaults_fill_the_rest() {
        let c = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(c.websocket.max_message_bytes, 1024 * 1024);
        assert_eq!(c.store.path, PathBuf::from("data"));
        assert_eq!(c.provisioning.path, "/example.com/innoprov/prov");
        assert_eq!(c.provisioning.enrolment_window, Duration::from_secs(3600));
    }

    #[test]
    fn values_are_typed_once() {
        let c = Config::parse(
            "[http]\nlisten = \"[::1]:8081\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
             [app]\npassword = \"app-secret\"\n\
             [store]\nlease_secs = 20\n\
             [devices]\nreconnect_min_ms = 250\nreconnect_max_secs = 30\nprovisioning_timeout_secs = 45\n\
             [websocket]\nping_interval_secs = 5\nidle_timeout_secs = 15\nlogin_timeout_secs = 7\n\
             [provisioning]\nenrolment_window_minutes = 2\nenrol_from = [\"192.0.2.0/24\"]\n\
             [tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             [admin]\ntoken = \"0123456789abcdef0123456789abcdef\"\nurl_origins = [\"WSS://Apps.Example.com:443/\"]\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.http.listen, "[::1]:8081".parse::<SocketAddr>().unwrap());
        assert!(c.http.trusted_proxies[0].contains("10.9.8.7".parse().unwrap()));
        assert!(c.provisioning.enrol_from[0].contains("192.0.2.9".parse().unwrap()));
        assert_eq!(c.store.lease, Duration::from_secs(20));
        assert_eq!(
            (
                c.devices.reconnect_min,
                c.devices.reconnect_max,
                c.devices.provisioning_timeout
            ),
            (
                Duration::from_millis(250),
                Duration::from_secs(30),
                Duration::from_secs(45)
            )
        );
        assert_eq!(
            (
                c.websocket.ping_interval,
                c.websocket.idle_timeout,
                c.websocket.login_timeout
            ),
            (
                Duration::from_secs(5),
                Duration::from_secs(15),
                Duration::from_secs(7)
            )
        );
        assert_eq!(c.provisioning.enrolment_window, Duration::from_secs(120));
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(
            (tls.listen.port(), tls.cert.as_path()),
            (8443, Path::new("c.pem"))
        );
        assert_eq!(c.admin.url_origins, ["https://apps.example.com"]);
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("app-secret") && !debug.contains("0123456789abcdef"),
            "{debug}"
        );
        let defaults = Config::parse(MINIMAL, "t").unwrap();
        assert!(defaults.tls.is_none());
        assert_eq!(defaults.websocket.login_timeout, Duration::from_secs(30));
        assert_eq!(defaults.devices.reconnect_min, Duration::from_secs(1));
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
                "[app]\npassword = \"pw\"\n[redirect.poly]\napi_key = \"k\"\n",
                "needs provisioning.public_url",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npublic_url = \"https://p.example/\"\n[redirect.fanvil]\nuser = \"u\"\npassword = \"p\"\npassword_file = \"/f\"\n",
                "redirect.fanvil.password",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npublic_url = \"https://p.example/\"\n[redirect.gigaset]\nuser = \"u\"\npassword = \"p\"\nprovider_name = \"a/b\"\n",
                "redirect.gigaset.provider_name",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npublic_url = \"https://p.example/\"\n[redirect.gigaset_p]\nkey_id = \"bad id\"\nkey_secret = \"s\"\n",
                "redirect.gigaset_p.key_id",
            ),
            (
                "[app]\npassword = \"pw\"\n[provisioning]\npublic_url = \"https://p.example/\"\n[redirect.poly]\nurl = \"https://api.ztp.poly.com/v1\"\napi_key = \"k\"\n",
                "redirect.poly.url",
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
