//! A real PostgreSQL server for the tests: Debian's `postgresql` package, an `initdb` cluster in
//! a temporary directory, on a free loopback port, stopped when dropped. As root (CI), the
//! cluster is made and run as the unprivileged user `nobody`, because PostgreSQL refuses to run
//! as root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PostgreSQL server.
pub struct TestPostgres {
    /// The cluster and its socket directory; removed when dropped.
    dir: tempfile::TempDir,
    /// The server process.
    server: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

/// The directory of Debian's PostgreSQL programs (`$INNOPROV_PG_BIN` overrides), newest
/// version first.
pub fn pg_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("INNOPROV_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` of `bin` with `args`, as `nobody` when this process is root.
fn command(bin: &Path, program: &str, args: &[&str]) -> Command {
    let program = bin.join(program);
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

impl TestPostgres {
    /// Makes a cluster and starts the server; the error says what is missing or failed.
    pub fn start() -> Result<TestPostgres, String> {
        let bin = pg_bin().ok_or("PostgreSQL is not installed: run ./test.sh, which installs it")?;
        let dir = tempfile::Builder::new()
            .prefix("innoprov-pg")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let path = dir
            .path()
            .to_str()
            .ok_or("tempdir path is not UTF-8")?
            .to_string();
        if running_as_root() {
            // nobody:nogroup on Debian.
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534))
                .map_err(|e| format!("chown: {e}"))?;
        }
        let data = format!("{path}/data");
        run_checked(
            &bin,
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "innoprov",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let server = launch(&bin, dir.path(), port)?;
        Ok(TestPostgres { dir, server, port })
    }

    /// Stops the server (fast shutdown: connections are cut), keeping the cluster.
    pub fn stop(&mut self) {
        if let (Some(bin), Some(data)) = (pg_bin(), self.dir.path().join("data").to_str()) {
            let _ = command(&bin, "pg_ctl", &["-D", data, "-m", "fast", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&mut self) -> Result<(), String> {
        let bin = pg_bin().ok_or("PostgreSQL is not installed")?;
        self.server = launch(&bin, self.dir.path(), self.port)?;
        Ok(())
    }

    /// Creates database `name`; returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        let bin = pg_bin().ok_or("PostgreSQL is not installed")?;
        let port = self.port.to_string();
        run_checked(
            &bin,
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "innoprov", name],
        )?;
        Ok(self.url(name))
    }

    /// Runs `sql` in database `name` with `psql` (stops at the first error), for tests that
    /// shape a database as an older version left it.
    pub fn psql(&self, name: &str, sql: &str) -> Result<(), String> {
        let bin = pg_bin().ok_or("PostgreSQL is not installed")?;
        let port = self.port.to_string();
        run_checked(
            &bin,
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "innoprov",
                "-d",
                name,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                sql,
            ],
        )
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://innoprov@127.0.0.1:{}/{name}", self.port)
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // Through pg_ctl: the server may run under runuser, which is what `server` is then.
        self.stop();
    }
}

/// Runs `program` of `bin` to its end; its stderr is the error when it fails.
fn run_checked(bin: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let out = command(bin, program, args)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Starts the server of the cluster in `dir` on `port` and waits until it takes connections.
fn launch(bin: &Path, dir: &Path, port: u16) -> Result<Child, String> {
    let path = dir.to_str().ok_or("tempdir path is not UTF-8")?;
    let data = format!("{path}/data");
    let port_text = port.to_string();
    let mut server = command(
        bin,
        "postgres",
        &[
            "-D",
            &data,
            "-p",
            &port_text,
            "-k",
            path,
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .map_err(|e| format!("postgres: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ready = command(bin, "pg_isready", &["-h", "127.0.0.1", "-p", &port_text, "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    Err(format!("postgres did not start on port {port} within 30 s"))
}
