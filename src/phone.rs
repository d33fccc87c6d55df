//! A phone as the service knows it: the validated ProvisioningPhone request, and the record
//! stored per MAC.

use serde::{Deserialize, Serialize};

use crate::appws::received::TextMember;
use crate::appws::{ProvisioningPhone, crypto};
use crate::devices::ConfigItem;
use crate::mac::Mac;
use crate::seal::SealPurpose;
use crate::seal::{SealError, Sealed, Secret};

/// Longest accepted text member of ProvisioningPhone, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// Longest accepted Devices provisioning code, in digits.
pub const MAX_CODE_DIGITS: usize = 32;
/// Longest accepted encrypted password, in hex digits (a 512-byte password).
pub const MAX_PASSWORD_HEX: usize = 1024;

/// A ProvisioningPhone that passed validation, with the user's password decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionRequest {
    /// The phone.
    pub mac: Mac,
    /// Devices provisioning code for the phone's first sysclient identify.
    pub code: String,
    /// Hardware id Users set on the PBX device (usually the MAC).
    pub hwid: String,
    /// SIP user name (`usename` on the wire).
    pub username: String,
    /// The user's display name.
    pub cn: String,
    /// PBX domain.
    pub domain: String,
    /// PBX DNS name; the registrar when Devices names none.
    pub dns: String,
    /// The user's password in plaintext; `None` when Users sent none.
    pub password: Option<Secret>,
}

/// A ProvisioningPhone that cannot be accepted; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ProvisionError {
    /// The member that is wrong.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ProvisionError {
    ProvisionError {
        field,
        reason: reason.into(),
    }
}

/// A text member as sent, absent or null as empty; not a string is an error.
fn member(field: &'static str, value: &TextMember) -> Result<String, ProvisionError> {
    Ok(value
        .clone()
        .map_err(|_| invalid(field, "must be a string"))?
        .unwrap_or_default())
}

/// A text member that goes into the phone's files: bounded, and safe in every vendor's format.
fn text(field: &'static str, value: &TextMember) -> Result<String, ProvisionError> {
    let value = member(field, value)?;
    if value.len() > MAX_FIELD_BYTES {
        return Err(invalid(field, format!("longer than {MAX_FIELD_BYTES} bytes")));
    }
    crate::provisioning::safety::check_value(&value).map_err(|reason| invalid(field, reason))?;
    Ok(value)
}

/// A [`text`] member that must not be empty.
fn required(field: &'static str, value: &TextMember) -> Result<String, ProvisionError> {
    let value = text(field, value)?;
    if value.is_empty() {
        return Err(invalid(field, "missing"));
    }
    Ok(value)
}

impl ProvisionRequest {
    /// Validates a ProvisioningPhone message and decrypts its password with the connection's
    /// session key.
    pub fn from_message(
        msg: &ProvisioningPhone,
        session_key: &str,
    ) -> Result<ProvisionRequest, ProvisionError> {
        let mac_text = required("mac", &msg.mac)?;
        let mac = mac_text
            .parse::<Mac>()
            .map_err(|e| invalid("mac", e.to_string()))?;
        let code = required("code", &msg.code)?;
        if code.len() > MAX_CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("code", format!("must be 1 to {MAX_CODE_DIGITS} digits")));
        }
        let username = Self::username(msg)?;
        let hwid = match text("hwid", &msg.hwid)? {
            hwid if hwid.is_empty() => mac.to_string(),
            hwid => hwid,
        };
        let password = Self::password(msg, session_key)?;
        Ok(ProvisionRequest {
            mac,
            code,
            hwid,
            username,
            cn: text("cn", &msg.cn)?,
            domain: text("domain", &msg.domain)?,
            dns: text("dns", &msg.dns)?,
            password,
        })
    }

    /// The SIP user name. The tutorial spells the member `usename`; the obvious spelling is
    /// accepted as well.
    fn username(msg: &ProvisioningPhone) -> Result<String, ProvisionError> {
        let username = match text("usename", &msg.usename)? {
            name if !name.is_empty() => name,
            _ => text("username", &msg.username)?,
        };
        if username.is_empty() {
            return Err(invalid("usename", "missing"));
        }
        Ok(username)
    }

    /// The user's password, decrypted with `seed1` and the session key (appwebsocket.md
    /// §5.2); `None` when Users sent none.
    fn password(msg: &ProvisioningPhone, session_key: &str) -> Result<Option<Secret>, ProvisionError> {
        let seed = member("seed1", &msg.seed1)?;
        let encrypted = member("password", &msg.password)?;
        if encrypted.len() > MAX_PASSWORD_HEX {
            return Err(invalid(
                "password",
                format!("longer than {MAX_PASSWORD_HEX} hex digits"),
            ));
        }
        if seed.len() > MAX_FIELD_BYTES {
            return Err(invalid("seed1", format!("longer than {MAX_FIELD_BYTES} bytes")));
        }
        // appwebsocket.md §5.2: decrypt only when seed1 is longer than one character.
        let password = if encrypted.is_empty() {
            None
        } else if seed.chars().count() > 1 {
            let plain = crypto::decrypt(&seed, session_key, &encrypted)
                .map_err(|e| invalid("password", e.to_string()))?;
            Some(Secret::new(plain))
        } else {
            // appwebsocket.md §5.2: with no seed there is nothing to decrypt; the value is
            // taken as it came.
            Some(Secret::new(encrypted))
        };
        // The password goes into every vendor's file: refuse what no format can carry as it
        // is, rather than alter it (the reason never quotes the value).
        if let Some(password) = &password {
            crate::provisioning::safety::check_value(password.expose())
                .map_err(|reason| invalid("password", reason))?;
        }
        Ok(password)
    }
}

