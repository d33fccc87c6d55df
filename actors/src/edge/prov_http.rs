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
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use innoprov::clock::now_unix;
use innoprov::provisioning::auth::{self, NonceKey};
use innoprov::provisioning::download::{
    AccessWrite, Authorization, Credentials, DownloadRequest, EnrolmentPolicy, Route,
};
pub use innoprov::provisioning::download::{Refusal, TRUST_ANCHORS_FILE};
use innoprov::provisioning::vendor::Candidate;
use innoprov::provisioning::{PhoneContext, Renderer, Vendors};
use innoprov::{Mac, Sealer, Store};

use crate::edge::forwarded;
use crate::edge::phone_views::{Answer, PhoneViews, Rendered, WorkerPhone, WorkerRender};
use crate::ops::limits::MinuteCounts;
use crate::store::audit_log::AuditLog;
use crate::store::user_directory::UserDirectory;
use innoprov::provisioning::PhoneAccess;
use innoprov::provisioning::context::KeyView;
use innoprov::provisioning::phonebook::PhonebookFormat;

/// Headers that decide the URL a file carries (besides `Host` and `Forwarded`).
const X_FORWARDED_HOST: header::HeaderName = header::HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: header::HeaderName = header::HeaderName::from_static("x-forwarded-proto");
/// A phone's files and phonebook are never to be kept by a cache in between.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// The one body of every denial (404, 401, 429), so a scanner learns nothing from it.
pub const DENIED_BODY: &str = "not available\n";
/// Longest User-Agent kept in the audit.
const MAX_AUDIT_UA: usize = 160;
/// Most addresses whose misses are counted at once.
pub const MAX_TRACKED_ADDRESSES: usize = 50_000;
/// Most rendered variants kept per phone (one per way of reaching the service, normally one).
const MAX_RENDERS_PER_PHONE: usize = 8;

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
    /// Misses per address, and who is over the limit.
    pub misses: Misses,
    /// Where every download is recorded.
    pub audit: Arc<AuditLog>,
    /// The phones as read for downloads, with their rendered files (shared, and per worker).
    pub phones: PhoneViews,
    /// Reverse proxies whose forwarding headers name the client, its scheme and host.
    pub trusted_proxies: forwarded::TrustedProxies,
    /// Networks a phone's file may be served to without credentials (empty: any).
    pub enrol_from: Vec<innoprov::config::IpNet>,
    /// Each vendor's content type as a header value, by vendor index (built once).
    pub content_types: Vec<HeaderValue>,
    /// The download counters, by vendor and outcome and by status.
    pub counters: crate::ops::metrics::DownloadCounters,
    /// The PBX's users (the phonebook) and the key profiles (the phones' keys).
    pub users: Arc<UserDirectory>,
    /// The phonebook rendered per format, with the directory version it was rendered at: one
    /// render per table change and format, however many phones fetch it.
    pub phonebooks: Mutex<HashMap<PhonebookFormat, (u64, Rendered)>>,
}

/// Phone-file misses per address in the current minute, with a bound (429 past it).
pub struct Misses {
    /// Misses per address per minute before 429.
    limit: u32,
    /// Misses per address in the current minute.
    counts: Mutex<MinuteCounts<IpAddr>>,
    /// When an address last reached the limit, in seconds after `since`: a minute later none
    /// can be over it, so the common download takes no lock shared by the workers.
    last_over_limit: AtomicU64,
    /// The start of `last_over_limit`'s clock (monotonic, as the counts' windows are).
    since: tokio::time::Instant,
}

impl Misses {
    /// Counts for at most [`MAX_TRACKED_ADDRESSES`] addresses, `limit` misses each a minute.
    pub fn new(limit: u32) -> Misses {
        Misses {
            limit,
            counts: Mutex::new(MinuteCounts::new(MAX_TRACKED_ADDRESSES)),
            // Never: no address has reached the limit.
            last_over_limit: AtomicU64::new(u64::MAX),
            since: tokio::time::Instant::now(),
        }
    }

