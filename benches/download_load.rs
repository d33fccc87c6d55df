//! Phone download throughput (target: issue 4 asked ≥ 0.70 of nginx, issue 23 ≥ 1.0):
//! requests per second for a phone's configuration file from innoprov (authenticated, rendered
//! from the store, audited) and, in the same run, from nginx serving the very same bytes as a
//! static file. Both get the same wrk load on loopback, one after the other.
//!
//! Needs `wrk` and `nginx` (Debian: `apt-get install -y wrk nginx-light`).
//! `cargo bench --bench download_load` (10 s per server), `INNOPROV_BENCH=full` for 30 s.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use innoprov_actors::sim::devices::DevicesSim;
use innoprov_actors::sim::phone::{Auth, PhoneSim};
use innoprov_actors::sim::users::{SimPhone, UsersSim};

mod support;

use support::{PASSWORD, ServiceProcess};

const PROV: &str = "/example.com/innoprov/prov";
const USER_AGENT: &str = "Yealink SIP-T46S 66.86.0.15";

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wrk(url: &str, seconds: u32, headers: &[String]) -> (f64, String) {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c64", &format!("-d{seconds}s"), "--latency"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let non2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .map(str::to_string)
        .unwrap_or_default();
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    (rps, format!("{p99} {non2xx}").trim().to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for tool in ["wrk", "nginx"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool} || test -x /usr/sbin/{tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("download_load needs {tool}: apt-get install -y wrk nginx-light");
            std::process::exit(2);
        }
    }
    let seconds = if std::env::var("INNOPROV_BENCH").as_deref() == Ok("full") {
        30
    } else {
        10
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = DevicesSim::start().await;

    // innoprov, release binary, logging at info as deployed (a new version served is one line).
    let service = ServiceProcess::start(
        &format!("[devices]\nsysclient_url = \"{}\"\n", sim.sysclient_url()),
        &std::env::var("INNOPROV_BENCH_LOG").unwrap_or_else(|_| "info".into()),
    );
    let addr = service.addr;

    // One provisioned, enrolled Yealink phone.
    let mut conn = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("login");
    let phone = SimPhone {
        code: sim.issue_code(),
        ..SimPhone::numbered(7)
    };
    assert_eq!(conn.provision(&phone).await.expect("provision")["result"], "ok");
    let path = format!("{PROV}/{}.cfg", phone.mac);
    let device = PhoneSim {
        addr,
        user_agent: USER_AGENT.into(),
    };
    let first = device.fetch(&path, &Auth::None, None).await.expect("fetch");
    let field = |key: &str| {
        first.body.lines().find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let (user, password) = (
        field("static.auto_provision.server.username").expect("user"),
        field("static.auto_provision.server.password").expect("password"),
    );
    let enrolled = device
        .fetch(&path, &Auth::Basic(user.clone(), password.clone()), None)
        .await
        .expect("fetch");
    assert_eq!(enrolled.status, 200);

    // nginx serving the same bytes, same path, 2 workers like innoprov.
    let root = dir.path().join("www");
    let file = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().expect("parent")).expect("www");
    std::fs::write(&file, enrolled.body.as_bytes()).expect("static file");
    let nginx_port = free_port();
    let nginx_conf = dir.path().join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        format!(
            "worker_processes 2;\npid {pid};\nerror_log {err} warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  default_type text/plain;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n  server {{ listen 127.0.0.1:{nginx_port}; root {root}; etag on; }}\n}}\n",
            pid = dir.path().join("nginx.pid").display(),
            err = dir.path().join("nginx.err").display(),
            tmp = dir.path().display(),
            root = root.display(),
        ),
    )
    .expect("nginx.conf");
    let nginx_bin = if std::path::Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let nginx = Process(
        Command::new(nginx_bin)
            .args([
                "-c",
                nginx_conf.to_str().expect("path"),
                "-p",
                dir.path().to_str().expect("path"),
                "-g",
                "daemon off;",
            ])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx"),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let static_copy = innoprov_actors::sim::phone::get(([127, 0, 0, 1], nginx_port).into(), &path, &[])
        .await
        .expect("nginx up");
    assert_eq!(static_copy.body, enrolled.body, "nginx serves the same bytes");

    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let headers = vec![
        format!("User-Agent: {USER_AGENT}"),
        format!("Authorization: Basic {token}"),
    ];
    let (innoprov_rps, innoprov_detail) = wrk(&format!("http://{addr}{path}"), seconds, &headers);
    let (nginx_rps, nginx_detail) = wrk(&format!("http://127.0.0.1:{nginx_port}{path}"), seconds, &headers);
    drop(nginx);
    drop(service);

    println!(
        "download_load ({} B file, wrk -t2 -c64 -d{seconds}s, loopback, same run)",
        enrolled.body.len()
    );
    println!(
        "  innoprov (2 workers, Basic auth, cached record, audited)  {innoprov_rps:>9.0} req/s  [{innoprov_detail}]"
    );
    println!(
        "  nginx (2 workers, static file, access_log off)            {nginx_rps:>9.0} req/s  [{nginx_detail}]"
    );
    println!(
        "  ratio innoprov / nginx                                    {:>9.2}  (target >= 1.0)",
        innoprov_rps / nginx_rps.max(1.0)
    );
}
