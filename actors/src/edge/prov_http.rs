//! Phone downloads: `GET <provisioning path>/<file>`. The vendor and MAC come from the file
//! name (checked against the MAC's OUI and the User-Agent, or an admin's pin); the file is
//! rendered from the stored record, served with an ETag, and recorded in the phone's audit.
//!
//! Secure by default: a phone's own file is served without credentials only inside its
//! enrolment window and until the phone has used the provisioning credentials that file gave
//! it; otherwise Basic or Digest credentials are required. Every denial has the same body; an
//! address that keeps missing gets 429 and a log line fail2ban can match:
//! `provisioning denied for <ip>: too many misses`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use innoprov::clock::now_unix;
use innoprov::provisioning::auth::{self, NonceKey};
use innoprov::provisioning::vendor::Candidate;
use innoprov::provisioning::{AuditEntry, Decision, FileKind, PhoneContext, Renderer, Vendors};
use innoprov::seal::SealPurpose;
use innoprov::store::Freshness;
use innoprov::{Mac, PhoneRecord, Sealer, Store};

use crate::edge::forwarded;
use crate::ops::limits::MinuteCounts;
use crate::store::audit_log::AuditLog;

/// The one body of every denial (404, 401, 429), so a scanner learns nothing from it.
pub const DENIED_BODY: &str = "not available\n";
/// Longest User-Agent kept in the audit.
const MAX_AUDIT_UA: usize = 160;
/// Most addresses whose misses are counted at once.
pub const MAX_TRACKED_ADDRESSES: usize = 50_000;
/// Most rendered variants kept per phone (one per way of reaching the service, normally one).
const MAX_RENDERS_PER_PHONE: usize = 8;
/// Most rendered files kept in memory.
const MAX_CACHED: usize = 20_000;

/// Settings and shared state of the download handler.
pub struct ProvState {
    /// Records, download states and audit (read directly: reads need no actor).
    pub store: Arc<dyn Store>,
    /// Opens the secrets a file carries.
    pub sealer: Sealer,
    /// Known vendors.
    pub vendors: Vendors,
    /// Templates.
    pub renderer: Renderer,
    /// Issues and checks Digest nonces.
    pub nonces: NonceKey,
    /// The URL path phones fetch under (no trailing `/`).
    pub path: String,
    /// The URL phones are told to fetch from, if fixed by config.
    pub public_url: Option<String>,
    /// Enrolment window.
    pub window: Duration,
    /// Hand a phone's file out only once without credentials inside the window.
    pub enrolment_once: bool,
    /// Minutes between periodic re-checks.
    pub recheck_minutes: u32,
    /// The SIP port written into the files (`provisioning.notify_port`: where the NOTIFY goes).
    pub sip_port: u16,
    /// `provisioning.trust_anchors` as PEM certificates (empty when unset); served as
    /// [`TRUST_ANCHORS_FILE`] and written into the files that install them.
    pub trust_anchors: Vec<String>,
    /// Misses per address per minute before 429.
    pub misses_per_minute: u32,
    /// Misses per address in the current minute.
    pub misses: Mutex<MinuteCounts<IpAddr>>,
    /// Where every download is recorded.
    pub audit: Arc<AuditLog>,
    /// Decoded records and their rendered files, by MAC; an entry is used only while the
    /// stored bytes are unchanged, so every store write is seen at once.
    pub views: Mutex<HashMap<Mac, Arc<PhoneView>>>,
    /// Reverse proxies whose forwarding headers name the client, its scheme and host.
    pub trusted_proxies: forwarded::TrustedProxies,
    /// Networks a phone's file may be served to without credentials (empty: any).
    pub enrol_from: Vec<innoprov::config::IpNet>,
    /// The vendors' names as fixed strings, by vendor index (metric labels without an
    /// allocation per download).
    pub vendor_names: Vec<&'static str>,
}