    /// Whether `ip` is over the limit.
    fn blocked(&self, ip: IpAddr) -> bool {
        // A count lives a minute from its window's start, less than 61 whole seconds after the
        // miss that reached the limit.
        let last = self.last_over_limit.load(Ordering::Acquire);
        if self.limit > 0 && (last == u64::MAX || self.since.elapsed().as_secs() > last.saturating_add(61)) {
            return false;
        }
        lock(&self.counts).count(&ip) >= self.limit
    }

    /// Counts one miss of `ip`.
    fn add(&self, ip: IpAddr) {
        let count = {
            let mut counts = lock(&self.counts);
            let count = counts.add(ip);
            // Under the lock: no worker sees the count without the time.
            if count >= self.limit {
                let now = self.since.elapsed().as_secs();
                self.last_over_limit.store(now, Ordering::Release);
            }
            count
        };
        if count == self.limit {
            log::warn!("provisioning denied for {ip}: too many misses ({count} in a minute)");
        }
    }
}

/// What a file is rendered for besides the record and the request: the file name, the
/// vendor (index) and the model.
type RenderFor<'a> = (&'a str, usize, Option<&'a str>);

/// One part of a render key as written: its length (`u64::MAX` for none), then its bytes.
fn key_part(part: Option<&[u8]>) -> ([u8; 8], &[u8]) {
    match part {
        Some(bytes) => ((bytes.len() as u64).to_le_bytes(), bytes),
        None => (u64::MAX.to_le_bytes(), &[]),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProvState {
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

    /// The vendor whose phonebook a phone gets, and its format: the vendor an admin pinned,
    /// else one owning the MAC's OUI that takes a phonebook (the one the User-Agent names
    /// first).
    fn phonebook_vendor(
        &self,
        mac: &Mac,
        access: &PhoneAccess,
        user_agent: &str,
    ) -> Option<(usize, PhonebookFormat)> {
        let all = self.vendors.all();
        let with_format = |(index, v): (usize, &innoprov::provisioning::VendorDescriptor)| {
            v.phonebook.map(|format| (index, format))
        };
        if let Some(pinned) = access.pinned_vendor.as_deref() {
            return all
                .iter()
                .enumerate()
                .find(|(_, v)| v.name == pinned)
                .and_then(with_format);
        }
        let owners = || all.iter().enumerate().filter(|(_, v)| v.owns_oui(mac));
        owners()
            .filter(|(_, v)| v.named_in(user_agent))
            .find_map(with_format)
            .or_else(|| owners().find_map(with_format))
    }

    /// The phonebook in `format` for the current user table: rendered once per table change.
    fn phonebook(&self, format: PhonebookFormat) -> Rendered {
        let version = self.users.version();
        if let Some((at, rendered)) = lock(&self.phonebooks).get(&format)
            && *at == version
        {
            return rendered.clone();
        }
        let text = innoprov::provisioning::phonebook::render(format, &self.users.phonebook());
        crate::ops::metrics::metrics().phonebook_renders.inc();
        let rendered = Rendered {
            etag: etag_of(text.as_bytes()),
            body: Bytes::from(text),
        };
        lock(&self.phonebooks).insert(format, (version, rendered.clone()));
        rendered
    }

    /// The answer to a refused request: a miss is counted (404, or 429 over the limit), a
    /// vendor's boot probe is not.
    fn refuse(&self, facts: &DownloadRequest<'_>, refusal: Refusal) -> HttpResponse {
        use actix_web::http::StatusCode;
        match refusal {
            Refusal::TooMany => denied(StatusCode::TOO_MANY_REQUESTS),
            Refusal::Miss => {
                self.misses.add(facts.client);
                denied(StatusCode::NOT_FOUND)
            }
            Refusal::Probe { vendor } => {
                log::debug!(
                    "{} from {}: a {vendor} boot probe, not served",
                    facts.file,
                    facts.client
                );
                denied(StatusCode::NOT_FOUND)
            }
        }
    }

    /// What a rendered file depends on besides the record, as one byte string (each part
    /// length-prefixed, so two keys are equal only when every part is): vendor, model, file,
    /// the directory's version and key profile, and what decides the URL the file carries.
    fn render_key(&self, req: &HttpRequest, access: &PhoneAccess, what: RenderFor<'_>) -> Vec<u8> {
        let mut key = Vec::with_capacity(128);
        self.render_key_parts(req, access, what, |part| {
            let (len, bytes) = key_part(part);
            key.extend_from_slice(&len);
            key.extend_from_slice(bytes);
        });
        key
    }

    /// Whether `key` is [`Self::render_key`] of this request, compared part by part without
    /// building it (asked on every download).
    fn render_key_is(
        &self,
        key: &[u8],
        req: &HttpRequest,
        access: &PhoneAccess,
        what: RenderFor<'_>,
    ) -> bool {
        let (mut rest, mut same) = (key, true);
        self.render_key_parts(req, access, what, |part| {
            let (len, bytes) = key_part(part);
            same = same
                && rest.len() >= 8 + bytes.len()
                && rest[..8] == len
                && innoprov::provisioning::vendor::same_bytes(&rest[8..8 + bytes.len()], bytes);
            if same {
                rest = &rest[8 + bytes.len()..];
            }
        });
        same && rest.is_empty()
    }

    /// Feeds the parts of [`Self::render_key`] to `part` in order.
    fn render_key_parts(
        &self,
        req: &HttpRequest,
        access: &PhoneAccess,
        (file, vendor_index, model): RenderFor<'_>,
        mut part: impl FnMut(Option<&[u8]>),
    ) {
        part(Some(&(vendor_index as u64).to_le_bytes()));
        part(model.map(str::as_bytes));
        part(Some(file.as_bytes()));
        // The keys and the phonebook change with the profiles and the user table.
        part(Some(&self.users.version().to_le_bytes()));
        part(access.key_profile.as_deref().map(str::as_bytes));
        // The URL the file carries: fixed by config, else exactly what `prov_url` reads (a
        // Host it accepts; a trusted proxy's forwarding headers, every line of them). Bytes,
        // not the URL itself: that would be formatted on every download.
        if self.public_url.is_some() {
            return;
        }
        part(Some(&[u8::from(req.app_config().secure())]));
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
        part(host.filter(|h| forwarded::plausible_host(h)).map(str::as_bytes));
        if self.via_trusted_proxy(req) {
            // Names, not text: a text name would be parsed on every download.
            for name in [&header::FORWARDED, &X_FORWARDED_HOST, &X_FORWARDED_PROTO] {
                for value in req.headers().get_all(name) {
                    part(Some(value.as_bytes()));
                }
                part(None);
            }
        }
    }

    /// The phone's file for this request, from this worker thread's copies, else from the
    /// phone's shared renders (rendered there if new).
    fn render(
        &self,
        req: &HttpRequest,
        phone: &WorkerPhone,
        file: &str,
        vendor_index: usize,
        model: Option<&str>,
    ) -> Option<Answer> {
        let what = (file, vendor_index, model);
        if let Some(hit) = phone
            .renders
            .borrow()
            .iter()
            .find(|r| self.render_key_is(&r.key, req, &phone.access, what))
        {
            return Some(hit.answer.clone());
        }
        let key = self.render_key(req, &phone.access, what);
        let shared = self.shared_render(req, phone, &key, what)?;
        let own = WorkerRender::copy_of(key, &shared, &self.content_types[vendor_index]);
        let mut renders = phone.renders.borrow_mut();
        if renders.len() >= MAX_RENDERS_PER_PHONE {
            renders.clear();
        }
        let answer = own.answer.clone();
        renders.push(own);
        Some(answer)
    }

    /// The phone's file rendered for `key`: from the renders the workers share, else rendered.
    fn shared_render(
        &self,
        req: &HttpRequest,
        WorkerPhone { view, access, .. }: &WorkerPhone,
        key: &[u8],
        (file, vendor_index, model): RenderFor<'_>,
    ) -> Option<Rendered> {
        if let Some((_, _, hit)) = lock(&view.renders).iter().find(|(k, _, _)| k == key) {
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
        ctx.keys = KeyView::list(&self.users.keys_for(record, access));
        // Snom's tbook travels inside its settings file (docs/vendors/directory-and-keys.md).
        if vendor.phonebook == Some(PhonebookFormat::Snom) {
            ctx.phonebook.entries = self.users.phonebook().to_vec();
        }
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
        renders.push((key.to_vec(), prov_url.to_string(), rendered.clone()));
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

fn etag_of(body: &[u8]) -> HeaderValue {
    let tag = format!("\"{}\"", &innoprov::appws::crypto::sha256_hex(body)[..20]);
    // Quoted hex digits are always a valid header value.
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

fn denied(status: actix_web::http::StatusCode) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(DENIED_BODY)
}

fn not_modified(req: &HttpRequest, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().as_bytes() == etag || t.trim() == "*")
        })
}

/// Registers the download route: a plain prefix (no pattern matching per request).
pub fn configure(cfg: &mut web::ServiceConfig, path: &str) {
    cfg.service(web::scope(path).default_service(web::to(download)));
}

async fn download(req: HttpRequest) -> HttpResponse {
    // Borrowed, not extracted: an extracted state is a reference count both workers write.
    let Some(state) = req.app_data::<web::Data<ProvState>>() else {
        return denied(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    };
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
        state.counters.count_status(400);
        return denied(actix_web::http::StatusCode::BAD_REQUEST);
    };
    // An empty name or one with '/' matches no vendor pattern: the route counts it as a miss.
    let response = serve(&req, &file, state, client).await;
    state.counters.count_status(response.status().as_u16());
    response
}

/// The facts of `req` the download decisions need.
fn request_facts<'a>(
    req: &'a HttpRequest,
    file: &'a str,
    state: &ProvState,
    client: IpAddr,
) -> DownloadRequest<'a> {
    DownloadRequest {
        file,
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        client,
        head: req.method() == actix_web::http::Method::HEAD,
        has_authorization: req.headers().contains_key(header::AUTHORIZATION),
        over_miss_limit: state.misses.blocked(client),
    }
}

