//! A Grandstream GXP21xx/GRP26xx on 1.0.x, as docs/vendors/grandstream.md describes it: from
//! `P212`://`P237`/ it asks for `cfg<mac>` (the legacy binary file; 404 is normal), then
//! `cfg<mac>.xml`, and only if that fails `cfg<model>.xml` and `cfg.xml`; the first XML that
//! downloads is applied. A 401 is answered with `P1360`/`P1361`. A `<mac>` in the file must be
//! its own. With `P4428 = 0` a NOTIFY is challenged with account 1's credentials.

use std::collections::BTreeMap;

use super::{
    AuthStyle, EmulatedKey, HandsetError, HttpClient, Registration, SipRequest, Url, fault, setting,
};

const VENDOR: &str = "grandstream";

/// One Grandstream phone.
pub struct GrandstreamPhone {
    /// Its HTTP side.
    pub http: HttpClient,
    /// MAC, 12 lowercase hex digits.
    mac: String,
    /// Model, lower case (`gxp2170`).
    model: String,
    /// Where the next check fetches from.
    pub server: Url,
    /// P1360/P1361.
    pub credentials: Option<(String, String)>,
    /// P-values applied.
    pub settings: BTreeMap<String, String>,
}

impl GrandstreamPhone {
    /// A factory-fresh phone told `server` by DHCP option 66.
    pub fn new(mac: &str, model: &str, server: Url, http: HttpClient) -> GrandstreamPhone {
        let mac = mac.to_ascii_lowercase();
        let mut http = http;
        http.user_agent = format!("Grandstream Model HW {model} SW 1.0.11.16 DevId {mac}");
        GrandstreamPhone {
            http,
            mac,
            model: model.to_ascii_lowercase(),
            server,
            credentials: None,
            settings: BTreeMap::new(),
        }
    }

    /// One provisioning run.
    pub async fn provision(&mut self) -> Result<(), HandsetError> {
        let server = self.server.clone();
        let names = [
            format!("cfg{}", self.mac),
            format!("cfg{}.xml", self.mac),
            format!("cfg{}.xml", self.model),
            "cfg.xml".to_string(),
        ];
        for (n, name) in names.iter().enumerate() {
            let url = server.join(name);
            let response = self
                .http
                .get(&url, self.credentials.as_ref(), AuthStyle::Digest)
                .await
                .map_err(|e| fault(VENDOR, format!("GET {}: {e}", url.path)))?;
            if response.status != 200 {
                if response.status == 401 {
                    return Err(fault(
                        VENDOR,
                        format!("GET {}: 401 with the stored credentials", url.path),
                    ));
                }
                continue;
            }
            if n == 0 {
                return Err(fault(
                    VENDOR,
                    "a binary cfg<mac> was served; innoprov serves XML only",
                ));
            }
            self.apply(&response.body)?;
            break;
        }
        let scheme = match self.settings.get("P212").map(String::as_str) {
            Some("1") => "http",
            Some("2") => "https",
            Some(other) => return Err(fault(VENDOR, format!("P212 = {other} is not HTTP(S)"))),
            None => return Ok(()),
        };
        if let Some(path) = self.settings.get("P237") {
            if path.contains("://") || path.ends_with('/') {
                return Err(fault(VENDOR, format!("P237 {path:?} must be host[:port]/path")));
            }
            self.server = Url::parse(&format!("{scheme}://{path}"))
                .ok_or_else(|| fault(VENDOR, format!("P237 {path:?}")))?;
        }
        if let (Some(user), Some(pass)) = (self.settings.get("P1360"), self.settings.get("P1361")) {
            self.credentials = Some((user.clone(), pass.clone()));
        }
        Ok(())
    }

    fn apply(&mut self, body: &str) -> Result<(), HandsetError> {
        let doc = roxmltree::Document::parse(body).map_err(|e| fault(VENDOR, format!("not XML: {e}")))?;
        let root = doc.root_element();
        if !root.has_tag_name("gs_provision") {
            return Err(fault(VENDOR, "root is not <gs_provision>"));
        }
        if let Some(mac) = root.children().find(|n| n.has_tag_name("mac"))
            && mac.text().unwrap_or_default() != self.mac
        {
            return Err(fault(VENDOR, "the file is for another MAC; rejected"));
        }
        let config = root
            .children()
            .find(|n| n.has_tag_name("config"))
            .ok_or_else(|| fault(VENDOR, "no <config>"))?;
        for p in config.children().filter(|n| n.is_element()) {
            self.settings.insert(
                p.tag_name().name().to_string(),
                p.text().unwrap_or_default().to_string(),
            );
        }
        Ok(())
    }

    /// The credentials it challenges a NOTIFY with (`P4428 = 0`).
    pub fn notify_challenge(&self) -> Option<(String, String)> {
        if self.settings.get("P4428").map(String::as_str) == Some("1") {
            return None;
        }
        Some((
            self.settings.get("P36")?.clone(),
            self.settings.get("P34")?.clone(),
        ))
    }

    /// Whether a NOTIFY makes it fetch again without a reboot.
    pub fn accepts(&self, notify: &SipRequest) -> bool {
        notify.headers.get("event").map(String::as_str) == Some("resync")
            && self.settings.get("P26015").map(String::as_str) == Some("0")
    }

    /// The UDP port it listens on for SIP: P40 (account 1's local SIP port), else 5060.
    pub fn sip_port(&self) -> Option<u16> {
        Some(
            self.settings
                .get("P40")
                .and_then(|p| p.parse().ok())
                .unwrap_or(5060),
        )
    }

