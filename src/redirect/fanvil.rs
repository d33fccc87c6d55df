//! Fanvil FDPS over XML-RPC with HTTP Basic (docs/redirect/fanvil-poly-grandstream.md §1).
//! Fanvil publishes no API document; every wire form here is one on which two independent
//! clients agree (nethesis/falconieri and a Wazo FDPS plugin), and what only one of them shows
//! is marked unsettled in the doc.
//!
//! The Basic password is not the account's password but the lower-case hex of MD5 of the
//! lower-case hex of MD5 of it. FDPS redirects by "server" (a group whose material is the
//! phone's own auto-provisioning keys), so each phone gets a group named after its MAC, as
//! falconieri does. Register: `redirect.deRegisterDevice(mac)` and `redirect.deleteServer(mac)`
//! (so that a changed URL replaces the old group; FDPS does not delete a group that still
//! holds a device), then `redirect.addMaterialServer([cfgName=…, cfgPfSrv=host[:port],
//! cfgPfName=path, cfgPfProt=4|5, cfgPfMode=1, cfgDhcpOpt=false, cfgPnpEnable=false])`, then
//! `redirect.registerDevice(mac, mac)`. Deregister: the first two calls. Every answer is an
//! array of a boolean and a text; a register refused `device_had_existed` after our own
//! deregistration means another account holds the MAC.

use md5::{Digest as _, Md5};

use super::xmlrpc::{self, Value};
use super::{Exchange, HttpCall, HttpReply, RedirectApi, RedirectJob, RedirectOp, Step, Verdict};
use crate::Secret;

/// The service's name: the vendor's.
pub const SERVICE: &str = "fanvil";

/// The FDPS account.
#[derive(Debug, Clone)]
pub struct Fdps {
    /// The XML-RPC endpoint (`https://fdps.fanvil.com/xmlrpc.php`).
    pub url: String,
    /// The account.
    pub user: String,
    /// Its password, in clear (hashed twice for the wire).
    pub password: Secret,
}

/// The password FDPS takes in Basic: hex(MD5(hex(MD5(plain)))).
pub fn wire_password(plain: &str) -> String {
    let once = hex::encode(Md5::digest(plain.as_bytes()));
    hex::encode(Md5::digest(once.as_bytes()))
}

impl Fdps {
    fn call(&self, method: &str, params: Vec<Value>) -> HttpCall {
        let password = wire_password(self.password.expose());
        xmlrpc::basic_call(&self.url, (&self.user, &password), method, params)
    }
}

/// The group material for `url`: the keys falconieri sends, from the URL's parts.
fn material(name: &str, url: &str) -> Result<Vec<Value>, Verdict> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Verdict::Refused(format!("fanvil: provisioning.public_url {url:?}: {e}")))?;
    let protocol = match parsed.scheme() {
        "http" => "4",
        "https" => "5",
        other => {
            return Err(Verdict::Refused(format!(
                "fanvil: FDPS cannot send phones to {other}"
            )));
        }
    };
    let host = parsed.host_str().unwrap_or_default();
    let server = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let path = parsed.path().trim_start_matches('/');
    Ok([
        format!("cfgName={name}"),
        "cfgPfMode=1".into(),
        "cfgDhcpOpt=false".into(),
        "cfgPnpEnable=false".into(),
        format!("cfgPfSrv={server}"),
        format!("cfgPfName={path}"),
        format!("cfgPfProt={protocol}"),
    ]
    .into_iter()
    .map(Value::Str)
    .collect())
}

/// An error text with its spacing evened out: the strings differ (`Error: device_had_existed`,
/// `Error:device_not_exist`).
fn error_code(text: &str) -> String {
    text.trim_start_matches("Error:").trim().to_ascii_lowercase()
}

/// The calls of one job, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing sent yet.
    Start,
    /// `deRegisterDevice` sent.
    DeviceReleased,
    /// `deleteServer` sent.
    GroupDeleted,
    /// `addMaterialServer` sent.
    GroupAdded,
    /// `registerDevice` sent.
    Registered,
}

struct FdpsExchange {
    /// The account.
    fdps: Fdps,
    /// The job.
    job: RedirectJob,
    /// Where it is.
    stage: Stage,
}