async fn serve(
    req: &HttpRequest,
    file: &str,
    state: &web::Data<ProvState>,
    peer: SocketAddr,
) -> HttpResponse {
    let facts = request_facts(req, file, state, peer.ip());
    match facts.route(&state.vendors, !state.trust_anchors.is_empty()) {
        // Public certificates, the same for everyone: no lookup, no credentials.
        Route::TrustAnchors => HttpResponse::Ok()
            .content_type("application/x-pem-file")
            .body(state.trust_anchors.concat()),
        Route::Refuse(refusal) => state.refuse(&facts, refusal),
        Route::Common {
            candidates,
            model,
            mac,
        } => serve_common(
            req,
            file,
            state,
            &candidates,
            facts.user_agent,
            model.as_deref(),
            mac,
        ),
        // A phone's phonebook or its own file: both read the phone first.
        Route::Phonebook { mac } => serve_found(state, req, facts, peer, (mac, None, None)).await,
        Route::Phone {
            mac,
            model,
            candidates,
        } => {
            serve_found(
                state,
                req,
                facts,
                peer,
                (mac, model.as_deref(), Some(&candidates)),
            )
            .await
        }
    }
}

/// Reads the phone `mac` names, then serves its phonebook (no candidates) or its own file.
async fn serve_found(
    state: &web::Data<ProvState>,
    req: &HttpRequest,
    facts: DownloadRequest<'_>,
    peer: SocketAddr,
    (mac, model, candidates): (Mac, Option<&str>, Option<&[Candidate]>),
) -> HttpResponse {
    let found = match find_phone(state, &facts, mac).await {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let phone = PhoneRequest {
        req,
        facts,
        peer,
        // After the phone is found: a read off the workers may have waited for the store.
        now: now_unix(),
        mac,
        model,
        found: &found,
    };
    match candidates {
        Some(candidates) => serve_phone(state, phone, candidates).await,
        None => serve_phonebook(state, phone).await,
    }
}

/// The phone `mac` as stored: this worker's copy, else the cache, else read off the actix
/// workers (they carry every websocket session too); a refusal when there is none or the store
/// fails.
async fn find_phone(
    state: &web::Data<ProvState>,
    facts: &DownloadRequest<'_>,
    mac: Mac,
) -> Result<Rc<WorkerPhone>, Box<HttpResponse>> {
    if let Some(phone) = state.phones.worker_phone(mac) {
        return Ok(phone);
    }
    let found = match state.phones.cached(&mac) {
        Some(found) => Ok(Some(found)),
        None => {
            let state = web::Data::clone(state);
            web::block(move || state.phones.current(&mac))
                .await
                .unwrap_or_else(|e| Err(innoprov::StoreError::Backend(e.to_string())))
        }
    };
    match found {
        Ok(Some(found)) => Ok(state.phones.keep_on_worker(mac, found)),
        Ok(None) => {
            state.phones.forget_on_worker(mac);
            log::debug!("download of {} from {}: no phone {mac}", facts.file, facts.client);
            Err(Box::new(state.refuse(facts, facts.probe_or_miss(&state.vendors))))
        }
        Err(e) => {
            log::error!("phone {mac}: download of {}: {e}", facts.file);
            Err(Box::new(denied(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            )))
        }
    }
}

/// A phone's remote phonebook: the PBX's users in its vendor's format, only with the phone's
/// own credentials; rendered once per table change and format.
async fn serve_phonebook(state: &web::Data<ProvState>, phone: PhoneRequest<'_>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let (facts, mac) = (&phone.facts, phone.mac);
    let Some((vendor_index, format)) = state.phonebook_vendor(&mac, &phone.found.access, facts.user_agent)
    else {
        log::info!(
            "phone {mac}: {} from {}: its vendor takes no phonebook; denied",
            facts.file,
            facts.client
        );
        return state.refuse(facts, facts.probe_or_miss(&state.vendors));
    };
    let now = phone.now;
    match facts.authorize_phonebook(phone.credentials(state, now)) {
        Authorization::Serve { .. } => {}
        Authorization::TooMany => return denied(StatusCode::TOO_MANY_REQUESTS),
        Authorization::Challenge { outcome, reason, .. } => {
            phone.log_challenge(now, reason, false);
            phone.audit(state, vendor_index, now, 401, outcome);
            return challenge_response(state, now, facts.client);
        }
    }
    let rendered = state.phonebook(format);
    if not_modified(phone.req, &rendered.etag) {
        phone.audit(state, vendor_index, now, 304, "not modified");
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, rendered.etag))
            .finish();
    }
    log::debug!("phone {mac}: phonebook served to {}", facts.client);
    phone.audit(state, vendor_index, now, 200, "served");
    HttpResponse::Ok()
        .content_type("application/xml; charset=utf-8")
        .insert_header((header::ETAG, rendered.etag))
        .insert_header((header::CACHE_CONTROL, NO_STORE))
        .body(rendered.body)
}

