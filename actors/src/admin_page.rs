//! The admin page (interface.md "Operating"; issue 9): static files under
//! `<parent of app.path>/<admin.app>.htm` (`.js`, `.css`, `.png`), where myApps loads an App
//! object's page. The page is a client of the AppWebsocket admin door (`app_session`): it logs
//! in through the myApps client, or outside myApps with the admin token. Nothing here is
//! secret; what the page may see is decided by its login.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// The page's name when `admin.app` is unset (only the token login works then).
pub const DEFAULT_NAME: &str = "innoprov-admin";

const PAGE: &str = include_str!("admin_page/admin.htm");
const SCRIPT: &str = include_str!("admin_page/admin.js");
const STYLE: &str = include_str!("admin_page/admin.css");
const ICON: &[u8] = include_bytes!("admin_page/admin.png");

/// Scripts, styles and sockets from this origin only; every value the page shows is set as
/// text, and no other origin can be reached from it. `frame-ancestors` is left open: myApps
/// frames the page from the PBX's origin, which is not known here.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'";

/// Whether `name` can be a URL segment and a file name as it is.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

fn file(content_type: &'static str, body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// The page's HTML for the App object `name` (made once, shared by the workers).
pub fn page_html(name: &str) -> web::Bytes {
    web::Bytes::from(PAGE.replace("ADMIN_NAME", name))
}

/// Registers the page's four files under `<parent>/<name>`; `page` is [`page_html`]`(name)`.
pub fn configure(cfg: &mut web::ServiceConfig, parent: &str, name: &str, page: &web::Bytes) {
    let base = format!("{parent}/{name}");
    let page = page.clone();
    cfg.route(
        &format!("{base}.htm"),
        web::get().to(move || {
            let page = page.clone();
            async move { file("text/html; charset=utf-8", page) }
        }),
    );
    // The other three are the same for every name.
    let fixed: [(&str, &'static str, &'static [u8]); 3] = [
        ("js", "text/javascript; charset=utf-8", SCRIPT.as_bytes()),
        ("css", "text/css; charset=utf-8", STYLE.as_bytes()),
        ("png", "image/png", ICON),
    ];
    for (extension, content_type, bytes) in fixed {
        cfg.route(
            &format!("{base}.{extension}"),
            web::get().to(move || async move { file(content_type, web::Bytes::from_static(bytes)) }),
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
}
