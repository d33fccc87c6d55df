//! innovaphone Devices configuration items (devices-sysclient.md §3), as a 3rd-party sysclient
//! receives them in 0x0006 messages: typed views of the known types, every field kept (also
//! unknown types and fields), encrypted secrets decrypted with the sysclient password and sealed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mac::Mac;
use crate::seal::{Sealed, Sealer, Secret};
use crate::sysclient;

/// One configuration item as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigItem {
    /// What identifies the item for updates: its `id` as text, else `type:<type>`.
    pub key: String,
    /// `type`: PHONE, MEDIA, NTP, TLS_PROFILE, ALARM_SERVER, FXS_PHONE, or a newer one.
    pub kind: String,
    /// The object as received, less its encrypted secrets and their seeds.
    pub body: JsonObject,
    /// Decrypted secrets (`turnPassword`, `logPassword`), sealed for this phone and item.
    #[serde(default)]
    pub secrets: BTreeMap<String, Sealed>,
}

/// A JSON object kept as its compact text. Every phone's job keeps its configuration in
/// memory, and a parsed map costs several times its text: 7.8 KiB per phone for the four items
/// of the spec's example configuration, measured over 10,000 phones. Stored as the same JSON
/// object it always was.
#[derive(Clone)]
pub struct JsonObject(Box<serde_json::value::RawValue>);

impl JsonObject {
    /// The compact text of `map`.
    pub fn from_map(map: &Map<String, Value>) -> JsonObject {
        match serde_json::value::to_raw_value(map) {
            Ok(raw) => JsonObject(raw),
            // A map of JSON values always serialises; keep an empty object if it ever does not.
            Err(_) => JsonObject::from_map(&Map::new()),
        }
    }

    /// The object, parsed.
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }

    /// The compact JSON text.
    pub fn text(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for JsonObject {
    fn eq(&self, other: &JsonObject) -> bool {
        // Both sides are written by `from_map` in the members' order as received.
        self.text() == other.text()
    }
}

impl std::fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

impl Serialize for JsonObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<JsonObject, D::Error> {
        // Through a map: a stored body must be an object, and is re-written compactly.
        Map::<String, Value>::deserialize(deserializer).map(|map| JsonObject::from_map(&map))
    }
}

/// The encrypted members of a configuration and the seed member each is encrypted with.
const SECRET_FIELDS: [(&str, &str); 2] = [("turnPassword", "turnSeed"), ("logPassword", "logSeed")];

/// What one 0x0006 message carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigurationMessage {
    /// The configuration object, if any (a lone `{"last":true}` carries none).
    pub config: Option<Map<String, Value>>,
    /// Whether this message completes the configuration.
    pub last: bool,
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigItemError {
    /// Neither a `config` object nor `last`.
    #[error("configuration message without a config object")]
    NoConfig,
}

/// Reads the envelope: `{"config":{...},"last":true}`, with `last` at the top or inside
/// `config`; a bare configuration object (with `type`) is accepted too.
pub fn parse_configuration(body: &Map<String, Value>) -> Result<ConfigurationMessage, ConfigItemError> {
    let truthy = |v: Option<&Value>| v.is_some_and(|v| v == &Value::Bool(true) || v == &Value::from(1));
    let mut last = truthy(body.get("last"));
    let config = match body.get("config") {
        Some(Value::Object(config)) => Some(config.clone()),
        Some(_) => return Err(ConfigItemError::NoConfig),
        None if body.contains_key("type") => Some(body.clone()),
        None => None,
    };
    let config = config.map(|mut c| {
        if let Some(inner) = c.remove("last") {
            last |= truthy(Some(&inner));
        }
        c
    });
    if config.is_none() && !last {
        return Err(ConfigItemError::NoConfig);
    }
    Ok(ConfigurationMessage { config, last })
}

/// The purpose of a sealed configuration secret of a phone's item and field.
pub fn secret_purpose(mac: &Mac, key: &str, field: &str) -> crate::seal::SealPurpose {
    crate::seal::SealPurpose::ConfigSecret {
        mac: *mac,
        key: key.to_string(),
        field: field.to_string(),
    }
}

