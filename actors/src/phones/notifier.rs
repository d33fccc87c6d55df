//! `Notifier`: tells a phone its configuration changed, with a SIP NOTIFY carrying its
//! vendor's check-sync event, sent over UDP to the address the phone last fetched from. Rate
//! limited per phone and service-wide; switched off with `provisioning.notify = false`.
//!
//! The phones' files make them challenge a check-sync (Snom `challenge_checksync`, Grandstream
//! `P4428 = 0`; docs/vendors): only someone who knows the line's SIP password can make a phone
//! act on one. The notifier knows it and answers a `401`/`407` Digest challenge (RFC 3261
//! §22.2, RFC 2617 MD5 with or without `qop=auth`) once, with the same Call-ID and the next
//! CSeq. Reading the answer and computing the credentials is the core's
//! [`innoprov::sip_digest`]; this actor only carries the datagrams and waits.
//!
//! Messages it takes: [`PhoneConfigChanged`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use innoprov::Mac;
use innoprov::provisioning::Vendors;
use innoprov::sip_digest::{SipResponse, notify_authorization, parse_sip_response};

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

/// What became of a NOTIFY.
#[derive(Debug, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// The phone answered with this final status (after a challenge, if there was one).
    Answered(u16),
    /// Sent; no answer within the wait (UDP, or a phone that does not answer).
    Unanswered,
}

/// The phone's final answer (provisional ones and what is not a SIP response skipped), or
/// `None` when none came within [`ANSWER_WAIT`].
async fn final_answer(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<Option<SipResponse>> {
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.recv(buf)).await {
            Err(_) => return Ok(None),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(n)) => match parse_sip_response(&buf[..n]) {
                Some(answer) if !answer.provisional() => return Ok(Some(answer)),
                _ => continue,
            },
        }
    }
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
        let Some(answer) = final_answer(&socket, &mut buf).await? else {
            return Ok(NotifyOutcome::Unanswered);
        };
        if !answer.challenges() || cseq == 2 {
            return Ok(NotifyOutcome::Answered(answer.status));
        }
        let Some(password) = password else {
            return Ok(NotifyOutcome::Answered(answer.status));
        };
        let (uri, cnonce) = (notify_uri(target, user), format!("{id}c"));
        authorization = notify_authorization(&answer, &uri_user(user), password, &uri, &cnonce);
        if authorization.is_none() {
            return Ok(NotifyOutcome::Answered(answer.status));
        }
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
}
