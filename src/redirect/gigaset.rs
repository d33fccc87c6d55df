//! Gigaset's redirect server (`prov.gigaset.net`), XML-RPC with HTTP Basic
//! (docs/redirect/snom-gigaset.md §3.1; sources: nethesis/falconieri and peoplefone's
//! provisioning-rpc, which agree; Gigaset's wiki for the MAC-ID and the device side).
//!
//! A device is named by its MAC-ID: the 12 hex digits of the MAC, a dash, and a 4-character
//! check code printed on the device's label and stored in it at the factory. How the code is
//! computed is not public, so it is never guessed: an admin types it in as the phone's device
//! code, and until then the registration fails saying so. Register:
//! `autoprov.deregisterDevice(macId)` (both clients do it first; its answer does not matter),
//! then `autoprov.registerDevice(macId, url, provider name)`. Deregister:
//! `autoprov.deregisterDevice(macId)`. Every answer is `[boolean, text]`, the texts carrying
//! the plain MAC after a colon: `mac_already_in_use:` is another account's device;
//! `mac_invalid:` and `mac_not_exist:` most likely a wrong check code.

use super::xmlrpc::{self, Value};
use super::{Exchange, HttpCall, HttpReply, RedirectApi, RedirectJob, RedirectOp, Step, Verdict};
use crate::Secret;

/// The service's name: the vendor's (the Nx70 DECT bases).
pub const SERVICE: &str = "gigaset";

/// The provisioner account at Gigaset's redirect server.
#[derive(Debug, Clone)]
pub struct GigasetRedirect {
    /// The XML-RPC endpoint (`https://prov.gigaset.net/apxml/rpc.do`).
    pub url: String,
    /// The account.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// The "Provider" label the registrations carry.
    pub provider_name: String,
}

/// Whether `code` has the form of a MAC-ID check code: four letters or digits.
pub fn check_code_form(code: &str) -> bool {
    code.len() == 4 && code.chars().all(|c| c.is_ascii_alphanumeric())
}

impl GigasetRedirect {
    fn call(&self, method: &str, params: &[&str]) -> HttpCall {
        let params = params.iter().map(|p| Value::Str((*p).to_string())).collect();
        xmlrpc::basic_call(&self.url, (&self.user, self.password.expose()), method, params)
    }
}

/// The steps of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing sent yet.
    Start,
    /// `deregisterDevice` sent.
    Released,
    /// `registerDevice` sent.
    Registered,
}

struct AutoprovExchange {
    /// The account.
    account: GigasetRedirect,
    /// The job.
    job: RedirectJob,
    /// Where it is.
    stage: Stage,
}

impl AutoprovExchange {
    /// The MAC-ID, or the verdict that says the code is missing.
    fn mac_id(&self) -> Result<String, Verdict> {
        match self.job.device_code.as_deref().filter(|c| check_code_form(c)) {
            Some(code) => Ok(format!("{}-{}", self.job.mac.upper(), code.to_ascii_uppercase())),
            None => Err(Verdict::Refused(
                "gigaset: the redirect server needs the MAC-ID check code printed on the device's label; enter it as the phone's device code".into(),
            )),
        }
    }

    fn after(&mut self, ok: bool, text: &str) -> Result<Step, Verdict> {
        let code = text
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match (self.stage, self.job.op) {
            (Stage::Released, RedirectOp::Register) => {
                self.stage = Stage::Registered;
                let mac_id = self.mac_id()?;
                Ok(Step::Call(self.account.call(
                    "autoprov.registerDevice",
                    &[&mac_id, &self.job.url, &self.account.provider_name],
                )))
            }
            (Stage::Released, RedirectOp::Deregister)
                if ok || code == "mac_not_found" || code == "mac_not_exist" =>
            {
                Ok(Step::Finished(Verdict::Done { pin: None }))
            }
            _ if ok => Ok(Step::Finished(Verdict::Done { pin: None })),
            _ if code == "mac_already_in_use" => Err(Verdict::OwnedElsewhere(format!("gigaset: {text}"))),
            _ if code == "mac_invalid" || code == "mac_not_exist" => Err(Verdict::Refused(format!(
                "gigaset: {text} (check the phone's device code)"
            ))),
            _ => Err(Verdict::Refused(format!("gigaset: {text}"))),
        }
    }
}

