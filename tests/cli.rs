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
    // A newcomer's first screen: what to open, and no warning about a setup they did not make.
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("open in a browser: http://127.0.0.1:"),
        "{first}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "the demo warns: {stderr}");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_innoprov"))
        .args(["demo", "--phones", "0"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn check_validates_a_config_without_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let good = d.join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[http]\nlisten = \"127.0.0.1:1\"\n[app]\npassword = \"{}\"\n[store]\npath = \"{}\"\n",
            "p".repeat(40),
            store.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_innoprov"))
        .args(["check", "--config", good.to_str().unwrap()])
        .output()
        .expect("run innoprov check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim_end().lines().count(), 1, "{stdout}");
    assert!(stdout.contains("ok: listen 127.0.0.1:1"), "{stdout}");
    assert!(stdout.contains("7 vendors"), "{stdout}");
    // Nothing was started: nothing written, and the port (1, privileged) was never bound.
    assert!(!store.exists(), "check created the store");

    let write = |name: &str, text: &str| {
        std::fs::write(d.join(name), text).unwrap();
        d.join(name).to_str().unwrap().to_string()
    };
    let unknown = write("unknown.toml", "[app]\npassword = \"x\"\nbogus = 1\n");
    assert_one_line_exit_2(&["check", "--config", &unknown], d, "bogus");
    let no_cert = write(
        "tls.toml",
        "[app]\npassword = \"x\"\n[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"nope.pem\"\nkey = \"nope.key\"\n",
    );
    assert_one_line_exit_2(&["check", "--config", &no_cert], d, "nope.pem");
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(d.join("templates/yealink.j2"), "{% if %}").unwrap();
    let bad_template = write(
        "template.toml",
        &format!(
            "[app]\npassword = \"x\"\n[provisioning]\ntemplate_dir = \"{}\"\n",
            d.join("templates").display()
        ),
    );
    assert_one_line_exit_2(&["check", "--config", &bad_template], d, "yealink.j2");
    assert!(!d.join("data").exists(), "a failed check wrote the default store");
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_innoprov"))
        .arg("--version")
        .output()
        .expect("run innoprov --version");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert!(
        stdout.starts_with(concat!("innoprov ", env!("CARGO_PKG_VERSION"), " (commit ")),
        "{stdout}"
    );
    if let Some(head) = head {
        assert!(stdout.contains(&head), "{stdout} should name {head}");
    }
}
