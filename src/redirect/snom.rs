//! Snom SRAPS (Secure Redirection and Provisioning Service), REST with Hawk
//! (docs/redirect/snom-gigaset.md §1, with its sources: Snom's API pages, Snomio's own clients,
//! nethesis/falconieri, sipwise/ngcp-panel).
//!
//! Every call is signed with Hawk (sha256, the access key id and secret), bodies with their
//! payload hash. Register: `GET {base}tokens/{key id}` → `links.company`; `GET` it →
//! `links.endpoints`; `GET {base}settings/?page_size=1000` → the uuid of `setting_server` in
//! section `phone-settings` (two settings share the name); `PUT {endpoints}{mac}` with
//! `autoprovisioning_enabled` and that setting set to innoprov's URL. Deregister: the first two
//! steps, then `DELETE {endpoints}{mac}`. An answer whose text carries
//! `taken_mac_or_forbidden`, or "permission" and "endpoint", means another account holds the
//! MAC (its HTTP status is unsettled).

use serde_json::Value;

use super::hawk::{self, HawkKey, HawkRequest};
use super::{
    Exchange, HttpCall, HttpReply, RedirectApi, RedirectJob, RedirectOp, Step, Verdict, status_verdict,
};
use crate::Secret;

/// The service's name: the vendor's.
pub const SERVICE: &str = "snom";

/// The SRAPS account.
#[derive(Debug, Clone)]
pub struct Sraps {
    /// The API base, ending in `/` (`https://secure-provisioning.snom.com/api/v1/`).
    pub base: String,
    /// The access key id.
    pub key_id: String,
    /// The access key secret.
    pub key_secret: Secret,
}

impl Sraps {
    /// A signed call of `method` on `url` with `body` (JSON, or none).
    fn call(
        &self,
        method: &'static str,
        url: &str,
        body: Option<String>,
        now: u64,
        nonce: &str,
    ) -> Result<HttpCall, Verdict> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Verdict::Refused(format!("snom: unusable link {url:?}: {e}")))?;
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let resource = match parsed.query() {
            Some(query) => format!("{}?{query}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let body = body.map(String::into_bytes).unwrap_or_default();
        let hash = (!body.is_empty()).then(|| hawk::payload_hash("application/json", &body));
        let request = HawkRequest {
            method,
            resource: &resource,
            host: &host,
            port,
            hash: hash.as_deref(),
            ext: None,
        };
        let key = HawkKey {
            id: &self.key_id,
            secret: self.key_secret.expose().as_bytes(),
        };
        let mut headers = vec![
            ("Accept".into(), "application/json".into()),
            (
                "Authorization".into(),
                hawk::authorization(&key, &request, now, nonce),
            ),
        ];
        if !body.is_empty() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        Ok(HttpCall {
            method,
            url: url.to_string(),
            headers,
            body,
        })
    }
}

/// Whether an answer says another account holds the MAC (falconieri's reading).
fn owned_elsewhere(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("taken_mac_or_forbidden") || (lower.contains("permission") && lower.contains("endpoint"))
}

/// The answer as JSON, or the verdict when it is an error or no JSON.
fn json(reply: &HttpReply) -> Result<Value, Verdict> {
    if reply.status >= 400 && owned_elsewhere(&reply.text()) {
        return Err(Verdict::OwnedElsewhere(format!("snom: {}", reply.text().trim())));
    }
    if let Some(verdict) = status_verdict(reply, SERVICE) {
        return Err(verdict);
    }
    serde_json::from_slice(&reply.body).map_err(|e| Verdict::Retry(format!("snom answered no JSON: {e}")))
}

/// `links.<name>` of an answer, as a URL.
fn link(value: &Value, name: &str) -> Result<String, Verdict> {
    value["links"][name]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Verdict::Retry(format!("snom: the answer has no links.{name}")))
}

/// The steps of one job.
enum Stage {
    /// Nothing sent.
    Start,
    /// The token asked for; the company next.
    Token,
    /// The company asked for; the endpoints link next.
    Company,
    /// The settings asked for (registrations); the setting's uuid next.
    Settings {
        /// The endpoints collection.
        endpoints: String,
    },
    /// The PUT or DELETE sent.
    Sent,
}

struct SrapsExchange {
    /// The account.
    sraps: Sraps,
    /// The job.
    job: RedirectJob,
    /// Where it is.
    stage: Stage,
}

impl SrapsExchange {
    fn mac(&self) -> String {
        self.job.mac.to_string()
    }

