//! A Gigaset N870 IP PRO DECT base (firmware 2.5x), as docs/vendors/gigaset.md describes it:
//! from a provisioning server given as a directory (DHCP option 114, or the web UI), first
//! `provisioning.xml`, then `<MAC>.xml` (12 uppercase hex digits). Each is a
//! `<provisioning version="1.1" productID="e2">` document whose `<nvm>` holds
//! `<param name=".." value=".."/>` settings and `<oper>` actions (`add_hs` opens a handset's
//! registration). `Provisioning.global.ProvisioningServer` moves the next check, with the
//! credentials in its URL (answered by Digest); `Provisioning.global.Period` sets the
//! interval in seconds (0: once a night; below 1800 the guide warns). A `check-sync` NOTIFY
//! makes it fetch again without rebooting.

use std::collections::BTreeMap;

use super::{AuthStyle, HandsetError, HttpClient, Registration, SipRequest, Url, fault, setting};

const VENDOR: &str = "gigaset";

/// The handset line innoprov provisions (a base serves one user per MAC here).
const HANDSET: &str = "00001";

/// One Gigaset base.
pub struct GigasetBase {
    /// Its HTTP side.
    pub http: HttpClient,
    /// MAC, 12 uppercase hex digits.
    mac: String,
    /// Where the next check fetches from (a directory).
    pub server: Url,
    /// The credentials of the server URL, once a file gave them.
    pub credentials: Option<(String, String)>,
    /// `param` settings by name.
    pub settings: BTreeMap<String, String>,
    /// Handsets an `add_hs` operation opened for registration.
    pub handsets: Vec<String>,
}

impl GigasetBase {
    /// A factory-fresh base of `model` (`N870`) whose provisioning server is `server`.
    pub fn new(mac: &str, model: &str, server: Url, http: HttpClient) -> GigasetBase {
        let mac = mac.to_ascii_uppercase();
        let mut http = http;
        // The form of the Gigaset wiki's "FAQ Nx70 - User agent" (HTTP, from 2.26).
        http.user_agent = format!("Gigaset {model} IP PRO/83.V2.65.0+build.1a2b3c4;{mac};Handset=250");
        GigasetBase {
            http,
            mac,
            server,
            credentials: None,
            settings: BTreeMap::new(),
            handsets: Vec::new(),
        }
    }

    /// One provisioning run.
    pub async fn provision(&mut self) -> Result<(), HandsetError> {
        for file in ["provisioning.xml".to_string(), format!("{}.xml", self.mac)] {
            let url = self.server.join(&file);
            let found = self
                .http
                .fetch_file(VENDOR, &url, self.credentials.as_ref(), AuthStyle::Digest)
                .await?;
            if let Some(body) = found {
                self.apply(&body)?;
            }
        }
        if let Some(text) = self.settings.get("Provisioning.global.ProvisioningServer") {
            let mut url = Url::parse(text)
                .ok_or_else(|| fault(VENDOR, format!("ProvisioningServer {text:?} is not a URL")))?;
            self.credentials = url.userinfo.take();
            self.server = url;
        }
        Ok(())
    }

    fn apply(&mut self, body: &str) -> Result<(), HandsetError> {
        let doc = roxmltree::Document::parse(body).map_err(|e| fault(VENDOR, format!("not XML: {e}")))?;
        let root = doc.root_element();
        if !root.has_tag_name("provisioning") || root.attribute("productID") != Some("e2") {
            return Err(fault(VENDOR, "root is not <provisioning productID=\"e2\">"));
        }
        for nvm in root.children().filter(|n| n.has_tag_name("nvm")) {
            for node in nvm.children().filter(|n| n.is_element()) {
                match node.tag_name().name() {
                    "param" => {
                        let (Some(name), Some(value)) = (node.attribute("name"), node.attribute("value"))
                        else {
                            return Err(fault(VENDOR, "a <param> without name or value"));
                        };
                        self.settings.insert(name.to_string(), value.to_string());
                    }
                    "oper" if node.attribute("name") == Some("add_hs") => {
                        let handset = node
                            .attribute("value")
                            .ok_or_else(|| fault(VENDOR, "add_hs without a handset number"))?;
                        self.handsets.push(handset.to_string());
                    }
                    "oper" => {}
                    other => return Err(fault(VENDOR, format!("unknown element <{other}> in <nvm>"))),
                }
            }
        }
        Ok(())
    }

    /// Whether a NOTIFY makes it fetch again: `check-sync`, without a reboot unless asked.
    pub fn accepts(&self, notify: &SipRequest) -> bool {
        notify
            .headers
            .get("event")
            .is_some_and(|e| e.starts_with("check-sync"))
    }

    /// The UDP port it listens on for SIP: 5060, the base's default ("SIP port", N670 IP PRO
    /// manual); no source names a provisioning parameter that changes it, so a file cannot.
    pub fn sip_port(&self) -> Option<u16> {
        Some(5060)
    }

    /// Minutes between its periodic checks: `Provisioning.global.Period` in seconds; 0 is
    /// once a night (between 1 and 4 AM), which counts as 24 hours.
    pub fn recheck_minutes(&self) -> Option<u32> {
        let seconds: u32 = self.settings.get("Provisioning.global.Period")?.parse().ok()?;
        Some(if seconds == 0 { 24 * 60 } else { seconds / 60 })
    }

    /// Whether a server offered by DHCP (option 114) no longer moves it: never, as far as any
    /// source tells (docs/vendors/gigaset.md, "What a file cannot do"). What the file can close,
    /// it closes: SIP multicast discovery (`SystemSettings.global.SipMulticastEnabled`).
    pub fn ignores_dhcp_server(&self) -> bool {
        false
    }

    /// Whether SIP multicast discovery, which lets anyone on the LAN hand it a server, is off.
    pub fn multicast_discovery_off(&self) -> bool {
        self.settings
            .get("SystemSettings.global.SipMulticastEnabled")
            .map(String::as_str)
            == Some("0")
    }

    /// The account handset 1 would register with, through the provider its account names.
    pub fn registration(&self) -> Result<Registration, HandsetError> {
        if !self.handsets.iter().any(|h| h == HANDSET) {
            return Err(fault(VENDOR, "handset 1 was never opened for registration"));
        }
        let get = |key: &str| setting(&self.settings, VENDOR, key);
        let account = |key: &str| get(&format!("SipAccount.{HANDSET}.{key}"));
        let provider_id = account("ProviderId")?;
        let provider = |key: &str| get(&format!("SipProvider.{provider_id}.{key}"));
        let port = provider("RegServerPort")?;
        Ok(Registration {
            server: provider("RegServerAddress")?,
            port: port
                .parse()
                .map_err(|_| fault(VENDOR, format!("RegServerPort {port:?}")))?,
            // 1 UDP, 2 TCP, 3 TLS.
            tls: provider("TransportProtocol")? == "3",
            user: account("UserName")?,
            auth_user: account("AuthName")?,
            password: account("AuthPassword")?,
            display_name: account("DisplayName")?,
        })
    }
}
