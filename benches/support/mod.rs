//! What the load harnesses share: the release binary started in its own process on a loopback
//! port, with a generated config, and its resident memory.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
    /// `rust_log`; it says where it listens over `NOTIFY_SOCKET` (innoprov_actors::ready).
    pub fn start(extra: &str, rust_log: &str) -> ServiceProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[app]\npath = \"{APP_PATH}\"\npassword = \"{PASSWORD}\"\n[store]\npath = \"{}\"\n{extra}",
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
        let (addr, _) =
            innoprov_actors::ready::wait_ready(&notify, Duration::from_secs(20)).expect("innoprov started");
        ServiceProcess {
            child,
            addr,
            _dir: dir,
        }
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
