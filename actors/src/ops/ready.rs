//! Readiness the systemd way (`sd_notify(3)`, `Type=notify`): once the service listens, a
//! datagram `READY=1` with a `STATUS=` line naming the bound addresses goes to the socket in
//! `NOTIFY_SOCKET`, and `STOPPING=1` when it shuts down. Without `NOTIFY_SOCKET` nothing is
//! sent. With `listen = "127.0.0.1:0"`, the status line is how a supervisor (or a test) learns
//! the port the kernel chose without reading the log.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;

/// The `STATUS=` text for the bound addresses; `ready_addresses` reads it back.
pub fn status_line(http: SocketAddr, https: Option<SocketAddr>) -> String {
    match https {
        Some(https) => format!("listening on http://{http} https://{https}"),
        None => format!("listening on http://{http}"),
    }
}

/// Sends `READY=1` and the status to `$NOTIFY_SOCKET`, if set.
pub fn notify_ready(http: SocketAddr, https: Option<SocketAddr>) {
    notify(&format!("READY=1\nSTATUS={}\n", status_line(http, https)));
}

/// Sends `STOPPING=1` to `$NOTIFY_SOCKET`, if set.
pub fn notify_stopping() {
    notify("STOPPING=1\n");
}

fn notify(message: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let target = target.to_string_lossy();
        match target.strip_prefix('@') {
            // A name in Linux's abstract namespace (systemd's own choice).
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                socket.send_to_addr(message.as_bytes(), &addr)
            }
            None => socket.send_to(message.as_bytes(), &*target),
        }
    });
    if let Err(e) = sent {
        log::warn!("cannot notify {}: {e}", target.to_string_lossy());
    }
}

/// Waits (at most `limit`) on `socket`, the test's `NOTIFY_SOCKET`, for the service's
/// `READY=1`; returns the addresses it names: (http, https).
#[cfg(feature = "simulators")]
pub fn wait_ready(
    socket: &UnixDatagram,
    limit: std::time::Duration,
) -> std::io::Result<(SocketAddr, Option<SocketAddr>)> {
    socket.set_read_timeout(Some(limit))?;
    let mut datagram = [0u8; 512];
    loop {
        let n = socket.recv(&mut datagram)?;
        if let Some(addresses) = ready_addresses(&String::from_utf8_lossy(&datagram[..n])) {
            return Ok(addresses);
        }
    }
}

/// The addresses in a `READY=1` datagram's status line: (http, https).
#[cfg(feature = "simulators")]
pub fn ready_addresses(datagram: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    if !datagram.lines().any(|l| l == "READY=1") {
        return None;
    }
    let status = datagram
        .lines()
        .find_map(|l| l.strip_prefix("STATUS=listening on "))?;
    let mut http = None;
    let mut https = None;
    for part in status.split_whitespace() {
        if let Some(a) = part.strip_prefix("http://") {
            http = a.parse().ok();
        } else if let Some(a) = part.strip_prefix("https://") {
            https = a.parse().ok();
        }
    }
    Some((http?, https))
}

#[cfg(all(test, feature = "simulators"))]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_reads_back() {
        let http: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let https: SocketAddr = "[::1]:8443".parse().unwrap();
        for tls in [None, Some(https)] {
            let datagram = format!("READY=1\nSTATUS={}\n", status_line(http, tls));
            assert_eq!(ready_addresses(&datagram), Some((http, tls)));
        }
        assert_eq!(ready_addresses("STOPPING=1\n"), None);
    }
}
