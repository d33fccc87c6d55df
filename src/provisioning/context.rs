//! The template context of one phone: the Users half (account, password) and the Devices half
//! (registrar, codec, SRTP, time) merged, plus the phone's provisioning credentials.

use serde::Serialize;

use super::keys::FunctionKey;

use crate::devices::{ConfigItem, DeviceConfig, secret_purpose};
use crate::mac::Mac;
use crate::phone::PhoneRecord;
use crate::seal::{SealError, SealPurpose, Sealed, Sealer};

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
    /// Unix seconds of the last change of the file's content, rising with every change even
    /// across re-provisioning (Fanvil applies a file only when its version rises).
    pub changed_at: u64,
    /// The file name the phone asked for.
    pub file: String,
    /// The phone's own web admin.
    pub admin: Admin,
    /// The SIP account.
    pub account: Account,
    /// Codec and media security.
    pub media: Media,
    /// Time servers and zone.
    pub time: Time,
    /// Where and how the phone fetches again.
    pub prov: Prov,
    /// The PBX's phonebook as innoprov serves it to this phone.
    pub phonebook: Phonebook,
    /// The function keys, in key order (interface.md "Directory and function keys").
    pub keys: Vec<KeyView>,
}

/// Where the phone finds its remote phonebook (served with its provisioning credentials).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phonebook {
    /// The phonebook's URL: `<prov url>phonebook/<mac>/phonebook.xml`.
    pub url: String,
    /// The directory it is in, without scheme or trailing `/` (Grandstream's P331, to which the
    /// phone adds `phonebook.xml`).
    pub server_path: String,
    /// The name the phone shows for it.
    pub name: String,
    /// Minutes between refreshes: the periodic re-check's.
    pub refresh_minutes: u32,
    /// The entries themselves, for a vendor whose file carries its phonebook (Snom's `<tbook>`);
    /// empty for the others, which fetch `url`.
    pub entries: Vec<crate::pbx_users::PhonebookEntry>,
}

/// One function key as the templates write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// Its position, from 1 (key 1 is the first programmable key).
    pub n: usize,
    /// `blf`, `speed_dial`, `line` or `dnd`.
    pub kind: &'static str,
    /// The BLF target's SIP name or the number dialled; empty for line and DND.
    pub value: String,
    /// What the key shows.
    pub label: String,
}

impl KeyView {
    /// The views of `keys`, in order.
    pub fn list(keys: &[FunctionKey]) -> Vec<KeyView> {
        keys.iter()
            .enumerate()
            .map(|(index, key)| {
                let (kind, value) = match key {
                    FunctionKey::Blf { target, .. } => ("blf", target.clone()),
                    FunctionKey::SpeedDial { number, .. } => ("speed_dial", number.clone()),
                    FunctionKey::Line => ("line", String::new()),
                    FunctionKey::Dnd => ("dnd", String::new()),
                };
                KeyView {
                    n: index + 1,
                    kind,
                    value,
                    label: key.label().to_string(),
                }
            })
            .collect()
    }
}

/// The file name of a phone's phonebook under the provisioning URL.
pub fn phonebook_file(mac: &Mac) -> String {
    format!("phonebook/{mac}/phonebook.xml")
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

/// The phone's own web admin login.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Admin {
    /// User name (`admin`, as every vendor names its admin account).
    pub user: String,
    /// Devices' administrative password when deployed, else the phone's random one.
    pub password: String,
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
    /// Standard time's offset east of UTC in minutes; `None` when `tz` is absent or unusable.
    pub offset_minutes: Option<i32>,
    /// The daylight saving rule, when the zone has one in week-of-month form with whole hours
    /// 0..23 (the only form every vendor can write); `None` otherwise.
    pub dst: Option<DstRule>,
    /// Whether the zone has daylight saving time that `dst` cannot express (the files then
    /// leave the phone's DST alone rather than write a wrong rule).
    pub dst_inexpressible: bool,
    /// The zone in explicit POSIX form (`CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00`).
    pub posix_explicit: String,
    /// Snom's zone code (`GER+1`), when the zone matches one of Snom's documented codes.
    pub snom_code: String,
    /// The Gigaset Nx70's zone name (`Europe/Berlin`), when one of its named zones matches.
    pub gigaset_zone: String,
}