/// A phone as last read from the store, with what is derived from it.
pub struct PhoneView {
    /// The stored bytes this view was decoded from.
    raw: Vec<u8>,
    /// The record.
    record: PhoneRecord,
    /// Its provisioning password, opened once.
    prov_password: Option<innoprov::Secret>,
    /// The `Authorization: Basic ...` value its credentials make.
    basic_header: Option<String>,
    /// Rendered files by a hash of (vendor index, model, and every header that decides the URL
    /// the phone is told to use), each with that URL for diagnostics.
    renders: Mutex<HashMap<u64, (String, Rendered)>>,
    /// The store's write epoch at which this view and the download state beside it were last
    /// checked: while the epoch is unchanged, a download reads nothing from the store.
    checked: Mutex<(u64, innoprov::provisioning::PhoneAccess)>,
    /// The configuration version last logged as served, to log once per version.
    logged_version: std::sync::atomic::AtomicU64,
    /// When (Unix seconds) a refused request for this phone was last logged at info level.
    denial_logged: std::sync::atomic::AtomicU64,
}

/// A rendered file and its ETag.
#[derive(Debug, Clone)]
pub struct Rendered {
    body: Bytes,
    etag: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProvState {
    fn blocked(&self, ip: IpAddr) -> bool {
        lock(&self.misses).count(&ip) >= self.misses_per_minute
    }

    fn miss(&self, ip: IpAddr) {
        let count = lock(&self.misses).add(ip);
        if count == self.misses_per_minute {
            log::warn!("provisioning denied for {ip}: too many misses ({count} in a minute)");
        }
    }

    /// Whether `req` came through a trusted proxy (whose forwarding headers count).
    fn via_trusted_proxy(&self, req: &HttpRequest) -> bool {
        req.peer_addr()
            .is_some_and(|peer| self.trusted_proxies.contains(peer.ip()))
    }

    /// The client: the TCP peer, or, behind a trusted proxy, the address the proxy forwarded
    /// for (forwarded.rs); `None` when a trusted proxy's headers name no usable client.
    fn client(&self, req: &HttpRequest) -> Option<SocketAddr> {
        self.trusted_proxies.client(req.peer_addr(), req.headers())
    }

    fn prov_url(&self, req: &HttpRequest) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let own_scheme = if req.app_config().secure() {
            "https"
        } else {
            "http"
        };
        let own_host = || {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| forwarded::plausible_host(h))
                .map(str::to_string)
                .unwrap_or_else(|| req.app_config().host().to_string())
        };
        let (scheme, host) = if self.via_trusted_proxy(req) {
            let (proto, host) = forwarded::proto_and_host(req.headers());
            (
                proto.unwrap_or_else(|| own_scheme.to_string()),
                host.unwrap_or_else(own_host),
            )
        } else {
            (own_scheme.to_string(), own_host())
        };
        format!("{scheme}://{host}{}/", self.path)
    }

    /// The phone's view and download state, re-read only when the store has been written since.
    fn current(
        &self,
        mac: &Mac,
    ) -> Result<Option<(Arc<PhoneView>, innoprov::provisioning::PhoneAccess)>, innoprov::StoreError> {
        // Read the epoch before the data: a write in between only causes one more re-read.
        let epoch = self.store.write_epoch();
        if let Some(view) = lock(&self.views).get(mac).cloned() {
            let checked = view.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.0 == epoch {
                let access = checked.1.clone();
                drop(checked);
                return Ok(Some((view, access)));
            }
        }
        let Some(view) = self.view(mac)? else {
            return Ok(None);
        };
        let access = self.store.get_access(mac)?;
        *view.checked.lock().unwrap_or_else(|p| p.into_inner()) = (epoch, access.clone());
        Ok(Some((view, access)))
    }

    /// The phone's current view: the cached one while the stored bytes are unchanged.
    fn view(&self, mac: &Mac) -> Result<Option<Arc<PhoneView>>, innoprov::StoreError> {
        let cached = lock(&self.views).get(mac).cloned();
        let raw = match &cached {
            Some(view) => match self.store.phone_changed(mac, &view.raw)? {
                Freshness::Unchanged => return Ok(cached),
                Freshness::Changed(raw) => raw,
                Freshness::Missing => {
                    lock(&self.views).remove(mac);
                    return Ok(None);
                }
            },
            None => match self.store.get_phone_bytes(mac)? {
                Some(raw) => raw,
                None => return Ok(None),
            },
        };
        let record = innoprov::store::decode_record(mac, &raw)?;
        let prov_password = record
            .prov_password
            .as_ref()
            .and_then(|sealed| self.sealer.open(sealed, &SealPurpose::ProvPassword(*mac)).ok());
        let basic_header = prov_password.as_ref().map(|p| {
            use base64::Engine;
            let token = format!("{}:{}", record.prov_username, p.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(token)
            )
        });
        let view = Arc::new(PhoneView {
            raw,
            record,
            prov_password,
            basic_header,
            renders: Mutex::new(HashMap::new()),
            logged_version: std::sync::atomic::AtomicU64::new(u64::MAX),
            denial_logged: std::sync::atomic::AtomicU64::new(0),
            checked: Mutex::new((u64::MAX, Default::default())),
        });
        let mut views = lock(&self.views);
        if views.len() >= MAX_CACHED {
            views.clear();
        }
        views.insert(*mac, Arc::clone(&view));
        Ok(Some(view))
    }

    fn render(
        &self,
        req: &HttpRequest,
        view: &PhoneView,
        file: &str,
        vendor_index: usize,
        model: Option<&str>,
    ) -> Option<Rendered> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        vendor_index.hash(&mut hasher);
        model.hash(&mut hasher);
        file.hash(&mut hasher);
        req.app_config().secure().hash(&mut hasher);
        req.headers()
            .get(header::HOST)
            .map(|h| h.as_bytes())
            .hash(&mut hasher);
        req.headers()
            .get("forwarded")
            .map(|h| h.as_bytes())
            .hash(&mut hasher);
        req.headers()
            .get("x-forwarded-host")
            .map(|h| h.as_bytes())
            .hash(&mut hasher);
        req.headers()
            .get("x-forwarded-proto")
            .map(|h| h.as_bytes())
            .hash(&mut hasher);
        let key = hasher.finish();
        if let Some((_, hit)) = lock(&view.renders).get(&key) {
            return Some(hit.clone());
        }
        let prov_url = self.prov_url(req);
        let prov_url = prov_url.as_str();
        let record = &view.record;
        let vendor = &self.vendors.all()[vendor_index];
        let mut ctx = match PhoneContext::build(
            record,
            &self.sealer,
            &vendor.name,
            model,
            prov_url,
            self.recheck_minutes,
        ) {
            Ok(ctx) => ctx,
            Err(e) => {
                log::error!("phone {}: cannot render its file: {e}", record.mac);
                return None;
            }
        };
        ctx.file = file.to_string();
        ctx.prov.sip_port = self.sip_port;
        ctx.prov.trust_anchors = self.trust_anchors.clone();
        let text = match self.renderer.render_phone(vendor, &ctx) {
            Ok(text) => text,
            Err(e) => {
                log::error!("phone {}: {e}", record.mac);
                return None;
            }
        };
        let rendered = Rendered {
            etag: etag_of(text.as_bytes()),
            body: Bytes::from(text),
        };
        let mut renders = lock(&view.renders);
        // Host headers are the client's to choose: bound what they can make us keep.
        if renders.len() >= MAX_RENDERS_PER_PHONE {
            renders.clear();
        }
        renders.insert(key, (prov_url.to_string(), rendered.clone()));
        Some(rendered)
    }
}

