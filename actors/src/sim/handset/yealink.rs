//! A Yealink T4x/T5x on firmware V81+, as docs/vendors/yealink.md describes it: `<mac>.boot`,
//! else `y000000000000.boot`, then every `include:config` file in order; with no boot file at
//! all, the V7x order `y0000000000XX.cfg` then `<mac>.cfg`. A missing `.cfg` is asked for three
//! times and skipped. Settings are `key = value` lines after `#!version:1.0.0.1`; the file's
//! `static.auto_provision.server.*` keys say where and as whom the next check fetches. A
//! NOTIFY `check-sync` makes it check again (`sip.notify_reboot_enable = 0`: no reboot unless
//! the event says `reboot=true`).

use std::collections::BTreeMap;

use super::{
    AuthStyle, EmulatedKey, HandsetError, HttpClient, Registration, SipRequest, Url, fault, setting,
};

const VENDOR: &str = "yealink";

/// One Yealink phone.
pub struct YealinkPhone {
    /// Its HTTP side.
    pub http: HttpClient,
    /// MAC, 12 lowercase hex digits.
    mac: String,
    /// The common-file code of its model (`108` for a T46U).
    model_code: String,
    /// Its model (`T46U`): how many line keys it has and which expansion modules it takes.
    model: String,
    /// Where the next check fetches from (DHCP option 66 at first, then the file's URL).
    pub server: Url,
    /// The credentials the files gave it.
    pub credentials: Option<(String, String)>,
    /// Every setting applied, by key.
    pub settings: BTreeMap<String, String>,
    /// The custom CAs installed from `static.trusted_certificates.url` (DER).
    pub trusted_cas: Vec<Vec<u8>>,
}

impl YealinkPhone {
    /// A factory-fresh phone told `server` by DHCP.
    pub fn new(
        mac: &str,
        model: &str,
        model_code: &str,
        firmware: &str,
        server: Url,
        http: HttpClient,
    ) -> YealinkPhone {
        let colons: Vec<String> = mac
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let mut http = http;
        http.user_agent = format!("Yealink SIP-{model} {firmware} {}", colons.join(":"));
        YealinkPhone {
            http,
            mac: mac.to_ascii_lowercase(),
            model_code: model_code.to_string(),
            model: model.to_ascii_uppercase(),
            server,
            credentials: None,
            settings: BTreeMap::new(),
            trusted_cas: Vec::new(),
        }
    }

    async fn fetch(&self, url: &Url) -> Result<Option<String>, HandsetError> {
        self.http
            .fetch_file(VENDOR, url, self.credentials.as_ref(), AuthStyle::Digest)
            .await
    }

    /// A `.cfg` as the phone asks for it: three tries, then skipped.
    async fn fetch_cfg(&self, url: &Url) -> Result<Option<String>, HandsetError> {
        for _ in 0..3 {
            if let Some(body) = self.fetch(url).await? {
                return Ok(Some(body));
            }
        }
        Ok(None)
    }

    /// One provisioning run (boot, periodic check, or after check-sync).
    pub async fn provision(&mut self) -> Result<(), HandsetError> {
        let server = self.server.clone();
        let boot = match self.fetch(&server.join(&format!("{}.boot", self.mac))).await? {
            Some(boot) => Some(boot),
            None => self.fetch(&server.join("y000000000000.boot")).await?,
        };
        let files: Vec<String> = match boot {
            Some(boot) => parse_boot(&boot)?,
            None => vec![
                format!("y000000000{:0>3}.cfg", self.model_code),
                format!("{}.cfg", self.mac),
            ],
        };
        // Settings apply after every download is done (docs: "applied after all downloads").
        let mut downloaded = Vec::new();
        for file in files {
            if let Some(body) = self.fetch_cfg(&server.join(&file)).await? {
                downloaded.push(parse_cfg(&body)?);
            }
        }
        for settings in downloaded {
            self.settings.extend(settings);
        }
        if let Some(url) = self.settings.get("static.auto_provision.server.url") {
            self.server = Url::parse(url).ok_or_else(|| fault(VENDOR, format!("server URL {url:?}")))?;
        }
        let user = self.settings.get("static.auto_provision.server.username");
        let pass = self.settings.get("static.auto_provision.server.password");
        if let (Some(user), Some(pass)) = (user, pass) {
            self.credentials = Some((user.clone(), pass.clone()));
        }
        self.install_trusted_certificates().await
    }

