//! Starting and stopping the whole service: the listener, the store, the actors and the HTTP
//! server, in an order where every startup failure leaves nothing written.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{App, HttpServer, web};
use innoprov::config::StoreBackend;
use innoprov::provisioning::auth::NonceKey;
use innoprov::provisioning::{Renderer, Vendors};
use innoprov::store::SledStore;
use innoprov::{Config, Sealer, Secret, Store};
use tokio::sync::watch;

use crate::edge::admin_core::AdminCore;
use crate::edge::admin_http::{self, AdminHttp};
use crate::edge::admin_page;
use crate::edge::app_session::SessionShared;
use crate::edge::forwarded::TrustedProxies;
use crate::edge::http::{self, HttpState};
use crate::edge::login_guard::{LoginGuard, LoginLimits};
use crate::edge::pbx_pin::PbxPin;
use crate::edge::prov_http::{self, ProvState};
use crate::ops::fatal::Fatal;
use crate::phones::connect_gate::ConnectGate;
use crate::phones::devices_socket::LinkShared;
use crate::phones::directory::ServiceDirectory;
use crate::phones::notifier::Notifier;
use crate::phones::phone_job::JobShared;
use crate::phones::redirect::RedirectWorker;
use crate::phones::registry::leased::LeaseDuty;
use crate::phones::registry::{PhoneRegistry, RetireAll};
use crate::store::LeaseHandle;
use crate::store::audit_log::AuditLog;
use crate::store::persistence::{Flush, Persistence};
use crate::store::postgres_store::{self, PostgresSettings};
use crate::store::user_directory::UserDirectory;
use innoprov::redirect::RedirectApi;

/// Why the service could not start; each is a one-line message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener address is unusable or taken.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store directory cannot be created, opened or is damaged.
    #[error("cannot open store {path}: {reason}")]
    Store {
        /// The store directory.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The TLS certificate or key is unusable.
    #[error("cannot use TLS certificate or key {0}")]
    Tls(String),
    /// The HTTP server could not start.
    #[error("cannot start HTTP server: {0}")]
    Http(std::io::Error),
    /// A secret's file (`..._file`) cannot be read.
    #[error("cannot read {0}")]
    SecretFile(String),
    /// The operator's vendor catalogue (`provisioning.vendors_file`) is unusable.
    #[error("provisioning.vendors_file {path}: {reason}")]
    Vendors {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Makes `dir` and everything in it readable by the owner only (directories 0700, files 0600).
fn restrict_to_owner(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            restrict_to_owner(&path)?;
        } else if meta.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// The PostgreSQL settings of `[store]`: the password from `password_file`, else from
/// `$PGPASSWORD`, else whatever the URL holds.
fn postgres_settings(store: &innoprov::config::StoreConfig) -> Result<PostgresSettings, String> {
    let url = store
        .url
        .as_ref()
        .map(|url| url.expose().to_string())
        .unwrap_or_default();
    let password = match &store.password_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("store.password_file {}: {e}", file.display()))?;
            Some(Secret::new(text.lines().next().unwrap_or_default().to_string()))
        }
        None => std::env::var("PGPASSWORD").ok().map(Secret::new),
    };
    Ok(PostgresSettings {
        url,
        password,
        pool_size: store.pool_size as usize,
        lease: Some(store.lease),
    })
}

/// The built-in vendor catalogue with the operator's merged over it, and the templates; checked
/// before anything binds or writes.
fn vendors_and_templates(config: &Config) -> Result<(Vendors, Renderer), StartError> {
    let prov = &config.provisioning;
    let builtin = Vendors::builtin();
    let vendors = match &prov.vendors_file {
        None => builtin,
        Some(path) => {
            let error = |reason: String| StartError::Vendors {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
            builtin.merged_with(&text).map_err(|e| error(e.to_string()))?
        }
    };
    let renderer = Renderer::new(&vendors, prov.template_dir.as_deref());
    if let Some(missing) = renderer.missing_templates(&vendors).first() {
        return Err(StartError::Vendors {
            path: prov
                .vendors_file
                .as_ref()
                .map_or("(built-in)".into(), |p| p.display().to_string()),
            reason: missing.clone(),
        });
    }
    for problem in renderer.problems() {
        log::error!("{problem}");
    }
    Ok((vendors, renderer))
}

/// The admin page and its websocket path: named `admin.page`, else after `admin.app` (myApps
/// opens `<App object URL>.htm`), else the default name when only the token login is set.
fn admin_page_settings(config: &Config) -> Option<admin_page::PageSettings> {
    let admin = &config.admin;
    let name = match (admin.page.as_ref().or(admin.app.as_ref()), &admin.token) {
        (Some(name), _) if admin_page::valid_name(name) => name.clone(),
        (Some(name), _) => {
            log::warn!(
                "admin page {name:?} cannot name a page (letters, digits, '-', '_', '.'): no admin page is served"
            );
            return None;
        }
        (None, Some(_)) => admin_page::DEFAULT_NAME.to_string(),
        (None, None) => return None,
    };
    Some(admin_page::PageSettings {
        name,
        origins: admin.url_origins.clone(),
        badge_link_down_minutes: admin.badge_link_down_minutes,
    })
}

/// The store setting that keeps the addresses that logged in before (login_guard).
const KNOWN_ADDRESSES_SETTING: &str = "login_known_addresses";

/// The login guard: the configured caps lowered to the open-files limit the process got, and
/// the addresses that logged in before this start.
fn login_guard(config: &Config, store: &dyn Store) -> Result<Arc<LoginGuard>, innoprov::store::StoreError> {
    let ws = &config.websocket;
    let configured = LoginLimits {
        max_pending: ws.max_pending_logins,
        per_address: ws.pending_logins_per_address,
    };
    let open_files = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft);
    let limits = LoginLimits::for_open_files(configured, open_files);
    log::info!(
        "open files {open_files}: at most {} connections waiting for a login ({} per address), the rest for Devices links and downloads",
        limits.max_pending,
        limits.per_address
    );
    let known = store.get_setting(KNOWN_ADDRESSES_SETTING)?.unwrap_or_default();
    Ok(LoginGuard::new(limits, &known))
}