    fn step(&mut self, reply: Option<HttpReply>, now: u64, nonce: &str) -> Result<Step, Verdict> {
        let stage = std::mem::replace(&mut self.stage, Stage::Sent);
        if matches!(stage, Stage::Start) {
            self.stage = Stage::Token;
            let url = format!("{}tokens/{}", self.sraps.base, self.sraps.key_id);
            return Ok(Step::Call(self.sraps.call("GET", &url, None, now, nonce)?));
        }
        let reply = reply.ok_or_else(|| Verdict::Retry("snom SRAPS could not be reached".into()))?;
        match stage {
            Stage::Start => unreachable!("handled above"),
            Stage::Token => {
                let company = link(&json(&reply)?, "company")?;
                self.stage = Stage::Company;
                Ok(Step::Call(self.sraps.call("GET", &company, None, now, nonce)?))
            }
            Stage::Company => {
                let mut endpoints = link(&json(&reply)?, "endpoints")?;
                if !endpoints.ends_with('/') {
                    endpoints.push('/');
                }
                let target = format!("{endpoints}{}", self.mac());
                match self.job.op {
                    RedirectOp::Deregister => {
                        Ok(Step::Call(self.sraps.call("DELETE", &target, None, now, nonce)?))
                    }
                    RedirectOp::Register => {
                        self.stage = Stage::Settings { endpoints };
                        let url = format!("{}settings/?page_size=1000", self.sraps.base);
                        Ok(Step::Call(self.sraps.call("GET", &url, None, now, nonce)?))
                    }
                }
            }
            Stage::Settings { endpoints } => {
                let settings = json(&reply)?;
                let uuid = settings
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|s| s["param_name"] == "setting_server" && s["section"] == "phone-settings")
                    .and_then(|s| s["uuid"].as_str())
                    .ok_or_else(|| {
                        Verdict::Refused("snom: no setting_server in section phone-settings".into())
                    })?;
                let mac = self.mac();
                // In the clients' member order (docs/redirect/snom-gigaset.md §1.5).
                let text = |s: &str| Value::from(s).to_string();
                let body = format!(
                    "{{\"mac\":{},\"autoprovisioning_enabled\":true,\"settings_manager\":{{{}:{{\"value\":{},\"attrs\":{{\"perm\":\"RW\"}}}}}}}}",
                    text(&mac),
                    text(uuid),
                    text(&self.job.url)
                );
                let target = format!("{endpoints}{mac}");
                Ok(Step::Call(self.sraps.call(
                    "PUT",
                    &target,
                    Some(body),
                    now,
                    nonce,
                )?))
            }
            Stage::Sent => {
                if reply.status == 404 && self.job.op == RedirectOp::Deregister {
                    return Ok(Step::Finished(Verdict::Done { pin: None }));
                }
                if reply.status >= 400 && owned_elsewhere(&reply.text()) {
                    return Err(Verdict::OwnedElsewhere(format!("snom: {}", reply.text().trim())));
                }
                match status_verdict(&reply, SERVICE) {
                    Some(verdict) => Err(verdict),
                    None => Ok(Step::Finished(Verdict::Done { pin: None })),
                }
            }
        }
    }
}

impl Exchange for SrapsExchange {
    fn next(&mut self, reply: Option<HttpReply>, now: u64, nonce: &str) -> Step {
        self.step(reply, now, nonce).unwrap_or_else(Step::Finished)
    }
}

