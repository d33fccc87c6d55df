//! `Notifier`: tells a phone its configuration changed, with a SIP NOTIFY carrying its
//! vendor's check-sync event, sent over UDP to the address the phone last fetched from. Rate
//! limited per phone and service-wide; switched off with `provisioning.notify = false`.
//!
//! The phones' files make them challenge a check-sync (Snom `challenge_checksync`, Grandstream
//! `P4428 = 0`; docs/vendors): only someone who knows the line's SIP password can make a phone
//! act on one. The notifier knows it and answers a `401`/`407` Digest challenge (RFC 3261
//! §22.2, RFC 2617 MD5 with or without `qop=auth`) once, with the same Call-ID and the next
//! CSeq.
//!
//! Messages it takes: [`PhoneConfigChanged`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use innoprov::Mac;
use innoprov::provisioning::Vendors;

use crate::ops::limits::Pacer;
use crate::store::audit_log::AuditLog;
use tokio::net::UdpSocket;

/// Least time between two NOTIFYs to one phone.
const PER_PHONE_INTERVAL: Duration = Duration::from_secs(5);

/// The notifier.
pub struct Notifier {
    /// Where the last fetch came from.
    audit: Arc<AuditLog>,
    /// The vendors' resync events.
    vendors: Vendors,
    /// UDP port NOTIFYs go to.
    port: u16,
    /// Spaces NOTIFYs service-wide.
    pacer: Pacer,
    /// When each phone was last notified.
    last_sent: HashMap<Mac, Instant>,
    /// Numbers NOTIFYs (CSeq, tags).
    sent: u64,
    /// Told if this actor ends outside a shutdown.
    fatal: crate::ops::fatal::Fatal,
}

impl Notifier {
    /// A notifier sending to `port`, at most `per_second` a second.
    pub fn new(
        audit: Arc<AuditLog>,
        vendors: Vendors,
        port: u16,
        per_second: u32,
        fatal: crate::ops::fatal::Fatal,
    ) -> Notifier {
        Notifier {
            audit,
            vendors,
            port,
            pacer: Pacer::new(per_second),
            last_sent: HashMap::new(),
            sent: 0,
            fatal,
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.fatal.report("the notifier", "ended");
    }
}

/// How long to wait for the phone's answer to a NOTIFY (UDP: an answer may never come).
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// A phone's stored configuration changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PhoneConfigChanged {
    /// The phone.
    pub mac: Mac,
    /// Its SIP user (the NOTIFY's request URI, and the Digest user name).
    pub user: String,
    /// The line's SIP password, to answer the phone's challenge; `None` when there is none.
    pub password: Option<innoprov::Secret>,
}

/// Answers a SIP Digest challenge (`WWW-Authenticate` / `Proxy-Authenticate` value) for a
/// NOTIFY to `uri`; `None` when the challenge is not Digest MD5.
pub fn digest_authorization(
    challenge: &str,
    user: &str,
    password: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    use md5::{Digest as _, Md5};
    let md5 = |text: String| hex::encode(Md5::digest(text.as_bytes()));
    let params = challenge.trim().strip_prefix("Digest")?.trim();
    let value = |key: &str| -> Option<String> {
        params.split(',').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(key)
                .then(|| v.trim().trim_matches('"').to_string())
        })
    };
    let realm = value("realm")?;
    let nonce = value("nonce")?;
    if value("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
        return None;
    }
    let ha1 = md5(format!("{user}:{realm}:{password}"));
    let ha2 = md5(format!("NOTIFY:{uri}"));
    let opaque = value("opaque")
        .map(|o| format!(", opaque=\"{o}\""))
        .unwrap_or_default();
    let qop_auth = value("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth"));
    Some(if qop_auth {
        let response = md5(format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\"{opaque}"
        )
    } else {
        let response = md5(format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5{opaque}"
        )
    })
}

