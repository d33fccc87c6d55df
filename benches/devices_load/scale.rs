//! The scale mode (`INNOPROV_BENCH=scale`, issue 23 item 5): as many phone links as the
//! service's open-file limit allows, with the Devices simulator in several processes so that
//! no process but the service holds more than its share of the links.
//!
//! The service knows one Devices URL (one address and port), as it does in the field; the
//! simulator's members are separate processes (this bench binary started again with
//! `INNOPROV_DEVICES_MEMBER`) that all listen on that port with SO_REUSEPORT, and the kernel
//! spreads the service's connections across them. Members derive each phone's sysclient
//! password from a shared seed, so a reconnect that lands on another member is still
//! challenged and checked. A Devices restart is what it is in the field: the members are
//! killed and new ones started on the same port.
//!
//! It prints, per link: the service's RSS, its open files, its CPU per phone provisioned and
//! per reconnect (user + system time from /proc, the service's process alone).
//!
//! `INNOPROV_SCALE_PHONES` (default 19,500), `INNOPROV_SCALE_MEMBERS` (default 4).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innoprov_actors::sim::devices::{DevicesEvent, DevicesGroup, DevicesSim};

use super::support::{ServiceProcess, env_u64, open_files, provision_phones};

/// The environment variable that makes this binary a simulator member.
const MEMBER: &str = "INNOPROV_DEVICES_MEMBER";
/// The seed every member derives phones' passwords from.
const SEED: &str = "scale-bench-seed";

/// What a member reports every 200 ms.
#[derive(Debug, Clone, Copy, Default)]
struct MemberStatus {
    /// Open identified links.
    linked: u64,
    /// Configurations sent completely (one per identify).
    configured: u64,
    /// Challenge answers whose digest did not match.
    bad_digests: u64,
}

/// One simulator member process.
struct Member {
    /// The process; killed (a Devices restart) or ended when its stdin closes.
    child: Child,
    /// Kept open: the member ends when it closes.
    _stdin: ChildStdin,
    /// Its latest report.
    status: Arc<Mutex<MemberStatus>>,
}

/// When this process is a member: its group.
pub fn member_group() -> Option<DevicesGroup> {
    let value = std::env::var(MEMBER).ok()?;
    let mut parts = value.split(' ');
    Some(DevicesGroup {
        port: parts.next()?.parse().ok()?,
        codes: parts.next()?.parse().ok()?,
        seed: SEED.to_string(),
    })
}

/// A member's life: it listens, says its port, reports, and ends when its parent's pipe closes.
pub async fn run_member(group: DevicesGroup) {
    let sim = DevicesSim::start_in_group(&group).await;
    println!("port {}", sim.port());
    std::thread::spawn(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
        std::process::exit(0);
    });
    loop {
        let configured = sim.count_events(|e| matches!(e, DevicesEvent::ConfigSent { .. }));
        let bad = sim.count_events(|e| matches!(e, DevicesEvent::ChallengeAnswered { ok: false, .. }));
        println!("status {} {configured} {bad}", sim.connected_count());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start_member(port: u16, codes: u32) -> (Member, u16) {
    let mut child = Command::new(std::env::current_exe().expect("this bench's path"))
        .env(MEMBER, format!("{port} {codes}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a Devices member");
    let stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let port: u16 = first
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .expect("the member says its port");
    let status = Arc::new(Mutex::new(MemberStatus::default()));
    let shared = status.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let n: Vec<u64> = line.split(' ').skip(1).filter_map(|v| v.parse().ok()).collect();
            if let [linked, configured, bad_digests] = n[..] {
                *shared.lock().unwrap_or_else(|p| p.into_inner()) = MemberStatus {
                    linked,
                    configured,
                    bad_digests,
                };
            }
        }
    });
    let member = Member {
        child,
        _stdin: stdin,
        status,
    };
    (member, port)
}

/// `count` members on one port (the first picks it); the port.
fn start_members(port: u16, count: u32, codes: u32) -> (Vec<Member>, u16) {
    let (first, port) = start_member(port, codes);
    let mut members = vec![first];
    for _ in 1..count {
        members.push(start_member(port, codes).0);
    }
    (members, port)
}

/// A socket bound to `port` beside the members (SO_REUSEPORT), never listening.
fn hold_port(port: u16) -> tokio::net::TcpSocket {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .expect("hold the Devices port");
    socket
}

