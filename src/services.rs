//! Finding innovaphone Devices through the PBX's Services API (interface.md): the service that
//! publishes `com.innovaphone.devices`, and its sysclient websocket URL.

use serde_json::Value;

/// The API id Devices publishes.
pub const DEVICES_API: &str = "com.innovaphone.devices";

/// The sysclient URL of the Devices service listed in a ServicesInfo `services` array, if any.
///
/// `info.apis` is the published form; a bare `info` holding the API id is accepted too
/// (devices-sysclient.md §4 shows both).
pub fn devices_sysclient_url(services: &Value) -> Option<String> {
    services.as_array()?.iter().find_map(|service| {
        let info = service.get("info")?;
        let publishes = |obj: &Value| obj.as_object().is_some_and(|o| o.contains_key(DEVICES_API));
        if !(info.get("apis").is_some_and(publishes) || publishes(info)) {
            return None;
        }
        sysclient_url(service.get("url")?.as_str()?)
    })
}

/// `url` with http→ws / https→wss and the last path segment replaced by `sysclients`
/// (a URL ending in `/` gets `sysclients` appended), read by the `url` crate (WHATWG rules:
/// case-insensitive scheme and host, a bare host has the path `/`); query and fragment are
/// dropped. `None` for anything that is not an http(s) or ws(s) URL with a host.
pub fn sysclient_url(url: &str) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return None,
    };
    // Both schemes are "special" (WHATWG URL), so the change is always allowed.
    url.set_scheme(scheme).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut().ok()?.pop().push("sysclients");
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_rules_of_the_interface() {
        assert_eq!(
            sysclient_url("https://ap.example.com/example.com/devices/innovaphone-devices").as_deref(),
            Some("wss://ap.example.com/example.com/devices/sysclients")
        );
        assert_eq!(
            sysclient_url("http://127.0.0.1:9000/example.com/devices/").as_deref(),
            Some("ws://127.0.0.1:9000/example.com/devices/sysclients")
        );
        assert_eq!(
            sysclient_url("wss://h/d/x").as_deref(),
            Some("wss://h/d/sysclients")
        );
        assert_eq!(sysclient_url("ftp://h/d/x"), None);
        // A host alone is the path `/` (RFC 3986 §6.2.3): its last segment is empty.
        assert_eq!(sysclient_url("https://h").as_deref(), Some("wss://h/sysclients"));
        assert_eq!(
            sysclient_url("HTTPS://AP.example.com:8443/d/x?x=1#f").as_deref(),
            Some("wss://ap.example.com:8443/d/sysclients"),
            "scheme and host are case-insensitive; query and fragment go"
        );
        assert_eq!(
            sysclient_url("http://[::1]:9000/example.com/devices/x").as_deref(),
            Some("ws://[::1]:9000/example.com/devices/sysclients")
        );
        assert_eq!(sysclient_url("http://:9000/x"), None, "no host");
        assert_eq!(sysclient_url("not a url"), None);
    }

    #[test]
    fn finds_devices_with_and_without_the_apis_wrapper() {
        let services = json!([
            {"name":"prov","url":"https://ap/x/prov/p","info":{"apis":{"com.innovaphone.provisioning":{}}}},
            {"name":"devices","url":"https://ap/example.com/devices/innovaphone-devices","info":{"apis":{"com.innovaphone.devices":{}}}}
        ]);
        assert_eq!(
            devices_sysclient_url(&services).as_deref(),
            Some("wss://ap/example.com/devices/sysclients")
        );
        let bare =
            json!([{"name":"d","url":"wss://ap/example.com/devices/","info":{"com.innovaphone.devices":{}}}]);
        assert_eq!(
            devices_sysclient_url(&bare).as_deref(),
            Some("wss://ap/example.com/devices/sysclients")
        );
        assert_eq!(devices_sysclient_url(&json!([])), None);
        assert_eq!(devices_sysclient_url(&json!({"x":1})), None);
    }
}
