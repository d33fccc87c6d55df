//! `Notifier`: tells a phone its configuration changed, with a SIP NOTIFY carrying its
//! vendor's check-sync event, sent over UDP to the address the phone last fetched from. Rate
//! limited per phone and service-wide; switched off with `provisioning.notify = false`.
//!
//! Messages it takes: [`PhoneConfigChanged`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use innoprov::Mac;
use innoprov::provisioning::Vendors;

use crate::audit_log::AuditLog;
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
    /// Time between two NOTIFYs service-wide.
    spacing: Duration,
    /// When the next NOTIFY may go.
    next_slot: Instant,
    /// When each phone was last notified.
    last_sent: HashMap<Mac, Instant>,
    /// Numbers NOTIFYs (CSeq, tags).
    sent: u64,
}

impl Notifier {
    /// A notifier sending to `port`, at most `per_second` a second.
    pub fn new(audit: Arc<AuditLog>, vendors: Vendors, port: u16, per_second: u32) -> Notifier {
        Notifier {
            audit,
            vendors,
            port,
            spacing: Duration::from_secs(1) / per_second.max(1),
            next_slot: Instant::now(),
            last_sent: HashMap::new(),
            sent: 0,
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;
}

/// A phone's stored configuration changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PhoneConfigChanged {
    /// The phone.
    pub mac: Mac,
    /// Its SIP user (the NOTIFY's request URI).
    pub user: String,
}

/// The NOTIFY text (RFC 3265 style, as phones expect for check-sync).
pub fn notify_text(target: SocketAddr, user: &str, event: &str, local: SocketAddr, id: &str) -> String {
    let host = |a: SocketAddr| match a.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", a.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", a.port()),
    };
    let (to, from) = (host(target), host(local));
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(*c))
        .collect();
    let user = if user.is_empty() {
        "phone".to_string()
    } else {
        user
    };
    format!(
        "NOTIFY sip:{user}@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:innoprov@{from}>;tag={id}\r\n\
         To: <sip:{user}@{to}>\r\n\
         Call-ID: {id}@innoprov\r\n\
         CSeq: 1 NOTIFY\r\n\
         Contact: <sip:innoprov@{from}>\r\n\
         Event: {event}\r\n\
         Subscription-State: terminated;reason=timeout\r\n\
         User-Agent: innoprov\r\n\
         Content-Length: 0\r\n\r\n"
    )
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
        let Some((client, vendor)) = self.audit.last_fetch(&mac) else {
            log::info!("phone {mac}: no NOTIFY: it has not fetched its files yet");
            return;
        };
        let Some(vendor) = self.vendors.by_name(&vendor) else {
            return;
        };
        let target = SocketAddr::new(client.ip(), self.port);
        let event = vendor.resync_event.clone();
        let now = Instant::now();
        let slot = self.next_slot.max(now);
        self.next_slot = slot + self.spacing;
        self.last_sent.insert(mac, now);
        self.sent += 1;
        let id = format!("{:x}{:x}", std::process::id(), self.sent);
        let user = msg.user;
        let send = async move {
            tokio::time::sleep_until(slot.into()).await;
            let bind: SocketAddr = if target.is_ipv6() {
                "[::]:0".parse()
            } else {
                "0.0.0.0:0".parse()
            }
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let socket = UdpSocket::bind(bind).await?;
            socket.connect(target).await?;
            let local = socket.local_addr()?;
            let text = notify_text(target, &user, &event, local, &id);
            socket.send(text.as_bytes()).await.map(|_| target)
        };
        ctx.spawn(
            send.into_actor(self)
                .map(move |result: std::io::Result<SocketAddr>, _, _| match result {
                    Ok(target) => log::info!("phone {mac}: NOTIFY check-sync sent to {target}"),
                    Err(e) => log::warn!("phone {mac}: NOTIFY failed: {e}"),
                }),
        );
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
        );
        assert!(text.starts_with("NOTIFY sip:alice@192.0.2.10:5060 SIP/2.0\r\n"));
        assert!(text.contains("\r\nEvent: check-sync;reboot=false\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }
}
