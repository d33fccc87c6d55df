//! Snom SRAPS (Secure Redirection and Provisioning Service), REST with Hawk
//! (docs/redirect/snom-gigaset.md §1, with its sources: Snom's API pages, Snomio's own clients,
//! nethesis/falconieri, sipwise/ngcp-panel), and Gigaset GRAPE, the same protocol whose
//! setting is `ProvisioningServer` (§3.2; falconieri drives both with one client).
//!
//! Every call is signed with Hawk (sha256, the access key id and secret), bodies with their
//! payload hash. Register: `GET {base}tokens/{key id}` → `links.company`; `GET` it →
//! `links.endpoints`; `GET {base}settings/?page_size=1000` → the uuid of `setting_server` in
//! section `phone-settings` (two settings share the name; the list is paged by an RFC 8288
//! `Link: <…>; rel="next"`, followed on the same origin only); `PUT {endpoints}{mac}` with
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

/// Which of the two services speaking this protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HawkService {
    /// Snom SRAPS: `setting_server` in section `phone-settings`.
    SnomSraps,
    /// Gigaset GRAPE: `ProvisioningServer` (its section is unsettled: any). Taken here for the
    /// Snom-built P-series (vendor `gigaset_p`), GRAPE being Snom's platform under Gigaset's
    /// name; the Nx70 bases ask Gigaset's MAC-ID redirect server ([`super::gigaset`]).
    GigasetGrape,
}

impl HawkService {
    /// The vendor's name.
    pub fn vendor(self) -> &'static str {
        match self {
            HawkService::SnomSraps => SERVICE,
            HawkService::GigasetGrape => "gigaset_p",
        }
    }

    /// The setting that holds the provisioning URL: its name, and its section when two
    /// settings share the name.
    fn setting(self) -> (&'static str, Option<&'static str>) {
        match self {
            HawkService::SnomSraps => ("setting_server", Some("phone-settings")),
            HawkService::GigasetGrape => ("ProvisioningServer", None),
        }
    }
}

/// The SRAPS (or GRAPE) account.
#[derive(Debug, Clone)]
pub struct Sraps {
    /// The API base, ending in `/` (`https://secure-provisioning.snom.com/api/v1/`).
    pub base: String,
    /// The access key id.
    pub key_id: String,
    /// The access key secret.
    pub key_secret: Secret,
    /// SRAPS or GRAPE.
    pub service: HawkService,
}