/// A request for a phone's own file, with the phone as read.
struct PhoneRequest<'a> {
    /// The HTTP request (headers for credentials, the URL a render writes).
    req: &'a HttpRequest,
    /// Its facts.
    facts: DownloadRequest<'a>,
    /// The client with its port, as the audit records it.
    peer: SocketAddr,
    /// When it came (Unix seconds).
    now: u64,
    /// The phone the file name names.
    mac: Mac,
    /// The model the file name carries.
    model: Option<&'a str>,
    /// The phone as this worker thread holds it: record, download state, rendered files.
    found: &'a WorkerPhone,
}

impl PhoneRequest<'_> {
    /// Records the download in the phone's audit and the metrics.
    fn audit(&self, state: &ProvState, vendor_index: usize, now: u64, status: u16, outcome: &str) {
        state.counters.count_download(vendor_index, outcome);
        let user_agent = self.facts.user_agent;
        // At most MAX_AUDIT_UA characters, cut on a character's boundary.
        let user_agent = match user_agent.char_indices().nth(MAX_AUDIT_UA) {
            Some((end, _)) => &user_agent[..end],
            None => user_agent,
        };
        let download = crate::store::audit_log::Download {
            at: now,
            client: self.peer,
            user_agent,
            file: self.facts.file,
            vendor: &state.vendors.all()[vendor_index].name,
            status,
            outcome,
            config_version: self.found.view.record.config_version,
        };
        state.audit.record_download(self.mac, download);
    }

    /// What the request's credentials prove: the phone's exact Basic header (precomputed, the
    /// common case needs no decoding), else a parsed Basic or Digest answer checked against
    /// the phone's password. Wrong credentials count as a miss.
    /// The model the file is rendered for: the file name's, else (a per-MAC file's name
    /// carries none) the User-Agent's, which places the keys (docs/vendors).
    fn model_for(&self, state: &ProvState, vendor_index: usize) -> Option<std::borrow::Cow<'_, str>> {
        let vendor = &state.vendors.all()[vendor_index].name;
        self.model
            .map(std::borrow::Cow::Borrowed)
            .or_else(|| innoprov::provisioning::vendor::model_in_user_agent(vendor, self.facts.user_agent))
    }

    fn credentials(&self, state: &ProvState, now: u64) -> Credentials {
        let Some(value) = self.req.headers().get(header::AUTHORIZATION) else {
            return Credentials::Absent;
        };
        if self.found.view.basic_header.as_deref().map(str::as_bytes) == Some(value.as_bytes()) {
            return Credentials::Valid;
        }
        let Ok(authorization) = value.to_str() else {
            return Credentials::Absent;
        };
        let Some(parsed) = auth::parse_authorization(authorization) else {
            return Credentials::Absent;
        };
        let valid = self.found.view.prov_password.as_ref().is_some_and(|password| {
            auth::verify(
                &parsed,
                self.req.method().as_str(),
                self.req.path(),
                &self.found.view.record.prov_username,
                password.expose(),
                &state.nonces,
                now,
                self.facts.client,
            )
        });
        if valid {
            Credentials::Valid
        } else {
            state.misses.add(self.facts.client);
            Credentials::Invalid
        }
    }

    /// Logs a challenged request: one info line per phone a minute (a client asking in a loop
    /// must not fill the log), or always where the refusal counts as a miss.
    fn log_challenge(&self, now: u64, reason: &str, counts_miss: bool) {
        let (mac, file, ip) = (self.mac, self.facts.file, self.facts.client);
        let last = self
            .found
            .view
            .denial_logged
            .load(std::sync::atomic::Ordering::Relaxed);
        if counts_miss || now.saturating_sub(last) >= 60 {
            if !counts_miss {
                self.found
                    .view
                    .denial_logged
                    .store(now, std::sync::atomic::Ordering::Relaxed);
            }
            log::info!("phone {mac}: {file} from {ip}: {reason}");
        } else {
            log::debug!("phone {mac}: {file} from {ip}: {reason}");
        }
    }
}

