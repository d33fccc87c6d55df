//! The admin page (interface.md "Operating"; issue 9): static files under
//! `<parent of app.path>/<admin.app>.htm` (`.js`, `.css`, `.png`), where myApps loads an App
//! object's page. The page is a client of the AppWebsocket admin door (`app_session`): it logs
//! in through the myApps client, or outside myApps with the admin token. Nothing here is
//! secret; what the page may see is decided by its login.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

/// The page's name when `admin.app` is unset (only the token login works then).
pub const DEFAULT_NAME: &str = "innoprov-admin";

const PAGE: &str = include_str!("admin_page/admin.htm");
const SCRIPT: &str = include_str!("admin_page/admin.js");
const STYLE: &str = include_str!("admin_page/admin.css");
const ICON: &[u8] = include_bytes!("admin_page/admin.png");

/// The Content-Security-Policy of the page's files: scripts, styles and images from this
/// origin only; every value the page shows is set as text. `connect-src` names the websocket
/// origins explicitly (`ws:`/`wss:` of the host the browser asked, and of each
/// `admin.url_origins`): CSP Level 2 (what older WebKit web views of myApps for iOS and macOS
/// apply) does not count `ws:` to the same host as `'self'`. `frame-ancestors` is left open:
/// myApps frames the page from the PBX's origin, which is not known here.
pub fn policy(host: Option<&str>, origins: &[String]) -> String {
    let mut connect = vec!["'self'".to_string()];
    if let Some(host) = host.filter(|h| crate::edge::forwarded::plausible_host(h)) {
        connect.push(format!("ws://{host}"));
        connect.push(format!("wss://{host}"));
    }
    for origin in origins {
        if let Some(rest) = origin.strip_prefix("https://") {
            connect.push(format!("wss://{rest}"));
        } else if let Some(rest) = origin.strip_prefix("http://") {
            connect.push(format!("ws://{rest}"));
        }
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src {}; base-uri 'none'; form-action 'none'",
        connect.join(" ")
    )
}

/// Whether `name` can be a URL segment and a file name as it is.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

/// What the page is told by the service (as `<meta>` elements: the policy allows no inline
/// script).
#[derive(Debug, Clone)]
pub struct PageSettings {
    /// The page's file name (`admin.page`, else `admin.app`).
    pub name: String,
    /// `admin.url_origins`, normalised (`https://host[:port]`).
    pub origins: Vec<String>,
    /// `admin.badge_link_down_minutes`.
    pub badge_link_down_minutes: u32,
}

fn file(req: &HttpRequest, origins: &[String], content_type: &'static str, body: web::Bytes) -> HttpResponse {
    let info = req.connection_info();
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            policy(Some(info.host()), origins),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// The page's HTML (made once, shared by the workers).
pub fn page_html(settings: &PageSettings) -> web::Bytes {
    web::Bytes::from(
        PAGE.replace("ADMIN_NAME", &settings.name)
            .replace("ADMIN_URL_ORIGINS", &settings.origins.join(" "))
            .replace(
                "ADMIN_BADGE_MINUTES",
                &settings.badge_link_down_minutes.to_string(),
            ),
    )
}

/// Registers the page's four files under `<parent>/<name>`; `page` is [`page_html`] of
/// `settings`.
pub fn configure(cfg: &mut web::ServiceConfig, parent: &str, settings: &PageSettings, page: &web::Bytes) {
    let base = format!("{parent}/{}", settings.name);
    let page = page.clone();
    let origins = std::sync::Arc::new(settings.origins.clone());
    let page_origins = std::sync::Arc::clone(&origins);
    cfg.route(
        &format!("{base}.htm"),
        web::get().to(move |req: HttpRequest| {
            let (page, origins) = (page.clone(), std::sync::Arc::clone(&page_origins));
            async move { file(&req, &origins, "text/html; charset=utf-8", page) }
        }),
    );
    // The other three are the same for every name.
    let fixed: [(&str, &'static str, &'static [u8]); 3] = [
        ("js", "text/javascript; charset=utf-8", SCRIPT.as_bytes()),
        ("css", "text/css; charset=utf-8", STYLE.as_bytes()),
        ("png", "image/png", ICON),
    ];
    for (extension, content_type, bytes) in fixed {
        let origins = std::sync::Arc::clone(&origins);
        cfg.route(
            &format!("{base}.{extension}"),
            web::get().to(move |req: HttpRequest| {
                let origins = std::sync::Arc::clone(&origins);
                async move { file(&req, &origins, content_type, web::Bytes::from_static(bytes)) }
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_make_pages() {
        assert!(valid_name("innoprov-admin"));
        assert!(valid_name("prov_admin.2"));
        for bad in ["", ".hidden", "a/b", "a b", "a\"b", "<x>", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_policy_names_the_websocket_origins() {
        let p = policy(Some("pbx.example.com:8080"), &["https://apps.example.com".into()]);
        assert!(p.contains(
            "connect-src 'self' ws://pbx.example.com:8080 wss://pbx.example.com:8080 wss://apps.example.com;"
        ));
        assert!(!policy(Some("evil.example\"; script-src *"), &[]).contains("evil"));
    }
}