/// Keeps the addresses that logged in in the store when they changed.
fn save_known_addresses(guard: &LoginGuard, store: &dyn Store) {
    if let Some(bytes) = guard.known_to_save()
        && let Err(e) = store.put_setting(KNOWN_ADDRESSES_SETTING, Some(&bytes))
    {
        log::warn!("cannot keep the addresses that logged in: {e}");
    }
}

/// Saves the addresses that logged in every 5 s (and `shutdown` once more), off the actix
/// workers.
fn spawn_known_address_saver(
    guard: Arc<LoginGuard>,
    store: Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) {
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            let (guard, store) = (Arc::clone(&guard), Arc::clone(&store));
            let _ = actix_web::rt::task::spawn_blocking(move || save_known_addresses(&guard, &*store)).await;
        }
    });
}

/// How often the directory is kept up: unsaved table writes retried, and with several
/// instances the others' writes taken (the stamps read every tick, everything every
/// [`DIRECTORY_FULL_READ_TICKS`]).
const DIRECTORY_TICK: Duration = Duration::from_secs(2);
/// Ticks between full reads of the directory's settings (about a minute).
const DIRECTORY_FULL_READ_TICKS: u32 = 30;

/// Keeps the PBX's users and the key profiles up, off the actix workers, until `shutdown`:
/// retries a table write that failed, and when `several` instances share the database takes
/// what the others wrote (a profile edited on another instance, the table another instance
/// replicates), so every instance serves the same phonebook and keys.
fn spawn_directory_follower(users: Arc<UserDirectory>, several: bool, mut shutdown: watch::Receiver<bool>) {
    actix_web::rt::spawn(async move {
        let mut tick = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(DIRECTORY_TICK) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            let full = tick.is_multiple_of(DIRECTORY_FULL_READ_TICKS);
            tick = tick.wrapping_add(1);
            let users = Arc::clone(&users);
            let kept = actix_web::rt::task::spawn_blocking(move || {
                users.save()?;
                match several {
                    true => users.follow(full),
                    false => Ok(false),
                }
            })
            .await;
            match kept {
                Ok(Ok(true)) => {
                    log::info!("directory: took another instance's change of the users or key profiles")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => log::warn!("directory: cannot keep the users and key profiles up: {e}"),
                Err(e) => log::warn!("directory: the keeper failed: {e}"),
            }
        }
    });
}

/// `innoprov check`: every check the start makes that neither binds nor writes (the config's
/// values, the vendor catalogue and templates, the TLS files, the CA file, the PostgreSQL
/// password file, an existing seal key), and a one-line summary of what would run.
pub fn check(config: &Config) -> Result<String, StartError> {
    install_tls_provider();
    let (vendors, renderer) = vendors_and_templates(config)?;
    if let Some(problem) = renderer.problems().first() {
        return Err(StartError::Vendors {
            path: "provisioning.template_dir".into(),
            reason: problem.clone(),
        });
    }
    devices_client_config(config.devices.ca_file.as_deref())?;
    trust_anchors(config)?;
    let https = match &config.tls {
        Some(tls) => {
            tls_server_config(&tls.cert, &tls.key)?;
            format!("https {}", tls.listen)
        }
        None => "no https".to_string(),
    };
    let store_error = |reason: String| StartError::Store {
        path: config.store.path.display().to_string(),
        reason,
    };
    let key_path = config.seal_key_path();
    if key_path.exists() {
        Sealer::load_or_create(&key_path).map_err(|e| store_error(e.to_string()))?;
    }
    let store = match config.store.backend {
        StoreBackend::Sled => format!("sled at {}", config.store.path.display()),
        StoreBackend::Postgres => {
            let settings = postgres_settings(&config.store).map_err(&store_error)?;
            postgres_store::describe_url(&settings.url).map_err(|e| store_error(e.to_string()))?
        }
    };
    let admin = match (&config.admin.token, &config.admin.app) {
        (Some(_), Some(app)) => format!("REST and admin app {app}"),
        (Some(_), None) => "REST".to_string(),
        (None, Some(app)) => format!("admin app {app}"),
        (None, None) => "no admin door".to_string(),
    };
    Ok(format!(
        "listen {}, {https}, store {store}, {} vendors, {admin}",
        config.http.listen,
        vendors.all().len()
    ))
}

