//! The REST door to [`AdminCore`](crate::edge::admin_core::AdminCore), and the health endpoints
//! (interface.md "Operating"): JSON under `<parent of app.path>/api/v1/`, bearer token from
//! `admin.token` on every call (missing or wrong: 401 and nothing else; no token configured:
//! 404), errors as `{"error":"reason"}`. The OpenAPI document is derived from the handlers'
//! annotations (utoipa), so it cannot drift from them.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use innoprov::Mac;
use innoprov::provisioning::AuditEntry;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::edge::admin_core::{AdminCore, AdminFailure, PhoneDetail, PhoneState, PhoneSummary, RedirectView};

/// What the REST door needs.
pub struct AdminHttp {
    /// The operations.
    pub core: Arc<AdminCore>,
    /// `admin.token`; `None` switches the REST API and `/metrics` off (404).
    pub token: Option<String>,
    /// Failed tokens by client address: slowed, then refused.
    pub throttle: crate::edge::admin_throttle::AdminThrottle,
    /// Whose forwarding headers name the client.
    pub trusted_proxies: crate::edge::forwarded::TrustedProxies,
}

/// `{"error": reason}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// `GET phones` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PhoneList {
    /// The phones, by MAC.
    pub phones: Vec<PhoneSummary>,
}

/// `GET phones/{mac}/audit` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditList {
    /// Downloads, newest last, pending ones included.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<AuditEntry>,
}

/// `PUT phones/{mac}/vendor` body.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct VendorPin {
    /// A vendor name (`snom`), or null to unpin.
    pub vendor: Option<String>,
}

/// `POST phones/{mac}/redirect` body (optional).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceCode {
    /// The 4 letters or digits printed after the MAC on the device's label (Gigaset MAC-ID).
    pub device_code: String,
}

/// `GET phones` query.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Text searched in MAC, user and name.
    pub q: Option<String>,
    /// Only phones in this state (`stored`, `linking`, `configured`, `updating`, `link_down`,
    /// `failed`).
    pub state: Option<String>,
}

fn json_error(status: u16, reason: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)).json(
        ErrorBody {
            error: reason.to_string(),
        },
    )
}

impl From<AdminFailure> for HttpResponse {
    fn from(f: AdminFailure) -> HttpResponse {
        json_error(f.status, &f.reason)
    }
}

/// The token check: `Some(response)` when the request may not go on. An address that keeps
/// presenting wrong tokens waits for every answer, then gets 429 (admin_throttle).
async fn refuse(req: &HttpRequest, state: &AdminHttp) -> Option<HttpResponse> {
    use crate::edge::admin_throttle::AdminVerdict;
    let Some(token) = &state.token else {
        return Some(json_error(404, "not found"));
    };
    let ip = state
        .trusted_proxies
        .client(req.peer_addr(), req.headers())
        .or(req.peer_addr())
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    match state.throttle.verdict(ip) {
        AdminVerdict::Refuse => {
            return Some(
                HttpResponse::TooManyRequests()
                    .insert_header(("Retry-After", "60"))
                    .json(ErrorBody {
                        error: "too many wrong tokens from this address; try again in a minute".into(),
                    }),
            );
        }
        AdminVerdict::Go { delay } if !delay.is_zero() => actix_web::rt::time::sleep(delay).await,
        AdminVerdict::Go { .. } => {}
    }
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, t)| t.trim());
    // Hashes compared in constant time: neither the token nor its length leaks.
    let hash = |t: &str| innoprov::appws::crypto::sha256_hex(t.as_bytes());
    if innoprov::appws::crypto::digest_matches(&hash(token), &hash(presented)) {
        None
    } else {
        state.throttle.failed(ip);
        Some(
            HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer realm=\"innoprov\""))
                .json(ErrorBody {
                    error: "unauthorized".into(),
                }),
        )
    }
}

/// A body of exactly one member `key`, a name or null (400 otherwise, naming the form).
fn name_or_null(body: &[u8], key: &str) -> Result<Option<String>, Box<HttpResponse>> {
    let refused = || {
        Box::new(json_error(
            400,
            &format!("body must be {{\"{key}\": name or null}}"),
        ))
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) if map.len() == 1 => match map.get(key) {
            Some(serde_json::Value::String(name)) => Ok(Some(name.clone())),
            Some(serde_json::Value::Null) => Ok(None),
            _ => Err(refused()),
        },
        _ => Err(refused()),
    }
}