/// The user part of the NOTIFY's request URI: RFC 3261 unreserved and user-unreserved
/// characters only, so a user name can never add a header.
fn uri_user(user: &str) -> String {
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(*c))
        .collect();
    if user.is_empty() {
        "phone".to_string()
    } else {
        user
    }
}

fn host_port(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", a.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", a.port()),
    }
}

/// The NOTIFY's request URI.
pub fn notify_uri(target: SocketAddr, user: &str) -> String {
    format!("sip:{}@{}", uri_user(user), host_port(target))
}

/// The NOTIFY text (RFC 3265 style, as phones expect for check-sync); `cseq` counts the
/// attempts of one transaction chain, `authorization` is a full header line when answering a
/// challenge.
pub fn notify_text(
    target: SocketAddr,
    user: &str,
    event: &str,
    local: SocketAddr,
    id: &str,
    cseq: u32,
    authorization: Option<&str>,
) -> String {
    let (to, from) = (host_port(target), host_port(local));
    let user = uri_user(user);
    let authorization = authorization
        .map(|line| format!("{line}\r\n"))
        .unwrap_or_default();
    format!(
        "NOTIFY sip:{user}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK{id}x{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:innoprov@{from}>;tag={id}\r\n\
         To: <sip:{user}@{to}>\r\n\
         Call-ID: {id}@innoprov\r\n\
         CSeq: {cseq} NOTIFY\r\n\
         Contact: <sip:innoprov@{from}>\r\n\
         {authorization}\
         Event: {event}\r\n\
         Subscription-State: terminated;reason=timeout\r\n\
         User-Agent: innoprov\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The status code and headers (names lowercase) of a SIP response.
fn parse_sip_response(raw: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, headers))
}

/// What became of a NOTIFY.
#[derive(Debug, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// The phone answered with this final status (after a challenge, if there was one).
    Answered(u16),
    /// Sent; no answer within the wait (UDP, or a phone that does not answer).
    Unanswered,
}

/// Sends one NOTIFY to `target` and answers a Digest challenge once with `password`.
pub async fn send_notify(
    target: SocketAddr,
    user: &str,
    password: Option<&str>,
    event: &str,
    id: &str,
) -> std::io::Result<NotifyOutcome> {
    let bind: SocketAddr = if target.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0, 0, 0, 0], 0))
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(target).await?;
    let local = socket.local_addr()?;
    let mut authorization: Option<String> = None;
    let mut buf = vec![0u8; 4096];
    for cseq in 1..=2u32 {
        let text = notify_text(target, user, event, local, id, cseq, authorization.as_deref());
        socket.send(text.as_bytes()).await?;
        // Provisional answers (1xx) are skipped; the wait is bounded in total.
        let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
        let answer = loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => return Ok(NotifyOutcome::Unanswered),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => match parse_sip_response(&buf[..n]) {
                    Some((status, _)) if status < 200 => continue,
                    Some(answer) => break answer,
                    None => continue,
                },
            }
        };
        let (status, headers) = answer;
        if !(status == 401 || status == 407) || cseq == 2 {
            return Ok(NotifyOutcome::Answered(status));
        }
        let Some(password) = password else {
            return Ok(NotifyOutcome::Answered(status));
        };
        let (challenge_header, answer_header) = if status == 401 {
            ("www-authenticate", "Authorization")
        } else {
            ("proxy-authenticate", "Proxy-Authorization")
        };
        let cnonce = format!("{id}c");
        let uri = notify_uri(target, user);
        let Some(answer) = headers
            .iter()
            .filter(|(k, _)| k == challenge_header)
            .find_map(|(_, v)| digest_authorization(v, &uri_user(user), password, &uri, &cnonce))
        else {
            return Ok(NotifyOutcome::Answered(status));
        };
        authorization = Some(format!("{answer_header}: {answer}"));
    }
    Ok(NotifyOutcome::Unanswered)
}

impl Handler<PhoneConfigChanged> for Notifier {
    type Result = ();

