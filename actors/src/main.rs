//! The `innoprov` binary: parses the command line and the configuration, starts the service,
//! and turns every start-up failure into one line on stderr and exit status 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use innoprov::Config;
use innoprov_actors::service::{RunFailure, RunningService, ShutdownSignals};

// glibc's allocator spends much of a busy download path in arena locks (measured with perf
// in the download bench); mimalloc's per-thread heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The repository's config.toml, used when no file is named and none is in the working directory.
const DEFAULT_CONFIG: &str = include_str!("../../config.toml");

/// The version and the commit it was built from (actors/build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("INNOPROV_COMMIT"),
    ")"
);

/// innoprov: provisions 3rd-party SIP phones for users of an innovaphone PBX.
#[derive(Parser)]
#[command(name = "innoprov", version = VERSION, about)]
struct Cli {
    /// Configuration file (TOML). Default: ./config.toml if present, else the built-in default.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// What to do; none, serve.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Check the configuration (and the templates, vendor catalogue and TLS files it names)
    /// without starting anything: exit 0 with a summary, exit 2 with the problem.
    Check,
    /// Ask the configured listener's /healthz (a container's health check): exit 0 when it
    /// answers 200 within 5 s, else 1.
    Health,
    /// Run the service with a simulated PBX, Users service, Devices and N phones on a temporary
    /// store, provision the phones, let them fetch their files, and print a summary.
    #[cfg(feature = "simulators")]
    Demo {
        /// How many phones.
        #[arg(long, default_value_t = 20)]
        phones: u32,
        /// Keep serving after the summary, until Ctrl-C.
        #[arg(long)]
        keep_running: bool,
    },
}

/// The configuration and where it came from.
fn load_config(named: Option<&PathBuf>) -> Result<(Config, String), String> {
    match named {
        Some(path) => Config::load(path)
            .map(|c| (c, path.display().to_string()))
            .map_err(|e| e.to_string()),
        None if std::path::Path::new("config.toml").exists() => Config::load("config.toml".as_ref())
            .map(|c| (c, "config.toml".into()))
            .map_err(|e| e.to_string()),
        None => Config::parse(DEFAULT_CONFIG, "built-in default")
            .map(|c| (c, "built-in default".into()))
            .map_err(|e| e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("innoprov: error: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let first = e.to_string();
            return fail(
                first
                    .lines()
                    .next()
                    .unwrap_or("bad command line")
                    .trim_start_matches("error: "),
            );
        }
        Err(e) => {
            // --help, --version
            print!("{e}");
            return ExitCode::SUCCESS;
        }
    };
    // The demo talks to a person on a terminal: only warnings, unless RUST_LOG asks for more.
    let default_level = match cli.command {
        #[cfg(feature = "simulators")]
        Some(Command::Demo { .. }) => "warn",
        _ => "info",
    };
    // Third-party frame traces stay below trace whatever RUST_LOG says: no secret in a log.
    innoprov_actors::ops::logging::init(default_level);
    #[cfg(feature = "simulators")]
    if let Some(Command::Demo { phones, keep_running }) = cli.command {
        return demo(phones, keep_running);
    }
    let (config, origin) = match load_config(cli.config.as_ref()) {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e),
    };
    if let Some(Command::Check) = cli.command {
        return match innoprov_actors::service::check(&config) {
            Ok(summary) => {
                println!("innoprov: {origin}: ok: {summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        };
    }
    if let Some(Command::Health) = cli.command {
        return health(&config);
    }
    serve(config)
}

/// `innoprov health`: one GET of /healthz on the configured listener (a wildcard address is
/// asked on loopback), with the standard library only: the container image has no curl.
fn health(config: &Config) -> ExitCode {
    use std::io::{Read, Write};
    let mut addr = config.http.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let limit = std::time::Duration::from_secs(5);
    let answer = (|| -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, limit)?;
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))?;
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    })();
    match answer {
        Ok(head) if head.starts_with("HTTP/1.1 200") => {
            println!("innoprov: healthy at {addr}");
            ExitCode::SUCCESS
        }
        Ok(head) => {
            eprintln!(
                "innoprov: /healthz at {addr} answered {}",
                head.lines().next().unwrap_or("nothing")
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("innoprov: /healthz at {addr}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Raises the soft limit on open files to the hard one: a service that inherited 1024 from
/// systemd would otherwise run out of descriptors for sockets, Devices links and the store.
/// Raised before the start (the login caps follow it); what happened is logged once started.
fn raise_open_files_limit() -> (log::Level, String) {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE);
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok((soft, hard)), Ok(now)) => (
            log::Level::Info,
            format!("open files: soft limit {soft} raised to {now} (hard limit {hard})"),
        ),
        (_, Err(e)) => (
            log::Level::Warn,
            format!("open files: cannot raise the soft limit: {e}"),
        ),
        (Err(e), Ok(now)) => (
            log::Level::Info,
            format!("open files: soft limit now {now} ({e} before)"),
        ),
    }
}

#[cfg(feature = "simulators")]
fn demo(phones: u32, keep_running: bool) -> ExitCode {
    if phones == 0 || phones > 100_000 {
        return fail("demo: --phones must be between 1 and 100000");
    }
    let system = actix::System::new();
    let outcome = system.block_on(async move {
        let signals = ShutdownSignals::install().map_err(|e| format!("cannot watch SIGTERM/SIGINT: {e}"))?;
        innoprov_actors::demo::run(phones, keep_running, signals).await
    });
    match outcome {
        Ok(summary) => {
            println!("{}", summary.render());
            if summary.provisioned == phones && summary.fetched == phones {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(&e),
    }
}

fn serve(config: Config) -> ExitCode {
    let system = actix::System::new();
    let outcome = system.block_on(async move {
        let signals = ShutdownSignals::install()
            .map_err(|e| RunFailure::Shutdown(format!("cannot watch SIGTERM/SIGINT: {e}")))?;
        let (level, raised) = raise_open_files_limit();
        let service = RunningService::start(&config)
            .await
            .map_err(|e| RunFailure::Shutdown(e.to_string()))?;
        // After the start: a failed start prints its one line and nothing else.
        log::log!(level, "{raised}");
        innoprov_actors::ops::ready::notify_ready(service.addr, service.https_addr);
        service.run_until_signal(signals).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A singleton failed while serving: exit 1 so that systemd starts the service again.
        Err(RunFailure::Fatal(reason)) => {
            eprintln!("innoprov: error: {reason}");
            ExitCode::from(1)
        }
        Err(RunFailure::Shutdown(e)) => fail(&e),
    }
}