impl ConfigItem {
    /// The item for a received configuration object. Encrypted secrets are decrypted with the
    /// sysclient password and sealed; a secret that cannot be decrypted is left out and named
    /// in the returned warnings.
    pub fn from_received(
        mac: &Mac,
        mut body: Map<String, Value>,
        sysclient_password: Option<&Secret>,
        sealer: &Sealer,
    ) -> (ConfigItem, Vec<String>) {
        let kind = body
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_string();
        let key = match body.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => format!("type:{kind}"),
        };
        let mut secrets = BTreeMap::new();
        let mut warnings = Vec::new();
        for (field, seed_field) in SECRET_FIELDS {
            let encrypted = body.remove(field);
            let seed = body.remove(seed_field).or_else(|| body.get("seed").cloned());
            let Some(Value::String(encrypted)) = encrypted else {
                continue;
            };
            if encrypted.is_empty() {
                continue;
            }
            let seed = seed.as_ref().and_then(Value::as_str).unwrap_or_default();
            let Some(password) = sysclient_password else {
                warnings.push(format!(
                    "{kind} {key}: {field} left out: no sysclient password to decrypt it"
                ));
                continue;
            };
            match sysclient::decrypt_secret(seed, password.expose(), &encrypted) {
                Ok(plain) => match sealer.seal(&Secret::new(plain), &secret_purpose(mac, &key, field)) {
                    Ok(sealed) => {
                        secrets.insert(field.to_string(), sealed);
                    }
                    Err(e) => warnings.push(format!("{kind} {key}: {field} left out: {e}")),
                },
                Err(e) => warnings.push(format!("{kind} {key}: {field} left out: {e}")),
            }
        }
        (
            ConfigItem {
                key,
                kind,
                body: JsonObject::from_map(&body),
                secrets,
            },
            warnings,
        )
    }

    /// The typed view of this item.
    pub fn typed(&self) -> DeviceConfig {
        let text = self.body.text();
        let parsed = match self.kind.as_str() {
            "PHONE" => serde_json::from_str(text).map(DeviceConfig::Phone),
            "FXS_PHONE" => serde_json::from_str(text).map(DeviceConfig::FxsPhone),
            "MEDIA" => serde_json::from_str(text).map(DeviceConfig::Media),
            "NTP" => serde_json::from_str(text).map(DeviceConfig::Ntp),
            "TLS_PROFILE" => serde_json::from_str(text).map(DeviceConfig::TlsProfile),
            "ALARM_SERVER" => serde_json::from_str(text).map(DeviceConfig::AlarmServer),
            _ => return DeviceConfig::Other(self.body.to_map()),
        };
        parsed.unwrap_or_else(|_| DeviceConfig::Other(self.body.to_map()))
    }
}

/// Replaces the item with the same key, or adds it; items stay sorted by key.
pub fn upsert(items: &mut Vec<ConfigItem>, item: ConfigItem) {
    match items.binary_search_by(|i| i.key.cmp(&item.key)) {
        Ok(at) => items[at] = item,
        Err(at) => items.insert(at, item),
    }
}

/// Whether two sets say the same thing: equal items, with sealed secrets compared by what they
/// open to (sealing is randomised, so the same secret seals differently each time).
pub fn same_content(a: &[ConfigItem], b: &[ConfigItem], mac: &Mac, sealer: &Sealer) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.key == y.key
                && x.kind == y.kind
                && x.body == y.body
                && x.secrets.len() == y.secrets.len()
                && x.secrets.iter().all(|(field, sealed)| {
                    let purpose = secret_purpose(mac, &x.key, field);
                    match (
                        sealer.open(sealed, &purpose),
                        y.secrets.get(field).map(|s| sealer.open(s, &purpose)),
                    ) {
                        (Ok(p), Some(Ok(q))) => p == q,
                        _ => false,
                    }
                })
        })
}

/// Sorts a complete set by key, the last of duplicate keys winning.
pub fn normalise(items: Vec<ConfigItem>) -> Vec<ConfigItem> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        upsert(&mut out, item);
    }
    out
}