impl FdpsExchange {
    /// The MAC as FDPS takes it, and the phone's group name.
    fn mac(&self) -> String {
        self.job.mac.upper()
    }

    fn after(&mut self, ok: bool, text: &str) -> Step {
        let mac = self.mac();
        let code = error_code(text);
        let refused = |what: &str| Step::Finished(Verdict::Refused(format!("fanvil: {what}: {text}")));
        match self.stage {
            Stage::Start => unreachable_start(),
            Stage::DeviceReleased if ok || code == "device_not_exist" => {
                self.stage = Stage::GroupDeleted;
                Step::Call(self.fdps.call("redirect.deleteServer", vec![Value::Str(mac)]))
            }
            Stage::DeviceReleased => refused("deRegisterDevice"),
            Stage::GroupDeleted if !(ok || code.starts_with("server_not_exist")) => refused("deleteServer"),
            Stage::GroupDeleted if self.job.op == RedirectOp::Deregister => {
                Step::Finished(Verdict::Done { pin: None })
            }
            Stage::GroupDeleted => match material(&mac, &self.job.url) {
                Ok(material) => {
                    self.stage = Stage::GroupAdded;
                    Step::Call(
                        self.fdps
                            .call("redirect.addMaterialServer", vec![Value::Array(material)]),
                    )
                }
                Err(verdict) => Step::Finished(verdict),
            },
            Stage::GroupAdded if ok => {
                self.stage = Stage::Registered;
                Step::Call(self.fdps.call(
                    "redirect.registerDevice",
                    vec![Value::Str(mac.clone()), Value::Str(mac)],
                ))
            }
            Stage::GroupAdded => refused("addMaterialServer"),
            Stage::Registered if ok => Step::Finished(Verdict::Done { pin: None }),
            // Our own deRegisterDevice ran first: only another account can still hold it.
            Stage::Registered if code == "device_had_existed" => {
                Step::Finished(Verdict::OwnedElsewhere(format!("fanvil: {text}")))
            }
            Stage::Registered => refused("registerDevice"),
        }
    }
}

/// The first call is made in `next` before any answer is read.
fn unreachable_start() -> Step {
    Step::Finished(Verdict::Retry("fanvil: an answer before any call".into()))
}

impl Exchange for FdpsExchange {
    fn next(&mut self, reply: Option<HttpReply>, _now: u64, _nonce: &str) -> Step {
        if self.stage == Stage::Start {
            self.stage = Stage::DeviceReleased;
            let mac = self.mac();
            return Step::Call(self.fdps.call("redirect.deRegisterDevice", vec![Value::Str(mac)]));
        }
        let Some(reply) = reply else {
            return Step::Finished(Verdict::Retry("fanvil FDPS could not be reached".into()));
        };
        match xmlrpc::boolean_and_text(&reply, SERVICE) {
            Ok((ok, text)) => self.after(ok, &text),
            Err(verdict) => Step::Finished(verdict),
        }
    }
}