/// `provisioning.trust_anchors`: every certificate of the PEM file, encoded again as PEM, so
/// that nothing else the file may hold (a private key by mistake) is ever served.
fn trust_anchors(config: &Config) -> Result<Vec<String>, StartError> {
    use base64::Engine;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let Some(path) = &config.provisioning.trust_anchors else {
        return Ok(Vec::new());
    };
    let error = |e: &dyn std::fmt::Display| {
        StartError::Tls(format!("provisioning.trust_anchors {}: {e}", path.display()))
    };
    let mut pems = Vec::new();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| error(&e))? {
        let der = cert.map_err(|e| error(&e))?;
        let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(64)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        pems.push(format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        ));
    }
    if pems.is_empty() {
        return Err(error(&"no certificate in the file"));
    }
    Ok(pems)
}

/// A started service.
pub struct RunningService {
    /// The bound listener address (useful when the config asked for port 0).
    pub addr: SocketAddr,
    /// The bound HTTPS listener address, when `[tls]` is configured.
    pub https_addr: Option<SocketAddr>,
    /// Stops the HTTP server.
    server: actix_web::dev::ServerHandle,
    /// The HTTP server's task; finishes when the server has stopped.
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Tells every session to close.
    shutdown: watch::Sender<bool>,
    /// The store's actor, flushed last.
    pub persistence: Addr<Persistence>,
    /// The phones' jobs, retired (closing their Devices links) at shutdown.
    pub registry: Addr<PhoneRegistry>,
    /// The store, for the admin operations of `innoprov::provisioning::admin`.
    pub store: Arc<dyn Store>,
    /// Every phone's downloads (the latest may not be in the store yet).
    pub audit: Arc<AuditLog>,
    /// Where the singletons report an end outside a shutdown.
    pub fatal: Fatal,
    /// Where Devices is.
    pub directory: Addr<ServiceDirectory>,
    /// SIP NOTIFY to phones, when `provisioning.notify` is on.
    pub notifier: Option<Addr<Notifier>>,
    /// Zero touch, when a redirect service is configured.
    pub redirect: Option<Addr<RedirectWorker>>,
    /// The login guard, whose known addresses are saved at shutdown.
    guard: Arc<LoginGuard>,
}

impl RunningService {
    /// Starts everything. Must run inside an actix `System`.
    pub async fn start(config: &Config) -> Result<RunningService, StartError> {
        install_tls_provider();
        let (vendors, renderer) = vendors_and_templates(config)?;
        let trust_anchors = trust_anchors(config)?;
        // Bind before touching the disk: a busy port must leave nothing written.
        let (listener, tls) = bind_listeners(config)?;
        let addr = listener.local_addr().map_err(StartError::Http)?;
        let devices_tls = Arc::new(devices_client_config(config.devices.ca_file.as_deref())?);
        let opened = open_store(config)?;
        let store_error = store_error(config);
        let (pbx, users) = pbx_and_users(config, &opened.store).map_err(|e| store_error(e.to_string()))?;
        let fatal = Fatal::default();
        let (phones, redirect_services) =
            start_phones_and_redirect(config, &opened, &vendors, devices_tls, &fatal)?;
        let (store, sealer, leases) = (opened.store, opened.sealer, opened.leases);
        let (shutdown, shutdown_rx) = watch::channel(false);
        warn_about_passwords(config);
        let admin_core = admin_core(
            (&store, &sealer, leases.map(|handle| handle.leases)),
            &vendors,
            &phones,
            (pbx, Arc::clone(&users)),
            redirect_services,
        );
        let guard = login_guard(config, &*store).map_err(|e| store_error(e.to_string()))?;
        let shared = Arc::new(session_shared(
            config,
            &admin_core,
            phones.changes.clone(),
            shutdown_rx,
            &guard,
        ));
        spawn_known_address_saver(Arc::clone(&guard), Arc::clone(&store), shutdown.subscribe());
        spawn_directory_follower(
            Arc::clone(&users),
            admin_core.leases.is_some(),
            shutdown.subscribe(),
        );
        let prov_path = &config.provisioning.path;
        let parts = ProvParts {
            store: Arc::clone(&store),
            sealer,
            vendors,
            renderer,
            trust_anchors,
            audit: Arc::clone(&phones.audit),
            trusted_proxies: TrustedProxies(config.http.trusted_proxies.clone()),
            users: Arc::clone(&users),
        };
        let states = http_states(config, &admin_core, shared, parts);
        let (server, https_addr) = http_server(config, states, listener, tls)?;
        let handle = server.handle();
        let server_task = tokio::spawn(server);
        let https = https_addr.map(|a| format!("; https://{a}")).unwrap_or_default();
        log::info!(
            "innoprov listening on http://{addr}; AppWebsocket on {} (and its parent); phone files under {prov_path}/{https}",
            config.app.path
        );
        Ok(RunningService {
            addr,
            https_addr,
            server: handle,
            server_task,
            shutdown,
            persistence: phones.persistence,
            registry: phones.registry,
            store,
            audit: phones.audit,
            fatal,
            directory: phones.directory,
            notifier: phones.notifier,
            redirect: phones.redirect,
            guard,
        })
    }

