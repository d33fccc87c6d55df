//! Yealink RPS over XML-RPC with HTTP Basic (docs/redirect/yealink.md, with its sources:
//! nethesis/falconieri, peoplefone/provisioning-rpc, sipwise/ngcp-panel).
//!
//! Register: `redirect.checkDevice(mac)` first (a MAC another account holds answers
//! `registered elsewhere`), then `redirect.registerDeviceWithUniqueUrl(mac, server name,
//! url, "1")`, which sends this phone to `url` under the account's server entry. Deregister:
//! `redirect.deRegisterDevice(mac)`. Every parameter is a string, the MAC 12 upper-case hex
//! digits; every answer an array of a boolean and a text (`OK`, `Error:…`), the text typed or
//! not.

use super::xmlrpc::{self, Value};
use super::{Exchange, HttpCall, HttpReply, RedirectApi, RedirectJob, RedirectOp, Step, Verdict};
use crate::Secret;

/// The service's name: the vendor's.
pub const SERVICE: &str = "yealink";

/// The RPS account.
#[derive(Debug, Clone)]
pub struct YealinkRps {
    /// The XML-RPC endpoint.
    pub url: String,
    /// The account.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// The server entry phones are registered under.
    pub server_name: String,
}

impl YealinkRps {
    fn call(&self, method: &str, params: &[&str]) -> HttpCall {
        let params = params.iter().map(|p| Value::Str((*p).to_string())).collect();
        xmlrpc::basic_call(&self.url, (&self.user, self.password.expose()), method, params)
    }
}