impl RedirectApi for Fdps {
    fn vendor(&self) -> &'static str {
        SERVICE
    }

    fn exchange(&self, job: &RedirectJob) -> Box<dyn Exchange> {
        Box::new(FdpsExchange {
            fdps: self.clone(),
            job: job.clone(),
            stage: Stage::Start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mac;

    fn fdps() -> Fdps {
        Fdps {
            url: "https://fdps.fanvil.com/xmlrpc.php".into(),
            user: "acme".into(),
            password: Secret::new("example"),
        }
    }

    fn job(op: RedirectOp) -> RedirectJob {
        RedirectJob {
            op,
            mac: "0c383e112233".parse::<Mac>().expect("mac"),
            url: "https://prov.example.net:8443/p/tenant1/".into(),
            login: None,
            device_code: None,
        }
    }

    /// An FDPS answer as the doc shows it: [boolean, string].
    fn fdps_answer(ok: bool, text: &str) -> HttpReply {
        HttpReply::new(200, format!(
                "<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data><value><boolean>{}</boolean></value><value><string>{text}</string></value></data></array></value></param></params></methodResponse>",
                u8::from(ok)
            )
            .into_bytes())
    }

    #[test]
    fn the_password_is_hashed_twice_as_the_doc_works_it_out() {
        // docs/redirect/fanvil-poly-grandstream.md §1, "Worked example".
        assert_eq!(wire_password("example"), "c1a59bcd1cb1d018ccfe812efdc2a141");
        let Step::Call(call) = fdps().exchange(&job(RedirectOp::Register)).next(None, 0, "") else {
            panic!("a call");
        };
        assert!(call.headers.contains(&(
            "Authorization".into(),
            "Basic YWNtZTpjMWE1OWJjZDFjYjFkMDE4Y2NmZTgxMmVmZGMyYTE0MQ==".into()
        )));
    }

    #[test]
    fn a_registration_replaces_the_phones_group_then_binds_the_mac() {
        let mut exchange = fdps().exchange(&job(RedirectOp::Register));
        let mut calls = Vec::new();
        let answers = [
            fdps_answer(false, "Error:device_not_exist"),
            fdps_answer(false, "Error:server_not_existed"),
            fdps_answer(true, "OK"),
            fdps_answer(true, "OK"),
        ];
        let mut reply = None;
        for answer in answers {
            let Step::Call(call) = exchange.next(reply.take(), 0, "") else {
                panic!("calls until the end: {calls:?}");
            };
            calls.push(xmlrpc::call_strings(&call));
            reply = Some(answer);
        }
        assert_eq!(
            exchange.next(reply, 0, ""),
            Step::Finished(Verdict::Done { pin: None })
        );
        let mac = "0C383E112233".to_string();
        assert_eq!(
            calls,
            [
                ("redirect.deRegisterDevice".into(), vec![mac.clone()]),
                ("redirect.deleteServer".into(), vec![mac.clone()]),
                (
                    "redirect.addMaterialServer".into(),
                    vec![
                        "cfgName=0C383E112233".into(),
                        "cfgPfMode=1".into(),
                        "cfgDhcpOpt=false".into(),
                        "cfgPnpEnable=false".into(),
                        "cfgPfSrv=prov.example.net:8443".into(),
                        "cfgPfName=p/tenant1/".into(),
                        "cfgPfProt=5".into(),
                    ]
                ),
                ("redirect.registerDevice".into(), vec![mac.clone(), mac]),
            ]
        );
    }

    #[test]
    fn another_account_a_bad_url_and_a_deregistration() {
        let mut exchange = fdps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 0, "");
        exchange.next(Some(fdps_answer(true, "OK")), 0, "");
        exchange.next(Some(fdps_answer(true, "OK")), 0, "");
        exchange.next(Some(fdps_answer(true, "OK")), 0, "");
        assert_eq!(
            exchange.next(Some(fdps_answer(false, "Error: device_had_existed")), 0, ""),
            Step::Finished(Verdict::OwnedElsewhere(
                "fanvil: Error: device_had_existed".into()
            ))
        );
        let mut exchange = fdps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 0, "");
        exchange.next(Some(fdps_answer(true, "OK")), 0, "");
        exchange.next(Some(fdps_answer(true, "OK")), 0, "");
        assert!(matches!(
            exchange.next(Some(fdps_answer(false, "Error: url_format_error")), 0, ""),
            Step::Finished(Verdict::Refused(text)) if text.contains("url_format_error")
        ));
        let mut exchange = fdps().exchange(&job(RedirectOp::Deregister));
        exchange.next(None, 0, "");
        let Step::Call(delete) = exchange.next(Some(fdps_answer(true, "OK")), 0, "") else {
            panic!("deleteServer");
        };
        assert_eq!(xmlrpc::call_strings(&delete).0, "redirect.deleteServer");
        assert_eq!(
            exchange.next(Some(fdps_answer(true, "OK")), 0, ""),
            Step::Finished(Verdict::Done { pin: None })
        );
        let mut exchange = fdps().exchange(&job(RedirectOp::Deregister));
        exchange.next(None, 0, "");
        assert!(matches!(
            exchange.next(Some(HttpReply::new(401, Vec::new())), 0, ""),
            Step::Finished(Verdict::Refused(text)) if text.contains("[redirect.fanvil]")
        ));
    }
}