    /// Serves until SIGTERM or SIGINT, or until a singleton fails (`fatal`), then shuts down.
    pub async fn run_until_signal(self, mut signals: ShutdownSignals) -> Result<(), RunFailure> {
        let fatal = self.fatal.clone();
        let failed = tokio::select! {
            () = signals.wait() => None,
            reason = fatal.wait() => Some(reason),
        };
        log::info!("shutting down");
        crate::ops::ready::notify_stopping();
        let stopped = self.shutdown().await.map_err(RunFailure::Shutdown);
        match failed {
            Some(reason) => Err(RunFailure::Fatal(reason)),
            None => stopped,
        }
    }

    /// Stops accepting, closes every websocket cleanly, flushes the store.
    pub async fn shutdown(self) -> Result<(), String> {
        self.fatal.stopping();
        let _ = self.shutdown.send(true);
        let _ = self.registry.send(RetireAll).await;
        self.server.stop(true).await;
        if let Err(e) = self.server_task.await {
            log::warn!("HTTP server task ended badly: {e}");
        }
        if let Err(e) = self.audit.flush() {
            log::warn!("final audit write failed: {e}");
        }
        save_known_addresses(&self.guard, &*self.store);
        match self.persistence.send(Flush).await {
            Ok(Ok(())) => {
                log::info!("store flushed; bye");
                Ok(())
            }
            Ok(Err(e)) => Err(format!("final store flush failed: {e}")),
            Err(e) => Err(format!("final store flush failed: {e}")),
        }
    }
}

/// One TLS provider for the whole process (the HTTPS listener, `wss://` to Devices, the
/// PostgreSQL client), installed by the two entry points, [`check`] and
/// [`RunningService::start`], before any configuration is built. A second call finds it
/// installed and changes nothing.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The client configuration for `wss://` to Devices: the public web PKI plus `ca_file`'s CAs.
fn devices_client_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, StartError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca_file) = ca_file {
        let tls_error = |e: &dyn std::fmt::Display| StartError::Tls(format!("{}: {e}", ca_file.display()));
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| tls_error(&e))? {
            roots
                .add(cert.map_err(|e| tls_error(&e))?)
                .map_err(|e| tls_error(&e))?;
            added += 1;
        }
        if added == 0 {
            return Err(tls_error(&"no certificate in the file"));
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The HTTPS server configuration from PEM files.
fn tls_server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let tls_error = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        StartError::Tls(format!("{}: {e}", what.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(cert, &e))?;
    if certs.is_empty() {
        return Err(tls_error(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, &e))?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_error(cert, &e))
}

/// Why serving ended badly.
#[derive(Debug)]
pub enum RunFailure {
    /// A singleton failed (exit status 1: run it again).
    Fatal(String),
    /// The shutdown itself failed (the final store flush).
    Shutdown(String),
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailure::Fatal(reason) | RunFailure::Shutdown(reason) => f.write_str(reason),
        }
    }
}

impl From<RunFailure> for String {
    fn from(failure: RunFailure) -> String {
        failure.to_string()
    }
}