/// Whether an error text means another account holds the MAC: `registered elsewhere` from
/// checkDevice, or a register refusal of `Error:` and ten lower-case letters or digits
/// (falconieri's reading; the wording is unsettled, docs/redirect/yealink.md).
fn owned_elsewhere(text: &str) -> bool {
    if text.eq_ignore_ascii_case("registered elsewhere") {
        return true;
    }
    text.strip_prefix("Error:").is_some_and(|rest| {
        rest.len() >= 10
            && rest[..10]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

/// The steps of one job.
enum Stage {
    /// Nothing sent yet.
    Start,
    /// checkDevice sent.
    Checked,
    /// The register or deregister call sent.
    Sent,
}

struct RpsExchange {
    /// The account.
    rps: YealinkRps,
    /// The job.
    job: RedirectJob,
    /// Where it is.
    stage: Stage,
}

impl RpsExchange {
    fn mac(&self) -> String {
        self.job.mac.upper()
    }

    fn register(&self) -> HttpCall {
        let mac = self.mac();
        self.rps.call(
            "redirect.registerDeviceWithUniqueUrl",
            &[&mac, &self.rps.server_name, &self.job.url, "1"],
        )
    }
}

impl Exchange for RpsExchange {
    fn next(&mut self, reply: Option<HttpReply>, _now: u64, _nonce: &str) -> Step {
        let mac = self.mac();
        let reply = match (&self.stage, reply) {
            (Stage::Start, _) => {
                self.stage = match self.job.op {
                    RedirectOp::Register => Stage::Checked,
                    RedirectOp::Deregister => Stage::Sent,
                };
                return Step::Call(match self.job.op {
                    RedirectOp::Register => self.rps.call("redirect.checkDevice", &[&mac]),
                    RedirectOp::Deregister => self.rps.call("redirect.deRegisterDevice", &[&mac]),
                });
            }
            (_, None) => return Step::Finished(Verdict::Retry("yealink RPS could not be reached".into())),
            (_, Some(reply)) => reply,
        };
        let (ok, text) = match xmlrpc::boolean_and_text(&reply, SERVICE) {
            Ok(answer) => answer,
            Err(verdict) => return Step::Finished(verdict),
        };
        match self.stage {
            Stage::Checked if owned_elsewhere(&text) => {
                Step::Finished(Verdict::OwnedElsewhere(format!("yealink: {text}")))
            }
            Stage::Checked => {
                self.stage = Stage::Sent;
                Step::Call(self.register())
            }
            _ if ok => Step::Finished(Verdict::Done { pin: None }),
            _ if owned_elsewhere(&text) => {
                Step::Finished(Verdict::OwnedElsewhere(format!("yealink: {text}")))
            }
            _ => Step::Finished(Verdict::Refused(format!("yealink: {text}"))),
        }
    }
}

impl RedirectApi for YealinkRps {
    fn vendor(&self) -> &'static str {
        SERVICE
    }

    fn exchange(&self, job: &RedirectJob) -> Box<dyn Exchange> {
        Box::new(RpsExchange {
            rps: self.clone(),
            job: job.clone(),
            stage: Stage::Start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mac;

    fn rps() -> YealinkRps {
        YealinkRps {
            url: "https://api-dm.yealink.com:8443/xmlrpc".into(),
            user: "acme".into(),
            password: Secret::new("s3cret"),
            server_name: "innoprov".into(),
        }
    }

    fn job(op: RedirectOp) -> RedirectJob {
        RedirectJob {
            op,
            mac: "001565aabbcc".parse::<Mac>().expect("mac"),
            url: "https://prov.example.com/example.com/innoprov/prov/".into(),
            login: None,
            device_code: None,
        }
    }

    /// An RPS answer as docs/redirect/yealink.md reconstructs it: [boolean, untyped text].
    fn rps_answer(ok: bool, text: &str) -> HttpReply {
        HttpReply::new(200, format!(
                "<?xml version=\"1.0\"?>\n<methodResponse>\n <params><param><value><array><data>\n  <value><boolean>{}</boolean></value>\n  <value>{text}</value>\n </data></array></value></param></params>\n</methodResponse>",
                u8::from(ok)
            )
            .into_bytes())
    }

    #[test]
    fn a_registration_checks_then_registers_with_the_unique_url() {
        let mut exchange = rps().exchange(&job(RedirectOp::Register));
        let Step::Call(check) = exchange.next(None, 0, "") else {
            panic!("a call first");
        };
        assert_eq!(check.method, "POST");
        assert!(
            check
                .headers
                .contains(&("Authorization".into(), "Basic YWNtZTpzM2NyZXQ=".into()))
        );
        assert_eq!(
            xmlrpc::call_strings(&check),
            ("redirect.checkDevice".into(), vec!["001565AABBCC".into()])
        );
        let Step::Call(register) = exchange.next(Some(rps_answer(true, "unregistered")), 0, "") else {
            panic!("the register call");
        };
        assert_eq!(
            xmlrpc::call_strings(&register),
            (
                "redirect.registerDeviceWithUniqueUrl".into(),
                vec![
                    "001565AABBCC".into(),
                    "innoprov".into(),
                    "https://prov.example.com/example.com/innoprov/prov/".into(),
                    "1".into()
                ]
            )
        );
        assert_eq!(
            exchange.next(Some(rps_answer(true, "OK")), 0, ""),
            Step::Finished(Verdict::Done { pin: None })
        );
    }

    #[test]
    fn another_accounts_mac_refusals_and_outages_are_told_apart() {
        let mut exchange = rps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 0, "");
        assert_eq!(
            exchange.next(Some(rps_answer(true, "registered elsewhere")), 0, ""),
            Step::Finished(Verdict::OwnedElsewhere("yealink: registered elsewhere".into()))
        );
        let mut exchange = rps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 0, "");
        exchange.next(Some(rps_answer(true, "unregistered")), 0, "");
        assert!(matches!(
            exchange.next(Some(rps_answer(false, "Error:Invalid server")), 0, ""),
            Step::Finished(Verdict::Refused(text)) if text.contains("Invalid server")
        ));
        let mut exchange = rps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 0, "");
        exchange.next(Some(rps_answer(true, "unregistered")), 0, "");
        assert!(matches!(
            exchange.next(Some(rps_answer(false, "Error:001565aabbcc is bound")), 0, ""),
            Step::Finished(Verdict::OwnedElsewhere(_))
        ));
        let unauthorized = HttpReply::new(401, Vec::new());
        let mut exchange = rps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 0, "");
        assert!(matches!(
            exchange.next(Some(unauthorized), 0, ""),
            Step::Finished(Verdict::Refused(text)) if text.contains("[redirect.yealink]")
        ));
        let mut exchange = rps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 0, "");
        assert!(matches!(
            exchange.next(None, 0, ""),
            Step::Finished(Verdict::Retry(_))
        ));
        let html = HttpReply::new(200, b"<html>maintenance</html>".to_vec());
        let mut exchange = rps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 0, "");
        assert!(matches!(
            exchange.next(Some(html), 0, ""),
            Step::Finished(Verdict::Retry(_))
        ));
    }

    #[test]
    fn a_deregistration_is_one_call() {
        let mut exchange = rps().exchange(&job(RedirectOp::Deregister));
        let Step::Call(call) = exchange.next(None, 0, "") else {
            panic!("call");
        };
        assert_eq!(
            xmlrpc::call_strings(&call),
            ("redirect.deRegisterDevice".into(), vec!["001565AABBCC".into()])
        );
        assert_eq!(
            exchange.next(Some(rps_answer(true, "OK")), 0, ""),
            Step::Finished(Verdict::Done { pin: None })
        );
    }
}