async fn serve_phone(
    state: &web::Data<ProvState>,
    phone: PhoneRequest<'_>,
    candidates: &[Candidate],
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let (facts, mac, record) = (&phone.facts, phone.mac, &phone.found.view.record);
    let pinned = phone.found.access.pinned_vendor.as_deref();
    let vendor_index = match facts.choose_vendor(&state.vendors, candidates, &mac, pinned) {
        Ok(index) => index,
        Err((refusal, reason)) => {
            log::info!(
                "phone {mac}: {} from {} {reason}; denied",
                facts.file,
                facts.client
            );
            return state.refuse(facts, refusal);
        }
    };
    let now = phone.now;
    let credentials = phone.credentials(state, now);
    let policy = EnrolmentPolicy {
        window_secs: state.window.as_secs(),
        once: state.enrolment_once,
        enrol_from: &state.enrol_from,
    };
    let enrolling = match facts.authorize(record, &phone.found.access, credentials, &policy, now) {
        Authorization::Serve { enrolling } => enrolling,
        Authorization::TooMany => return denied(StatusCode::TOO_MANY_REQUESTS),
        Authorization::Challenge {
            outcome,
            counts_miss,
            reason,
        } => {
            phone.log_challenge(now, reason, counts_miss);
            phone.audit(state, vendor_index, now, 401, outcome);
            if counts_miss {
                state.misses.add(facts.client);
            }
            return challenge_response(state, now, facts.client);
        }
    };
    let model = phone.model_for(state, vendor_index);
    let Some(rendered) = state.render(phone.req, phone.found, facts.file, vendor_index, model.as_deref())
    else {
        phone.audit(state, vendor_index, now, 500, "render failed");
        return denied(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let write = facts.access_write(record, &phone.found.access, credentials, enrolling);
    if !record_access(state, &phone, &write).await {
        phone.audit(state, vendor_index, now, 500, "enrolment not recorded");
        return denied(StatusCode::INTERNAL_SERVER_ERROR);
    }
    if not_modified(phone.req, &rendered.etag) {
        phone.audit(state, vendor_index, now, 304, "not modified");
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, rendered.etag))
            .finish();
    }
    let outcome = write.outcome(facts.head, enrolling);
    log_served(
        &phone,
        &state.vendors.all()[vendor_index].name,
        &outcome,
        enrolling,
    );
    phone.audit(state, vendor_index, now, 200, &outcome);
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, rendered.content_type))
        .insert_header((header::ETAG, rendered.etag))
        .insert_header((header::CACHE_CONTROL, NO_STORE))
        .body(rendered.body)
}

