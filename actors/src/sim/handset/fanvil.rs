//! A Fanvil X-series on firmware 2.x, as docs/vendors/fanvil.md describes it: the common file
//! (`f0<Model>hw1.100.cfg`) while `Download CommonConf` is on, then `<mac>.cfg`; a 404 on the
//! common file does not stop the run. A file is `<<VOIP CONFIG FILE>>Version:<n>`, `<... MODULE>`
//! sections of `Key :Value` lines, and `<<END OF FILE>>`; it is applied only when its version
//! is higher than the running one. The `<AUTOUPDATE CONFIG MODULE>` keys drive the next check
//! (HTTP Basic with `Default Username` / `Default Password`). It resyncs on `check-sync`.

use std::collections::BTreeMap;

use super::{
    AuthStyle, EmulatedKey, HandsetError, HttpClient, Registration, SipRequest, Url, fault, setting,
};

const VENDOR: &str = "fanvil";

/// One Fanvil phone.
pub struct FanvilPhone {
    /// Its HTTP side.
    pub http: HttpClient,
    /// MAC, 12 lowercase hex digits.
    mac: String,
    /// Model as in the common file name (`X4`).
    model: String,
    /// Where the next check fetches from.
    pub server: Url,
    /// Default Username / Default Password.
    pub credentials: Option<(String, String)>,
    /// The running configuration version (the version gate).
    pub version: f64,
    /// How many files were refused by the version gate.
    pub refused_by_version: u32,
    /// Settings as `<MODULE> Key`.
    pub settings: BTreeMap<String, String>,
}

/// The module of the auto-provisioning keys.
const AUTOUPDATE: &str = "<AUTOUPDATE CONFIG MODULE>";
/// The module of the DSS keys.
const DSSKEY: &str = "<DSSKEY CONFIG MODULE>";
/// The module of line 1.
const SIP: &str = "<SIP CONFIG MODULE>";

impl FanvilPhone {
    /// A factory-fresh phone whose flash holds `server`.
    pub fn new(mac: &str, model: &str, server: Url, http: HttpClient) -> FanvilPhone {
        let mac = mac.to_ascii_lowercase();
        let mut http = http;
        http.user_agent = format!("Fanvil {model} 2.10.2.6887 {mac}");
        FanvilPhone {
            http,
            mac,
            model: model.to_string(),
            server,
            credentials: None,
            version: 0.0,
            refused_by_version: 0,
            settings: BTreeMap::new(),
        }
    }

    fn get(&self, module: &str, key: &str) -> Option<&String> {
        self.settings.get(&format!("{module} {key}"))
    }

    /// One provisioning run.
    pub async fn provision(&mut self) -> Result<(), HandsetError> {
        let server = self.server.clone();
        let mut files = Vec::new();
        if self.get(AUTOUPDATE, "Download CommonConf").map(String::as_str) != Some("0") {
            files.push(format!("f0{}hw1.100.cfg", self.model));
        }
        files.push(format!("{}.cfg", self.mac));
        for file in files {
            let url = server.join(&file);
            let found = self
                .http
                .fetch_file(VENDOR, &url, self.credentials.as_ref(), AuthStyle::Basic)
                .await?;
            if let Some(body) = found {
                self.apply(&body)?;
            }
        }
        let protocol = self.get(AUTOUPDATE, "Flash Protocol").cloned();
        if let Some(url) = self.get(AUTOUPDATE, "Flash Server IP").cloned() {
            let url = Url::parse(&url).ok_or_else(|| fault(VENDOR, format!("Flash Server IP {url:?}")))?;
            let expected = match protocol.as_deref() {
                Some("4") => "http",
                Some("5") => "https",
                other => return Err(fault(VENDOR, format!("Flash Protocol {other:?} is not HTTP(S)"))),
            };
            if url.scheme != expected {
                return Err(fault(VENDOR, "Flash Protocol and the server URL disagree"));
            }
            self.server = url;
        }
        let user = self.get(AUTOUPDATE, "Default Username").cloned();
        let pass = self.get(AUTOUPDATE, "Default Password").cloned();
        if let (Some(user), Some(pass)) = (user, pass) {
            self.credentials = Some((user, pass));
        }
        Ok(())
    }