    /// Minutes between its periodic checks: P193, when P194 (automatic upgrade) is 1.
    pub fn recheck_minutes(&self) -> Option<u32> {
        (self.settings.get("P194").map(String::as_str) == Some("1"))
            .then(|| self.settings.get("P193")?.parse().ok())
            .flatten()
    }

    /// Whether a server offered in DHCP option 66 is ignored: P145 ("allow DHCP option 66 to
    /// override the server") is 0.
    pub fn ignores_dhcp_server(&self) -> bool {
        self.settings.get("P145").map(String::as_str) == Some("0")
    }

    /// Checks a SIP-TLS server's chain as the phone does. With account 1's "Validate
    /// Certification Chain" (`P2367`) off, a Grandstream takes any certificate; on, it checks
    /// against the custom CAs `P8433`..`P8438` when "Load CA Certificates" (`P8502`) takes
    /// them (1 custom, 2 built-in and custom; the emulator has no built-ins).
    pub fn verify_server(&self, chain_pem: &[u8], name: &str) -> Result<(), HandsetError> {
        if self.settings.get("P2367").map(String::as_str) != Some("1") {
            return Ok(());
        }
        let trusted = if matches!(self.settings.get("P8502").map(String::as_str), Some("1" | "2")) {
            super::cas_in(VENDOR, &self.settings, (8433..=8438).map(|p| format!("P{p}")))?
        } else {
            Vec::new()
        };
        super::verify_chain(VENDOR, &trusted, chain_pem, name)
    }

    /// The account it would register with.
    pub fn registration(&self) -> Result<Registration, HandsetError> {
        let get = |key: &str| setting(&self.settings, VENDOR, key);
        if get("P271")? != "1" {
            return Err(fault(VENDOR, "account 1 not active"));
        }
        let server = get("P47")?;
        let (host, port) = server
            .rsplit_once(':')
            .ok_or_else(|| fault(VENDOR, "P47 without a port"))?;
        Ok(Registration {
            server: host.to_string(),
            port: port.parse().map_err(|_| fault(VENDOR, "bad port"))?,
            tls: get("P130")? == "2",
            user: get("P35")?,
            auth_user: get("P36")?,
            password: get("P34")?,
            display_name: get("P3")?,
        })
    }

    /// (fixed VPKs, VPKs, extension modules) of its model (directory-and-keys.md,
    /// "Grandstream"); a model the notes do not count has none.
    fn key_counts(&self) -> (u32, u32, bool) {
        match self.model.as_str() {
            "gxp2130" => (3, 12, false),
            "gxp2135" => (8, 32, false),
            "gxp2140" => (4, 16, true),
            "gxp2160" => (6, 24, false),
            "gxp2170" => (12, 48, true),
            "grp2612" | "grp2614" => (4, 16, true),
            "grp2613" | "grp2616" => (6, 24, true),
            "grp2615" => (5, 40, true),
            _ => (0, 0, false),
        }
    }

    /// What a VPK or module key's mode means: GXP21xx fixed VPKs have their own list; dynamic
    /// VPKs, module keys and every GRP26xx key share the other (GRP fixed VPKs add `line`).
    fn kind_of(&self, mode: &str, fixed: bool) -> Option<String> {
        let grp = self.model.starts_with("grp");
        let kind = match (mode, fixed && !grp, fixed && grp) {
            ("-1", _, _) => return None,
            ("0", true, _) => "line",
            ("11", true, _) | ("1", false, _) => "blf",
            ("10", true, _) | ("0", false, _) => "speed_dial",
            ("32", true, _) | ("22", false, _) => "dnd",
            ("31", false, true) => "line",
            (other, _, _) => return Some(format!("other:{other}")),
        };
        Some(kind.to_string())
    }

    /// The keys it shows: the VPKs in order (the first VPK without a mode ends them: "skipping
    /// one will remove everything after that VPK"), then the extension modules' 4 x 40 keys.
    pub fn function_keys(&self) -> Vec<EmulatedKey> {
        let (fixed, total, modules) = self.key_counts();
        let registrar = self.registration().map(|r| r.server).unwrap_or_default();
        let get = |p: u32| self.settings.get(&format!("P{p}")).cloned();
        let key = |kind: String, p: [u32; 4]| {
            let (label, value) = (get(p[2]).unwrap_or_default(), get(p[3]).unwrap_or_default());
            match kind.as_str() {
                "blf" => EmulatedKey::blf(&value, &label, &registrar),
                "line" | "dnd" => EmulatedKey::new(&kind, "", &label),
                _ => EmulatedKey::new(&kind, &value, &label),
            }
        };
        let mut keys = Vec::new();
        for n in 1..=total {
            let p = if n <= 6 {
                let base = 2 * (n - 1);
                [1363 + base, 1364 + base, 1465 + base, 1466 + base]
            } else {
                let base = 23800 + 4 * (n - 7);
                [base, base + 1, base + 2, base + 3]
            };
            let Some(mode) = get(p[0]) else { break };
            if let Some(kind) = self.kind_of(&mode, n <= fixed) {
                keys.push(key(kind, p));
            }
        }
        for k in (1..=160).filter(|_| modules) {
            let base = 23000 + 5 * (k - 1);
            if let Some(kind) = get(base).and_then(|mode| self.kind_of(&mode, false)) {
                keys.push(key(kind, [base, base + 1, base + 2, base + 3]).on_module((k - 1) / 40 + 1));
            }
        }
        keys
    }
}
