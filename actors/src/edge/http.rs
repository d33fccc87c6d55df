//! The HTTP surface: one listener for PBX/app websockets (and, later, phone downloads and
//! admin). A websocket upgrade is accepted on `app.path` and on its parent, with and without a
//! trailing slash (appwebsocket.md §9 q1: which one the PBX uses is not settled).

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::edge::app_session::{AppSession, SessionShared};
use crate::edge::ws_reader::{LimitedMessages, LoggedIn};

/// Per-worker state of the HTTP surface.
pub struct HttpState {
    /// What every AppWebsocket session shares.
    pub sessions: Arc<SessionShared>,
    /// Bound on one inbound message, fragments reassembled.
    pub max_message_bytes: usize,
    /// Whose forwarding headers name the client (counted by that address).
    pub trusted_proxies: crate::edge::forwarded::TrustedProxies,
}

/// The paths that accept the AppWebsocket upgrade.
pub fn websocket_paths(app_path: &str, app_parent: &str) -> Vec<String> {
    let mut paths = vec![app_path.to_string(), format!("{app_path}/")];
    if app_parent.is_empty() {
        paths.push("/".to_string());
    } else {
        paths.push(app_parent.to_string());
        paths.push(format!("{app_parent}/"));
    }
    paths
}

/// Registers the routes; `admin_page` adds `<parent>/<admin page>`, the URL of the admin App
/// object (its logins are told apart by `info.appobj` or the token, not by the path).
pub fn configure(cfg: &mut web::ServiceConfig, app_path: &str, app_parent: &str, admin_page: Option<&str>) {
    let mut paths = websocket_paths(app_path, app_parent);
    if let Some(admin) = admin_page {
        let admin_path = format!("{app_parent}/{admin}");
        if admin_path != app_path {
            paths.push(admin_path.clone());
            paths.push(format!("{admin_path}/"));
        }
    }
    for path in paths {
        cfg.route(&path, web::get().to(upgrade));
    }
}

/// Upgrades to a websocket and hands the connection to a new [`AppSession`] on this thread
/// (the frame stream is not `Send`).
async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, actix_web::Error> {
    // Counted before the upgrade: a peer that never logs in holds one of a bounded number of
    // places, per address and service-wide.
    // Behind a trusted proxy each client is counted by the address it forwarded for; a
    // proxy whose headers name no usable client is counted as itself.
    let client = state
        .trusted_proxies
        .client(req.peer_addr(), req.headers())
        .or(req.peer_addr());
    let ip = client.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    let slot = match state.sessions.guard.admit(ip) {
        Ok(slot) => slot,
        Err(refused) => {
            log::debug!("websocket from {ip} refused: {refused}");
            return Ok(HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "5"))
                .finish());
        }
    };
    // actix-ws makes the handshake response and the writing session; its reader would buffer
    // unboundedly (ws_reader.rs), so it gets no bytes: ours reads the connection.
    let mut none = actix_web::dev::Payload::None;
    let unused = <web::Payload as actix_web::FromRequest>::from_request(&req, &mut none).await?;
    let (response, ws, _unused_reader) = actix_ws::handle(&req, unused)?;
    let logged_in = LoggedIn::default();
    let stream = LimitedMessages::new(body.into_inner(), state.max_message_bytes, logged_in.clone());
    AppSession::start(Arc::clone(&state.sessions), ws, stream, client, slot, logged_in);
    Ok(response)
}