fn total(members: &[Member]) -> MemberStatus {
    members.iter().fold(MemberStatus::default(), |sum, m| {
        let s = *m.status.lock().unwrap_or_else(|p| p.into_inner());
        MemberStatus {
            linked: sum.linked + s.linked,
            configured: sum.configured + s.configured,
            bad_digests: sum.bad_digests + s.bad_digests,
        }
    })
}

/// Waits until `done` holds for the members' totals or `limit` passes; whether it held.
async fn wait_for(members: &[Member], limit: Duration, done: impl Fn(MemberStatus) -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done(total(members)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done(total(members))
}

/// The service's user + system CPU time so far, seconds (clock ticks of 1/100 s).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat, counted from the state (field 3) at index 0.
    (ticks(11) + ticks(12)) / 100.0
}

fn open_files_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .unwrap_or_default()
}

/// The scale run.
pub async fn run() {
    let setting = |name, default| u32::try_from(env_u64(name, default)).unwrap_or(u32::MAX);
    let phones = setting("INNOPROV_SCALE_PHONES", 19_500);
    let count = setting("INNOPROV_SCALE_MEMBERS", 4).max(1);
    let (mut members, port) = start_members(0, count, phones);
    // The port was picked from the ephemeral range: held bound (not listening) for the whole
    // run, the kernel gives it to no outgoing connection, so no reconnect during the restart
    // can connect to itself on it.
    let _held = hold_port(port);
    let service = ServiceProcess::start(
        &format!(
            "[devices]\nsysclient_url = \"ws://127.0.0.1:{port}/example.com/devices/sysclients\"\nprovisioning_timeout_secs = 300\n"
        ),
        "warn,innoprov_actors::service=info",
    );
    let pid = service.pid();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, fds0, cpu0) = (service.rss_kib(), open_files(pid), cpu_secs(pid));

    // 1. Every phone provisioned through the default connect gate, its link kept open.
    let codes: Arc<Vec<String>> = Arc::new((0..phones).map(|n| DevicesSim::nth_code(n.into())).collect());
    let start = Instant::now();
    provision_phones(&service.ws_url(), codes, 0, phones, 16, 64).await;
    let provision_time = start.elapsed();
    let linked = wait_for(&members, Duration::from_secs(60), |s| s.linked >= phones.into()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss1, fds1, cpu1) = (service.rss_kib(), open_files(pid), cpu_secs(pid));
    let held = total(&members).linked;
    let split: Vec<u64> = members
        .iter()
        .map(|m| m.status.lock().unwrap_or_else(|p| p.into_inner()).linked)
        .collect();

    // 2. A Devices restart: the members killed, new ones on the same port.
    for m in &mut members {
        let _ = m.child.kill();
        let _ = m.child.wait();
    }
    let storm = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let members = start_members(port, count, phones).0;
    let back = wait_for(&members, Duration::from_secs(300), |s| {
        s.configured >= phones.into() && s.linked >= phones.into()
    })
    .await;
    let storm_time = storm.elapsed();
    let cpu2 = cpu_secs(pid);
    let (fds2, after) = (open_files(pid), total(&members));

    let per = |v: f64| v / held.max(1) as f64;
    println!("devices_load (scale run: {phones} phones, {count} Devices member processes on one port)");
    println!(
        "  provisioned             {phones} in {:.1} s; all linked: {linked}; links held {held} (per member {split:?})",
        provision_time.as_secs_f64()
    );
    println!(
        "  service open files      {fds0} before, {fds1} with the links, {fds2} after the restart; limit (soft / hard) {}",
        open_files_limit(pid)
    );
    println!(
        "  RSS per link            {:.1} KiB ({rss0} KiB -> {} KiB)",
        per(rss1.saturating_sub(rss0) as f64),
        service.rss_kib()
    );
    println!(
        "  CPU per phone           {:.2} ms provisioned (login, record, first link), {:.2} ms per reconnect (challenge, digest, configuration)",
        per((cpu1 - cpu0) * 1000.0),
        per((cpu2 - cpu1) * 1000.0)
    );
    println!(
        "  Devices restart         all {phones} configured again: {back} after {:.1} s; {} bad digests",
        storm_time.as_secs_f64(),
        after.bad_digests
    );
    let mut out = std::io::stdout();
    let _ = out.flush();
}