/// Daylight saving time as month/week/weekday rules.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DstRule {
    /// Minutes the clock goes forward.
    pub shift_minutes: i32,
    /// Start, in standard local time.
    pub start: DstPoint,
    /// End, in daylight local time.
    pub end: DstPoint,
}

/// One transition: the `weekday` (0 = Sunday) of week `week` (5 = last) of `month`, at `hour`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DstPoint {
    /// 1..12.
    pub month: u8,
    /// 1..5, 5 = the last.
    pub week: u8,
    /// 0 = Sunday .. 6 = Saturday.
    pub weekday: u8,
    /// 0..23, local time.
    pub hour: u8,
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
    /// `provisioning.trust_anchors`, each certificate as PEM (empty: the phone keeps only its
    /// built-in CAs).
    pub trust_anchors: Vec<String>,
    /// The UDP port the phone listens on for SIP: innoprov's `provisioning.notify_port`, where
    /// its resync NOTIFY goes (a Snom otherwise picks a random one).
    pub sip_port: u16,
    /// The provisioning host and path without scheme or trailing `/` (Grandstream's P237).
    pub server_path: String,
}

/// Why a phone's file cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A secret could not be opened.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A value from Users or Devices cannot be written safely (safety.rs); the phone gets no
    /// file rather than an altered one.
    #[error("{field} from {source_name} {reason}")]
    Unsafe {
        /// The field.
        field: &'static str,
        /// Users or Devices.
        source_name: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// A value as it came, after checking that it can be written as it is.
fn checked(field: &'static str, source_name: &'static str, text: &str) -> Result<String, ContextError> {
    super::safety::check_value(text).map_err(|reason| ContextError::Unsafe {
        field,
        source_name,
        reason,
    })?;
    Ok(text.to_string())
}

/// Whether Devices' administrative password can be written into every vendor's file as the
/// phone's web admin password.
pub fn usable_admin_password(password: &str) -> bool {
    (1..=32).contains(&password.len()) && password.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Model names come from the requested file name (letters and digits only).
fn clean(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

impl Time {
    /// The vendor forms of a POSIX zone; an unusable zone leaves the phone's own.
    fn from_posix(tz: &str) -> Time {
        use super::timezone::{PosixTz, TransitionDate};
        let mut time = Time {
            tz: tz.to_string(),
            utc_offset: utc_offset(tz),
            ..Time::default()
        };
        let Ok(parsed) = PosixTz::parse(tz) else {
            return time;
        };
        time.offset_minutes = Some(parsed.std_offset / 60);
        time.posix_explicit = parsed.to_posix_explicit();
        time.snom_code = super::timezone::snom_code(&parsed)
            .unwrap_or_default()
            .to_string();
        time.gigaset_zone = super::timezone::gigaset_zone(&parsed)
            .unwrap_or_default()
            .to_string();
        if let Some(dst) = &parsed.dst {
            let point = |t: &super::timezone::Transition| match t.date {
                TransitionDate::MonthWeekDay { month, week, weekday }
                    if t.time % 3600 == 0 && (0..24 * 3600).contains(&t.time) =>
                {
                    Some(DstPoint {
                        month,
                        week,
                        weekday,
                        hour: (t.time / 3600) as u8,
                    })
                }
                _ => None,
            };
            match (point(&dst.start), point(&dst.end)) {
                (Some(start), Some(end)) => {
                    time.dst = Some(DstRule {
                        shift_minutes: (dst.offset - parsed.std_offset) / 60,
                        start,
                        end,
                    })
                }
                _ => time.dst_inexpressible = true,
            }
        }
        time
    }
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
        let without_scheme = prov_url.split_once("://").map_or(prov_url, |(_, r)| r);
        PhoneContext {
            mac: String::new(),
            mac_upper: String::new(),
            vendor: vendor.to_string(),
            model: model.map(clean).unwrap_or_default(),
            version: 0,
            changed_at: 0,
            file: String::new(),
            admin: Admin::default(),
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
                url_without_scheme: without_scheme.to_string(),
                server_path: without_scheme.trim_end_matches('/').to_string(),
                https: prov_url.starts_with("https://"),
                recheck_minutes,
                sip_port: 5060,
                ..Prov::default()
            },
            phonebook: Phonebook::default(),
            keys: Vec::new(),
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
    ) -> Result<PhoneContext, ContextError> {
        let mac = record.mac;
        let mut ctx = PhoneContext::common(vendor, model, prov_url, recheck_minutes);
        ctx.mac = mac.to_string();
        ctx.mac_upper = mac.upper();
        ctx.version = record.config_version;
        ctx.changed_at = record.changed_at.max(record.provisioned_at);
        ctx.admin = Admin::of(record, sealer)?;
        ctx.account.set_users_half(record, sealer)?;
        for item in &record.configs {
            ctx.apply_devices_item(item, &mac, sealer)?;
        }
        ctx.prov.set_credentials(record, sealer)?;
        ctx.phonebook = Phonebook {
            url: format!("{prov_url}{}", phonebook_file(&mac)),
            server_path: format!("{}phonebook/{mac}", ctx.prov.url_without_scheme),
            name: "PBX".into(),
            refresh_minutes: recheck_minutes.max(60),
            entries: Vec::new(),
        };
        Ok(ctx)
    }

    /// One item of the phone's Devices configuration (PHONE, MEDIA, NTP) over the Users half;
    /// other items carry nothing the files use.
    fn apply_devices_item(
        &mut self,
        item: &ConfigItem,
        mac: &Mac,
        sealer: &Sealer,
    ) -> Result<(), ContextError> {
        let (account, media, time) = (&mut self.account, &mut self.media, &mut self.time);
        match item.typed() {
            DeviceConfig::Phone(p) => {
                if !p.gk1.is_empty() {
                    account.registrar = checked("PHONE gk1", DEVICES, &p.gk1)?;
                }
                account.registrar2 = checked("PHONE gk2", DEVICES, &p.gk2)?;
                media.codec = checked("PHONE coder", DEVICES, &p.coder)?;
                media.frame_size = p.frame_size;
                media.srtp = p.srtp_key.as_deref() != Some("4");
            }
            DeviceConfig::Media(m) => {
                media.stun_server = checked("MEDIA stunServer", DEVICES, &m.stun_server)?;
                media.turn_server = checked("MEDIA turnServer", DEVICES, &m.turn_server)?;
                media.turn_user = checked("MEDIA turnUser", DEVICES, &m.turn_user)?;
                if let Some(sealed) = item.secrets.get("turnPassword") {
                    let purpose = secret_purpose(mac, &item.key, "turnPassword");
                    media.turn_password = checked(
                        "MEDIA turnPassword",
                        DEVICES,
                        sealer.open(sealed, &purpose)?.expose(),
                    )?;
                }
            }
            DeviceConfig::Ntp(n) => {
                let tz = checked("NTP tz", DEVICES, &n.tz)?;
                *time = Time::from_posix(&tz);
                time.ntp1 = checked("NTP ntp1", DEVICES, &n.ntp1)?;
                time.ntp2 = checked("NTP ntp2", DEVICES, &n.ntp2)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Where a value of the Users half comes from, as errors name it.
const USERS: &str = "Users";
/// Where a value of the Devices half comes from, as errors name it.
const DEVICES: &str = "Devices";

/// A sealed secret of `record` opened, or empty when the record has none.
fn open_or_empty(
    sealer: &Sealer,
    sealed: &Option<Sealed>,
    purpose: SealPurpose,
) -> Result<String, SealError> {
    match sealed {
        Some(sealed) => Ok(sealer.open(sealed, &purpose)?.expose().to_string()),
        None => Ok(String::new()),
    }
}

impl Admin {
    /// The phone's web admin login: Devices' administrative password when every vendor can
    /// carry it (Grandstream P2 takes letters and digits, Yealink's `admin:<password>` no
    /// ':'), else the phone's own random one; admin::web_password tells an admin which.
    fn of(record: &PhoneRecord, sealer: &Sealer) -> Result<Admin, ContextError> {
        let mac = record.mac;
        let password = match open_or_empty(sealer, &record.admin_password, SealPurpose::AdminPassword(mac))? {
            deployed if usable_admin_password(&deployed) => deployed,
            _ => open_or_empty(sealer, &record.web_password, SealPurpose::WebPassword(mac))?,
        };
        Ok(Admin {
            user: "admin".into(),
            password,
        })
    }
}

impl Account {
    /// The Users half of the SIP account: name, user, password and the PBX's DNS name as the
    /// registrar until Devices names one.
    fn set_users_half(&mut self, record: &PhoneRecord, sealer: &Sealer) -> Result<(), ContextError> {
        let name = checked(
            "cn",
            USERS,
            if record.cn.is_empty() {
                &record.username
            } else {
                &record.cn
            },
        )?;
        self.user = checked("usename", USERS, &record.username)?;
        self.auth_user = self.user.clone();
        self.password = checked(
            "password",
            USERS,
            &open_or_empty(sealer, &record.password, SealPurpose::UserPassword(record.mac))?,
        )?;
        self.display_name = name.clone();
        self.label = name;
        self.registrar = checked("dns", USERS, &record.dns)?;
        Ok(())
    }
}

impl Prov {
    /// The phone's own provisioning credentials, and the fetch URL carrying them.
    fn set_credentials(&mut self, record: &PhoneRecord, sealer: &Sealer) -> Result<(), ContextError> {
        self.username = record.prov_username.clone();
        self.password = open_or_empty(
            sealer,
            &record.prov_password,
            SealPurpose::ProvPassword(record.mac),
        )?;
        self.url_with_credentials = format!(
            "{}://{}:{}@{}",
            if self.https { "https" } else { "http" },
            percent_encode(&self.username),
            percent_encode(&self.password),
            self.url_without_scheme
        );
        Ok(())
    }
}

/// Everything but RFC 3986's unreserved characters is encoded in user info.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters (RFC 3986), for user info in a URL.
fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("a b/ü:@%"), "a%20b%2F%C3%BC%3A%40%25");
    }

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
    fn unsafe_values_are_refused_not_altered() {
        assert!(checked("cn", "Users", "Alice\naccount.1.password = x").is_err());
        assert_eq!(checked("cn", "Users", "Alice & Bob").unwrap(), "Alice & Bob");
        assert_eq!(clean("T46U/../x"), "T46Ux");
        assert_eq!(percent_encode("a b:@"), "a%20b%3A%40");
    }

    #[test]
    fn zones_in_vendor_forms() {
        let berlin = Time::from_posix("CET-1CEST-2,M3.5.0/2,M10.5.0/3");
        assert_eq!(berlin.offset_minutes, Some(60));
        let dst = berlin.dst.unwrap();
        assert_eq!(
            (
                dst.shift_minutes,
                dst.start.month,
                dst.start.week,
                dst.start.weekday,
                dst.start.hour
            ),
            (60, 3, 5, 0, 2)
        );
        assert_eq!((dst.end.month, dst.end.hour), (10, 3));
        assert_eq!(berlin.snom_code, "GER+1");
        assert_eq!(berlin.gigaset_zone, "Europe/Berlin");
        assert_eq!(
            Time::from_posix("EST5EDT,M3.2.0,M11.1.0").gigaset_zone,
            "America/New_York"
        );
        assert_eq!(
            Time::from_posix("<+0530>-5:30").gigaset_zone,
            "",
            "no named zone: left to the base"
        );
        let kolkata = Time::from_posix("IST-5:30");
        assert_eq!(
            (
                kolkata.offset_minutes,
                kolkata.dst.is_none(),
                kolkata.dst_inexpressible
            ),
            (Some(330), true, false)
        );
        let odd = Time::from_posix("XXX3YYY,J60/2,300");
        assert!(odd.dst.is_none() && odd.dst_inexpressible);
        let bad = Time::from_posix("garbage");
        assert_eq!((bad.offset_minutes, bad.posix_explicit.as_str()), (None, ""));
    }
}