/// SIGTERM and SIGINT (Ctrl-C), watched from the moment this is made: make it before the
/// service says it is listening, or a SIGTERM right after that line kills the process with
/// the default action instead of a clean shutdown.
pub struct ShutdownSignals {
    /// SIGTERM.
    term: tokio::signal::unix::Signal,
    /// SIGINT.
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers. Must run inside the runtime.
    pub fn install() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either signal.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// The HTTP listener and, when `[tls]` is configured, the HTTPS one with its settings.
type Listeners = (TcpListener, Option<(TcpListener, rustls::ServerConfig)>);

/// Binds the HTTP listener (and the HTTPS one).
fn bind_listeners(config: &Config) -> Result<Listeners, StartError> {
    let listener = TcpListener::bind(config.http.listen).map_err(|source| StartError::Listen {
        addr: config.http.listen.to_string(),
        source,
    })?;
    let tls = match &config.tls {
        Some(tls) => {
            let server_config = tls_server_config(&tls.cert, &tls.key)?;
            let tls_listener = TcpListener::bind(tls.listen).map_err(|source| StartError::Listen {
                addr: tls.listen.to_string(),
                source,
            })?;
            Some((tls_listener, server_config))
        }
        None => None,
    };
    Ok((listener, tls))
}

/// A store failure at start, naming the store's directory.
fn store_error(config: &Config) -> impl Fn(String) -> StartError + use<> {
    let path = config.store.path.display().to_string();
    move |reason| StartError::Store {
        path: path.clone(),
        reason,
    }
}

/// The store as the service holds it.
struct OpenedStore {
    /// The phones, settings, access states and audits.
    store: Arc<dyn Store>,
    /// The installation's seal key.
    sealer: Sealer,
    /// Several instances: the leases and their messages (PostgreSQL with leases).
    leases: Option<LeaseHandle>,
}

/// Opens the configured store with its seal key (the directory restricted to the owner).
fn open_store(config: &Config) -> Result<OpenedStore, StartError> {
    let store_error = store_error(config);
    let store_path = config.store.path.display().to_string();
    std::fs::create_dir_all(&config.store.path).map_err(|e| store_error(e.to_string()))?;
    std::fs::read_dir(&config.store.path).map_err(|e| store_error(e.to_string()))?;
    // An existing key is checked before sled touches the directory; a missing one is
    // created only once the store has opened.
    let key_path = config.seal_key_path();
    let load_key = || Sealer::load_or_create(&key_path).map_err(|e| store_error(e.to_string()));
    let (opened, name) = match config.store.backend {
        StoreBackend::Sled => {
            let existing_key = key_path.exists().then(load_key).transpose()?;
            let store = SledStore::open(&config.store.path).map_err(|e| store_error(e.to_string()))?;
            let sealer = match existing_key {
                Some(sealer) => sealer,
                None => load_key()?,
            };
            let store: Arc<dyn Store> = Arc::new(store);
            #[cfg(feature = "simulators")]
            let store = crate::store::slow_store::from_env(store);
            (
                OpenedStore {
                    store,
                    sealer,
                    leases: None,
                },
                store_path,
            )
        }
        StoreBackend::Postgres => {
            let sealer = load_key()?;
            let settings = postgres_settings(&config.store).map_err(&store_error)?;
            let shared =
                postgres_store::open_shared(&settings, &sealer).map_err(|e| store_error(e.to_string()))?;
            let leases = shared.leases;
            (
                OpenedStore {
                    store: shared.store,
                    sealer,
                    leases,
                },
                shared.name,
            )
        }
    };
    // The store holds every phone's sealed secrets and the seal key: owner only.
    restrict_to_owner(&config.store.path)
        .map_err(|e| store_error(format!("cannot restrict permissions: {e}")))?;
    let phones = opened.store.phones().map_err(|e| store_error(e.to_string()))?;
    log::info!("store {name}: {} phones", phones.len());
    Ok(opened)
}

/// The phone machinery, started.
struct Phones {
    /// The jobs' writer.
    persistence: Addr<Persistence>,
    /// Every phone's downloads.
    audit: Arc<AuditLog>,
    /// SIP NOTIFY to phones, when on.
    notifier: Option<Addr<Notifier>>,
    /// The phones' jobs.
    registry: Addr<PhoneRegistry>,
    /// Where Devices is.
    directory: Addr<ServiceDirectory>,
    /// Announcements of phone state changes, for the admin sessions.
    changes: tokio::sync::broadcast::Sender<innoprov::Mac>,
    /// Zero touch, when a redirect service is configured.
    redirect: Option<Addr<RedirectWorker>>,
}

/// Starts persistence, the audit, the notifier, the registry (with its leases) and the
/// directory; singletons report to `fatal`.
fn start_phones(
    config: &Config,
    opened: &OpenedStore,
    vendors: &Vendors,
    tls: (Arc<rustls::ClientConfig>, Arc<rustls::ClientConfig>),
    redirect_apis: Vec<Arc<dyn RedirectApi>>,
    fatal: &Fatal,
) -> Phones {
    let (devices_tls, redirect_tls) = tls;
    let (store, sealer, leases) = (&opened.store, &opened.sealer, opened.leases.clone());
    let persistence_store = Arc::clone(store);
    let persistence_leases = leases.as_ref().map(|handle| Arc::clone(&handle.leases));
    let persistence_fatal = fatal.clone();
    let persistence = Persistence::start_in_arbiter(&Arbiter::new().handle(), move |_| {
        Persistence::new(persistence_store, persistence_fatal).with_leases(persistence_leases)
    });
    let prov = &config.provisioning;
    let audit = AuditLog::start(Arc::clone(store), prov.audit_entries, fatal.clone());
    let notifier = prov.notify.then(|| {
        let (port, rate) = (prov.notify_port, prov.notify_per_second);
        Notifier::new(Arc::clone(&audit), vendors.clone(), port, rate, fatal.clone()).start()
    });
    let devices = &config.devices;
    let link = Arc::new(LinkShared::new(
        Arc::new(ConnectGate::new(devices.connects_per_second)),
        innoprov::sysclient_session::Backoff {
            min: devices.reconnect_min,
            max: devices.reconnect_max,
        },
        devices_tls,
    ));
    let (changes, _) = tokio::sync::broadcast::channel(1024);
    let redirect = match (redirect_apis.is_empty(), &prov.public_url) {
        (false, Some(url)) => Some(
            RedirectWorker::new(
                redirect_apis,
                Arc::clone(store),
                vendors.clone(),
                url.clone(),
                redirect_tls,
                (fatal.clone(), sealer.clone()),
            )
            .start(),
        ),
        _ => None,
    };
    let jobs = Arc::new(JobShared {
        persistence: persistence.clone(),
        sealer: sealer.clone(),
        link,
        provisioning_timeout: devices.provisioning_timeout,
        notifier: notifier.clone().map(Addr::recipient),
        redirect: redirect.clone().map(Addr::recipient),
        changes: changes.clone(),
        audit: Arc::clone(&audit),
        leases: leases.as_ref().map(|handle| Arc::clone(&handle.leases)),
    });
    let mut registry = PhoneRegistry::new(jobs, fatal.clone());
    if let Some(handle) = leases {
        let duty = LeaseDuty::new(handle, Arc::clone(store), devices.connects_per_second);
        registry = registry.with_leases(duty);
    }
    let registry = registry.start();
    let url = devices.sysclient_url.clone();
    let directory = ServiceDirectory::new(url, registry.clone().recipient(), fatal.clone()).start();
    Phones {
        persistence,
        audit,
        notifier,
        registry,
        directory,
        changes,
        redirect,
    }
}

/// What the admin doors share: the store, the phones' actors, the PBX and its users.
fn admin_core(
    (store, sealer, leases): (&Arc<dyn Store>, &Sealer, Option<Arc<dyn innoprov::store::Leases>>),
    vendors: &Vendors,
    phones: &Phones,
    (pbx, users): (Arc<PbxPin>, Arc<UserDirectory>),
    redirect_services: Vec<&'static str>,
) -> Arc<AdminCore> {
    Arc::new(AdminCore {
        store: Arc::clone(store),
        sealer: sealer.clone(),
        vendors: vendors.clone(),
        registry: phones.registry.clone(),
        audit: Arc::clone(&phones.audit),
        notifier: phones.notifier.clone().map(Addr::recipient),
        directory: phones.directory.clone(),
        leases,
        pbx,
        users,
        redirect: phones.redirect.clone(),
        redirect_services: Arc::new(redirect_services),
    })
}

/// [`start_phones`] with the redirect services `[redirect.<vendor>]` configures (their
/// secrets read, TLS to them with the web PKI roots); the services' names.
fn start_phones_and_redirect(
    config: &Config,
    opened: &OpenedStore,
    vendors: &Vendors,
    devices_tls: Arc<rustls::ClientConfig>,
    fatal: &Fatal,
) -> Result<(Phones, Vec<&'static str>), StartError> {
    let apis = redirect_apis(config)?;
    let services = apis.iter().map(|api| api.vendor()).collect();
    let redirect_tls = Arc::new(devices_client_config(None)?);
    let phones = start_phones(config, opened, vendors, (devices_tls, redirect_tls), apis, fatal);
    Ok((phones, services))
}

/// The redirect services `[redirect.<vendor>]` configures, their secrets read (zero touch).
fn redirect_apis(config: &Config) -> Result<Vec<Arc<dyn RedirectApi>>, StartError> {
    use innoprov::redirect::{fanvil, gigaset, poly, snom, yealink};
    let read = |source: &innoprov::config::SecretSource, key: &str| {
        source
            .read()
            .map_err(|e| StartError::SecretFile(format!("redirect.{key}_file {e}")))
    };
    let r = &config.redirect;
    let mut apis: Vec<Arc<dyn RedirectApi>> = Vec::new();
    if let Some(y) = &r.yealink {
        apis.push(Arc::new(yealink::YealinkRps {
            url: y.url.clone(),
            user: y.user.clone(),
            password: read(&y.password, "yealink.password")?,
            server_name: y.server_name.clone(),
        }));
    }
    if let Some(f) = &r.fanvil {
        apis.push(Arc::new(fanvil::Fdps {
            url: f.url.clone(),
            user: f.user.clone(),
            password: read(&f.password, "fanvil.password")?,
        }));
    }
    if let Some(g) = &r.gigaset {
        apis.push(Arc::new(gigaset::GigasetRedirect {
            url: g.url.clone(),
            user: g.user.clone(),
            password: read(&g.password, "gigaset.password")?,
            provider_name: g.provider_name.clone(),
        }));
    }
    if let Some(p) = &r.poly {
        apis.push(Arc::new(poly::PolyZtp {
            base: p.url.clone(),
            api_key: read(&p.api_key, "poly.api_key")?,
        }));
    }
    for (table, service) in [
        (&r.snom, snom::HawkService::SnomSraps),
        (&r.gigaset_p, snom::HawkService::GigasetGrape),
    ] {
        let Some(hawk) = table else { continue };
        apis.push(Arc::new(snom::Sraps {
            base: hawk.url.clone(),
            key_id: hawk.key_id.clone(),
            key_secret: read(&hawk.key_secret, &format!("{}.key_secret", service.vendor()))?,
            service,
        }));
    }
    Ok(apis)
}

/// Warns about passwords left at values that cannot work.
fn warn_about_passwords(config: &Config) {
    let password = config.app.password.expose();
    if config.admin.token.as_ref().map(Secret::expose) == Some(password) {
        log::warn!(
            "admin.token equals app.password: the standalone admin page cannot log in; give it its own value"
        );
    }
    if password == "change-me" {
        log::warn!("app.password is the default \"change-me\": set the App object's real password");
    }
}

/// What the download doors share that start has already built.
struct ProvParts {
    /// The phones' records and access states.
    store: Arc<dyn Store>,
    /// Opens the phones' sealed secrets.
    sealer: Sealer,
    /// The vendors' descriptors.
    vendors: Vendors,
    /// The vendors' templates.
    renderer: Renderer,
    /// The CA certificates phones are told to trust.
    trust_anchors: Vec<String>,
    /// Every phone's downloads.
    audit: Arc<AuditLog>,
    /// Which proxies' forwarded addresses count.
    trusted_proxies: TrustedProxies,
    /// The PBX's users (the phonebook) and the key profiles.
    users: Arc<UserDirectory>,
}

/// Who the PBX is (`app.object`, or the stored pin) and the PBX's users with the key
/// profiles, as stored.
fn pbx_and_users(
    config: &Config,
    store: &Arc<dyn Store>,
) -> Result<(Arc<PbxPin>, Arc<UserDirectory>), innoprov::StoreError> {
    let pbx = PbxPin::load(config.app.object.clone(), Arc::clone(store))?;
    Ok((Arc::new(pbx), Arc::new(UserDirectory::load(Arc::clone(store))?)))
}

/// The phone download doors' state.
fn prov_state(config: &Config, parts: ProvParts) -> ProvState {
    let prov = &config.provisioning;
    // Leaked once per vendor at start: a handful of names, for the process's lifetime.
    let vendor_names: Vec<&'static str> = parts
        .vendors
        .all()
        .iter()
        .map(|v| &*Box::leak(v.name.clone().into_boxed_str()))
        .collect();
    let content_types = parts
        .vendors
        .all()
        .iter()
        .map(|v| {
            actix_web::http::header::HeaderValue::from_str(&v.content_type).unwrap_or_else(|_| {
                log::warn!(
                    "vendor {}: content type {:?} is not a header value; files go as text/plain",
                    v.name,
                    v.content_type
                );
                actix_web::http::header::HeaderValue::from_static("text/plain")
            })
        })
        .collect();
    let phones = crate::edge::phone_views::PhoneViews::new(Arc::clone(&parts.store), parts.sealer.clone());
    ProvState {
        content_types,
        phones,
        store: parts.store,
        sealer: parts.sealer,
        vendors: parts.vendors,
        renderer: parts.renderer,
        nonces: NonceKey::random(),
        path: prov.path.clone(),
        public_url: prov.public_url.clone(),
        window: prov.enrolment_window,
        enrolment_once: prov.enrolment_once,
        recheck_minutes: prov.recheck_minutes,
        sip_port: prov.notify_port,
        trust_anchors: parts.trust_anchors,
        audit: parts.audit,
        misses: prov_http::Misses::new(prov.misses_per_minute),
        trusted_proxies: parts.trusted_proxies,
        enrol_from: prov.enrol_from.clone(),
        counters: crate::ops::metrics::DownloadCounters::new(vendor_names),
        users: parts.users,
        phonebooks: Default::default(),
    }
}

/// The states of the sessions', the downloads' and the admin doors.
fn http_states(
    config: &Config,
    admin: &Arc<AdminCore>,
    sessions: Arc<SessionShared>,
    parts: ProvParts,
) -> HttpStates {
    let trusted_proxies = parts.trusted_proxies.clone();
    let admin_state = web::Data::new(AdminHttp {
        core: Arc::clone(admin),
        token: config
            .admin
            .token
            .as_ref()
            .map(|token| token.expose().to_string()),
        throttle: Default::default(),
        trusted_proxies: trusted_proxies.clone(),
    });
    let state = web::Data::new(HttpState {
        sessions,
        max_message_bytes: config.websocket.max_message_bytes,
        trusted_proxies,
    });
    (state, web::Data::new(prov_state(config, parts)), admin_state)
}

/// The three states the HTTP routes share: sessions, downloads, admin.
type HttpStates = (web::Data<HttpState>, web::Data<ProvState>, web::Data<AdminHttp>);

/// The HTTP(S) server over `listener` (and the TLS one), not yet running; the bound HTTPS
/// address.
fn http_server(
    config: &Config,
    (state, prov_state, admin_state): HttpStates,
    listener: TcpListener,
    tls: Option<(TcpListener, rustls::ServerConfig)>,
) -> Result<(actix_web::dev::Server, Option<SocketAddr>), StartError> {
    let (app_path, app_parent) = (config.app.path.clone(), config.app_parent().to_string());
    let (api_path, prov_path) = (config.api_path(), config.provisioning.path.clone());
    let admin_page = admin_page_settings(config);
    let admin_page_name = admin_page.as_ref().map(|p| p.name.clone());
    let admin_page_html = admin_page.as_ref().map(admin_page::page_html);
    let prov_first = downloads_first(&prov_path, &api_path);
    let mut server = HttpServer::new(move || {
        let app = App::new()
            .app_data(state.clone())
            .app_data(prov_state.clone())
            .app_data(admin_state.clone());
        let app = if prov_first {
            app.configure(|cfg| prov_http::configure(cfg, &prov_path))
                .configure(|cfg| admin_http::configure(cfg, &api_path))
        } else {
            app.configure(|cfg| admin_http::configure(cfg, &api_path))
                .configure(|cfg| prov_http::configure(cfg, &prov_path))
        };
        app.configure(|cfg| http::configure(cfg, &app_path, &app_parent, admin_page_name.as_deref()))
            .configure(|cfg| {
                if let (Some(settings), Some(html)) = (&admin_page, &admin_page_html) {
                    admin_page::configure(cfg, &app_parent, settings, html);
                }
            })
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)
    .map_err(StartError::Http)?;
    let mut https_addr = None;
    if let Some((tls_listener, server_config)) = tls {
        https_addr = Some(tls_listener.local_addr().map_err(StartError::Http)?);
        server = server
            .listen_rustls_0_23(tls_listener, server_config)
            .map_err(StartError::Http)?;
    }
    Ok((server.run(), https_addr))
}

/// Whether the download scope is registered before the admin routes. Routes are tried in
/// order and downloads are the most frequent requests, so they go first, unless the
/// provisioning path and an admin route lie one within the other: whichever comes first then
/// takes the other's requests, and the order stays as it always was.
fn downloads_first(prov_path: &str, api_path: &str) -> bool {
    let within = |inner: &str, outer: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    !admin_http::paths(api_path)
        .iter()
        .any(|path| within(path, prov_path) || within(prov_path, path))
}

/// What every AppWebsocket session shares (the PBX, Users and admin logins).
fn session_shared(
    config: &Config,
    admin: &Arc<AdminCore>,
    changes: tokio::sync::broadcast::Sender<innoprov::Mac>,
    shutdown: watch::Receiver<bool>,
    guard: &Arc<LoginGuard>,
) -> SessionShared {
    let ws = &config.websocket;
    SessionShared {
        provisionings_in_flight: Arc::default(),
        admin: Arc::clone(admin),
        admin_app: config.admin.app.clone(),
        admin_token: config.admin.token.clone(),
        changes,
        password: config.app.password.clone(),
        domain: config.app_domain().to_string(),
        title: config.app.title.clone(),
        pbx: Arc::clone(&admin.pbx),
        provisioners: config.app.provisioners.clone(),
        ping_interval: ws.ping_interval,
        idle_timeout: ws.idle_timeout,
        login_timeout: ws.login_timeout,
        sealer: admin.sealer.clone(),
        registry: admin.registry.clone(),
        directory: admin.directory.clone(),
        shutdown,
        guard: Arc::clone(guard),
    }
}

#[cfg(test)]
mod tests {
    use super::downloads_first;

    #[test]
    fn downloads_go_first_unless_their_path_lies_above_an_admin_route() {
        let api = "/example.com/innoprov/api/v1";
        assert!(downloads_first("/example.com/innoprov/prov", api));
        assert!(
            downloads_first("/health", api),
            "a prefix of /healthz, not a segment of it"
        );
        assert!(downloads_first("/example.com/innoprov/ap", api));
        assert!(!downloads_first("/example.com", api));
        assert!(!downloads_first("/example.com/innoprov/api", api));
        assert!(!downloads_first("/metrics", api));
        assert!(
            !downloads_first("/example.com/innoprov/api/v1/phones", api),
            "under the API"
        );
        assert!(!downloads_first("/metrics/prov", api));
    }
}
