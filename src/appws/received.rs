//! What an AppWebsocket message means, decoded once at the edge: the session matches an enum
//! and reads typed fields instead of looking members up by name. Reading stays liberal
//! (appwebsocket.md: unknown members ignored, numbers taken where text is expected); a member
//! of the wrong type is kept as an error naming it, for the message that cares to refuse it.

use serde_json::Value;

use super::crypto::LoginFields;
use super::message::{FieldTypeError, Inbound};

/// A member read as text: a string as is, a number in its decimal form, absent or `null` as
/// `None`; any other type is an error naming the member.
pub type TextMember = Result<Option<String>, FieldTypeError>;

/// Every message this service takes, by `api` and `mt`; the envelope ([`Inbound`]) carries
/// `src` for the reply.
#[derive(Debug, Clone, PartialEq)]
pub enum AppMessage {
    /// `KeepAlive`, under any `api`: nothing to do.
    KeepAlive,
    /// `AppChallenge`: starts a login (§3.1).
    AppChallenge,
    /// `AppLogin` (§3.2).
    AppLogin(AppLogin),
    /// `AppCheckLogin`: another app asks whether a login digest is right.
    AppCheckLogin(AppCheckLogin),
    /// `CheckBuild`: answered with its `Result`.
    CheckBuild,
    /// `Test`: answered with its `Result`.
    Test,
    /// `AppInfo`: the PBX asks for the app's title.
    AppInfo,
    /// `PbxInfo`: the PBX says which APIs it offers.
    PbxInfo(PbxInfo),
    /// `ProvisioningPhone` from Users (§5).
    ProvisioningPhone(ProvisioningPhone),
    /// A message of the admin door (`mt` starting with `Admin`), read by the admin core.
    Admin,
    /// `Services`/`ServicesInfo`: where the PBX's services are.
    ServicesInfo(ServicesInfo),
    /// `Services`/`SubscribeServicesResult`: nothing to do.
    SubscribeServicesResult,
    /// Anything else; `mt` and `api` stay in the envelope for the log line.
    Unknown,
}

/// An `AppLogin`, with the members its digest covers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppLogin {
    /// The app name the login is for.
    pub app: String,
    /// The PBX's system name.
    pub domain: String,
    /// SIP name of the logging-in object.
    pub sip: String,
    /// GUID of the logging-in object.
    pub guid: String,
    /// Display name of the logging-in object.
    pub dn: String,
    /// The digest to check.
    pub digest: String,
    /// `info` when it is an object (it is then under the digest).
    pub info: Option<Value>,
    /// Whether a non-empty `pbxObj` came along (not under the digest).
    pub pbx_obj: bool,
}

impl AppLogin {
    /// The identity fields in digest order.
    pub fn fields(&self) -> LoginFields<'_> {
        LoginFields {
            app: &self.app,
            domain: &self.domain,
            sip: &self.sip,
            guid: &self.guid,
            dn: &self.dn,
        }
    }

    /// `info.appobj`: the App object the login was made for; empty when not said.
    pub fn appobj(&self) -> &str {
        self.info
            .as_ref()
            .and_then(|i| i.get("appobj"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// An `AppCheckLogin`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppCheckLogin {
    /// The app name the checked login was for.
    pub app: String,
    /// The PBX's system name.
    pub domain: String,
    /// The challenge the checked login answered.
    pub challenge: String,
    /// The digest to check.
    pub digest: String,
}

/// A `PbxInfo`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PbxInfo {
    /// The PBX's name.
    pub pbx: String,
    /// The PBX's domain.
    pub domain: String,
    /// The APIs it offers (`Services`, ...); members that are not strings are left out.
    pub apis: Vec<String>,
}

/// A `ServicesInfo`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServicesInfo {
    /// The `services` member as sent; read by [`crate::services`].
    pub services: Option<Value>,
}

/// A `ProvisioningPhone`, each member as text or the error naming it; validated by
/// [`crate::ProvisionRequest::from_message`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisioningPhone {
    /// The phone's MAC.
    pub mac: TextMember,
    /// The Devices provisioning code.
    pub code: TextMember,
    /// Hardware id.
    pub hwid: TextMember,
    /// SIP user name, as the tutorial spells it.
    pub usename: TextMember,
    /// SIP user name, as spelt elsewhere.
    pub username: TextMember,
    /// Display name.
    pub cn: TextMember,
    /// Seed of the password encryption.
    pub seed1: TextMember,
    /// The password, encrypted with the session key.
    pub password: TextMember,
    /// PBX domain.
    pub domain: TextMember,
    /// PBX DNS name.
    pub dns: TextMember,
}