    /// `static.trusted_certificates.url`: the CAs downloaded and added to the custom ones;
    /// certificate checking itself must stay on (`static.security.trust_certificates` 1).
    async fn install_trusted_certificates(&mut self) -> Result<(), HandsetError> {
        let Some(url) = self
            .settings
            .get("static.trusted_certificates.url")
            .filter(|u| !u.is_empty())
        else {
            return Ok(());
        };
        if self
            .settings
            .get("static.security.trust_certificates")
            .map(String::as_str)
            == Some("0")
        {
            return Err(fault(VENDOR, "certificate checking switched off"));
        }
        let url =
            Url::parse(url).ok_or_else(|| fault(VENDOR, format!("trusted certificates URL {url:?}")))?;
        let pem = self
            .fetch(&url)
            .await?
            .ok_or_else(|| fault(VENDOR, "the trusted certificates URL answers 404"))?;
        self.trusted_cas = super::pem_certificates(VENDOR, &pem)?;
        Ok(())
    }

    /// Whether a NOTIFY makes it check again (and not reboot).
    pub fn accepts(&self, notify: &SipRequest) -> bool {
        let event = notify
            .headers
            .get("event")
            .map(String::as_str)
            .unwrap_or_default();
        let reboot_policy = self.settings.get("sip.notify_reboot_enable").map(String::as_str);
        event.starts_with("check-sync") && reboot_policy == Some("0") && !event.contains("reboot=true")
    }

