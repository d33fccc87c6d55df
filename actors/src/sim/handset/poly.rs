//! A Poly VVX on UC Software 6.4, as docs/vendors/poly.md describes it: the master
//! configuration `<mac>.cfg` (12 lowercase hex digits; `000000000000.cfg` when that is missing)
//! is an `<APPLICATION>` element whose `CONFIG_FILES` lists the configuration files to fetch in
//! order, `[PHONE_MAC_ADDRESS]` expanded; each of them is an XML document whose elements carry
//! the parameters as attributes, later files winning. `device.*` parameters count only with
//! `device.set="1"` and their own `.set="1"`: they move the provisioning server
//! (`device.prov.serverType` 2 HTTP / 3 HTTPS, `device.prov.serverName` host/path), its
//! credentials, and whether DHCP may offer another (`device.dhcp.bootSrvUseOpt` 2 = static).
//! It resyncs on a `check-sync` NOTIFY without rebooting when
//! `voIpProt.SIP.specialEvent.checkSync.alwaysReboot` is 0.

use std::collections::BTreeMap;

use super::{
    AuthStyle, EmulatedKey, HandsetError, HttpClient, Registration, SipRequest, Url, fault, setting,
};

const VENDOR: &str = "poly";

/// One Poly phone.
pub struct PolyPhone {
    /// Its HTTP side.
    pub http: HttpClient,
    /// MAC, 12 lowercase hex digits.
    mac: String,
    /// Where the next check fetches from.
    pub server: Url,
    /// `device.prov.user` / `device.prov.password`, once set.
    pub credentials: Option<(String, String)>,
    /// Parameters by name.
    pub settings: BTreeMap<String, String>,
}

impl PolyPhone {
    /// A factory-fresh phone whose provisioning server is `server` (DHCP option 66).
    pub fn new(mac: &str, model: &str, server: Url, http: HttpClient) -> PolyPhone {
        let mac = mac.to_ascii_lowercase();
        let mut http = http;
        http.user_agent = format!("FileTransport PolycomVVX-VVX_{model}-UA/6.4.6.2775 Type/Application");
        PolyPhone {
            http,
            mac,
            server,
            credentials: None,
            settings: BTreeMap::new(),
        }
    }

    async fn fetch(&self, file: &str) -> Result<Option<String>, HandsetError> {
        self.http
            .fetch_file(
                VENDOR,
                &self.server.join(file),
                self.credentials.as_ref(),
                AuthStyle::Digest,
            )
            .await
    }

    /// One provisioning run: the master, then every file it names.
    pub async fn provision(&mut self) -> Result<(), HandsetError> {
        let master = match self.fetch(&format!("{}.cfg", self.mac)).await? {
            Some(master) => master,
            None => self
                .fetch("000000000000.cfg")
                .await?
                .ok_or_else(|| fault(VENDOR, "no master configuration"))?,
        };
        let files = config_files(&master)?;
        let mut fetched = BTreeMap::new();
        for file in files.iter().map(|f| f.replace("[PHONE_MAC_ADDRESS]", &self.mac)) {
            let body = self
                .fetch(&file)
                .await?
                .ok_or_else(|| fault(VENDOR, format!("{file} named in CONFIG_FILES is missing")))?;
            parameters(&body, &mut fetched)?;
        }
        self.settings.extend(fetched);
        self.follow_device_settings()
    }

    /// A `device.*` parameter, when the file enabled it (`device.set` and its own `.set`).
    fn device(&self, name: &str) -> Option<&String> {
        let enabled = |key: &str| self.settings.get(key).map(String::as_str) == Some("1");
        (enabled("device.set") && enabled(&format!("{name}.set")))
            .then(|| self.settings.get(name))
            .flatten()
    }

    fn follow_device_settings(&mut self) -> Result<(), HandsetError> {
        if let Some(name) = self.device("device.prov.serverName") {
            let scheme = match self.device("device.prov.serverType").map(String::as_str) {
                Some("2") => "http",
                Some("3") => "https",
                other => return Err(fault(VENDOR, format!("device.prov.serverType {other:?}"))),
            };
            let url = Url::parse(&format!("{scheme}://{name}"))
                .ok_or_else(|| fault(VENDOR, format!("device.prov.serverName {name:?}")))?;
            self.server = url;
        }
        if let (Some(user), Some(password)) = (
            self.device("device.prov.user"),
            self.device("device.prov.password"),
        ) {
            self.credentials = Some((user.clone(), password.clone()));
        }
        Ok(())
    }

    /// Whether a NOTIFY makes it fetch again (without rebooting).
    pub fn accepts(&self, notify: &SipRequest) -> bool {
        notify.headers.get("event").map(String::as_str) == Some("check-sync")
            && self
                .settings
                .get("voIpProt.SIP.specialEvent.checkSync.alwaysReboot")
                .map(String::as_str)
                == Some("0")
    }