impl RedirectApi for Sraps {
    fn vendor(&self) -> &'static str {
        SERVICE
    }

    fn exchange(&self, job: &RedirectJob) -> Box<dyn Exchange> {
        Box::new(SrapsExchange {
            sraps: self.clone(),
            job: job.clone(),
            stage: Stage::Start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mac;

    fn sraps() -> Sraps {
        Sraps {
            base: "https://secure-provisioning.snom.com/api/v1/".into(),
            key_id: "dh37fgj492je".into(),
            key_secret: Secret::new("werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn"),
        }
    }

    fn job(op: RedirectOp) -> RedirectJob {
        RedirectJob {
            op,
            mac: "000413a1b2c3".parse::<Mac>().expect("mac"),
            url: "https://prov.example.net/snom/{mac}".into(),
            login: None,
        }
    }

    fn ok(body: &str) -> Option<HttpReply> {
        Some(HttpReply {
            status: 200,
            body: body.as_bytes().to_vec(),
        })
    }

    fn header<'a>(call: &'a HttpCall, name: &str) -> &'a str {
        call.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    /// An exchange for `op` past the token and the company, whose answer names the
    /// endpoints collection `{COMPANY}/<endpoints>`.
    fn discovered(op: RedirectOp, endpoints: &str) -> Box<dyn Exchange> {
        let mut exchange = sraps().exchange(&job(op));
        exchange.next(None, 1, "n");
        exchange.next(
            ok(&format!("{{\"links\":{{\"company\":\"{COMPANY}\"}}}}")),
            1,
            "n",
        );
        exchange.next(
            ok(&format!(
                "{{\"links\":{{\"endpoints\":\"{COMPANY}/{endpoints}\"}}}}"
            )),
            1,
            "n",
        );
        exchange
    }

    const COMPANY: &str =
        "https://secure-provisioning.snom.com/api/v1/companies/0123456789abcdef0123456789abcdef";

    #[test]
    fn a_registration_finds_the_company_and_the_setting_then_puts_the_endpoint() {
        let mut exchange = sraps().exchange(&job(RedirectOp::Register));
        let Step::Call(token) = exchange.next(None, 1353832234, "j4h3g2") else {
            panic!("the token first");
        };
        assert_eq!(
            token.url,
            "https://secure-provisioning.snom.com/api/v1/tokens/dh37fgj492je"
        );
        // docs/redirect/snom-gigaset.md, vector C.
        assert_eq!(
            header(&token, "Authorization"),
            "Hawk id=\"dh37fgj492je\", ts=\"1353832234\", nonce=\"j4h3g2\", mac=\"h6ixlpGuyw6iD5I3+2mfJ5VHmS4LerfWq9qRITRBATs=\""
        );
        let Step::Call(company) = exchange.next(
            ok(&format!("{{\"links\":{{\"company\":\"{COMPANY}\"}}}}")),
            1,
            "n",
        ) else {
            panic!("the company");
        };
        assert_eq!(company.url, COMPANY);
        let Step::Call(settings) = exchange.next(
            ok(&format!(
                "{{\"links\":{{\"endpoints\":\"{COMPANY}/endpoints/\"}}}}"
            )),
            1,
            "n",
        ) else {
            panic!("the settings");
        };
        assert_eq!(
            settings.url,
            "https://secure-provisioning.snom.com/api/v1/settings/?page_size=1000"
        );
        let list = r#"[{"uuid":"5683038cec6c4fa9be95b2de9d1750e8","param_name":"setting_server","section":"global"},
                       {"uuid":"50a400560eec4dc0b96b026094e06562","param_name":"setting_server","section":"phone-settings"}]"#;
        let Step::Call(put) = exchange.next(ok(list), 1353832234, "j4h3g2") else {
            panic!("the PUT");
        };
        assert_eq!(put.method, "PUT");
        assert_eq!(put.url, format!("{COMPANY}/endpoints/000413a1b2c3"));
        // docs/redirect/snom-gigaset.md, vector E (computed there independently): body, payload
        // hash and MAC.
        assert_eq!(
            String::from_utf8(put.body.clone()).expect("utf-8"),
            r#"{"mac":"000413a1b2c3","autoprovisioning_enabled":true,"settings_manager":{"50a400560eec4dc0b96b026094e06562":{"value":"https://prov.example.net/snom/{mac}","attrs":{"perm":"RW"}}}}"#
        );
        assert_eq!(
            header(&put, "Authorization"),
            "Hawk id=\"dh37fgj492je\", ts=\"1353832234\", nonce=\"j4h3g2\", hash=\"MkSkokvAKe51u1nBAqcS1+rOjFsST/8onvdcZNZesas=\", mac=\"EViwFwImukeI2gTVE3YeqViE3GiRZ6ZYn1FebFp4c1U=\""
        );
        assert_eq!(
            exchange.next(
                Some(HttpReply {
                    status: 201,
                    body: b"{}".to_vec()
                }),
                1,
                "n"
            ),
            Step::Finished(Verdict::Done { pin: None })
        );
    }

    #[test]
    fn another_accounts_mac_missing_settings_and_outages_are_told_apart() {
        let mut exchange = discovered(RedirectOp::Register, "endpoints");
        exchange.next(
            ok(r#"[{"uuid":"u","param_name":"setting_server","section":"phone-settings"}]"#),
            1,
            "n",
        );
        let taken = HttpReply {
            status: 403,
            body: br#"{"message":"taken_mac_or_forbidden"}"#.to_vec(),
        };
        assert!(matches!(
            exchange.next(Some(taken), 1, "n"),
            Step::Finished(Verdict::OwnedElsewhere(_))
        ));
        let mut exchange = discovered(RedirectOp::Register, "endpoints/");
        assert!(matches!(
            exchange.next(
                ok(r#"[{"uuid":"u","param_name":"setting_server","section":"global"}]"#),
                1,
                "n"
            ),
            Step::Finished(Verdict::Refused(_))
        ));
        let mut exchange = sraps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 1, "n");
        assert!(matches!(
            exchange.next(
                Some(HttpReply {
                    status: 401,
                    body: Vec::new()
                }),
                1,
                "n"
            ),
            Step::Finished(Verdict::Refused(_))
        ));
        let mut exchange = sraps().exchange(&job(RedirectOp::Register));
        exchange.next(None, 1, "n");
        assert!(matches!(
            exchange.next(None, 1, "n"),
            Step::Finished(Verdict::Retry(_))
        ));
    }

    #[test]
    fn a_deregistration_deletes_the_endpoint_and_an_unknown_one_is_done() {
        let mut exchange = sraps().exchange(&job(RedirectOp::Deregister));
        exchange.next(None, 1, "n");
        exchange.next(
            ok(&format!("{{\"links\":{{\"company\":\"{COMPANY}\"}}}}")),
            1,
            "n",
        );
        let Step::Call(delete) = exchange.next(
            ok(&format!(
                "{{\"links\":{{\"endpoints\":\"{COMPANY}/endpoints/\"}}}}"
            )),
            1,
            "n",
        ) else {
            panic!("the DELETE");
        };
        assert_eq!(
            (delete.method, delete.url.as_str()),
            ("DELETE", format!("{COMPANY}/endpoints/000413a1b2c3").as_str())
        );
        assert_eq!(
            exchange.next(
                Some(HttpReply {
                    status: 404,
                    body: Vec::new()
                }),
                1,
                "n"
            ),
            Step::Finished(Verdict::Done { pin: None })
        );
    }
}
