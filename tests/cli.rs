//! The command line contract of interface.md: bad start-ups exit 2 with one line and write
//! nothing; SIGTERM exits 0.

use std::process::Command;

use crate::common::{Service, config_text};

fn run(args: &[&str], cwd: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_innoprov"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "off")
        .output()
        .expect("run innoprov");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_exit_2(args: &[&str], cwd: &std::path::Path, needle: &str) {
    let (code, stderr) = run(args, cwd);
    assert_eq!(code, 2, "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} should name {needle:?}"
    );
}

#[test]
fn bad_configs_exit_2_with_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, text: &str| {
        std::fs::write(d.join(name), text).unwrap();
        d.join(name).to_str().unwrap().to_string()
    };
    assert_one_line_exit_2(&["--config", "missing.toml"], d, "missing.toml");
    assert_one_line_exit_2(&["serve", "--config", "missing.toml"], d, "missing.toml");
    let unknown = write(
        "unknown.toml",
        &format!("{}[extra]\nkey = 1\n", config_text(d, "")),
    );
    assert_one_line_exit_2(&["--config", &unknown], d, "extra");
    let typo = write("typo.toml", &config_text(d, "").replace("password", "pasword"));
    assert_one_line_exit_2(&["--config", &typo], d, "pasword");
    let broken = write("broken.toml", "[app\npassword = 1");
    assert_one_line_exit_2(&["--config", &broken], d, "broken.toml");
    let bad_listen = write(
        "listen.toml",
        &config_text(d, "").replace("127.0.0.1:0", "localhost"),
    );
    assert_one_line_exit_2(&["--config", &bad_listen], d, "http.listen");
    assert!(!d.join("store").exists(), "nothing written for a bad config");

    // A busy port.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let in_use = write(
        "busy.toml",
        &config_text(d, "").replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    );
    assert_one_line_exit_2(&["--config", &in_use], d, &port.to_string());
    assert!(!d.join("store").exists(), "nothing written for a busy port");

    // A TLS certificate that is not there.
    let tls = write(
        "tls.toml",
        &config_text(
            d,
            "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
        ),
    );
    assert_one_line_exit_2(&["--config", &tls], d, "cert.pem");
    assert!(!d.join("store").exists(), "nothing written for a bad certificate");

    let ca = write(
        "ca.toml",
        &config_text(d, "[devices]\nca_file = \"/nonexistent/ca.pem\"\n"),
    );
    assert_one_line_exit_2(&["--config", &ca], d, "ca.pem");
    assert!(!d.join("store").exists(), "nothing written for a bad CA file");

    // A store path that is a file cannot be a store directory.
    std::fs::write(d.join("store"), "not a directory").unwrap();
    let config = write("ok.toml", &config_text(d, ""));
    assert_one_line_exit_2(&["--config", &config], d, "store");
    assert_eq!(
        std::fs::read_to_string(d.join("store")).unwrap(),
        "not a directory"
    );
}

#[test]
fn sigterm_exits_0_after_closing_websockets() {
    let (service, _dir) = Service::start("");
    let url = service.ws_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut conn = runtime.block_on(async {
        innoprov_actors::sim::users::UsersSim::new("innoprov", crate::common::PASSWORD)
            .connect(&url)
            .await
            .unwrap()
    });
    let (status, logs) = service.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("store flushed"), "{logs}");
    // The session saw a clean close, not a reset.
    runtime.block_on(async {
        assert!(conn.client.closed_by_service().await);
    });
}

#[test]
fn sigterm_right_after_the_listening_line_is_a_clean_shutdown() {
    // The handlers are installed before the service announces itself, so even a SIGTERM sent
    // the instant "listening" appears ends with exit 0, not death by the default action.
    for _ in 0..5 {
        let (service, _dir) = Service::start("");
        let (status, logs) = service.terminate();
        assert!(status.success(), "{status:?}: {logs}");
    }
}

#[test]
fn the_demo_provisions_its_phones_and_they_fetch_their_files() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_innoprov"))
        .args(["demo", "--phones", "8"])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("demo: 8 phones: 8 provisioned, 8 configured, 8 fetched"),
        "{last}"
    );
    assert!(stdout.contains("REST API  http://127.0.0.1:"), "{stdout}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_innoprov"))
        .args(["demo", "--phones", "0"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}