    /// The UDP port it listens on for SIP: `voIpProt.local.port`, else 5060.
    pub fn sip_port(&self) -> Option<u16> {
        Some(
            self.settings
                .get("voIpProt.local.port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(5060),
        )
    }

    /// Minutes between its periodic checks: `prov.polling.period` seconds in the relative
    /// mode, when polling is enabled.
    pub fn recheck_minutes(&self) -> Option<u32> {
        let on = self.settings.get("prov.polling.enabled").map(String::as_str) == Some("1")
            && self.settings.get("prov.polling.mode").map(String::as_str) == Some("rel");
        let seconds: u32 = self.settings.get("prov.polling.period")?.parse().ok()?;
        on.then_some(seconds / 60)
    }

    /// Whether a server offered by DHCP is ignored: the boot server is static (2).
    pub fn ignores_dhcp_server(&self) -> bool {
        self.device("device.dhcp.bootSrvUseOpt").map(String::as_str) == Some("2")
    }

    /// Checks a SIP-TLS server's chain as the phone does: against the application CAs the
    /// files installed (`sec.TLS.customCaCert.1`..`.6`, PEM in the attribute; the emulator has
    /// no built-ins). Platform CAs (`device.sec.TLS.customCaCert1`/`2`) serve provisioning and
    /// 802.1X, not SIP, and are not checked here.
    pub fn verify_server(&self, chain_pem: &[u8], name: &str) -> Result<(), HandsetError> {
        let keys = (1..=6).map(|n| format!("sec.TLS.customCaCert.{n}"));
        let trusted = super::cas_in(VENDOR, &self.settings, keys)?;
        super::verify_chain(VENDOR, &trusted, chain_pem, name)
    }

    /// The account it would register with.
    pub fn registration(&self) -> Result<Registration, HandsetError> {
        let get = |key: &str| setting(&self.settings, VENDOR, key);
        Ok(Registration {
            server: get("reg.1.server.1.address")?,
            port: get("reg.1.server.1.port")?
                .parse()
                .map_err(|_| fault(VENDOR, "bad port"))?,
            tls: get("reg.1.server.1.transport")? == "TLS",
            user: get("reg.1.address")?,
            auth_user: get("reg.1.auth.userId")?,
            password: get("reg.1.auth.password")?,
            display_name: get("reg.1.displayName")?,
        })
    }
}

/// The master's `CONFIG_FILES`, comma-separated, in order.
fn config_files(master: &str) -> Result<Vec<String>, HandsetError> {
    let doc =
        roxmltree::Document::parse(master).map_err(|e| fault(VENDOR, format!("master not XML: {e}")))?;
    let root = doc.root_element();
    if !root.has_tag_name("APPLICATION") {
        return Err(fault(VENDOR, "the master is not an <APPLICATION> element"));
    }
    let files: Vec<String> = root
        .attribute("CONFIG_FILES")
        .unwrap_or_default()
        .split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    if files.is_empty() {
        return Err(fault(VENDOR, "the master names no CONFIG_FILES"));
    }
    Ok(files)
}

/// Every attribute of every element: a configuration file's parameters.
fn parameters(body: &str, into: &mut BTreeMap<String, String>) -> Result<(), HandsetError> {
    let doc = roxmltree::Document::parse(body).map_err(|e| fault(VENDOR, format!("not XML: {e}")))?;
    for node in doc.descendants().filter(|n| n.is_element()) {
        for attribute in node.attributes() {
            into.insert(attribute.name().to_string(), attribute.value().to_string());
        }
    }
    Ok(())
}

impl PolyPhone {
    /// Its BLF keys: `attendant.resourceList.N.*` from 1 until the first without an address
    /// (directory-and-keys.md, "Poly"), each a dialog subscription of its own while
    /// `attendant.uri` is empty. Module keys continue the same numbering: all count as its own.
    pub fn function_keys(&self) -> Vec<EmulatedKey> {
        if self.settings.get("attendant.uri").is_some_and(|u| !u.is_empty()) {
            return Vec::new();
        }
        let registrar = self
            .settings
            .get("reg.1.server.1.address")
            .cloned()
            .unwrap_or_default();
        let mut keys = Vec::new();
        for n in 1.. {
            let get = |what: &str| self.settings.get(&format!("attendant.resourceList.{n}.{what}"));
            let Some(address) = get("address") else { break };
            let label = get("label").cloned().unwrap_or_default();
            keys.push(match get("type").map(String::as_str) {
                Some("normal") | None => EmulatedKey::blf(address, &label, &registrar),
                Some(other) => EmulatedKey::new(&format!("other:{other}"), address, &label),
            });
        }
        keys
    }
}

/// What ZTP hands a phone: its provisioning server and the login to present there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZtpHandout {
    /// The provisioning server.
    pub server: Url,
    /// User name and password, when the profile carries them.
    pub credentials: Option<(String, String)>,
}

/// A factory-fresh Poly asking ZTP for its provisioning server. What ZTP hands the phone is
/// documented (its profile's server address, user name and password; docs/redirect/
/// fanvil-poly-grandstream.md §4), the request's form is not: here `GET <ztp>phone/<mac>`,
/// answered with the profile's `template.provisioning.server` object. `None` when ZTP does
/// not know the phone.
pub async fn ask_ztp(mac: &str, ztp: &Url, http: &HttpClient) -> Result<Option<ZtpHandout>, HandsetError> {
    let answer = http
        .get(
            &ztp.join(&format!("phone/{}", mac.to_ascii_lowercase())),
            None,
            AuthStyle::Basic,
        )
        .await
        .map_err(|e| fault(VENDOR, format!("ZTP: {e}")))?;
    match answer.status {
        200 => {}
        404 => return Ok(None),
        other => return Err(fault(VENDOR, format!("ZTP answered {other}"))),
    }
    let server: serde_json::Value =
        serde_json::from_str(&answer.body).map_err(|e| fault(VENDOR, format!("ZTP: {e}")))?;
    let address = server["address"]
        .as_str()
        .ok_or_else(|| fault(VENDOR, "ZTP sent no address"))?;
    let url = Url::parse(address).ok_or_else(|| fault(VENDOR, format!("ZTP sent {address:?}")))?;
    let credentials = match (server["username"].as_str(), server["password"].as_str()) {
        (Some(user), Some(password)) => Some((user.to_string(), password.to_string())),
        _ => None,
    };
    Ok(Some(ZtpHandout {
        server: url,
        credentials,
    }))
}