/// Letters and digits: provisioning passwords must survive every vendor's config syntax and URLs.
const ALPHANUMERIC: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
fn random_text(len: usize, alphabet: &[u8]) -> Result<String, getrandom::Error> {
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        for b in bytes {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

/// What is stored per phone. Plain data: every secret in it is sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneRecord {
    /// The phone; also the store key.
    pub mac: Mac,
    /// Devices provisioning code in clear: only in records written before 0.4, which sealed
    /// nothing of it; new records keep it empty.
    #[serde(default)]
    pub code: String,
    /// Devices provisioning code of the latest ProvisioningPhone, sealed for
    /// `provisioning-code/<mac>` (whoever holds it can claim the phone at Devices).
    #[serde(default)]
    pub sealed_code: Option<Sealed>,
    /// Hardware id on the PBX device.
    pub hwid: String,
    /// SIP user name.
    pub username: String,
    /// Display name.
    pub cn: String,
    /// PBX domain.
    pub domain: String,
    /// PBX DNS name.
    pub dns: String,
    /// The user's password, sealed for `user-password/<mac>`.
    pub password: Option<Sealed>,
    /// When the latest ProvisioningPhone arrived (Unix seconds); opens the enrolment window.
    pub provisioned_at: u64,
    /// Which ProvisioningPhone this record belongs to: a write of an older generation (a late
    /// write of a replaced job) is refused.
    #[serde(default)]
    pub generation: u64,
    /// The sysclient password Devices gave this phone, sealed for `sysclient-password/<mac>`;
    /// it answers Devices' challenge on every reconnect.
    #[serde(default)]
    pub sysclient_password: Option<Sealed>,
    /// The administrative password Devices deployed (0x0003), sealed for `admin-password/<mac>`.
    #[serde(default)]
    pub admin_password: Option<Sealed>,
    /// The phone's complete Devices configuration, sorted by item key.
    #[serde(default)]
    pub configs: Vec<ConfigItem>,
    /// Bumped by every stored configuration change; phones' files carry it (ETag).
    #[serde(default)]
    pub config_version: u64,
    /// When the phone's file content last changed (Unix seconds, strictly rising with every
    /// change and across re-provisioning): the version Fanvil's version gate compares.
    #[serde(default)]
    pub changed_at: u64,
    /// When the configuration was last complete (Unix seconds); `None` until the first
    /// `last:true` of this generation.
    #[serde(default)]
    pub configured_at: Option<u64>,
    /// The phone's own provisioning user name (random, per ProvisioningPhone).
    #[serde(default)]
    pub prov_username: String,
    /// The phone's provisioning password, sealed for `prov-password/<mac>`.
    #[serde(default)]
    pub prov_password: Option<Sealed>,
    /// A random password for the phone's own web admin (so it never keeps the factory
    /// default), sealed for `web-password/<mac>`; kept across re-provisioning so the admin who
    /// read it once can still log in. Devices' administrative password wins when deployed.
    #[serde(default)]
    pub web_password: Option<Sealed>,
}

impl PhoneRecord {
    /// The Devices provisioning code, if the record has one (sealed, or in clear from before
    /// 0.4).
    pub fn provisioning_code(&self, sealer: &crate::seal::Sealer) -> Result<Option<Secret>, SealError> {
        match &self.sealed_code {
            Some(sealed) => Ok(Some(
                sealer.open(sealed, &SealPurpose::ProvisioningCode(self.mac))?,
            )),
            None if !self.code.is_empty() => Ok(Some(Secret::new(self.code.clone()))),
            None => Ok(None),
        }
    }

    /// The record a validated request becomes, its password sealed.
    pub fn from_request(
        request: &ProvisionRequest,
        sealer: &crate::seal::Sealer,
        now_unix: u64,
    ) -> Result<PhoneRecord, SealError> {
        let password = match &request.password {
            Some(secret) => Some(sealer.seal(secret, &SealPurpose::UserPassword(request.mac))?),
            None => None,
        };
        Ok(PhoneRecord {
            mac: request.mac,
            code: String::new(),
            sealed_code: Some(sealer.seal(
                &Secret::new(request.code.clone()),
                &SealPurpose::ProvisioningCode(request.mac),
            )?),
            hwid: request.hwid.clone(),
            username: request.username.clone(),
            cn: request.cn.clone(),
            domain: request.domain.clone(),
            dns: request.dns.clone(),
            password,
            provisioned_at: now_unix,
            generation: 0,
            sysclient_password: None,
            admin_password: None,
            configs: Vec::new(),
            config_version: 0,
            changed_at: now_unix,
            configured_at: None,
            prov_username: format!(
                "p{}",
                random_text(10, b"0123456789abcdef").map_err(SealError::Random)?
            ),
            prov_password: Some(sealer.seal(
                &Secret::new(random_text(24, ALPHANUMERIC).map_err(SealError::Random)?),
                &SealPurpose::ProvPassword(request.mac),
            )?),
            // 16 letters and digits: within every vendor's documented admin password rules
            // (Grandstream a-z A-Z 0-9, Snom ≤ 20, Yealink no ':').
            web_password: Some(sealer.seal(
                &Secret::new(random_text(16, ALPHANUMERIC).map_err(SealError::Random)?),
                &SealPurpose::WebPassword(request.mac),
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d58c77eae0c1c1f37a9f545e207643c926ad9ea4932016a83a4a01029de37760";

    fn msg(json: &str) -> ProvisioningPhone {
        let envelope = crate::appws::Inbound::parse(json).unwrap();
        match crate::appws::AppMessage::decode(&envelope) {
            crate::appws::AppMessage::ProvisioningPhone(p) => p,
            other => panic!("not a ProvisioningPhone: {other:?}"),
        }
    }

    #[test]
    fn accepts_the_tutorial_message_and_decrypts() {
        let m = msg(
            r#"{"mt":"ProvisioningPhone","mac":"00:15:65:1A:2B:3C","code":"123456789012","hwid":"","usename":"alice","cn":"Alice Example","seed1":"seed1","password":"8c0a8a363ecb","domain":"example.com","dns":"pbx.example.com"}"#,
        );
        let r = ProvisionRequest::from_message(&m, KEY).unwrap();
        assert_eq!(r.mac.to_string(), "0015651a2b3c");
        assert_eq!(r.hwid, "0015651a2b3c");
        assert_eq!(r.password.unwrap().expose(), "secret");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (r#"{"mt":"ProvisioningPhone","code":"1","usename":"a"}"#, "mac"),
            (
                r#"{"mt":"ProvisioningPhone","mac":"zz","code":"1","usename":"a"}"#,
                "mac",
            ),
            (
                r#"{"mt":"ProvisioningPhone","mac":"0015651a2b3c","code":"12a","usename":"a"}"#,
                "code",
            ),
            (
                r#"{"mt":"ProvisioningPhone","mac":"0015651a2b3c","code":"1"}"#,
                "usename",
            ),
            (
                r#"{"mt":"ProvisioningPhone","mac":"0015651a2b3c","code":"1","usename":"a","seed1":"seed1","password":"xyz"}"#,
                "password",
            ),
            (
                r#"{"mt":"ProvisioningPhone","mac":"0015651a2b3c","code":"1","usename":"a","cn":{"x":1}}"#,
                "cn",
            ),
            (
                r#"{"mt":"ProvisioningPhone","mac":"0015651a2b3c","code":"1","usename":"a\u0000"}"#,
                "usename",
            ),
        ];
        for (json, field) in cases {
            let err = ProvisionRequest::from_message(&msg(json), KEY).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
        }
        let unseeded = msg(
            r#"{"mt":"ProvisioningPhone","mac":"0015651a2b3c","code":"1","usename":"a","seed1":"x","password":"plain"}"#,
        );
        assert_eq!(
            ProvisionRequest::from_message(&unseeded, KEY)
                .unwrap()
                .password
                .unwrap()
                .expose(),
            "plain"
        );
        let long = format!(
            r#"{{"mt":"ProvisioningPhone","mac":"0015651a2b3c","code":"1","usename":"{}"}}"#,
            "a".repeat(300)
        );
        assert_eq!(
            ProvisionRequest::from_message(&msg(&long), KEY)
                .unwrap_err()
                .field,
            "usename"
        );
    }
}
