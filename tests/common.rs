//! Starting and stopping the real binary for a test.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innoprov::store::SledStore;
use innoprov::{Mac, PhoneRecord, Sealer, Store};
use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::users::SimPhone;

/// The App object password every test config uses.
pub const PASSWORD: &str = "s3cret-app-pw";
/// The app path every test config uses.
pub const APP_PATH: &str = "/example.com/innoprov/innoprov";

/// A running `innoprov` process.
pub struct Service {
    /// The process.
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its HTTPS listener is, when configured.
    pub https_addr: Option<SocketAddr>,
    /// Everything it wrote to stderr so far.
    logs: Arc<Mutex<String>>,
}

/// The test's config text for a state directory; `extra` is appended verbatim.
pub fn config_text(dir: &Path, extra: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[app]\npath = \"{APP_PATH}\"\npassword = \"{PASSWORD}\"\ntitle = \"Test phones\"\n[store]\npath = \"{}\"\n{extra}",
        dir.join("store").display()
    )
}

impl Service {
    /// Starts the binary on a fresh state directory.
    pub fn start(extra: &str) -> (Service, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = Service::start_in(dir.path(), extra);
        (service, dir)
    }

    /// Starts the binary on an existing state directory.
    pub fn start_in(dir: &Path, extra: &str) -> Service {
        let config = dir.join("config.toml");
        std::fs::write(&config, config_text(dir, extra)).expect("write config");
        Service::start_with_config_file(&config)
    }

    /// Starts the binary with a config file written by the test.
    pub fn start_with_config_file(config: &Path) -> Service {
        Service::spawn(config, None)
    }

    /// Starts the binary with its soft limit of open files lowered to `soft` first (as a
    /// systemd unit would hand it 1024).
    pub fn start_with_open_files(config: &Path, soft: u64) -> Service {
        Service::spawn(config, Some(soft))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the binary with its hard (and soft) limit of open files set to `hard` (a host
    /// whose administrator never raised it).
    pub fn start_with_hard_open_files(config: &Path, hard: u64) -> Service {
        Service::spawn_binary(
            env!("CARGO_BIN_EXE_innoprov"),
            config,
            Some(format!("-n {hard}")),
            "debug",
        )
    }

    /// Starts the binary with `RUST_LOG` set to `log` instead of debug.
    pub fn start_with_log_level(config: &Path, log: &str) -> Service {
        Service::spawn_binary(env!("CARGO_BIN_EXE_innoprov"), config, None, log)
    }

    /// Starts another build of the binary (the one a package installed) with a config file.
    pub fn start_binary(binary: &Path, config: &Path) -> Service {
        Service::spawn_binary(binary.to_str().expect("utf-8 path"), config, None, "debug")
    }

    fn spawn(config: &Path, soft_nofile: Option<u64>) -> Service {
        let ulimit = soft_nofile.map(|soft| format!("-Sn {soft}"));
        Service::spawn_binary(env!("CARGO_BIN_EXE_innoprov"), config, ulimit, "debug")
    }

    /// Starts the binary with `envs` added to its environment (the test faults of
    /// `innoprov_actors::store::slow_store`).
    pub fn start_with_env(config: &Path, envs: &[(&str, &str)]) -> Service {
        Service::spawn_binary_with(env!("CARGO_BIN_EXE_innoprov"), config, None, "debug", envs)
    }

    fn spawn_binary(binary: &str, config: &Path, ulimit: Option<String>, log: &str) -> Service {
        Service::spawn_binary_with(binary, config, ulimit, log, &[])
    }

    fn spawn_binary_with(
        binary: &str,
        config: &Path,
        ulimit: Option<String>,
        log: &str,
        envs: &[(&str, &str)],
    ) -> Service {
        let config = config.to_str().expect("utf-8 path");
        let mut command = match ulimit {
            None => {
                let mut c = Command::new(binary);
                c.args(["--config", config]);
                c
            }
            Some(ulimit) => {
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    &format!("ulimit {ulimit} && exec \"$0\" --config \"$1\""),
                    binary,
                    config,
                ]);
                c
            }
        };
        // The service says where it listens the systemd way (innoprov_actors::ops::ready).
        let notify_dir = tempfile::tempdir().expect("notify dir");
        let notify_path = notify_dir.path().join("notify");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
        command.envs(envs.iter().copied());
        let mut child = command
            .env("RUST_LOG", log)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn innoprov");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logs = sink.lock().unwrap_or_else(|p| p.into_inner());
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let ready = innoprov_actors::ops::ready::wait_ready(&notify, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("innoprov did not start ({e}): {}", logs.lock().unwrap()));
        Service {
            child,
            addr: ready.0,
            https_addr: ready.1,
            logs,
        }
    }

    /// The AppWebsocket URL (the full app path).
    pub fn ws_url(&self) -> String {
        format!("ws://{}{APP_PATH}", self.addr)
    }

    /// Waits until a log line contains `needle` (at most `limit`); whether it did.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.logs().contains(needle)
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends SIGTERM and waits for the exit (at most 20 s).
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let status = wait_with_deadline(&mut self.child, Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
        (status, self.logs())
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.logs()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("innoprov did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens the stopped service's store and seal key, as an operator's tool would.
pub fn open_store(dir: &Path) -> (SledStore, Sealer) {
    let store = SledStore::open(&dir.join("store")).expect("open store");
    let sealer = Sealer::load_or_create(&dir.join("store").join("seal.key")).expect("seal key");
    (store, sealer)
}

/// The stored record of `mac`.
pub fn stored_phone(store: &SledStore, mac: &str) -> Option<PhoneRecord> {
    store
        .get_phone(&mac.parse::<Mac>().expect("mac"))
        .expect("read store")
}

/// Config lines that point the service at a Devices simulator, with short reconnect delays.
pub fn devices_config(sim: &DevicesSim) -> String {
    format!(
        "[devices]\nsysclient_url = \"{}\"\nreconnect_min_ms = 100\nreconnect_max_secs = 2\nprovisioning_timeout_secs = 10\n",
        sim.sysclient_url()
    )
}

/// A Devices simulator and the service configured to use it.
pub async fn start_with_devices(extra: &str) -> (Service, tempfile::TempDir, DevicesSim) {
    let sim = DevicesSim::start().await;
    let (service, dir) = Service::start(&format!("{}{extra}", devices_config(&sim)));
    (service, dir, sim)
}

/// The `n`-th test phone with a fresh code from `sim`.
pub fn phone(sim: &DevicesSim, n: u32) -> SimPhone {
    SimPhone {
        code: sim.issue_code(),
        ..SimPhone::numbered(n)
    }
}

/// Opens a websocket upgrade from `local` (a loopback address) with extra `headers` and
/// returns the HTTP status and the open socket (kept idle: it never logs in).
pub async fn idle_upgrade_with(
    server: SocketAddr,
    local: &str,
    headers: &[(&str, &str)],
) -> (u16, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{local}:0").parse().expect("local address"))
        .expect("bind");
    let mut tcp = socket.connect(server).await.expect("connect");
    let mut request = format!(
        "GET {APP_PATH} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, tcp)
}

/// [`idle_upgrade_with`] without extra headers.
pub async fn idle_upgrade(server: SocketAddr, local: &str) -> (u16, tokio::net::TcpStream) {
    idle_upgrade_with(server, local, &[]).await
}