    fn apply(&mut self, body: &str) -> Result<(), HandsetError> {
        let mut lines = body.lines();
        let version: f64 = lines
            .next()
            .and_then(|l| l.strip_prefix("<<VOIP CONFIG FILE>>Version:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| fault(VENDOR, "no <<VOIP CONFIG FILE>>Version: line"))?;
        let mut module = String::new();
        let mut settings = BTreeMap::new();
        let mut ended = false;
        for line in lines {
            if line == "<<END OF FILE>>" {
                ended = true;
                break;
            }
            if line.starts_with('<') && line.ends_with("MODULE>") {
                module = line.to_string();
                continue;
            }
            let (key, value) = line
                .split_once(':')
                .ok_or_else(|| fault(VENDOR, format!("not Key :Value: {line:?}")))?;
            let key = key.trim();
            // A line's keys follow their list's marker, as in a factory export.
            let marker = match key {
                k if k.starts_with("SIP1 ") && module == SIP => Some("--SIP Line List--"),
                k if k.starts_with("Account1 ") && module == "<MMI CONFIG MODULE>" => Some("--MMI Account--"),
                k if k.starts_with("Fkey") && module == DSSKEY => Some("--Dsskey Config1--"),
                _ => None,
            };
            if let Some(marker) = marker
                && !settings.contains_key(&format!("{module} {marker}"))
            {
                return Err(fault(VENDOR, format!("{key} before the {marker} marker")));
            }
            settings.insert(format!("{module} {key}"), value.trim().to_string());
        }
        if !ended {
            return Err(fault(VENDOR, "no <<END OF FILE>>"));
        }
        if version <= self.version {
            self.refused_by_version += 1;
            return Ok(());
        }
        self.version = version;
        self.settings.extend(settings);
        Ok(())
    }

    /// Whether a NOTIFY makes it fetch again.
    pub fn accepts(&self, notify: &SipRequest) -> bool {
        notify.headers.get("event").map(String::as_str) == Some("check-sync")
    }

    /// The UDP port it listens on for SIP: `SIP  Port` of the SIP module, else 5060.
    pub fn sip_port(&self) -> Option<u16> {
        Some(
            self.get(SIP, "SIP  Port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(5060),
        )
    }

    /// Minutes between its periodic checks: `Flash Interval` hours, when `Flash Mode` is 2
    /// (periodic; 1 checks at power-on only: Tancredi's "Fanvil: use provisioning_freq").
    pub fn recheck_minutes(&self) -> Option<u32> {
        (self.get(AUTOUPDATE, "Flash Mode").map(String::as_str) == Some("2"))
            .then(|| self.get(AUTOUPDATE, "Flash Interval")?.parse::<u32>().ok())
            .flatten()
            .map(|hours| hours * 60)
    }

    /// Whether a server offered in DHCP option 66 is ignored: `DHCP Option` is 0 (66 would use
    /// it) and PnP is off.
    pub fn ignores_dhcp_server(&self) -> bool {
        self.get("<NET CONFIG MODULE>", "DHCP Option").map(String::as_str) == Some("0")
            && self.get(AUTOUPDATE, "PNP Enable").map(String::as_str) == Some("0")
    }

    /// The account it would register with.
    pub fn registration(&self) -> Result<Registration, HandsetError> {
        let get = |key: &str| setting(&self.settings, VENDOR, &format!("{SIP} {key}"));
        if get("SIP1 Enable Reg")? != "1" {
            return Err(fault(VENDOR, "line 1 does not register"));
        }
        Ok(Registration {
            server: get("SIP1 Register Addr")?,
            port: get("SIP1 Register Port")?
                .parse()
                .map_err(|_| fault(VENDOR, "bad port"))?,
            tls: get("SIP1 Transport")? == "3",
            user: get("SIP1 Phone Number")?,
            auth_user: get("SIP1 Register User")?,
            password: get("SIP1 Register Pswd")?,
            display_name: get("SIP1 Display Name")?,
        })
    }

    /// The DSS keys it shows, `Fkey1` on until the first without a type (directory-and-keys.md,
    /// "Fanvil"): type 1 memory keys `<target>@<line>/b` (BLF) or `/f` (speed dial), 2 a line,
    /// 3 a key event. No source gives the module keys, so every key is the phone's own.
    pub fn function_keys(&self) -> Vec<EmulatedKey> {
        let registrar = self.get(SIP, "SIP1 Register Addr").cloned().unwrap_or_default();
        let mut keys = Vec::new();
        for n in 1.. {
            let Some(kind) = self.get(DSSKEY, &format!("Fkey{n} Type")) else {
                break;
            };
            let value = self
                .get(DSSKEY, &format!("Fkey{n} Value"))
                .cloned()
                .unwrap_or_default();
            let label = self
                .get(DSSKEY, &format!("Fkey{n} Title"))
                .cloned()
                .unwrap_or_default();
            let memory = value.rsplit_once('@');
            keys.push(match (kind.as_str(), memory) {
                ("0", _) => continue,
                ("1", Some((target, "1/b"))) => EmulatedKey::blf(target, &label, &registrar),
                ("1", Some((number, "1/f"))) => EmulatedKey::new("speed_dial", number, &label),
                ("2", _) if value == "SIP1" => EmulatedKey::new("line", "", &label),
                ("3", _) if value == "F_DND" => EmulatedKey::new("dnd", "", &label),
                (other, _) => EmulatedKey::new(&format!("other:{other} {value}"), "", &label),
            });
        }
        keys
    }
}

/// A factory-fresh Fanvil asking FDPS where its provisioning server is. Fanvil documents only
/// that FDPS answers with a configuration file carrying the server's parameters
/// (docs/redirect/fanvil-poly-grandstream.md §4, [FDPSG]); the request's form is unsettled, so
/// the phone asks `GET <fdps><mac>.cfg` as it asks any provisioning server and reads the
/// file's `Flash Server IP` and `Flash Protocol` as it reads its own. `None` when FDPS does
/// not know the phone.
pub async fn ask_fdps(mac: &str, fdps: &Url, http: &HttpClient) -> Result<Option<Url>, HandsetError> {
    let mut asking = FanvilPhone::new(mac, "X4", fdps.clone(), http.clone());
    let answer = http
        .get(&fdps.join(&format!("{}.cfg", asking.mac)), None, AuthStyle::Basic)
        .await
        .map_err(|e| fault(VENDOR, format!("FDPS: {e}")))?;
    match answer.status {
        200 => {}
        404 => return Ok(None),
        other => return Err(fault(VENDOR, format!("FDPS answered {other}"))),
    }
    asking.apply(&answer.body)?;
    let server = asking
        .get(AUTOUPDATE, "Flash Server IP")
        .cloned()
        .ok_or_else(|| fault(VENDOR, "FDPS sent no Flash Server IP"))?;
    let url = Url::parse(&server).ok_or_else(|| fault(VENDOR, format!("FDPS sent {server:?}")))?;
    let expected = match asking.get(AUTOUPDATE, "Flash Protocol").map(String::as_str) {
        Some("4") => "http",
        Some("5") => "https",
        other => return Err(fault(VENDOR, format!("FDPS Flash Protocol {other:?}"))),
    };
    if url.scheme != expected {
        return Err(fault(VENDOR, "FDPS: Flash Protocol and the server URL disagree"));
    }
    Ok(Some(url))
}
