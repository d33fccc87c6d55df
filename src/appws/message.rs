//! AppWebsocket messages: parsing the envelope of what arrives (liberal: unknown members are
//! ignored, numbers are taken where strings are expected) and building what goes out (strict:
//! compact JSON, `mt` first, `src` echoed when the request had one).

use serde_json::{Map, Value};

/// One received AppWebsocket message: the envelope plus the whole object for typed reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Message type, e.g. `AppLogin`.
    pub mt: String,
    /// Sub-protocol the message addresses (`Services`, ...); `None` for the base protocol.
    pub api: Option<String>,
    /// Request tag to echo in every reply.
    pub src: Option<String>,
    /// The whole message object.
    pub body: Map<String, Value>,
}

/// Why a text frame is not an AppWebsocket message. Each closes a connection before login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("not a JSON object")]
    NotObject,
    /// The object has no string `mt`.
    #[error("no \"mt\" string")]
    MissingMt,
}

/// A member of a message that has the wrong JSON type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: expected a string")]
pub struct FieldTypeError {
    /// Name of the offending member.
    pub field: String,
}

impl Inbound {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Inbound, InboundError> {
        let value: Value = serde_json::from_str(text).map_err(|e| InboundError::NotJson(e.to_string()))?;
        let Value::Object(body) = value else {
            return Err(InboundError::NotObject);
        };
        let mt = match body.get("mt") {
            Some(Value::String(mt)) => mt.clone(),
            _ => return Err(InboundError::MissingMt),
        };
        let text_member = |k: &str| match body.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let api = text_member("api");
        let src = text_member("src");
        Ok(Inbound { mt, api, src, body })
    }

    /// A member read as text: a string as is, a number in its decimal form, absent or `null`
    /// as `None`; any other type is an error naming the member.
    pub fn text(&self, field: &str) -> Result<Option<String>, FieldTypeError> {
        match self.body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(FieldTypeError {
                field: field.to_string(),
            }),
        }
    }

    /// A member read as text where absent and wrongly typed both count as empty; for digest
    /// inputs, where a wrong type simply fails the digest check.
    pub fn text_or_empty(&self, field: &str) -> String {
        self.text(field).ok().flatten().unwrap_or_default()
    }
}

/// A message to send, built member by member in the order they go on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound(Map<String, Value>);

impl Outbound {
    /// A message with `mt` first.
    pub fn new(mt: &str) -> Outbound {
        let mut map = Map::new();
        map.insert("mt".into(), Value::String(mt.into()));
        Outbound(map)
    }

    /// A reply to `request`: its `mt` plus "Result", with `api` and `src` echoed.
    pub fn reply_to(request: &Inbound) -> Outbound {
        let mut out = Outbound::new(&format!("{}Result", request.mt));
        if let Some(api) = &request.api {
            out = out.with("api", api.as_str());
        }
        out.with_src(request.src.as_deref())
    }

    /// Adds a member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Outbound {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Adds `src` when there is one to echo.
    pub fn with_src(self, src: Option<&str>) -> Outbound {
        match src {
            Some(src) => self.with("src", src),
            None => self,
        }
    }

    /// The compact JSON text (a map writes exactly as the object holding it, so it is
    /// serialised in place, without a copy of every reply).
    pub fn to_text(&self) -> String {
        super::crypto::compact_json(&self.0)
    }

    /// A member, for tests and logs.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
}

/// `AppChallengeResult` (no `src`: the handshake replies carry none).
pub fn challenge_result(challenge: &str) -> Outbound {
    Outbound::new("AppChallengeResult").with("challenge", challenge)
}

/// `AppLoginResult`: `ok:true` on success; on failure the same object without `ok`.
pub fn login_result(app: &str, domain: &str, ok: bool) -> Outbound {
    let out = Outbound::new("AppLoginResult").with("app", app);
    if ok {
        out.with("domain", domain).with("ok", true)
    } else {
        out
    }
}