impl Exchange for AutoprovExchange {
    fn next(&mut self, reply: Option<HttpReply>, _now: u64, _nonce: &str) -> Step {
        if self.stage == Stage::Start {
            return match self.mac_id() {
                Ok(mac_id) => {
                    self.stage = Stage::Released;
                    Step::Call(self.account.call("autoprov.deregisterDevice", &[&mac_id]))
                }
                Err(verdict) => Step::Finished(verdict),
            };
        }
        let Some(reply) = reply else {
            return Step::Finished(Verdict::Retry(
                "gigaset's redirect server could not be reached".into(),
            ));
        };
        xmlrpc::boolean_and_text(&reply, SERVICE)
            .and_then(|(ok, text)| self.after(ok, &text))
            .unwrap_or_else(Step::Finished)
    }
}

impl RedirectApi for GigasetRedirect {
    fn vendor(&self) -> &'static str {
        SERVICE
    }

    fn exchange(&self, job: &RedirectJob) -> Box<dyn Exchange> {
        Box::new(AutoprovExchange {
            account: self.clone(),
            job: job.clone(),
            stage: Stage::Start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mac;

    fn account() -> GigasetRedirect {
        GigasetRedirect {
            url: "https://prov.gigaset.net/apxml/rpc.do".into(),
            user: "acme".into(),
            password: Secret::new("pw"),
            provider_name: "innoprov".into(),
        }
    }

    fn job(op: RedirectOp, code: Option<&str>) -> RedirectJob {
        RedirectJob {
            op,
            mac: "7c2f80a1b2c3".parse::<Mac>().expect("mac"),
            url: "https://prov.example.net/p/".into(),
            login: None,
            device_code: code.map(str::to_string),
        }
    }

    fn said(ok: bool, text: &str) -> Option<HttpReply> {
        Some(HttpReply::new(
            200,
            format!(
                "<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data><value><boolean>{}</boolean></value><value>{text}</value></data></array></value></param></params></methodResponse>",
                u8::from(ok)
            ),
        ))
    }

    #[test]
    fn a_registration_names_the_device_by_its_mac_id() {
        let mut exchange = account().exchange(&job(RedirectOp::Register, Some("x7k2")));
        let Step::Call(release) = exchange.next(None, 0, "") else {
            panic!("deregister first");
        };
        assert_eq!(
            xmlrpc::call_strings(&release),
            (
                "autoprov.deregisterDevice".into(),
                vec!["7C2F80A1B2C3-X7K2".into()]
            )
        );
        let Step::Call(register) = exchange.next(said(false, "mac_not_found:7C2F80A1B2C3"), 0, "") else {
            panic!("then register");
        };
        assert_eq!(
            xmlrpc::call_strings(&register),
            (
                "autoprov.registerDevice".into(),
                vec![
                    "7C2F80A1B2C3-X7K2".into(),
                    "https://prov.example.net/p/".into(),
                    "innoprov".into()
                ]
            )
        );
        assert_eq!(
            exchange.next(said(true, "ok"), 0, ""),
            Step::Finished(Verdict::Done { pin: None })
        );
    }

    #[test]
    fn no_code_a_wrong_code_and_another_account_are_told_apart() {
        let mut exchange = account().exchange(&job(RedirectOp::Register, None));
        assert!(matches!(
            exchange.next(None, 0, ""),
            Step::Finished(Verdict::Refused(text)) if text.contains("device code")
        ));
        let finish = |text: &str| {
            let mut exchange = account().exchange(&job(RedirectOp::Register, Some("X7K2")));
            exchange.next(None, 0, "");
            exchange.next(said(true, "ok"), 0, "");
            exchange.next(said(false, text), 0, "")
        };
        assert!(matches!(
            finish("mac_invalid:7C2F80A1B2C3"),
            Step::Finished(Verdict::Refused(text)) if text.contains("check the phone's device code")
        ));
        assert_eq!(
            finish("mac_already_in_use:7C2F80A1B2C3"),
            Step::Finished(Verdict::OwnedElsewhere(
                "gigaset: mac_already_in_use:7C2F80A1B2C3".into()
            ))
        );
        let mut exchange = account().exchange(&job(RedirectOp::Deregister, Some("X7K2")));
        exchange.next(None, 0, "");
        assert_eq!(
            exchange.next(said(false, "mac_not_found:7C2F80A1B2C3"), 0, ""),
            Step::Finished(Verdict::Done { pin: None })
        );
    }
}