/// A 401 with the Digest and Basic challenges, the nonce bound to `ip`.
fn challenge_response(state: &ProvState, now: u64, ip: IpAddr) -> HttpResponse {
    let nonce = state.nonces.issue(now, ip);
    let mut response = denied(actix_web::http::StatusCode::UNAUTHORIZED);
    for challenge in auth::challenges(&nonce) {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().append(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// Counts an answer of the provisioning path by status (`innoprov_download_responses`).
fn count_status(status: actix_web::http::StatusCode) {
    crate::ops::metrics::metrics()
        .download_statuses
        .get_or_create(&[("status", crate::ops::metrics::status_kind(status.as_u16()))])
        .inc();
}

fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &innoprov::appws::crypto::sha256_hex(body)[..20])
}

fn denied(status: actix_web::http::StatusCode) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(DENIED_BODY)
}

fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// Registers the download route: a plain prefix (no pattern matching per request).
pub fn configure(cfg: &mut web::ServiceConfig, path: &str) {
    cfg.service(web::scope(path).default_service(web::to(download)));
}

async fn download(req: HttpRequest, state: web::Data<ProvState>) -> HttpResponse {
    if req.method() != actix_web::http::Method::GET && req.method() != actix_web::http::Method::HEAD {
        return denied(actix_web::http::StatusCode::METHOD_NOT_ALLOWED);
    }
    // Grandstream phones provisioned by innoprov 0.3 hold a P237 ending in '/' and ask for
    // `prov//cfg<mac>.xml`: the empty segment is theirs, not a path trick.
    let file = req
        .path()
        .get(state.path.len() + 1..)
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let Some(client) = state.client(&req) else {
        // Counted against nobody, served to nobody: the proxy's headers must name the client.
        count_status(actix_web::http::StatusCode::BAD_REQUEST);
        return denied(actix_web::http::StatusCode::BAD_REQUEST);
    };
    // An empty name or one with '/' matches no vendor pattern: serve() counts it as a miss.
    // Served inline: the store's reads and its audit insert hit sled's page cache and never
    // fsync, and rendered files are cached, so a request costs microseconds; a thread-pool hop
    // would cost more than it saves.
    let response = serve(&req, &file, &state, client);
    count_status(response.status());
    response
}