/// Writes what the serve must remember in the phone's download state, off the actix worker and
/// atomically (an admin's pin or reopened window written meanwhile is kept). False when a
/// hand-out could not be recorded: the file is then refused. A failed enrolment write is
/// logged and the file served (the phone proved itself).
async fn record_access(state: &web::Data<ProvState>, phone: &PhoneRequest<'_>, write: &AccessWrite) -> bool {
    if *write == AccessWrite::Nothing {
        return true;
    }
    let (mac, generation, ip) = (phone.mac, phone.found.view.record.generation, phone.facts.client);
    let store = Arc::clone(&state.store);
    let change = write.clone();
    let written = web::block(move || store.update_access(&mac, &mut |a| change.apply(a, generation)))
        .await
        .unwrap_or_else(|e| Err(innoprov::StoreError::Backend(e.to_string())));
    match (write, written) {
        (AccessWrite::Enrol { handed_out_to_other }, written) => {
            match written {
                Ok(_) => log::info!("phone {mac}: enrolled: fetched with its provisioning credentials"),
                Err(e) => log::error!("phone {mac}: cannot record the enrolment: {e}"),
            }
            if let Some(other) = handed_out_to_other {
                log::warn!("phone {mac}: enrolled from {ip}, but its file was handed out to {other}");
            }
            true
        }
        (_, Err(e)) => {
            log::error!("phone {mac}: cannot record the enrolment fetch: {e}");
            false
        }
        (_, Ok(_)) => true,
    }
}