/// Typed views of the configuration types Devices documents. Each keeps unknown members.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceConfig {
    /// PHONE.
    Phone(PhoneConfig),
    /// FXS_PHONE (the PHONE fields plus `fax`).
    FxsPhone(PhoneConfig),
    /// MEDIA.
    Media(MediaConfig),
    /// NTP.
    Ntp(NtpConfig),
    /// TLS_PROFILE.
    TlsProfile(TlsProfileConfig),
    /// ALARM_SERVER.
    AlarmServer(AlarmServerConfig),
    /// Any other type, or a known type whose members have unexpected types.
    Other(Map<String, Value>),
}

/// PHONE and FXS_PHONE: registrar and codec settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PhoneConfig {
    /// Primary gatekeeper (the PBX registrar).
    pub gk1: String,
    /// Secondary gatekeeper.
    pub gk2: String,
    /// Gatekeeper id.
    pub gk_id: String,
    /// Preferred codec: G711A, G711u, G722, OPUS-NB, OPUS-WB.
    pub coder: String,
    /// Frame size, ms.
    pub frame_size: Option<u32>,
    /// Use the codec exclusively.
    pub exclusive: Option<bool>,
    /// SRTP key exchange ("0".."4").
    pub srtp_key: Option<String>,
    /// SRTP cipher ("0".."5").
    pub srtp_cipher: Option<String>,
    /// Every other member, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// MEDIA: STUN/TURN and RTP settings (the TURN password is sealed in the item's secrets).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MediaConfig {
    /// STUN server.
    pub stun_server: String,
    /// TURN server.
    pub turn_server: String,
    /// TURN user.
    pub turn_user: String,
    /// Every other member, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// NTP: time servers and POSIX time zone.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NtpConfig {
    /// First NTP server.
    pub ntp1: String,
    /// Second NTP server.
    pub ntp2: String,
    /// POSIX TZ string, e.g. `CET-1CEST-2,M3.5.0/2,M10.5.0/3`.
    pub tz: String,
    /// Every other member, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// TLS_PROFILE.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsProfileConfig {
    /// normal, fast, secure or strict.
    pub profile: String,
    /// Every other member, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// ALARM_SERVER (the log password is sealed in the item's secrets).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AlarmServerConfig {
    /// Alarm server URL.
    pub url: String,
    /// Log server URL.
    pub log_url: String,
    /// Log server user.
    pub log_user: String,
    /// Every other member, kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compact_body_is_stored_as_the_object_it_was() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"id":3,"type":"PHONE","gk1":"pbx.example.com","list":[{"a":1}]}"#)
                .unwrap();
        let body = JsonObject::from_map(&map);
        assert_eq!(body.to_map(), map);
        assert_eq!(
            body.text(),
            r#"{"id":3,"type":"PHONE","gk1":"pbx.example.com","list":[{"a":1}]}"#
        );
        // Stored form: the same JSON object as before the compact type (old records read).
        let stored = serde_json::to_string(&body).unwrap();
        assert_eq!(stored, body.text());
        let spaced: JsonObject = serde_json::from_str(r#"{ "id": 3, "type": "PHONE" }"#).unwrap();
        assert_eq!(spaced.text(), r#"{"id":3,"type":"PHONE"}"#);
        assert!(
            serde_json::from_str::<JsonObject>("[1]").is_err(),
            "an object only"
        );
        assert_eq!(spaced, JsonObject::from_map(&spaced.to_map()));
    }
    use crate::appws::crypto;

    fn obj(json: &str) -> Map<String, Value> {
        match serde_json::from_str(json).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn envelopes() {
        let m = parse_configuration(&obj(r#"{"config":{"id":3,"type":"PHONE"},"last":true}"#)).unwrap();
        assert!(m.last);
        let m = parse_configuration(&obj(r#"{"config":{"id":3,"type":"PHONE","last":true}}"#)).unwrap();
        assert!(m.last && !m.config.unwrap().contains_key("last"));
        let m = parse_configuration(&obj(r#"{"last":true}"#)).unwrap();
        assert_eq!((m.config, m.last), (None, true));
        assert!(
            parse_configuration(&obj(r#"{"id":1,"type":"NTP","ntp1":"x"}"#))
                .unwrap()
                .config
                .is_some()
        );
        assert_eq!(
            parse_configuration(&obj(r#"{"x":1}"#)),
            Err(ConfigItemError::NoConfig)
        );
    }

    #[test]
    fn turn_password_is_decrypted_and_sealed_unknowns_kept() {
        let mac: Mac = "0015651a2b3c".parse().unwrap();
        let sysclient = Secret::new("7iICN04agQq38j!hmbN7P5LLI1YePz1w");
        let encrypted = crypto::encrypt("Q1w2E3r4T5y6U7i8", sysclient.expose(), "turn-secret");
        let body = obj(&format!(
            r#"{{"id":5,"type":"MEDIA","stunServer":"stun.example.com","turnUser":"turn","turnPassword":"{encrypted}","turnSeed":"Q1w2E3r4T5y6U7i8","futureField":[1,2]}}"#
        ));
        let sealer = Sealer::from_key(&[3; 32]);
        let (item, warnings) = ConfigItem::from_received(&mac, body, Some(&sysclient), &sealer);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(item.key, "5");
        let body = item.body.to_map();
        assert!(!body.contains_key("turnPassword") && !body.contains_key("turnSeed"));
        let opened = sealer
            .open(
                &item.secrets["turnPassword"],
                &secret_purpose(&mac, "5", "turnPassword"),
            )
            .unwrap();
        assert_eq!(opened.expose(), "turn-secret");
        let DeviceConfig::Media(media) = item.typed() else {
            panic!("media")
        };
        assert_eq!(media.stun_server, "stun.example.com");
        assert_eq!(media.extra["futureField"], serde_json::json!([1, 2]));
    }

    #[test]
    fn unknown_types_are_kept_and_upsert_replaces_by_key() {
        let mac: Mac = "0015651a2b3c".parse().unwrap();
        let sealer = Sealer::from_key(&[3; 32]);
        let item = |json: &str| ConfigItem::from_received(&mac, obj(json), None, &sealer).0;
        let mut items = normalise(vec![
            item(r#"{"id":9,"type":"NTP","ntp1":"a","tz":"CET-1"}"#),
            item(r#"{"id":3,"type":"PHONE","gk1":"pbx","coder":"G722","frameSize":20}"#),
            item(r#"{"id":11,"type":"CERTIFICATES","list":[]}"#),
        ]);
        assert!(matches!(
            items.iter().find(|i| i.key == "11").unwrap().typed(),
            DeviceConfig::Other(_)
        ));
        upsert(
            &mut items,
            item(r#"{"id":3,"type":"PHONE","gk1":"pbx","coder":"OPUS-WB"}"#),
        );
        assert_eq!(items.len(), 3);
        let DeviceConfig::Phone(phone) = items.iter().find(|i| i.key == "3").unwrap().typed() else {
            panic!()
        };
        assert_eq!(phone.coder, "OPUS-WB");
        let (missing, warnings) = ConfigItem::from_received(
            &mac,
            obj(r#"{"id":1,"type":"MEDIA","turnPassword":"00"}"#),
            None,
            &sealer,
        );
        assert!(missing.secrets.is_empty() && warnings.len() == 1);
    }

    #[test]
    fn same_content_sees_through_sealing() {
        let mac: Mac = "0015651a2b3c".parse().unwrap();
        let sealer = Sealer::from_key(&[3; 32]);
        let sysclient = Secret::new("pw");
        let media = |turn: &str| {
            let encrypted = crypto::encrypt("s", "pw", turn);
            let body = obj(&format!(
                r#"{{"id":5,"type":"MEDIA","turnPassword":"{encrypted}","turnSeed":"s"}}"#
            ));
            vec![ConfigItem::from_received(&mac, body, Some(&sysclient), &sealer).0]
        };
        let (a, b) = (media("x"), media("x"));
        assert_ne!(a, b, "sealed differently");
        assert!(same_content(&a, &b, &mac, &sealer));
        assert!(!same_content(&a, &media("y"), &mac, &sealer));
        assert!(!same_content(&a, &[], &mac, &sealer));
    }
}