/// The token check, then the `{mac}` of the path (any usual spelling; malformed: 400).
async fn authorized_mac(req: &HttpRequest, state: &AdminHttp, text: &str) -> Result<Mac, Box<HttpResponse>> {
    if let Some(refused) = refuse(req, state).await {
        return Err(Box::new(refused));
    }
    text.parse::<Mac>()
        .map_err(|e| Box::new(json_error(400, &format!("malformed MAC {text:?}: {e}"))))
}

/// Who the PBX is: `app.object`, or the App object pinned at its first PbxInfo.
#[utoipa::path(get, path = "/pbx",
    responses((status = 200, body = crate::edge::pbx_pin::PbxIdentity), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_pbx(req: HttpRequest, state: web::Data<AdminHttp>) -> HttpResponse {
    if let Some(refused) = refuse(&req, &state).await {
        return refused;
    }
    HttpResponse::Ok().json(state.core.pbx_identity())
}

/// Forgets the pinned PBX: the next App object login that sends PbxInfo is pinned.
#[utoipa::path(delete, path = "/pbx/pin",
    responses((status = 204, description = "pin reset"), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn reset_pbx_pin(req: HttpRequest, state: web::Data<AdminHttp>) -> HttpResponse {
    if let Some(refused) = refuse(&req, &state).await {
        return refused;
    }
    match state.core.reset_pbx_pin().await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(f) => f.into(),
    }
}

/// Lists phones.
#[utoipa::path(get, path = "/phones", params(ListQuery),
    responses((status = 200, body = PhoneList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_phones(req: HttpRequest, state: web::Data<AdminHttp>) -> HttpResponse {
    if let Some(refused) = refuse(&req, &state).await {
        return refused;
    }
    // Parsed only after the token check: a bad query from a stranger gets 401, not 400.
    let query = match web::Query::<ListQuery>::from_query(req.query_string()) {
        Ok(query) => query,
        Err(e) => return json_error(400, &format!("bad query: {e}")),
    };
    let wanted = match query.state.as_deref() {
        None | Some("") => None,
        Some(text) => match PhoneState::parse(text) {
            Some(s) => Some(s),
            None => return json_error(400, &format!("unknown state {text:?}")),
        },
    };
    match state.core.list(query.q.as_deref(), wanted).await {
        Ok(phones) => HttpResponse::Ok().json(PhoneList { phones }),
        Err(f) => f.into(),
    }
}

/// One phone in detail.
#[utoipa::path(get, path = "/phones/{mac}", params(("mac" = String, Path, description = "MAC in any usual spelling")),
    responses((status = 200, body = PhoneDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_phone(req: HttpRequest, state: web::Data<AdminHttp>, mac: web::Path<String>) -> HttpResponse {
    let mac = match authorized_mac(&req, &state, &mac).await {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    match state.core.detail(&mac).await {
        Ok(detail) => HttpResponse::Ok().json(detail),
        Err(f) => f.into(),
    }
}

/// The phone's downloads.
#[utoipa::path(get, path = "/phones/{mac}/audit", params(("mac" = String, Path, description = "MAC")),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_audit(req: HttpRequest, state: web::Data<AdminHttp>, mac: web::Path<String>) -> HttpResponse {
    let mac = match authorized_mac(&req, &state, &mac).await {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    match state.core.audit(&mac).await {
        Ok(entries) => HttpResponse::Ok().json(AuditList { entries }),
        Err(f) => f.into(),
    }
}

/// Queues a resync NOTIFY.
#[utoipa::path(post, path = "/phones/{mac}/resync", params(("mac" = String, Path, description = "MAC")),
    responses((status = 202, description = "NOTIFY queued"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn resync(req: HttpRequest, state: web::Data<AdminHttp>, mac: web::Path<String>) -> HttpResponse {
    let mac = match authorized_mac(&req, &state, &mac).await {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    match state.core.resync(&mac).await {
        Ok(()) => HttpResponse::Accepted().json(serde_json::json!({})),
        Err(f) => f.into(),
    }
}

/// Reopens the enrolment window.
#[utoipa::path(post, path = "/phones/{mac}/enrolment", params(("mac" = String, Path, description = "MAC")),
    responses((status = 200, description = "window reopened"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn reopen(req: HttpRequest, state: web::Data<AdminHttp>, mac: web::Path<String>) -> HttpResponse {
    let mac = match authorized_mac(&req, &state, &mac).await {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    match state.core.reopen_enrolment(&mac).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({})),
        Err(f) => f.into(),
    }
}

/// Registers the phone with its vendor's redirect service again (zero touch); an optional
/// body `{"device_code": "X7K2"}` gives the code printed on the device (Gigaset's MAC-ID check
/// code), kept from then on.
#[utoipa::path(post, path = "/phones/{mac}/redirect", params(("mac" = String, Path, description = "MAC")), request_body(content = DeviceCode, description = "optional"),
    responses((status = 202, description = "registration queued"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
async fn register_again(
    req: HttpRequest,
    state: web::Data<AdminHttp>,
    mac: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let mac = match authorized_mac(&req, &state, &mac).await {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    let code = match body.iter().all(u8::is_ascii_whitespace) {
        true => None,
        false => match serde_json::from_slice::<DeviceCode>(&body) {
            Ok(code) => Some(code.device_code),
            Err(e) => {
                return HttpResponse::BadRequest().json(ErrorBody {
                    error: format!("expected {{\"device_code\": \"X7K2\"}} or no body: {e}"),
                });
            }
        },
    };
    match state.core.register_again(&mac, code.as_deref()).await {
        Ok(()) => HttpResponse::Accepted().json(serde_json::json!({})),
        Err(f) => f.into(),
    }
}

/// Pins or unpins the phone's vendor.
#[utoipa::path(put, path = "/phones/{mac}/vendor", params(("mac" = String, Path, description = "MAC")), request_body = VendorPin,
    responses((status = 200, description = "pinned"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn pin_vendor(
    req: HttpRequest,
    state: web::Data<AdminHttp>,
    mac: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let mac = match authorized_mac(&req, &state, &mac).await {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    // Exactly {"vendor": name} or {"vendor": null}: a typo must not unpin.
    let vendor = match name_or_null(&body, "vendor") {
        Ok(vendor) => vendor,
        Err(refused) => return *refused,
    };
    match state.core.pin_vendor(&mac, vendor.as_deref()).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({})),
        Err(f) => f.into(),
    }
}

/// Deletes the phone.
#[utoipa::path(delete, path = "/phones/{mac}", params(("mac" = String, Path, description = "MAC")),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_phone(req: HttpRequest, state: web::Data<AdminHttp>, mac: web::Path<String>) -> HttpResponse {
    let mac = match authorized_mac(&req, &state, &mac).await {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    match state.core.delete(&mac).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(f) => f.into(),
    }
}

/// `GET key-profiles` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyProfileList {
    /// The profiles, by name; each `{"name":..., "keys":[KEY, ...]}`.
    #[schema(value_type = Vec<Object>)]
    pub profiles: Vec<innoprov::provisioning::keys::KeyProfile>,
}

/// The key profiles (function keys: blf, speed_dial, line, dnd).
#[utoipa::path(get, path = "/key-profiles",
    responses((status = 200, body = KeyProfileList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_key_profiles(req: HttpRequest, state: web::Data<AdminHttp>) -> HttpResponse {
    if let Some(refused) = refuse(&req, &state).await {
        return refused;
    }
    HttpResponse::Ok().json(KeyProfileList {
        profiles: state.core.key_profiles(),
    })
}

/// Creates or replaces a key profile: body `{"keys":[KEY, ...]}`, KEY one of
/// `{"type":"blf","target":"<SIP name>","label":"..."}`, `{"type":"speed_dial","number":"...",
/// "label":"..."}`, `{"type":"line"}`, `{"type":"dnd"}`, in key order.
#[utoipa::path(put, path = "/key-profiles/{name}", params(("name" = String, Path, description = "profile name")),
    request_body(content = Object, description = "{\"keys\":[KEY, ...]}"),
    responses((status = 200, description = "stored"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn put_key_profile(
    req: HttpRequest,
    state: web::Data<AdminHttp>,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refused) = refuse(&req, &state).await {
        return refused;
    }
    match state.core.put_key_profile(&name, &body).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({})),
        Err(f) => f.into(),
    }
}

/// Deletes a key profile (phones that had it fall back to their user's config template).
#[utoipa::path(delete, path = "/key-profiles/{name}", params(("name" = String, Path, description = "profile name")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn delete_key_profile(
    req: HttpRequest,
    state: web::Data<AdminHttp>,
    name: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = refuse(&req, &state).await {
        return refused;
    }
    match state.core.delete_key_profile(&name).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(f) => f.into(),
    }
}

/// Gives the phone a key profile (`{"profile":"name"}`) or takes its own away
/// (`{"profile":null}`).
#[utoipa::path(put, path = "/phones/{mac}/key-profile", params(("mac" = String, Path, description = "MAC")),
    request_body(content = Object, description = "{\"profile\": name or null}"),
    responses((status = 200, description = "set"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
async fn set_key_profile(
    req: HttpRequest,
    state: web::Data<AdminHttp>,
    mac: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let mac = match authorized_mac(&req, &state, &mac).await {
        Ok(mac) => mac,
        Err(refused) => return *refused,
    };
    // Exactly {"profile": name} or {"profile": null}: a typo must not take a profile away.
    let profile = match name_or_null(&body, "profile") {
        Ok(profile) => profile,
        Err(refused) => return *refused,
    };
    match state.core.set_key_profile(&mac, profile.as_deref()).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({})),
        Err(f) => f.into(),
    }
}

/// The PBX's user table as replicated: rows, listed entries, last change, replication state
/// and its problem (e.g. the App object lacks TableUsers).
#[utoipa::path(get, path = "/directory",
    responses((status = 200, body = crate::store::user_directory::DirectoryStatus), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn get_directory(req: HttpRequest, state: web::Data<AdminHttp>) -> HttpResponse {
    if let Some(refused) = refuse(&req, &state).await {
        return refused;
    }
    HttpResponse::Ok().json(state.core.directory_status())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3 document")),
    security(("bearer" = [])))]
async fn openapi(req: HttpRequest, state: web::Data<AdminHttp>) -> HttpResponse {
    if let Some(refused) = refuse(&req, &state).await {
        return refused;
    }
    HttpResponse::Ok().json(ApiDoc::openapi())
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the REST door.
#[derive(OpenApi)]
#[openapi(
    info(title = "innoprov admin API", description = "Phones provisioned by innoprov: state, detail, audit and actions."),
    paths(list_phones, get_phone, get_audit, resync, reopen, register_again, pin_vendor, delete_phone, get_pbx, reset_pbx_pin,
        list_key_profiles, put_key_profile, delete_key_profile, set_key_profile, get_directory, openapi),
    components(schemas(PhoneList, PhoneSummary, PhoneDetail, RedirectView, AuditList, VendorPin, DeviceCode, ErrorBody, KeyProfileList,
        crate::store::user_directory::DirectoryStatus, crate::edge::pbx_pin::PbxIdentity)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

/// `GET /metrics`: Prometheus text exposition, bearer token as the REST API.
async fn metrics(req: HttpRequest, state: web::Data<AdminHttp>) -> HttpResponse {
    if let Some(refused) = refuse(&req, &state).await {
        return refused;
    }
    match state.core.state_gauges().await {
        Ok(gauges) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(crate::ops::metrics::metrics().encode(&gauges)),
        Err(f) => f.into(),
    }
}

/// `GET /healthz`: 200 while the process serves.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: 200 once the store is open and a Devices URL is known, else 503. A ready
/// service names in `detail` what works without being needed (no user table: phones get no
/// directory).
async fn readyz(state: web::Data<AdminHttp>) -> HttpResponse {
    match state.core.not_ready().await {
        None => match state.core.directory_status().problem {
            Some(detail) => HttpResponse::Ok().json(serde_json::json!({"status": "ready", "detail": detail})),
            None => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        },
        Some(reason) => json_error(503, &reason),
    }
}

/// The paths [`configure`] registers under: the probes', the metrics' and the REST API's.
pub fn paths(api_path: &str) -> [&str; 4] {
    ["/healthz", "/readyz", "/metrics", api_path]
}

/// Registers the REST routes under `api_path` and the health and metrics endpoints (the
/// [`paths`]).
pub fn configure(cfg: &mut web::ServiceConfig, api_path: &str) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope(api_path)
                .route("/phones", web::get().to(list_phones))
                .route("/phones/{mac}", web::get().to(get_phone))
                .route("/phones/{mac}", web::delete().to(delete_phone))
                .route("/phones/{mac}/audit", web::get().to(get_audit))
                .route("/phones/{mac}/resync", web::post().to(resync))
                .route("/phones/{mac}/enrolment", web::post().to(reopen))
                .route("/phones/{mac}/redirect", web::post().to(register_again))
                .route("/phones/{mac}/vendor", web::put().to(pin_vendor))
                .route("/phones/{mac}/key-profile", web::put().to(set_key_profile))
                .route("/key-profiles", web::get().to(list_key_profiles))
                .route("/key-profiles/{name}", web::put().to(put_key_profile))
                .route("/key-profiles/{name}", web::delete().to(delete_key_profile))
                .route("/directory", web::get().to(get_directory))
                .route("/pbx", web::get().to(get_pbx))
                .route("/pbx/pin", web::delete().to(reset_pbx_pin))
                .route("/openapi.json", web::get().to(openapi))
                .default_service(web::to(
                    |req: HttpRequest, state: web::Data<AdminHttp>| async move {
                        refuse(&req, &state)
                            .await
                            .unwrap_or_else(|| json_error(404, "no such call"))
                    },
                )),
        );
}
