//! A Snom D7xx on firmware 10.1, as docs/vendors/snom.md describes it: from a setting server
//! given as a directory, `snom<Type>.htm` then `snom<Type>-<MAC>.htm` (MAC upper case), each a
//! `<settings><phone-settings>` document applied in order. The file's `setting_server`,
//! `http_client_user` / `http_client_pass` and `settings_refresh_timer` drive the next check.
//! With `challenge_checksync` on, a check-sync NOTIFY is challenged with the line's SIP
//! password before it counts.

use std::collections::BTreeMap;

use super::{
    AuthStyle, EmulatedKey, HandsetError, HttpClient, Registration, SipRequest, Url, fault, setting,
};

const VENDOR: &str = "snom";

/// One Snom phone (or a Gigaset P-series desk phone: Snom-made, Snom's firmware and format).
pub struct SnomPhone {
    /// `snom`, or `gigaset_p` for a Gigaset P-series.
    vendor: &'static str,
    /// Its HTTP side.
    pub http: HttpClient,
    /// MAC, 12 uppercase hex digits.
    mac: String,
    /// Phone type as in file names (`snomD785`).
    phone_type: String,
    /// The setting server (a directory URL).
    pub server: Url,
    /// HTTP credentials from the file.
    pub credentials: Option<(String, String)>,
    /// Settings by name (per-identity settings as `name#idx`).
    pub settings: BTreeMap<String, String>,
    /// The CAs installed from the files' `<certificates>` (DER).
    pub trusted_cas: Vec<Vec<u8>>,
    /// The function keys from `<functionKeys>`, by idx: (label, `type argument`).
    pub fkeys: BTreeMap<u32, (String, String)>,
    /// Its local directory as provisioned `<tbook>`s left it.
    pub tbook: Vec<super::phonebook::PhonebookLine>,
}

impl SnomPhone {
    /// A factory-fresh phone whose setting server is `server`.
    pub fn new(mac: &str, model: &str, server: Url, http: HttpClient) -> SnomPhone {
        let mac = mac.to_ascii_uppercase();
        let mut http = http;
        http.user_agent = format!(
            "Mozilla/4.0 (compatible; snom{model}-SIP 10.1.33.33 2010.12-00004-g9ba52f5 {mac} SXM:0 UXM:0)"
        );
        SnomPhone {
            vendor: VENDOR,
            http,
            mac,
            phone_type: format!("snom{model}"),
            server,
            credentials: None,
            settings: BTreeMap::new(),
            trusted_cas: Vec::new(),
            fkeys: BTreeMap::new(),
            tbook: Vec::new(),
        }
    }

    /// A factory-fresh Gigaset P-series phone (`model` as in its file names, `P82x` for a
    /// P820/P825: docs/vendors/gigaset.md, "P-series"), sending `user_agent`.
    pub fn gigaset_p(mac: &str, model: &str, user_agent: &str, server: Url, http: HttpClient) -> SnomPhone {
        let mut phone = SnomPhone::new(mac, model, server, http);
        phone.vendor = "gigaset_p";
        phone.phone_type = format!("Gigaset{model}");
        phone.http.user_agent = user_agent.replace("{MAC}", &phone.mac);
        phone
    }

    /// One provisioning run.
    pub async fn provision(&mut self) -> Result<(), HandsetError> {
        let server = self.server.clone();
        for file in [
            format!("{}.htm", self.phone_type),
            format!("{}-{}.htm", self.phone_type, self.mac),
        ] {
            let url = server.join(&file);
            let found = self
                .http
                .fetch_file(self.vendor, &url, self.credentials.as_ref(), AuthStyle::Digest)
                .await?;
            if let Some(body) = found {
                self.apply(&body)?;
            }
        }
        if let Some(url) = self.settings.get("setting_server") {
            let url = Url::parse(url).ok_or_else(|| fault(self.vendor, format!("setting_server {url:?}")))?;
            if !url.path.ends_with('/') {
                return Err(fault(
                    self.vendor,
                    "setting_server names a file; the phone would not guess names",
                ));
            }
            self.server = url;
        }
        let user = self.settings.get("http_client_user");
        let pass = self.settings.get("http_client_pass");
        if let (Some(user), Some(pass)) = (user, pass) {
            self.credentials = Some((user.clone(), pass.clone()));
        }
        Ok(())
    }

    fn apply(&mut self, body: &str) -> Result<(), HandsetError> {
        let doc =
            roxmltree::Document::parse(body).map_err(|e| fault(self.vendor, format!("not XML: {e}")))?;
        let root = doc.root_element();
        if !root.has_tag_name("settings") {
            return Err(fault(self.vendor, "root is not <settings>"));
        }
        // `<certificates>`: each `<certificate type="base64">` holds a PEM certificate.
        for certificate in root
            .children()
            .filter(|n| n.has_tag_name("certificates"))
            .flat_map(|n| n.children().filter(|c| c.has_tag_name("certificate")))
        {
            if certificate.attribute("type") != Some("base64") {
                return Err(fault(self.vendor, "a certificate that is not type=\"base64\""));
            }
            let certs = super::pem_certificates(self.vendor, certificate.text().unwrap_or_default())?;
            self.trusted_cas.extend(certs);
        }
        self.apply_function_keys(root)?;
        // `<tbook>`: `complete="true"` replaces the directory, else the items are added
        // (docs/vendors/directory-and-keys.md [S3]).
        for tbook in root.children().filter(|n| n.has_tag_name("tbook")) {
            if tbook.attribute("complete") == Some("true") {
                self.tbook.clear();
            }
            self.tbook.extend(super::phonebook::tbook_items(tbook));
        }
        for section in root.children().filter(|n| n.has_tag_name("phone-settings")) {
            for setting in section.children().filter(|n| n.is_element()) {
                let name = match setting.attribute("idx") {
                    Some(idx) => format!("{}#{idx}", setting.tag_name().name()),
                    None => setting.tag_name().name().to_string(),
                };
                self.settings
                    .insert(name, setting.text().unwrap_or_default().to_string());
            }
        }
        Ok(())
    }