    fn handle(&mut self, msg: PhoneConfigChanged, ctx: &mut Context<Self>) {
        let mac = msg.mac;
        if self
            .last_sent
            .get(&mac)
            .is_some_and(|t| t.elapsed() < PER_PHONE_INTERVAL)
        {
            log::info!("phone {mac}: NOTIFY skipped (sent less than {PER_PHONE_INTERVAL:?} ago)");
            return;
        }
        let Some(crate::store::audit_log::LastFetch { client, vendor, .. }) = self.audit.last_fetch(&mac)
        else {
            log::info!("phone {mac}: no NOTIFY: it has not fetched its files yet");
            return;
        };
        let Some(vendor) = self.vendors.by_name(&vendor) else {
            return;
        };
        let target = SocketAddr::new(client.ip(), self.port);
        let event = vendor.resync_event.clone();
        let now = Instant::now();
        let slot = self.pacer.take(tokio::time::Instant::now());
        self.last_sent.insert(mac, now);
        self.sent += 1;
        let id = format!("{:x}{:x}", std::process::id(), self.sent);
        let (user, password) = (msg.user, msg.password);
        let send = async move {
            tokio::time::sleep_until(slot).await;
            let password = password.as_ref().map(|p| p.expose());
            send_notify(target, &user, password, &event, &id).await
        };
        ctx.spawn(send.into_actor(self).map(
            move |result: std::io::Result<NotifyOutcome>, _, _| match result {
                Ok(NotifyOutcome::Answered(status)) if (200..300).contains(&status) => {
                    log::info!("phone {mac}: NOTIFY check-sync sent to {target}, accepted ({status})")
                }
                Ok(NotifyOutcome::Answered(status)) => {
                    log::warn!("phone {mac}: NOTIFY check-sync sent to {target}, refused ({status})")
                }
                Ok(NotifyOutcome::Unanswered) => {
                    log::info!("phone {mac}: NOTIFY check-sync sent to {target}, no answer")
                }
                Err(e) => log::warn!("phone {mac}: NOTIFY to {target} failed: {e}"),
            },
        ));
    }
}

#[cfg(feature = "simulators")]
impl Handler<crate::ops::fatal::InjectFault> for Notifier {
    type Result = ();

    fn handle(&mut self, _msg: crate::ops::fatal::InjectFault, _ctx: &mut Context<Self>) {
        panic!("fault injected into the Notifier singleton");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_is_a_sip_request() {
        let text = notify_text(
            "192.0.2.10:5060".parse().unwrap(),
            "alice",
            "check-sync;reboot=false",
            "192.0.2.1:40000".parse().unwrap(),
            "abc",
            1,
            None,
        );
        assert!(text.starts_with("NOTIFY sip:alice@192.0.2.10:5060 SIP/2.0\r\n"));
        assert!(text.contains("\r\nEvent: check-sync;reboot=false\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        assert!(!notify_uri("192.0.2.10:5060".parse().unwrap(), "a\r\nX: y").contains('\n'));
    }

    #[test]
    fn digest_answer_matches_rfc_2617_example() {
        // RFC 2617 §3.5, with the method and URI of that example.
        let challenge = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        use md5::{Digest as _, Md5};
        let md5 = |t: &str| hex::encode(Md5::digest(t.as_bytes()));
        let ha1 = md5("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = md5("NOTIFY:/dir/index.html");
        let expected = md5(&format!(
            "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"
        ));
        let answer = digest_authorization(
            challenge,
            "Mufasa",
            "Circle Of Life",
            "/dir/index.html",
            "0a4f113b",
        )
        .unwrap();
        assert!(answer.contains(&format!("response=\"{expected}\"")), "{answer}");
        assert!(answer.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        // The RFC's own GET vector: the same computation gives its published response.
        let ha2_get = md5("GET:/dir/index.html");
        assert_eq!(
            md5(&format!(
                "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2_get}"
            )),
            "6629fae49393a05397450978507c4ef1"
        );
        assert!(digest_authorization("Basic realm=x", "u", "p", "sip:x", "c").is_none());
    }
}
