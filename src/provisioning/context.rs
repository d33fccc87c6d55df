//! The template context of one phone: the Users half (account, password) and the Devices half
//! (registrar, codec, SRTP, time) merged, plus the phone's provisioning credentials.

use serde::Serialize;

use crate::devices::{DeviceConfig, secret_purpose};
use crate::phone::{PhoneRecord, prov_password_purpose, user_password_purpose};
use crate::seal::{SealError, Sealer};

/// SIP over TLS, as the Users service sets up the phone's device ("TLS only").
pub const SIP_TLS_PORT: u16 = 5061;

/// Everything a template may use.
#[derive(Debug, Clone, Serialize)]
pub struct PhoneContext {
    /// MAC, lowercase.
    pub mac: String,
    /// MAC, uppercase.
    #[serde(rename = "MAC")]
    pub mac_upper: String,
    /// Vendor name.
    pub vendor: String,
    /// Model from the file name, if any.
    pub model: String,
    /// The stored configuration version (changes with every Devices update).
    pub version: u64,
    /// The SIP account.
    pub account: Account,
    /// Codec and media security.
    pub media: Media,
    /// Time servers and zone.
    pub time: Time,
    /// Where and how the phone fetches again.
    pub prov: Prov,
}

/// The SIP account.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Account {
    /// SIP user name.
    pub user: String,
    /// Authentication name.
    pub auth_user: String,
    /// The user's password.
    pub password: String,
    /// Display name.
    pub display_name: String,
    /// Line label.
    pub label: String,
    /// Registrar: Devices' `gk1`, else the PBX DNS name.
    pub registrar: String,
    /// Second registrar (`gk2`), may be empty.
    pub registrar2: String,
    /// SIP port (TLS).
    pub port: u16,
}

/// Codec and media security.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Media {
    /// Devices' `coder` (G711A, G711u, G722, OPUS-NB, OPUS-WB), may be empty.
    pub codec: String,
    /// Frame size in ms.
    pub frame_size: Option<u32>,
    /// SRTP offered.
    pub srtp: bool,
    /// SRTP required.
    pub srtp_required: bool,
    /// STUN server.
    pub stun_server: String,
    /// TURN server.
    pub turn_server: String,
    /// TURN user.
    pub turn_user: String,
    /// TURN password.
    pub turn_password: String,
}

/// Time settings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Time {
    /// First NTP server.
    pub ntp1: String,
    /// Second NTP server.
    pub ntp2: String,
    /// POSIX time zone.
    pub tz: String,
    /// UTC offset from `tz`, e.g. `+1`, `-5`, `+5:30`; empty when unknown.
    pub utc_offset: String,
}

/// Provisioning of the phone itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Prov {
    /// URL of the directory the phone fetches from, ending in `/`.
    pub url: String,
    /// The same with the credentials in it (`https://user:pass@host/...`), for vendors that
    /// take them that way.
    pub url_with_credentials: String,
    /// The URL without `scheme://`.
    pub url_without_scheme: String,
    /// Whether `url` is HTTPS.
    pub https: bool,
    /// The phone's provisioning user name.
    pub username: String,
    /// The phone's provisioning password.
    pub password: String,
    /// Minutes between periodic re-checks.
    pub recheck_minutes: u32,
}

/// Removes control characters: values come from Users and Devices, and a newline would let a
/// value add keys to a `key = value` file.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// `+1` for `CET-1CEST,...`: POSIX offsets count west, phones count east.
pub fn utc_offset(tz: &str) -> String {
    let rest = if let Some(quoted) = tz.strip_prefix('<') {
        quoted.split_once('>').map(|(_, r)| r).unwrap_or("")
    } else {
        tz.trim_start_matches(|c: char| c.is_ascii_alphabetic())
    };
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'-') => ('+', &rest[1..]),
        Some(b'+') => ('-', &rest[1..]),
        Some(b) if b.is_ascii_digit() => ('-', rest),
        _ => return String::new(),
    };
    let offset: String = digits
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .collect();
    let offset = offset.trim_end_matches(":00").trim_end_matches(":00");
    if offset.is_empty() {
        return String::new();
    }
    if offset.trim_start_matches('0').is_empty() {
        return "0".into();
    }
    format!("{sign}{}", offset.trim_start_matches('0'))
}