/// One info line per phone and version (and per enrolment fetch): periodic re-checks of an
/// unchanged file are debug, or thousands of phones would drown the log.
fn log_served(phone: &PhoneRequest<'_>, vendor: &str, outcome: &str, enrolling: bool) {
    let (mac, file, ip) = (phone.mac, phone.facts.file, phone.facts.client);
    let version = phone.found.view.record.config_version;
    // Read first: a write on every download would move the line between the workers.
    let logged = &phone.found.view.logged_version;
    let first_of_version =
        logged.load(Ordering::Relaxed) != version && logged.swap(version, Ordering::Relaxed) != version;
    if enrolling || first_of_version {
        log::info!("phone {mac}: {file} {outcome} to {ip} as {vendor} (version {version})");
    } else {
        log::debug!("phone {mac}: {file} {outcome} to {ip} as {vendor} (version {version})");
    }
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
                .insert_header((header::CONTENT_TYPE, state.content_types[chosen.vendor].clone()))
                .insert_header((header::ETAG, etag))
                .body(text)
        }
        Err(e) => {
            log::error!("{e}");
            denied(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_address_over_its_limit_is_blocked_for_its_minute_and_no_other() {
        let misses = Misses::new(3);
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        for _ in 0..2 {
            misses.add(a);
        }
        assert!(!misses.blocked(a), "under the limit");
        misses.add(a);
        assert!(misses.blocked(a), "at the limit");
        assert!(!misses.blocked(b), "another address");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(misses.blocked(a), "within its minute");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!misses.blocked(a), "its minute is over");
        assert!(
            Misses::new(0).blocked(b),
            "a limit of 0 refuses everyone, as before"
        );
    }
}