/// `AppInfoResult` publishing this service as a 3rd-party provisioning provider.
pub fn app_info_result(request: &Inbound, title: &str) -> Outbound {
    let app = request.text_or_empty("app");
    let mut provisioning = Map::new();
    provisioning.insert("title".into(), Value::String(title.into()));
    let mut service_apis = Map::new();
    service_apis.insert("com.innovaphone.provisioning".into(), Value::Object(provisioning));
    let mut service_info = Map::new();
    service_info.insert("apis".into(), Value::Object(service_apis));
    let mut info = Map::new();
    info.insert("hidden".into(), Value::Bool(true));
    info.insert("apis".into(), Value::Object(Map::new()));
    Outbound::new("AppInfoResult")
        .with_src(request.src.as_deref())
        .with("app", app)
        .with("info", Value::Object(info))
        .with("serviceInfo", Value::Object(service_info))
}

/// `SubscribeServices` on the PBX connection's Services API.
pub fn subscribe_services(src: &str) -> Outbound {
    Outbound::new("SubscribeServices")
        .with("api", "Services")
        .with("src", src)
}

/// `ProvisioningPhoneResult`: "ok", or "failed" with the reason.
pub fn provisioning_result(
    src: Option<&str>,
    outcome: Result<(), crate::outcome::ProvisionFailure>,
) -> Outbound {
    let out = Outbound::new("ProvisioningPhoneResult").with_src(src);
    match outcome {
        Ok(()) => out.with("result", "ok"),
        Err(error) => out.with("result", "failed").with("error", error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envelope_and_rejects_non_messages() {
        let m = Inbound::parse(r#"{"api":"Services","mt":"ServicesInfo","src":"s1","x":1}"#).unwrap();
        assert_eq!(
            (m.mt.as_str(), m.api.as_deref(), m.src.as_deref()),
            ("ServicesInfo", Some("Services"), Some("s1"))
        );
        assert!(matches!(Inbound::parse("{"), Err(InboundError::NotJson(_))));
        assert_eq!(Inbound::parse("[1]"), Err(InboundError::NotObject));
        assert_eq!(Inbound::parse(r#"{"src":"x"}"#), Err(InboundError::MissingMt));
        assert_eq!(Inbound::parse(r#"{"mt":7}"#), Err(InboundError::MissingMt));
    }

    #[test]
    fn replies_are_compact_with_mt_first_and_src_echoed() {
        let req = Inbound::parse(r#"{"mt":"AppInfo","app":"innoprov","src":"a1"}"#).unwrap();
        assert_eq!(
            app_info_result(&req, "Third-party phones").to_text(),
            r#"{"mt":"AppInfoResult","src":"a1","app":"innoprov","info":{"hidden":true,"apis":{}},"serviceInfo":{"apis":{"com.innovaphone.provisioning":{"title":"Third-party phones"}}}}"#
        );
        assert_eq!(
            login_result("a", "d", false).to_text(),
            r#"{"mt":"AppLoginResult","app":"a"}"#
        );
        assert_eq!(
            provisioning_result(
                Some("p"),
                Err(crate::outcome::ProvisionFailure::Invalid(
                    "mac: not 12 hex digits".into()
                ))
            )
            .to_text(),
            r#"{"mt":"ProvisioningPhoneResult","src":"p","result":"failed","error":"mac: not 12 hex digits"}"#
        );
        let check = Inbound::parse(r#"{"mt":"CheckBuild","src":"c"}"#).unwrap();
        assert_eq!(
            Outbound::reply_to(&check).to_text(),
            r#"{"mt":"CheckBuildResult","src":"c"}"#
        );
    }

    #[test]
    fn text_members_accept_numbers_and_name_bad_types() {
        let m = Inbound::parse(r#"{"mt":"X","code":562822784750,"mac":["a"]}"#).unwrap();
        assert_eq!(m.text("code").unwrap().as_deref(), Some("562822784750"));
        assert_eq!(m.text("none").unwrap(), None);
        assert_eq!(m.text("mac").unwrap_err().field, "mac");
    }
}