/// The file of the CAs phones are told to trust (`provisioning.trust_anchors`), by URL where
/// the vendor loads them so (Yealink's `static.trusted_certificates.url`).
pub const TRUST_ANCHORS_FILE: &str = "innoprov-ca.crt";

fn serve(req: &HttpRequest, file: &str, state: &ProvState, peer: SocketAddr) -> HttpResponse {
    use actix_web::http::StatusCode;
    // Public certificates, the same for everyone: no lookup, no credentials.
    if file == TRUST_ANCHORS_FILE && !state.trust_anchors.is_empty() {
        return HttpResponse::Ok()
            .content_type("application/x-pem-file")
            .body(state.trust_anchors.concat());
    }
    let ip = peer.ip();
    // An address over its miss limit is refused at once, unless the request carries
    // credentials: a phone that proves itself is served even behind a noisy NAT.
    let blocked = state.blocked(ip);
    if blocked && !req.headers().contains_key(header::AUTHORIZATION) {
        return denied(StatusCode::TOO_MANY_REQUESTS);
    }
    // A miss: 404 and counted, or 429 for an address already over its limit.
    let miss = || {
        if blocked {
            denied(StatusCode::TOO_MANY_REQUESTS)
        } else {
            state.miss(ip);
            denied(StatusCode::NOT_FOUND)
        }
    };
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // A file a vendor's own boot sequence asks for is not a scan: 404 and no miss. That holds
    // too where the name is another vendor's file that serves nobody here (a Snom asks for
    // `<MAC>.xml`, a Gigaset base's own file).
    let probe_or_miss = || match state.vendors.probe(file) {
        Some(vendor) => {
            log::debug!("{file} from {ip}: a {} boot probe, not served", vendor.name);
            denied(StatusCode::NOT_FOUND)
        }
        None => miss(),
    };
    let candidates = state.vendors.candidates(file);
    let Some(first) = candidates.first() else {
        return probe_or_miss();
    };
    // A model-wide file named by MAC (Poly's master `<mac>.cfg`) belongs to the vendor that
    // owns the MAC's OUI, even where another vendor's per-phone file has the same name.
    let by_oui = candidates.iter().find(|c| {
        matches!(&c.kind, FileKind::Common { mac: Some(mac), .. } if state.vendors.all()[c.vendor].owns_oui(mac))
    });
    if let Some(
        common @ Candidate {
            kind: FileKind::Common { model, mac },
            ..
        },
    ) = by_oui
    {
        return serve_common(
            req,
            file,
            state,
            std::slice::from_ref(common),
            user_agent,
            model.as_deref(),
            *mac,
        );
    }
    let (mac, model) = match &first.kind {
        FileKind::Common { model, mac } => {
            return serve_common(req, file, state, &candidates, user_agent, model.as_deref(), *mac);
        }
        FileKind::Phone { mac, model } => (*mac, model.clone()),
    };
    let (view, access) = match state.current(&mac) {
        Ok(Some(found)) => found,
        Ok(None) => {
            log::debug!("download of {file} from {ip}: no phone {mac}");
            return probe_or_miss();
        }
        Err(e) => {
            log::error!("phone {mac}: download of {file}: {e}");
            return denied(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let record = &view.record;
    let vendors = state.vendors.all();
    let matching: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| matches!(c.kind, FileKind::Phone { .. }))
        .collect();
    let pinned = access.pinned_vendor.as_deref();
    let chosen = matching
        .iter()
        .find(|c| Some(vendors[c.vendor].name.as_str()) == pinned)
        .or_else(|| {
            if pinned.is_none() {
                matching.iter().find(|c| vendors[c.vendor].owns_oui(&mac))
            } else {
                None
            }
        });
    let Some(vendor_index) = chosen.map(|c| c.vendor) else {
        log::info!("phone {mac}: {file} from {ip} does not fit the phone's vendor; denied");
        return probe_or_miss();
    };
    let vendor = &vendors[vendor_index];
    // The User-Agent is a hint, never an identity: it can only make us refuse.
    let ua_lower = user_agent.to_ascii_lowercase();
    if !vendor.named_in_lowercase(&ua_lower) && vendors.iter().any(|v| v.named_in_lowercase(&ua_lower)) {
        log::info!("phone {mac}: {file} from {ip} with another vendor's User-Agent; denied");
        return miss();
    }
    let now = now_unix();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The phone's exact Basic header, precomputed: the common case needs no decoding.
    let basic_match = authorization.is_some_and(|a| {
        view.basic_header
            .as_deref()
            .is_some_and(|b| a.as_bytes() == b.as_bytes())
    });
    let credentials = if basic_match {
        None
    } else {
        authorization.and_then(auth::parse_authorization)
    };
    let authenticated = match &credentials {
        None => basic_match,
        Some(credentials) => {
            let ok = view.prov_password.as_ref().is_some_and(|password| {
                auth::verify(
                    credentials,
                    req.method().as_str(),
                    req.path(),
                    &record.prov_username,
                    password.expose(),
                    &state.nonces,
                    now,
                    ip,
                )
            });
            if !ok {
                state.miss(ip);
            }
            ok
        }
    };
    let audit = |status: u16, outcome: &str| {
        crate::ops::metrics::metrics()
            .downloads
            .get_or_create(&[
                ("vendor", state.vendor_names[vendor_index]),
                ("outcome", crate::ops::metrics::outcome_kind(outcome)),
            ])
            .inc();
        let entry = AuditEntry {
            seq: 0,
            at: now,
            client: peer.to_string(),
            user_agent: user_agent.chars().take(MAX_AUDIT_UA).collect(),
            file: file.to_string(),
            vendor: vendor.name.clone(),
            status,
            outcome: outcome.to_string(),
            config_version: record.config_version,
            state: None,
        };
        state.audit.record(mac, entry);
    };
    if blocked && !authenticated {
        return denied(StatusCode::TOO_MANY_REQUESTS);
    }
    let window = state.window.as_secs();
    let enrolling = match access.decide(record, now, window, state.enrolment_once, authenticated) {
        Decision::Unauthorized => {
            // One info line per phone a minute: a client asking in a loop must not fill the log.
            let last = view.denial_logged.load(std::sync::atomic::Ordering::Relaxed);
            if now.saturating_sub(last) >= 60 {
                view.denial_logged
                    .store(now, std::sync::atomic::Ordering::Relaxed);
                log::info!("phone {mac}: {file} from {ip}: credentials required");
            } else {
                log::debug!("phone {mac}: {file} from {ip}: credentials required");
            }
            audit(
                401,
                if credentials.is_some() {
                    "bad credentials"
                } else {
                    "credentials required"
                },
            );
            return challenge_response(state, now, ip);
        }
        Decision::Serve { enrolling: true }
            if !state.enrol_from.is_empty() && !state.enrol_from.iter().any(|net| net.contains(ip)) =>
        {
            // Secrets without credentials only to the phone networks: anyone else must
            // authenticate (401 with a challenge, as interface.md answers a request that needs
            // credentials), and the refusal counts as a miss.
            log::info!("phone {mac}: {file} from {ip}: enrolment refused outside provisioning.enrol_from");
            audit(401, "enrolment refused: address outside enrol_from");
            state.miss(ip);
            return challenge_response(state, now, ip);
        }
        Decision::Serve { enrolling } => enrolling,
    };
    let Some(rendered) = state.render(req, &view, file, vendor_index, model.as_deref()) else {
        audit(500, "render failed");
        return denied(StatusCode::INTERNAL_SERVER_ERROR);
    };
    // Atomic: an admin's pin or reopened window written meanwhile is kept.
    let generation = record.generation;
    let mut enrolled_note = None;
    // A HEAD fetches nothing: it neither enrols the phone nor uses up its one-time hand-out,
    // and is audited as a check.
    let head = req.method() == actix_web::http::Method::HEAD;
    if !head && authenticated && !access.enrolled(record) {
        match state
            .store
            .update_access(&mac, &mut |a| a.enrolled_generation = Some(generation))
        {
            Ok(_) => log::info!("phone {mac}: enrolled: fetched with its provisioning credentials"),
            Err(e) => log::error!("phone {mac}: cannot record the enrolment: {e}"),
        }
        // The file carrying these credentials went to another address: someone else may hold
        // the phone's secrets, or the phone moved. Flagged, not refused.
        let handed_to = access
            .handed_out_to
            .as_deref()
            .filter(|_| access.handed_out_generation == Some(generation));
        enrolled_note = Some(match handed_to {
            Some(other) if other != ip.to_string() => {
                log::warn!("phone {mac}: enrolled from {ip}, but its file was handed out to {other}");
                format!("enrolled (file was handed out to {other})")
            }
            _ => "enrolled".to_string(),
        });
    } else if !head && enrolling && access.handed_out_generation != Some(generation) {
        // The first credential-less serve of this generation: remembered, and with
        // enrolment_once the last.
        let to = ip.to_string();
        if let Err(e) = state.store.update_access(&mac, &mut |a| {
            a.handed_out_generation = Some(generation);
            a.handed_out_to = Some(to.clone());
        }) {
            log::error!("phone {mac}: cannot record the enrolment fetch: {e}");
            audit(500, "enrolment not recorded");
            return denied(StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
    if not_modified(req, &rendered.etag) {
        audit(304, "not modified");
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, rendered.etag))
            .finish();
    }
    let outcome = match (&enrolled_note, enrolling) {
        _ if head => "checked (HEAD)",
        (Some(note), _) => note.as_str(),
        (None, true) => "served for enrolment",
        (None, false) => "served",
    };
    // One info line per phone and version (and per enrolment fetch): periodic re-checks of an
    // unchanged file are debug, or thousands of phones would drown the log.
    let version = record.config_version;
    let first_of_version = view
        .logged_version
        .swap(version, std::sync::atomic::Ordering::Relaxed)
        != version;
    if enrolling || first_of_version {
        log::info!(
            "phone {mac}: {file} {outcome} to {ip} as {} (version {version})",
            vendor.name
        );
    } else {
        log::debug!(
            "phone {mac}: {file} {outcome} to {ip} as {} (version {version})",
            vendor.name
        );
    }
    audit(200, outcome);
    HttpResponse::Ok()
        .content_type(vendor.content_type.as_str())
        .insert_header((header::ETAG, rendered.etag))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(rendered.body)
}

fn serve_common(
    req: &HttpRequest,
    file: &str,
    state: &ProvState,
    candidates: &[Candidate],
    user_agent: &str,
    model: Option<&str>,
    mac: Option<Mac>,
) -> HttpResponse {
    let vendors = state.vendors.all();
    let chosen = candidates
        .iter()
        .find(|c| vendors[c.vendor].named_in(user_agent))
        .unwrap_or(&candidates[0]);
    let vendor = &vendors[chosen.vendor];
    let mut ctx = PhoneContext::common(&vendor.name, model, &state.prov_url(req), state.recheck_minutes);
    ctx.file = file.to_string();
    if let Some(mac) = mac {
        ctx.mac = mac.to_string();
        ctx.mac_upper = mac.upper();
    }
    match state.renderer.render_common(vendor, &ctx) {
        Ok(text) => {
            let etag = etag_of(text.as_bytes());
            if not_modified(req, &etag) {
                return HttpResponse::NotModified()
                    .insert_header((header::ETAG, etag))
                    .finish();
            }
            HttpResponse::Ok()
                .content_type(vendor.content_type.as_str())
                .insert_header((header::ETAG, etag))
                .body(text)
        }
        Err(e) => {
            log::error!("{e}");
            denied(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}
