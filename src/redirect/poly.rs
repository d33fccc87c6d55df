//! Poly ZTP (Zero Touch Provisioning), REST with an `API-KEY` header
//! (docs/redirect/fanvil-poly-grandstream.md §2; sources: nemerald-voip/fspbx's
//! PolycomCloudProvider, in production, and a Metronet command-line client; they agree).
//!
//! ZTP hands a phone the provisioning server of its device's *profile*: the address and, unlike
//! the other services, a user name and password. Each phone therefore gets a profile of its own,
//! named `innoprov-<mac>`, carrying innoprov's URL and the phone's own provisioning login (never
//! its SIP password), so that a phone reset long after its enrolment window still gets its
//! file.
//!
//! Register: `GET devices/{mac}`; when the device is there with a profile, `GET` that profile,
//! and when it is ours, `PUT` it with the new address and login (done). Otherwise `POST
//! profiles` and `POST devices {"id": mac, "profile": id}`; a device that is in the account
//! with someone else's profile is first `DELETE`d (moving a device is delete then create).
//! A 409 on the device means another account holds the MAC (seen on `DELETE`; on `POST` it is
//! unsettled), and the profile just made is deleted again. Deregister: `GET devices/{mac}`,
//! `DELETE` it, and `DELETE` its profile when it is ours.

use serde_json::{Value, json};

use super::{
    Exchange, HttpCall, HttpReply, RedirectApi, RedirectJob, RedirectOp, Step, Verdict, status_verdict,
};
use crate::Secret;

/// The service's name: the vendor's.
pub const SERVICE: &str = "poly";

/// The ZTP account.
#[derive(Debug, Clone)]
pub struct PolyZtp {
    /// The API base, ending in `/` (`https://api.ztp.poly.com/v1/`).
    pub base: String,
    /// The API key.
    pub api_key: Secret,
}

impl PolyZtp {
    fn call(&self, method: &'static str, path: &str, body: Option<&Value>) -> HttpCall {
        let mut headers = vec![
            ("API-KEY".to_string(), self.api_key.expose().to_string()),
            ("Accept".to_string(), "application/json".to_string()),
        ];
        if body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        HttpCall {
            method,
            url: format!("{}{path}", self.base),
            headers,
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        }
    }
}

/// The name of the phone's own profile.
pub fn profile_name(mac: &crate::Mac) -> String {
    format!("innoprov-{mac}")
}

/// The calls of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Nothing sent yet.
    Start,
    /// `GET devices/{mac}` sent.
    DeviceRead,
    /// `GET profiles/{id}` of the device's profile sent.
    ProfileRead(String),
    /// `PUT profiles/{id}` sent.
    ProfileUpdated,
    /// `DELETE devices/{mac}` sent; what follows it.
    DeviceDeleted(AfterDelete),
    /// `POST profiles` sent.
    ProfileCreated,
    /// `POST devices` sent with this profile.
    DeviceCreated(String),
    /// `DELETE profiles/{id}` sent; the verdict to give after it.
    ProfileDeleted(Verdict),
}

/// What follows the deletion of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterDelete {
    /// Nothing (a deregistration of a device without a profile of ours).
    Nothing,
    /// Delete our profile of this id (a deregistration).
    DeleteProfile(String),
    /// Create the device again with our new profile of this id (a move).
    CreateDevice(String),
}

struct ZtpExchange {
    /// The account.
    ztp: PolyZtp,
    /// The job.
    job: RedirectJob,
    /// Where it is.
    stage: Stage,
    /// Whether the device in the account has someone else's profile (a register moves it).
    foreign_profile: bool,
}

