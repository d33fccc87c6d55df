//! What the load harnesses share: the release binary started in its own process on a loopback
//! port, with a generated config, and its resident memory.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use innoprov_actors::sim::users::{SimPhone, UsersSim};

/// No phase may run longer than this.
pub const PHASE_LIMIT: Duration = Duration::from_secs(180);

/// The App object password of every bench config.
pub const PASSWORD: &str = "bench-pw";
/// The app path of every bench config.
pub const APP_PATH: &str = "/example.com/innoprov/innoprov";

/// A running `innoprov`.
pub struct ServiceProcess {
    /// The process.
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state directory, removed when the bench ends.
    _dir: tempfile::TempDir,
}

impl ServiceProcess {
    /// Starts the release binary with `extra` appended to the config and `RUST_LOG` =
    /// `rust_log`; it says where it listens over `NOTIFY_SOCKET` (innoprov_actors::ops::ready).
    pub fn start(extra: &str, rust_log: &str) -> ServiceProcess {
        ServiceProcess::start_with_store("", extra, rust_log)
    }

    /// Like [`start`](Self::start), with `store_keys` written into the `[store]` section.
    pub fn start_with_store(store_keys: &str, extra: &str, rust_log: &str) -> ServiceProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[app]\npath = \"{APP_PATH}\"\npassword = \"{PASSWORD}\"\n[store]\npath = \"{}\"\n{store_keys}{extra}",
                dir.path().join("store").display()
            ),
        )
        .expect("config");
        let notify_path = dir.path().join("notify");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
        let mut child = Command::new(env!("CARGO_BIN_EXE_innoprov"))
            .args(["--config", config.to_str().expect("path")])
            .env("RUST_LOG", rust_log)
            .env("NOTIFY_SOCKET", &notify_path)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn innoprov");
        let stderr = child.stderr.take().expect("stderr");
        // Keeps draining stderr for the whole run, so logging never blocks the service.
        std::thread::spawn(move || {
            // INNOPROV_BENCH_STDERR=1 passes the service's log through, for a look at a run.
            let pass = std::env::var_os("INNOPROV_BENCH_STDERR").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if pass {
                    eprintln!("service: {line}");
                }
            }
        });
        let (addr, _) = innoprov_actors::ops::ready::wait_ready(&notify, Duration::from_secs(20))
            .expect("innoprov started");
        ServiceProcess {
            child,
            addr,
            _dir: dir,
        }
    }

    /// SIGKILL: no shutdown, no release of anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The AppWebsocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{APP_PATH}", self.addr)
    }

    /// The service's resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The number in environment variable `name`, or `default` when it is unset or not a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How many files process `pid` has open (0 when it is gone).
pub fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Runs `tasks` copies of `work` sharing a counter of `total` units; returns units/s.
pub async fn rate<F, Fut>(total: u32, tasks: u32, work: F) -> f64
where
    F: Fn(Arc<AtomicU32>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let counter = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| tokio::spawn(work(Arc::clone(&counter))))
        .collect();
    let all = async {
        for h in handles {
            h.await.expect("bench task");
        }
    };
    tokio::time::timeout(PHASE_LIMIT, all)
        .await
        .expect("phase finished in time");
    f64::from(total.min(counter.load(Ordering::Relaxed))) / start.elapsed().as_secs_f64()
}

/// Takes the next unit of work, or `None` when `total` are taken.
pub fn take(counter: &AtomicU32, total: u32) -> Option<u32> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    (n < total).then_some(n)
}

/// Provisions phones `first .. first + total` (`SimPhone::numbered`, with `codes[n - first]`)
/// over `connections` Users logins to `url`, `window` ProvisioningPhone in flight on each, and
/// asserts every answer is ok; phones/s.
pub async fn provision_phones(
    url: &str,
    codes: Arc<Vec<String>>,
    first: u32,
    total: u32,
    connections: u32,
    window: u32,
) -> f64 {
    let (url, users) = (url.to_string(), UsersSim::new("innoprov", PASSWORD));
    rate(total, connections, move |c| {
        let (url, users, codes) = (url.clone(), users.clone(), codes.clone());
        async move {
            let mut conn = users.connect(&url).await.expect("login");
            let mut in_flight = 0;
            loop {
                while in_flight < window {
                    let Some(i) = take(&c, total) else { break };
                    let n = first + i;
                    let phone = SimPhone {
                        code: codes[i as usize].clone(),
                        ..SimPhone::numbered(n)
                    };
                    let text = conn
                        .provisioning_text(&phone, Some(&n.to_string()))
                        .expect("text");
                    conn.client.send_raw(&text).await.expect("send");
                    in_flight += 1;
                }
                if in_flight == 0 {
                    break;
                }
                let reply = conn
                    .client
                    .recv_mt("ProvisioningPhoneResult")
                    .await
                    .expect("result");
                assert_eq!(reply["result"], "ok", "{reply}");
                in_flight -= 1;
            }
        }
    })
    .await
}
