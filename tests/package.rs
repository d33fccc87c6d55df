//! The ways an operator installs innoprov: the Debian package (`cargo deb -p innoprov-actors`)
//! built, installed by dpkg into a scratch root and checked (files, modes, the conffile and the
//! secrets its postinst writes, the systemd unit, the installed binary serving with the
//! installed configuration), and the Containerfile, linted by hadolint.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use innoprov_actors::sim::users::UsersSim;

use crate::common::Service;

/// What a test says when a tool the suite uses is missing.
const SETUP: &str = "run ./test.sh, which installs it";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds actors/")
        .to_path_buf()
}

/// Runs a command; a missing program fails the test with one line naming the setup command.
fn run(program: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("{program} not found ({e}): {SETUP}"))
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: {:?}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The value of `key` in `[section]` of a TOML text (the config's own parser would accept
/// what this finds; the test reads it the way an operator would).
fn toml_value(text: &str, section: &str, key: &str) -> Option<String> {
    let table: toml::Table = text.parse().expect("the installed config is TOML");
    table.get(section)?.get(key)?.as_str().map(str::to_string)
}

/// dpkg into `root`, which it treats as a whole system of its own: its own database, the
/// maintainer scripts run outside a chroot with `$DPKG_ROOT` set (packaging/debian/postinst
/// touches only files under it then), dependencies not looked up in the empty database.
fn dpkg(root: &Path, args: &[&str]) -> Output {
    let root_arg = format!("--root={}", root.display());
    let mut all = vec![
        root_arg.as_str(),
        "--force-script-chrootless",
        "--force-depends",
        "--force-not-root",
        "--log=/dev/null",
    ];
    all.extend_from_slice(args);
    run("dpkg", &all, root)
}

fn build_package() -> PathBuf {
    // cargo-deb runs `cargo build --release` for the production binary, which ./test.sh built
    // already. The environment the test runner gives tests (OUT_DIR, CARGO_PKG_*, library
    // paths, ...) is not a shell's, and cargo would build again under it: the command gets the
    // shell's essentials only.
    let mut command = Command::new("cargo");
    command.env_clear();
    for name in [
        "PATH",
        "HOME",
        "USER",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "TMPDIR",
        "LANG",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let output = command
        .args(["deb", "-p", "innoprov-actors", "--locked"])
        .current_dir(workspace())
        .output()
        .unwrap_or_else(|e| panic!("cargo not found ({e}): {SETUP}"));
    if !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("no such command") {
        panic!("cargo-deb not found: {SETUP}");
    }
    let stdout = ok(&output, "cargo deb");
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        deb.extension().is_some_and(|e| e == "deb") && deb.exists(),
        "cargo deb named no package: {stdout}"
    );
    deb
}

#[tokio::test]
async fn the_debian_package_installs_a_hardened_service_with_its_own_secrets() {
    let deb = build_package();
    let deb_arg = deb.to_str().expect("utf-8 path");

    // The control data: the package's name and the configuration as a conffile.
    let cwd = workspace();
    let name = ok(
        &run("dpkg-deb", &["--field", deb_arg, "Package"], &cwd),
        "dpkg-deb --field",
    );
    assert_eq!(name.trim(), "innoprov");
    let conffiles = ok(
        &run("dpkg-deb", &["--info", deb_arg, "conffiles"], &cwd),
        "conffiles",
    );
    assert_eq!(conffiles.trim(), "/etc/innoprov/config.toml");

    let scratch = tempfile::tempdir().expect("tempdir");
    let root = scratch.path().join("root");
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(dir)).expect("dpkg database");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("dpkg status");
    ok(&dpkg(&root, &["--install", deb_arg]), "dpkg --install");

    // Files and modes.
    let binary = root.join("usr/bin/innoprov");
    let config = root.join("etc/innoprov/config.toml");
    let unit = root.join("usr/lib/systemd/system/innoprov.service");
    assert_eq!(mode(&binary), 0o755);
    assert_eq!(mode(&config), 0o600, "the config holds the App password");
    assert_eq!(mode(&unit), 0o644);
    assert!(root.join("usr/share/doc/innoprov/README.md").exists());

    // The postinst gave the installation its own secrets, once.
    let text = std::fs::read_to_string(&config).expect("installed config");
    let password = toml_value(&text, "app", "password").expect("app.password written at install");
    let token = toml_value(&text, "admin", "token").expect("admin.token written at install");
    for secret in [&password, &token] {
        assert_eq!(secret.len(), 48, "{secret:?}");
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_ne!(password, token);
    ok(&dpkg(&root, &["--install", deb_arg]), "dpkg --install again");
    let again = std::fs::read_to_string(&config).expect("config after reinstall");
    assert_eq!(
        again, text,
        "a reinstall keeps the secrets the operator may have given the PBX"
    );

    // The unit: hardened as the README says, and valid for systemd.
    let unit_text = std::fs::read_to_string(&unit).expect("unit");
    for line in [
        "Type=notify",
        "DynamicUser=yes",
        "StateDirectory=innoprov",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LimitNOFILE=65536",
        "Restart=on-failure",
        "LoadCredential=config.toml:/etc/innoprov/config.toml",
        "ExecStart=/usr/bin/innoprov serve --config %d/config.toml",
    ] {
        assert!(unit_text.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let verify = run(
        "systemd-analyze",
        // Checked against the scratch root (ExecStart's binary there); the targets it is
        // ordered after belong to a whole system, which the scratch root is not.
        &[
            &format!("--root={}", root.display()),
            "--recursive-errors=no",
            "verify",
            "innoprov.service",
        ],
        &cwd,
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && !said.contains("innoprov.service"),
        "systemd-analyze verify: {said}"
    );

    // The installed binary: the production build, naming its commit, accepting its config.
    let binary_str = binary.to_str().expect("utf-8 path");
    let version = ok(&run(binary_str, &["--version"], &cwd), "innoprov --version");
    assert!(
        version.starts_with("innoprov ") && version.contains("(commit "),
        "{version}"
    );
    let demo = run(binary_str, &["demo", "--phones", "1"], &cwd);
    assert_eq!(demo.status.code(), Some(2), "the package's binary has no demo");
    let config_str = config.to_str().expect("utf-8 path");
    let check = ok(
        &run(binary_str, &["check", "--config", config_str], &cwd),
        "innoprov check",
    );
    assert!(check.contains("store sled at /var/lib/innoprov"), "{check}");

    // It serves with the installed configuration; only the listener and the store move to
    // where a test may put them (the unit gives it /var/lib/innoprov).
    let state = scratch.path().join("state");
    let served = text
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "path = \"/var/lib/innoprov\"",
            &format!("path = \"{}\"", state.display()),
        );
    assert_ne!(
        served, text,
        "the packaged config names its listener and store as expected"
    );
    let served_path = scratch.path().join("served.toml");
    std::fs::write(&served_path, &served).expect("write config");
    let service = Service::start_binary(&binary, &served_path);
    let health = innoprov_actors::sim::phone::get(service.addr, "/healthz", &[])
        .await
        .expect("GET /healthz");
    assert_eq!(health.status, 200);
    let ws = format!("ws://{}/example.com/innoprov/innoprov", service.addr);
    UsersSim::new("innoprov", &password)
        .connect(&ws)
        .await
        .expect("the generated app.password logs in");
    let (status, logs) = service.terminate();
    assert!(status.success(), "{status:?}: {logs}");
    assert!(
        !logs.contains(&password) && !logs.contains(&token),
        "a secret in the log"
    );

    // Removal keeps the configuration (a conffile) and never the binary; purge removes both.
    ok(&dpkg(&root, &["--remove", "innoprov"]), "dpkg --remove");
    assert!(!binary.exists());
    assert!(config.exists(), "remove keeps the conffile");
    ok(&dpkg(&root, &["--purge", "innoprov"]), "dpkg --purge");
    assert!(!config.exists(), "purge removes the conffile");
}

#[test]
fn the_containerfile_passes_hadolint() {
    let file = workspace().join("packaging/Containerfile");
    let output = run("hadolint", &[file.to_str().expect("utf-8 path")], &workspace());
    let said = ok(&output, "hadolint");
    assert!(said.trim().is_empty(), "hadolint: {said}");
    let text = std::fs::read_to_string(&file).expect("Containerfile");
    for needle in [
        "--no-default-features",
        "USER 10001:10001",
        "VOLUME [\"/var/lib/innoprov\"]",
        "HEALTHCHECK",
        "\"health\"",
    ] {
        assert!(text.contains(needle), "the Containerfile lacks {needle}");
    }
}

#[test]
fn the_health_command_asks_healthz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, crate::common::config_text(dir.path(), "")).expect("config");
    let service = Service::start_with_config_file(&config);
    // `health` reads the listener from the config: point a copy at the bound port.
    let probe = dir.path().join("probe.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&probe, text.replace("127.0.0.1:0", &service.addr.to_string())).expect("probe config");
    let binary = env!("CARGO_BIN_EXE_innoprov");
    let probe_str = probe.to_str().expect("utf-8 path");
    let healthy = run(binary, &["health", "--config", probe_str], dir.path());
    assert!(healthy.status.success(), "{healthy:?}");
    drop(service);
    let down = run(binary, &["health", "--config", probe_str], dir.path());
    assert_eq!(down.status.code(), Some(1), "{down:?}");
}