impl AppMessage {
    /// What `msg` is.
    pub fn decode(msg: &Inbound) -> AppMessage {
        let text = |field: &str| msg.text_or_empty(field);
        match (msg.api.as_deref(), msg.mt.as_str()) {
            (_, "KeepAlive") => AppMessage::KeepAlive,
            (None, "AppChallenge") => AppMessage::AppChallenge,
            (None, "AppLogin") => AppMessage::AppLogin(AppLogin {
                app: text("app"),
                domain: text("domain"),
                sip: text("sip"),
                guid: text("guid"),
                dn: text("dn"),
                digest: text("digest"),
                info: msg.body.get("info").filter(|i| i.is_object()).cloned(),
                pbx_obj: msg
                    .body
                    .get("pbxObj")
                    .is_some_and(|p| p.as_str().is_some_and(|s| !s.is_empty())),
            }),
            (None, "AppCheckLogin") => AppMessage::AppCheckLogin(AppCheckLogin {
                app: text("app"),
                domain: text("domain"),
                challenge: text("challenge"),
                digest: text("digest"),
            }),
            (None, "CheckBuild") => AppMessage::CheckBuild,
            (None, "Test") => AppMessage::Test,
            (None, "AppInfo") => AppMessage::AppInfo,
            (None, "PbxInfo") => AppMessage::PbxInfo(PbxInfo {
                pbx: text("pbx"),
                domain: text("domain"),
                apis: msg
                    .body
                    .get("apis")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default(),
            }),
            (None, "ProvisioningPhone") => AppMessage::ProvisioningPhone(ProvisioningPhone {
                mac: msg.text("mac"),
                code: msg.text("code"),
                hwid: msg.text("hwid"),
                usename: msg.text("usename"),
                username: msg.text("username"),
                cn: msg.text("cn"),
                seed1: msg.text("seed1"),
                password: msg.text("password"),
                domain: msg.text("domain"),
                dns: msg.text("dns"),
            }),
            (None, mt) if mt.starts_with("Admin") => AppMessage::Admin,
            (Some("Services"), "ServicesInfo") => AppMessage::ServicesInfo(ServicesInfo {
                services: msg.body.get("services").cloned(),
            }),
            (Some("Services"), "SubscribeServicesResult") => AppMessage::SubscribeServicesResult,
            _ => AppMessage::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> AppMessage {
        AppMessage::decode(&Inbound::parse(json).unwrap())
    }

    #[test]
    fn the_captured_pbx_login_decodes_with_its_info() {
        // appwebsocket.md §3.3(a), captured from a real PBX.
        let m = decode(
            r#"{"mt":"AppLogin","sip":"go-search","guid":"3954ae7854c96301c9dd009033400109","dn":"go-search","digest":"ab","domain":"fritz.box","app":"searchapi","info":{"appobj":"go-search","apps":[]}}"#,
        );
        let AppMessage::AppLogin(login) = m else {
            panic!("{m:?}")
        };
        assert_eq!(login.fields().sip, "go-search");
        assert_eq!(login.fields().app, "searchapi");
        assert_eq!(login.appobj(), "go-search");
        assert_eq!(login.digest, "ab");
        assert!(!login.pbx_obj);
        // An `info` that is not an object is not under the digest and not read.
        let m = decode(r#"{"mt":"AppLogin","info":"x","pbxObj":"go"}"#);
        let AppMessage::AppLogin(login) = m else {
            panic!("{m:?}")
        };
        assert_eq!((login.info, login.pbx_obj), (None, true));
    }

    #[test]
    fn api_and_mt_pick_the_variant() {
        assert_eq!(
            decode(r#"{"mt":"KeepAlive","api":"Services"}"#),
            AppMessage::KeepAlive
        );
        assert_eq!(
            decode(r#"{"mt":"ServicesInfo"}"#),
            AppMessage::Unknown,
            "needs api Services"
        );
        assert_eq!(decode(r#"{"mt":"AppLogin","api":"X"}"#), AppMessage::Unknown);
        assert_eq!(decode(r#"{"mt":"AdminListPhones","src":"1"}"#), AppMessage::Admin);
        assert_eq!(decode(r#"{"mt":"Whatever"}"#), AppMessage::Unknown);
        assert_eq!(
            decode(r#"{"api":"Services","mt":"ServicesInfo","services":[{"name":"x"}]}"#),
            AppMessage::ServicesInfo(ServicesInfo {
                services: Some(serde_json::json!([{"name": "x"}]))
            })
        );
        assert_eq!(
            decode(r#"{"mt":"PbxInfo","pbx":"p","domain":"d","apis":["Services",3,"PbxApi"]}"#),
            AppMessage::PbxInfo(PbxInfo {
                pbx: "p".into(),
                domain: "d".into(),
                apis: vec!["Services".into(), "PbxApi".into()],
            })
        );
    }

    #[test]
    fn provisioning_phone_keeps_type_errors_per_member() {
        let m = decode(r#"{"mt":"ProvisioningPhone","mac":"0015651a2b3c","code":562822784750,"cn":{"x":1}}"#);
        let AppMessage::ProvisioningPhone(p) = m else {
            panic!("{m:?}")
        };
        assert_eq!(p.mac, Ok(Some("0015651a2b3c".into())));
        assert_eq!(p.code, Ok(Some("562822784750".into())), "numbers read as text");
        assert_eq!(p.cn.unwrap_err().field, "cn");
        assert_eq!(p.dns, Ok(None));
    }
}