/// The service's own words in an answer: `message`, else `error`, else the status.
fn words(reply: &HttpReply) -> String {
    let json: Option<Value> = serde_json::from_slice(&reply.body).ok();
    let said = json.as_ref().and_then(|j| {
        j.get("message")
            .or_else(|| j.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    match said {
        Some(text) => format!("poly: {text} (HTTP {})", reply.status),
        None => format!("poly: HTTP {}", reply.status),
    }
}

fn json_of(reply: &HttpReply) -> Result<Value, Verdict> {
    serde_json::from_slice(&reply.body)
        .map_err(|e| Verdict::Retry(format!("poly answered HTTP {} without JSON: {e}", reply.status)))
}

/// A success or the verdict its failure gives (401/403 refused, 5xx retried, ...).
fn success(reply: &HttpReply) -> Result<(), Verdict> {
    match status_verdict(reply, SERVICE) {
        None => Ok(()),
        Some(verdict) => Err(verdict),
    }
}

impl ZtpExchange {
    fn mac(&self) -> String {
        self.job.mac.to_string()
    }

    /// The profile that sends this phone to innoprov, with its own login.
    fn profile(&self) -> Value {
        let mut server = json!({ "address": self.job.url });
        if let Some(login) = &self.job.login {
            server["username"] = json!(login.user);
            server["password"] = json!(login.password.expose());
        }
        json!({
            "name": profile_name(&self.job.mac),
            "enabled": true,
            "template": { "provisioning": { "server": server } },
        })
    }

    fn go(&mut self, stage: Stage, call: HttpCall) -> Step {
        self.stage = stage;
        Step::Call(call)
    }

    fn delete_device(&mut self, then: AfterDelete) -> Step {
        let call = self.ztp.call("DELETE", &format!("devices/{}", self.mac()), None);
        self.go(Stage::DeviceDeleted(then), call)
    }

    fn create_profile(&mut self) -> Step {
        let call = self.ztp.call("POST", "profiles", Some(&self.profile()));
        self.go(Stage::ProfileCreated, call)
    }

    fn delete_profile(&mut self, id: &str, then: Verdict) -> Step {
        let call = self.ztp.call("DELETE", &format!("profiles/{id}"), None);
        self.go(Stage::ProfileDeleted(then), call)
    }

    fn on_device(&mut self, reply: &HttpReply) -> Result<Step, Verdict> {
        let register = self.job.op == RedirectOp::Register;
        match reply.status {
            404 if register => return Ok(self.create_profile()),
            404 => return Ok(Step::Finished(Verdict::Done { pin: None })),
            409 if register => return Err(Verdict::OwnedElsewhere(words(reply))),
            409 => return Ok(Step::Finished(Verdict::Done { pin: None })),
            _ => success(reply)?,
        }
        let device = json_of(reply)?;
        let profile = ["profileid", "profile", "profileId"]
            .iter()
            .find_map(|key| device.get(*key))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            });
        Ok(match profile {
            Some(id) => {
                let call = self.ztp.call("GET", &format!("profiles/{id}"), None);
                self.go(Stage::ProfileRead(id), call)
            }
            None if register => {
                self.foreign_profile = true;
                self.create_profile()
            }
            None => self.delete_device(AfterDelete::Nothing),
        })
    }

    fn on_profile(&mut self, id: String, reply: &HttpReply) -> Result<Step, Verdict> {
        let ours = match reply.status {
            404 => false,
            _ => {
                success(reply)?;
                json_of(reply)?.get("name").and_then(Value::as_str) == Some(&profile_name(&self.job.mac))
            }
        };
        Ok(match (self.job.op, ours) {
            (RedirectOp::Register, true) => {
                let call = self
                    .ztp
                    .call("PUT", &format!("profiles/{id}"), Some(&self.profile()));
                self.go(Stage::ProfileUpdated, call)
            }
            (RedirectOp::Register, false) => {
                self.foreign_profile = true;
                self.create_profile()
            }
            (RedirectOp::Deregister, true) => self.delete_device(AfterDelete::DeleteProfile(id)),
            (RedirectOp::Deregister, false) => self.delete_device(AfterDelete::Nothing),
        })
    }

    fn on_created_profile(&mut self, reply: &HttpReply) -> Result<Step, Verdict> {
        success(reply)?;
        let created = json_of(reply)?;
        let id = created
            .get("id")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
            .ok_or_else(|| Verdict::Retry("poly: the new profile has no id".into()))?;
        Ok(match self.foreign_profile {
            // The device is in the account under another profile: moving it is delete, create.
            true => self.delete_device(AfterDelete::CreateDevice(id)),
            false => self.create_device(id),
        })
    }

    fn create_device(&mut self, profile: String) -> Step {
        let body = json!({ "id": self.mac(), "profile": profile });
        let call = self.ztp.call("POST", "devices", Some(&body));
        self.go(Stage::DeviceCreated(profile), call)
    }

    fn on_deleted_device(&mut self, then: AfterDelete, reply: &HttpReply) -> Result<Step, Verdict> {
        match (reply.status, then) {
            // Another account holds the MAC: our new profile goes again.
            (409, AfterDelete::CreateDevice(id)) => {
                Ok(self.delete_profile(&id, Verdict::OwnedElsewhere(words(reply))))
            }
            // Not ours to deregister.
            (409, _) => Ok(Step::Finished(Verdict::Done { pin: None })),
            (status, then) => {
                if status != 404 {
                    success(reply)?;
                }
                Ok(match then {
                    AfterDelete::CreateDevice(id) => self.create_device(id),
                    AfterDelete::DeleteProfile(id) => self.delete_profile(&id, Verdict::Done { pin: None }),
                    AfterDelete::Nothing => Step::Finished(Verdict::Done { pin: None }),
                })
            }
        }
    }

    fn on_created_device(&mut self, profile: String, reply: &HttpReply) -> Result<Step, Verdict> {
        if reply.status == 409 {
            let verdict = Verdict::OwnedElsewhere(words(reply));
            return Ok(self.delete_profile(&profile, verdict));
        }
        success(reply)?;
        Ok(Step::Finished(Verdict::Done { pin: None }))
    }
}

impl Exchange for ZtpExchange {
    fn next(&mut self, reply: Option<HttpReply>, _now: u64, _nonce: &str) -> Step {
        if self.stage == Stage::Start {
            let call = self.ztp.call("GET", &format!("devices/{}", self.mac()), None);
            return self.go(Stage::DeviceRead, call);
        }
        let Some(reply) = reply else {
            return Step::Finished(Verdict::Retry("poly ZTP could not be reached".into()));
        };
        let stage = std::mem::replace(&mut self.stage, Stage::Start);
        let step = match stage {
            Stage::Start => Ok(Step::Finished(Verdict::Retry(
                "poly: an answer before any call".into(),
            ))),
            Stage::DeviceRead => self.on_device(&reply),
            Stage::ProfileRead(id) => self.on_profile(id, &reply),
            // Deleted at the service meanwhile: a new one.
            Stage::ProfileUpdated if reply.status == 404 => {
                self.foreign_profile = true;
                Ok(self.create_profile())
            }
            Stage::ProfileUpdated => success(&reply).map(|()| Step::Finished(Verdict::Done { pin: None })),
            Stage::DeviceDeleted(then) => self.on_deleted_device(then, &reply),
            Stage::ProfileCreated => self.on_created_profile(&reply),
            Stage::DeviceCreated(profile) => self.on_created_device(profile, &reply),
            // The job's verdict stands whatever the clean-up's answer.
            Stage::ProfileDeleted(verdict) => Ok(Step::Finished(verdict)),
        };
        step.unwrap_or_else(Step::Finished)
    }
}

impl RedirectApi for PolyZtp {
    fn vendor(&self) -> &'static str {
        SERVICE
    }

    fn exchange(&self, job: &RedirectJob) -> Box<dyn Exchange> {
        Box::new(ZtpExchange {
            ztp: self.clone(),
            job: job.clone(),
            stage: Stage::Start,
            foreign_profile: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mac;
    use crate::redirect::PhoneLogin;

    fn ztp() -> PolyZtp {
        PolyZtp {
            base: "https://api.ztp.poly.com/v1/".into(),
            api_key: Secret::new("key-1"),
        }
    }

    fn job(op: RedirectOp) -> RedirectJob {
        RedirectJob {
            op,
            mac: "0004f2aabbcc".parse::<Mac>().expect("mac"),
            url: "https://prov.example.net/p/".into(),
            login: (op == RedirectOp::Register).then(|| PhoneLogin {
                user: "p7q".into(),
                password: Secret::new("pw-of-the-phone"),
            }),
            device_code: None,
        }
    }

    fn reply(status: u16, body: &str) -> HttpReply {
        HttpReply::new(status, body.as_bytes().to_vec())
    }

    /// Runs `op` against the scripted answers; the calls made (method, path after the base,
    /// body) and the verdict.
    fn run(op: RedirectOp, answers: &[HttpReply]) -> (Vec<(String, String, String)>, Verdict) {
        let mut exchange = ztp().exchange(&job(op));
        let mut calls = Vec::new();
        let mut answers = answers.iter().cloned();
        let mut reply = None;
        loop {
            match exchange.next(reply.take(), 0, "") {
                Step::Finished(verdict) => return (calls, verdict),
                Step::Call(call) => {
                    assert!(call.headers.contains(&("API-KEY".into(), "key-1".into())));
                    let path = call
                        .url
                        .trim_start_matches("https://api.ztp.poly.com/v1/")
                        .to_string();
                    calls.push((
                        call.method.to_string(),
                        path,
                        String::from_utf8(call.body).expect("utf-8"),
                    ));
                    reply = Some(answers.next().expect("an answer for every call"));
                }
            }
        }
    }

    fn names(calls: &[(String, String, String)]) -> Vec<String> {
        calls.iter().map(|(m, p, _)| format!("{m} {p}")).collect()
    }

    #[test]
    fn a_new_phone_gets_its_own_profile_with_its_login_then_its_device() {
        let (calls, verdict) = run(
            RedirectOp::Register,
            &[
                reply(404, r#"{"message":"Not Found"}"#),
                reply(201, r#"{"id":"pr-9"}"#),
                reply(200, "{}"),
            ],
        );
        assert_eq!(verdict, Verdict::Done { pin: None });
        assert_eq!(
            names(&calls),
            ["GET devices/0004f2aabbcc", "POST profiles", "POST devices"]
        );
        let profile: Value = serde_json::from_str(&calls[1].2).expect("json");
        assert_eq!(profile["name"], "innoprov-0004f2aabbcc");
        assert_eq!(
            profile["template"]["provisioning"]["server"],
            json!({"address": "https://prov.example.net/p/", "username": "p7q", "password": "pw-of-the-phone"})
        );
        let device: Value = serde_json::from_str(&calls[2].2).expect("json");
        assert_eq!(device, json!({"id": "0004f2aabbcc", "profile": "pr-9"}));
    }

    #[test]
    fn a_phone_with_its_profile_gets_the_profile_updated_and_a_foreign_profile_is_left_alone() {
        let (calls, verdict) = run(
            RedirectOp::Register,
            &[
                reply(200, r#"{"id":"0004f2aabbcc","profileid":"pr-9"}"#),
                reply(200, r#"{"id":"pr-9","name":"innoprov-0004f2aabbcc"}"#),
                reply(200, "{}"),
            ],
        );
        assert_eq!(verdict, Verdict::Done { pin: None });
        assert_eq!(
            names(&calls),
            [
                "GET devices/0004f2aabbcc",
                "GET profiles/pr-9",
                "PUT profiles/pr-9"
            ]
        );
        let (calls, verdict) = run(
            RedirectOp::Register,
            &[
                reply(200, r#"{"id":"0004f2aabbcc","profileid":"shared"}"#),
                reply(200, r#"{"id":"shared","name":"the integrator's own"}"#),
                reply(201, r#"{"id":"pr-10"}"#),
                reply(200, "{}"),
                reply(200, "{}"),
            ],
        );
        assert_eq!(verdict, Verdict::Done { pin: None });
        assert_eq!(
            names(&calls),
            [
                "GET devices/0004f2aabbcc",
                "GET profiles/shared",
                "POST profiles",
                "DELETE devices/0004f2aabbcc",
                "POST devices"
            ],
            "the shared profile is never written"
        );
    }

    #[test]
    fn another_accounts_mac_leaves_no_profile_behind_and_refusals_are_told_apart() {
        let (calls, verdict) = run(
            RedirectOp::Register,
            &[
                reply(404, "{}"),
                reply(201, r#"{"id":"pr-11"}"#),
                reply(409, r#"{"message":"Device registered to a different account"}"#),
                reply(200, "{}"),
            ],
        );
        assert_eq!(
            verdict,
            Verdict::OwnedElsewhere("poly: Device registered to a different account (HTTP 409)".into())
        );
        assert_eq!(
            names(&calls).last().map(String::as_str),
            Some("DELETE profiles/pr-11")
        );
        let (_, verdict) = run(
            RedirectOp::Register,
            &[reply(401, r#"{"message":"Unauthorized"}"#)],
        );
        assert!(matches!(verdict, Verdict::Refused(text) if text.contains("[redirect.poly]")));
        let (_, verdict) = run(RedirectOp::Register, &[reply(503, "")]);
        assert!(matches!(verdict, Verdict::Retry(_)));
    }

    #[test]
    fn a_deregistration_deletes_the_device_and_its_own_profile_only() {
        let (calls, verdict) = run(
            RedirectOp::Deregister,
            &[
                reply(200, r#"{"profileid":"pr-9"}"#),
                reply(200, r#"{"name":"innoprov-0004f2aabbcc"}"#),
                reply(200, "{}"),
                reply(204, ""),
            ],
        );
        assert_eq!(verdict, Verdict::Done { pin: None });
        assert_eq!(
            names(&calls),
            [
                "GET devices/0004f2aabbcc",
                "GET profiles/pr-9",
                "DELETE devices/0004f2aabbcc",
                "DELETE profiles/pr-9"
            ]
        );
        let (calls, verdict) = run(RedirectOp::Deregister, &[reply(404, "{}")]);
        assert_eq!((calls.len(), verdict), (1, Verdict::Done { pin: None }));
    }
}