/// The next page of a list: the `rel="next"` target of a `Link` header (RFC 8288 §3).
fn next_page(link: &str) -> Option<String> {
    link.split(',').find_map(|item| {
        let (target, params) = item.trim().split_once(';')?;
        let next = params.split(';').any(|p| {
            p.trim().replace(' ', "").eq_ignore_ascii_case("rel=\"next\"")
                || p.trim().eq_ignore_ascii_case("rel=next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        next.then(|| target.to_string())
    })
}

/// Whether `url` is on the origin of `base` (signed calls go nowhere else).
fn same_origin(url: &str, base: &str) -> bool {
    match (url::Url::parse(url), url::Url::parse(base)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
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
        let parsed = url::Url::parse(url).map_err(|e| {
            Verdict::Refused(format!("{}: unusable link {url:?}: {e}", self.service.vendor()))
        })?;
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
fn json(reply: &HttpReply, service: &str) -> Result<Value, Verdict> {
    if reply.status >= 400 && owned_elsewhere(&reply.text()) {
        return Err(Verdict::OwnedElsewhere(format!(
            "{service}: {}",
            reply.text().trim()
        )));
    }
    if let Some(verdict) = status_verdict(reply, service) {
        return Err(verdict);
    }
    serde_json::from_slice(&reply.body)
        .map_err(|e| Verdict::Retry(format!("{service} answered no JSON: {e}")))
}

/// `links.<name>` of an answer, as a URL.
fn link(value: &Value, name: &str, service: &str) -> Result<String, Verdict> {
    value["links"][name]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Verdict::Retry(format!("{service}: the answer has no links.{name}")))
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
        let service = self.sraps.service.vendor();
        let stage = std::mem::replace(&mut self.stage, Stage::Sent);
        if matches!(stage, Stage::Start) {
            self.stage = Stage::Token;
            let url = format!("{}tokens/{}", self.sraps.base, self.sraps.key_id);
            return Ok(Step::Call(self.sraps.call("GET", &url, None, now, nonce)?));
        }
        let reply =
            reply.ok_or_else(|| Verdict::Retry(format!("{service}: the service could not be reached")))?;
        match stage {
            Stage::Start => unreachable!("handled above"),
            Stage::Token => {
                let company = link(&json(&reply, service)?, "company", service)?;
                self.stage = Stage::Company;
                Ok(Step::Call(self.sraps.call("GET", &company, None, now, nonce)?))
            }
            Stage::Company => {
                let mut endpoints = link(&json(&reply, service)?, "endpoints", service)?;
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
            Stage::Settings { endpoints } => self.on_settings(&reply, endpoints, now, nonce),
            Stage::Sent => {
                if reply.status == 404 && self.job.op == RedirectOp::Deregister {
                    return Ok(Step::Finished(Verdict::Done { pin: None }));
                }
                if reply.status >= 400 && owned_elsewhere(&reply.text()) {
                    return Err(Verdict::OwnedElsewhere(format!(
                        "{service}: {}",
                        reply.text().trim()
                    )));
                }
                match status_verdict(&reply, service) {
                    Some(verdict) => Err(verdict),
                    None => Ok(Step::Finished(Verdict::Done { pin: None })),
                }
            }
        }
    }

    /// A page of the settings list: the setting's uuid and the PUT, else the next page.
    fn on_settings(
        &mut self,
        reply: &HttpReply,
        endpoints: String,
        now: u64,
        nonce: &str,
    ) -> Result<Step, Verdict> {
        let service = self.sraps.service.vendor();
        let (name, section) = self.sraps.service.setting();
        let settings = json(reply, service)?;
        let found = settings
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["param_name"] == name && section.is_none_or(|section| s["section"] == section))
            .and_then(|s| s["uuid"].as_str());
        let Some(uuid) = found else {
            let next = reply.header("link").and_then(next_page);
            return match next {
                Some(next) if same_origin(&next, &self.sraps.base) => {
                    self.stage = Stage::Settings { endpoints };
                    Ok(Step::Call(self.sraps.call("GET", &next, None, now, nonce)?))
                }
                _ => Err(Verdict::Refused(format!(
                    "{service}: no setting {name}{} in the settings list",
                    section.map(|s| format!(" in section {s}")).unwrap_or_default()
                ))),
            };
        };
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
}

impl Exchange for SrapsExchange {
    fn next(&mut self, reply: Option<HttpReply>, now: u64, nonce: &str) -> Step {
        self.step(reply, now, nonce).unwrap_or_else(Step::Finished)
    }
}

impl RedirectApi for Sraps {
    fn vendor(&self) -> &'static str {
        self.service.vendor()
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
            service: HawkService::SnomSraps,
        }
    }

    fn job(op: RedirectOp) -> RedirectJob {
        RedirectJob {
            op,
            mac: "000413a1b2c3".parse::<Mac>().expect("mac"),
            url: "https://prov.example.net/snom/{mac}".into(),
            login: None,
            device_code: None,
        }
    }

    fn ok(body: &str) -> Option<HttpReply> {
        Some(HttpReply::new(200, body.as_bytes().to_vec()))
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
            exchange.next(Some(HttpReply::new(201, b"{}".to_vec())), 1, "n"),
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
        let taken = HttpReply::new(403, br#"{"message":"taken_mac_or_forbidden"}"#.to_vec());
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
            exchange.next(Some(HttpReply::new(401, Vec::new())), 1, "n"),
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
            exchange.next(Some(HttpReply::new(404, Vec::new())), 1, "n"),
            Step::Finished(Verdict::Done { pin: None })
        );
    }

    /// Runs the discovery of a registration up to the settings call.
    fn to_the_settings(service: HawkService) -> Box<dyn Exchange> {
        let mut exchange = Sraps { service, ..sraps() }.exchange(&job(RedirectOp::Register));
        exchange.next(None, 1, "a");
        exchange.next(
            ok(&format!("{{\"links\":{{\"company\":\"{COMPANY}\"}}}}")),
            1,
            "b",
        );
        exchange.next(
            ok(&format!(
                "{{\"links\":{{\"endpoints\":\"{COMPANY}/endpoints/\"}}}}"
            )),
            1,
            "c",
        );
        exchange
    }

    fn page(body: &str, link: Option<&str>) -> Option<HttpReply> {
        let mut reply = HttpReply::new(200, body.as_bytes().to_vec());
        if let Some(link) = link {
            reply.headers.push(("link".into(), link.into()));
        }
        Some(reply)
    }

    #[test]
    fn the_settings_list_is_followed_page_by_page_on_the_same_origin_only() {
        let mut exchange = to_the_settings(HawkService::SnomSraps);
        let first = r#"[{"uuid":"5683038cec6c4fa9be95b2de9d1750e8","param_name":"setting_server","section":"global"}]"#;
        let next = "https://secure-provisioning.snom.com/api/v1/settings/?page_size=1000&page=2";
        let Step::Call(second) = exchange.next(
            page(first, Some(&format!("<{next}>; rel=\"next\", <https://secure-provisioning.snom.com/api/v1/settings/?page=1>; rel=\"first\""))),
            1,
            "d",
        ) else {
            panic!("the next page");
        };
        assert_eq!((second.method, second.url.as_str()), ("GET", next));
        let last = r#"[{"uuid":"50a4","param_name":"setting_server","section":"phone-settings"}]"#;
        let Step::Call(put) = exchange.next(page(last, None), 1, "e") else {
            panic!("the PUT");
        };
        assert!(String::from_utf8_lossy(&put.body).contains("\"50a4\""));
        // A next page elsewhere is not signed for.
        let mut exchange = to_the_settings(HawkService::SnomSraps);
        assert!(matches!(
            exchange.next(page(first, Some("<https://attacker.example/api/v1/settings/?page=2>; rel=\"next\"")), 1, "f"),
            Step::Finished(Verdict::Refused(text)) if text.contains("no setting setting_server in section phone-settings")
        ));
    }

    #[test]
    fn grape_is_the_same_protocol_with_its_provisioning_server_setting() {
        let mut exchange = to_the_settings(HawkService::GigasetGrape);
        let list = r#"[{"uuid":"s1","param_name":"setting_server","section":"phone-settings"},
                       {"uuid":"g7","param_name":"ProvisioningServer","section":"global"}]"#;
        let Step::Call(put) = exchange.next(ok(list), 1, "d") else {
            panic!("the PUT");
        };
        assert!(String::from_utf8_lossy(&put.body).contains("\"g7\""));
        assert_eq!(
            Sraps {
                service: HawkService::GigasetGrape,
                ..sraps()
            }
            .vendor(),
            "gigaset_p"
        );
    }
}