    /// `<functionKeys>` (or `<function-keys>`) in `<settings>`: `<fkey idx=.. label=..>type
    /// argument</fkey>`, idx from 0 (docs/vendors/directory-and-keys.md, "Snom").
    fn apply_function_keys(&mut self, root: roxmltree::Node) -> Result<(), HandsetError> {
        for fkey in root
            .children()
            .filter(|n| n.has_tag_name("functionKeys") || n.has_tag_name("function-keys"))
            .flat_map(|n| n.children().filter(|c| c.has_tag_name("fkey")))
        {
            let idx = fkey
                .attribute("idx")
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| fault(self.vendor, "an fkey without a numeric idx"))?;
            let label = fkey.attribute("label").unwrap_or_default().to_string();
            self.fkeys
                .insert(idx, (label, fkey.text().unwrap_or_default().trim().to_string()));
        }
        Ok(())
    }

    /// The keys it shows, by idx. Where the phone's own keys end and a module's begin depends
    /// on the model, which the notes do not give: every key counts as the phone's own.
    pub fn function_keys(&self) -> Vec<EmulatedKey> {
        let registrar = self.settings.get("user_host#1").cloned().unwrap_or_default();
        self.fkeys
            .values()
            .map(|(label, text)| {
                let (kind, argument) = text.split_once(' ').unwrap_or((text, ""));
                match (kind, argument) {
                    ("line", _) => EmulatedKey::new("line", "", label),
                    ("blf", target) => {
                        // `blf <target>|<pickup code>`: the target is before the `|`.
                        EmulatedKey::blf(target.split('|').next().unwrap_or_default(), label, &registrar)
                    }
                    ("speed", number) => EmulatedKey::new("speed_dial", number, label),
                    ("keyevent", "F_DND") => EmulatedKey::new("dnd", "", label),
                    _ => EmulatedKey::new(&format!("other:{text}"), "", label),
                }
            })
            .collect()
    }

    /// The SIP credentials it challenges a check-sync with, when `challenge_checksync` is on.
    pub fn checksync_challenge(&self) -> Option<(String, String)> {
        if self.settings.get("challenge_checksync").map(String::as_str) != Some("on") {
            return None;
        }
        let user = self
            .settings
            .get("user_pname#1")
            .filter(|u| !u.is_empty())
            .or_else(|| self.settings.get("user_name#1"))?;
        Some((user.clone(), self.settings.get("user_pass#1")?.clone()))
    }

    /// Whether a NOTIFY (already authenticated when challenged) makes it fetch again.
    pub fn accepts(&self, notify: &SipRequest) -> bool {
        let event = notify
            .headers
            .get("event")
            .map(String::as_str)
            .unwrap_or_default();
        event.starts_with("check-sync")
            && self.settings.get("checksync_action").map(String::as_str) == Some("sync")
    }

    /// The UDP port it listens on for SIP: `network_id_port`; without it a Snom picks a random
    /// one ("Usually, the phone chooses a random one!", Snom 320 manual p.92): `None`.
    pub fn sip_port(&self) -> Option<u16> {
        self.settings
            .get("network_id_port")
            .and_then(|p| p.parse().ok())
            .filter(|p| *p != 0)
    }

    /// Minutes between its periodic checks (`settings_refresh_timer`, in seconds; 0 is off).
    pub fn recheck_minutes(&self) -> Option<u32> {
        let seconds: u32 = self.settings.get("settings_refresh_timer")?.parse().ok()?;
        (seconds > 0).then_some(seconds / 60)
    }

    /// Whether a server offered by DHCP is ignored: `provisioning_order` names no DHCP method
    /// and PnP is off.
    pub fn ignores_dhcp_server(&self) -> bool {
        let order = self
            .settings
            .get("provisioning_order")
            .map(String::as_str)
            .unwrap_or("dhcp:stop");
        !order.split_whitespace().any(|m| m.starts_with("dhcp"))
            && self.settings.get("pnp_config").map(String::as_str) == Some("off")
    }

    /// `snom`, or `gigaset_p` for a Gigaset P-series.
    pub fn vendor(&self) -> &'static str {
        self.vendor
    }

    /// The account it would register with.
    pub fn registration(&self) -> Result<Registration, HandsetError> {
        let get = |key: &str| setting(&self.settings, self.vendor, key);
        if get("user_active#1")? != "on" {
            return Err(fault(self.vendor, "identity 1 not active"));
        }
        let outbound = get("user_outbound#1")?;
        let (hostport, params) = outbound.split_once(';').unwrap_or((&outbound, ""));
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| fault(self.vendor, "user_outbound without a port"))?;
        if host != get("user_host#1")? {
            return Err(fault(self.vendor, "outbound proxy is not the registrar"));
        }
        Ok(Registration {
            server: host.to_string(),
            port: port.parse().map_err(|_| fault(self.vendor, "bad port"))?,
            tls: params.split(';').any(|p| p == "transport=tls"),
            user: get("user_name#1")?,
            auth_user: get("user_pname#1")?,
            password: get("user_pass#1")?,
            display_name: get("user_realname#1")?,
        })
    }
}