    /// The UDP port it listens on for SIP: `sip.listen_port`, else its default 5060.
    pub fn sip_port(&self) -> Option<u16> {
        Some(
            self.settings
                .get("sip.listen_port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(5060),
        )
    }

    /// Minutes between its periodic checks, when `static.auto_provision.repeat.enable` is on.
    pub fn recheck_minutes(&self) -> Option<u32> {
        (self
            .settings
            .get("static.auto_provision.repeat.enable")
            .map(String::as_str)
            == Some("1"))
        .then(|| {
            self.settings
                .get("static.auto_provision.repeat.minutes")?
                .parse()
                .ok()
        })
        .flatten()
    }

    /// Whether a server offered in DHCP option 66 is ignored (the file turned the option off).
    pub fn ignores_dhcp_server(&self) -> bool {
        self.settings
            .get("static.auto_provision.dhcp_option.enable")
            .map(String::as_str)
            == Some("0")
    }

    /// The account it would register with, if complete and over TLS.
    pub fn registration(&self) -> Result<Registration, HandsetError> {
        let get = |key: &str| setting(&self.settings, VENDOR, key);
        if get("account.1.enable")? != "1" {
            return Err(fault(VENDOR, "account 1 disabled"));
        }
        Ok(Registration {
            server: get("account.1.sip_server.1.address")?,
            port: get("account.1.sip_server.1.port")?
                .parse()
                .map_err(|_| fault(VENDOR, "bad port"))?,
            tls: get("account.1.sip_server.1.transport_type")? == "2",
            user: get("account.1.user_name")?,
            auth_user: get("account.1.auth_name")?,
            password: get("account.1.password")?,
            display_name: get("account.1.display_name")?,
        })
    }
}

/// Line keys, keys per expansion module and modules, per model (directory-and-keys.md,
/// "Yealink": the [F-Y] comment and Wazo's counts; EXP43/EXP50 on the T46U/T48U/T5x, EXP40 on
/// the T46S/T48S). A model the notes do not count has no keys here.
fn key_counts(model: &str) -> (u32, u32, u32) {
    match model {
        "T41S" | "T41U" | "T42S" | "T42U" => (15, 0, 0),
        "T46S" => (27, 40, 6),
        "T46U" | "T54W" => (27, 60, 3),
        "T48S" => (29, 40, 6),
        "T48U" | "T57W" => (29, 60, 3),
        _ => (0, 0, 0),
    }
}

impl YealinkPhone {
    /// The keys it shows: `linekey.N.*` up to its line key count, then
    /// `expansion_module.X.key.Y.*` for its modules; type 0 (or none) is an unused key.
    pub fn function_keys(&self) -> Vec<EmulatedKey> {
        let (line_keys, per_module, modules) = key_counts(&self.model);
        let registrar = self
            .settings
            .get("account.1.sip_server.1.address")
            .cloned()
            .unwrap_or_default();
        let own = (1..=line_keys).map(|n| (format!("linekey.{n}"), None));
        let module_keys = (1..=modules)
            .flat_map(|x| (1..=per_module).map(move |y| (format!("expansion_module.{x}.key.{y}"), Some(x))));
        own.chain(module_keys)
            .filter_map(|(prefix, module)| {
                let get = |what: &str| {
                    self.settings
                        .get(&format!("{prefix}.{what}"))
                        .cloned()
                        .unwrap_or_default()
                };
                let (value, label) = (get("value"), get("label"));
                let key = match get("type").as_str() {
                    "" | "0" => return None,
                    "15" => EmulatedKey::new("line", "", &label),
                    "16" => EmulatedKey::blf(&value, &label, &registrar),
                    "13" => EmulatedKey::new("speed_dial", &value, &label),
                    "5" => EmulatedKey::new("dnd", "", &label),
                    other => EmulatedKey::new(&format!("other:{other}"), &value, &label),
                };
                Some(match module {
                    Some(x) => key.on_module(x),
                    None => key,
                })
            })
            .collect()
    }
}

/// The files a boot file includes, in order (`include:config <f>` or `"f"`).
fn parse_boot(text: &str) -> Result<Vec<String>, HandsetError> {
    let mut lines = text.lines();
    if lines.next() != Some("#!version:1.0.0.1") {
        return Err(fault(VENDOR, "boot file without #!version:1.0.0.1"));
    }
    let mut files = Vec::new();
    for line in lines {
        if let Some(rest) = line.trim().strip_prefix("include:config") {
            let name = rest.trim().trim_matches(|c| c == '"' || c == '<' || c == '>');
            if !name.ends_with(".cfg") {
                return Err(fault(VENDOR, format!("include of a non-.cfg file {name:?}")));
            }
            files.push(name.to_string());
        }
    }
    Ok(files)
}

/// A `.cfg`: `#!version:1.0.0.1`, then `key = value` lines and `#` comments.
fn parse_cfg(text: &str) -> Result<BTreeMap<String, String>, HandsetError> {
    let mut lines = text.lines();
    if lines.next() != Some("#!version:1.0.0.1") {
        return Err(fault(VENDOR, "configuration file without #!version:1.0.0.1"));
    }
    let mut settings = BTreeMap::new();
    for line in lines {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| fault(VENDOR, format!("not key = value: {line:?}")))?;
        settings.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(settings)
}

/// A factory-fresh Yealink asking RPS where its provisioning server is
/// (docs/redirect/yealink.md §3): `GET <rps>service.do?method=redirect&mac=<AA-BB-CC-DD-EE-FF>`;
/// a 3xx names the server in `Location` (user and password, when the URL carries them, are
/// split off by the phone: not followed here). `None` when RPS does not know the phone.
pub async fn ask_rps(mac: &str, rps: &Url, http: &HttpClient) -> Result<Option<Url>, HandsetError> {
    let upper = mac.to_ascii_uppercase();
    let dashed: Vec<&str> = (0..6).filter_map(|i| upper.get(2 * i..2 * i + 2)).collect();
    let question = rps.join(&format!("service.do?method=redirect&mac={}", dashed.join("-")));
    let answer = http
        .get(&question, None, super::AuthStyle::Basic)
        .await
        .map_err(|e| fault(VENDOR, format!("RPS: {e}")))?;
    match answer.status {
        300..=399 => {
            let location = answer
                .headers
                .get("location")
                .ok_or_else(|| fault(VENDOR, "RPS redirect without Location"))?;
            Url::parse(location)
                .map(Some)
                .ok_or_else(|| fault(VENDOR, format!("RPS sent an unusable URL {location:?}")))
        }
        404 => Ok(None),
        other => Err(fault(VENDOR, format!("RPS answered {other}"))),
    }
}