impl PhoneContext {
    /// The context of a model-wide file: no phone, no secrets.
    pub fn common(vendor: &str, model: Option<&str>, prov_url: &str, recheck_minutes: u32) -> PhoneContext {
        PhoneContext {
            mac: String::new(),
            mac_upper: String::new(),
            vendor: vendor.to_string(),
            model: model.map(clean).unwrap_or_default(),
            version: 0,
            account: Account {
                port: SIP_TLS_PORT,
                ..Account::default()
            },
            media: Media {
                srtp: true,
                ..Media::default()
            },
            time: Time::default(),
            prov: Prov {
                url: prov_url.to_string(),
                url_without_scheme: prov_url
                    .split_once("://")
                    .map_or(prov_url, |(_, r)| r)
                    .to_string(),
                https: prov_url.starts_with("https://"),
                recheck_minutes,
                ..Prov::default()
            },
        }
    }

    /// The context for `record` as `vendor`/`model`, fetching from `prov_url` (ending in `/`).
    pub fn build(
        record: &PhoneRecord,
        sealer: &Sealer,
        vendor: &str,
        model: Option<&str>,
        prov_url: &str,
        recheck_minutes: u32,
    ) -> Result<PhoneContext, SealError> {
        let mac = record.mac;
        let open = |sealed: &Option<crate::seal::Sealed>, purpose: String| -> Result<String, SealError> {
            match sealed {
                Some(sealed) => Ok(sealer.open(sealed, &purpose)?.expose().to_string()),
                None => Ok(String::new()),
            }
        };
        let mut ctx = PhoneContext::common(vendor, model, prov_url, recheck_minutes);
        ctx.mac = mac.to_string();
        ctx.mac_upper = mac.upper();
        ctx.version = record.config_version;
        let name = clean(if record.cn.is_empty() {
            &record.username
        } else {
            &record.cn
        });
        let account = &mut ctx.account;
        account.user = clean(&record.username);
        account.auth_user = clean(&record.username);
        account.password = clean(&open(&record.password, user_password_purpose(&mac))?);
        account.display_name = name.clone();
        account.label = name;
        account.registrar = clean(&record.dns);
        let (media, time) = (&mut ctx.media, &mut ctx.time);
        for item in &record.configs {
            match item.typed() {
                DeviceConfig::Phone(p) => {
                    if !p.gk1.is_empty() {
                        account.registrar = clean(&p.gk1);
                    }
                    account.registrar2 = clean(&p.gk2);
                    media.codec = clean(&p.coder);
                    media.frame_size = p.frame_size;
                    media.srtp = p.srtp_key.as_deref() != Some("4");
                }
                DeviceConfig::Media(m) => {
                    media.stun_server = clean(&m.stun_server);
                    media.turn_server = clean(&m.turn_server);
                    media.turn_user = clean(&m.turn_user);
                    if let Some(sealed) = item.secrets.get("turnPassword") {
                        let purpose = secret_purpose(&mac, &item.key, "turnPassword");
                        media.turn_password = clean(sealer.open(sealed, &purpose)?.expose());
                    }
                }
                DeviceConfig::Ntp(n) => {
                    time.ntp1 = clean(&n.ntp1);
                    time.ntp2 = clean(&n.ntp2);
                    time.tz = clean(&n.tz);
                    time.utc_offset = utc_offset(&n.tz);
                }
                _ => {}
            }
        }
        let prov = &mut ctx.prov;
        prov.username = clean(&record.prov_username);
        prov.password = clean(&open(&record.prov_password, prov_password_purpose(&mac))?);
        prov.url_with_credentials = format!(
            "{}://{}:{}@{}",
            if prov.https { "https" } else { "http" },
            percent_encode(&prov.username),
            percent_encode(&prov.password),
            prov.url_without_scheme
        );
        Ok(ctx)
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for user info in a URL.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_offsets_from_posix_zones() {
        assert_eq!(utc_offset("CET-1CEST-2,M3.5.0/2,M10.5.0/3"), "+1");
        assert_eq!(utc_offset("EST5EDT,M3.2.0,M11.1.0"), "-5");
        assert_eq!(utc_offset("<+0530>-5:30"), "+5:30");
        assert_eq!(utc_offset("UTC0"), "0");
        assert_eq!(utc_offset(""), "");
        assert_eq!(utc_offset("garbage"), "");
    }

    #[test]
    fn control_characters_cannot_inject_keys() {
        assert_eq!(
            clean("Alice\naccount.1.password = x"),
            "Aliceaccount.1.password = x"
        );
        assert_eq!(percent_encode("a b:@"), "a%20b%3A%40");
    }
}
