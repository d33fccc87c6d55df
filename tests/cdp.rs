//! A small client of the Chrome DevTools Protocol, enough to drive Debian's headless Chromium
//! through a page: open it, evaluate expressions in it (or in one of its frames), wait for a
//! condition with a bound, and take screenshots. Chromium is started with a new empty profile
//! and without background networking (the machine has no network but loopback).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where Chromium is: `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// A running headless Chromium and its DevTools connection.
pub struct Browser {
    /// The browser process (killed on drop).
    child: tokio::process::Child,
    /// The browser-level DevTools websocket.
    socket: Socket,
    /// Next command id.
    next_id: u64,
    /// The profile directory, removed on drop.
    _profile: tempfile::TempDir,
}

/// One page (a target attached in flat mode).
#[derive(Clone)]
pub struct Page {
    /// The DevTools session of the page.
    session: String,
}

impl Browser {
    /// Starts Chromium; panics with what to install when it is missing.
    pub async fn launch() -> Browser {
        let path = chromium_path();
        assert!(
            path.exists(),
            "{} not found: the browser tests need Debian's chromium: run ./test.sh, which installs it",
            path.display()
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = tokio::process::Command::new(&path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--mute-audio",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("chromium stderr");
        let mut lines = BufReader::new(stderr).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("ws://") {
                    return Some(line[at..].trim().to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("chromium printed its DevTools address");
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("DevTools websocket");
        Browser {
            child,
            socket,
            next_id: 1,
            _profile: profile,
        }
    }

    /// Sends one command and waits for its answer (events in between are skipped).
    pub async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("DevTools send");
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(Ok(message)) = self.socket.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if value["id"] == json!(id) {
                    return Some(value);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("DevTools {method}: no answer"));
        if let Some(error) = answer.get("error") {
            panic!("DevTools {method}: {error}");
        }
        answer["result"].clone()
    }

    /// Opens a new page at `url`, waits for its load.
    pub async fn open(&mut self, url: &str) -> Page {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let page = Page {
            session: attached["sessionId"].as_str().expect("session").to_string(),
        };
        self.call(Some(&page.session), "Page.enable", json!({})).await;
        self.call(Some(&page.session), "Page.navigate", json!({"url": url}))
            .await;
        self.wait_for(
            &page,
            None,
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
        .await;
        page
    }

    /// Evaluates `expression` in the page, or in the frame `frame` (an isolated world of it:
    /// the same DOM, its own globals); the value, with promises awaited.
    pub async fn eval(&mut self, page: &Page, frame: Option<i64>, expression: &str) -> Value {
        let mut params = json!({
            "expression": expression,
            "returnByValue": true,
            "awaitPromise": true,
        });
        if let Some(context) = frame {
            params["contextId"] = json!(context);
        }
        let out = self.call(Some(&page.session), "Runtime.evaluate", params).await;
        if let Some(exception) = out.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        out["result"]["value"].clone()
    }

    /// Polls `expression` every 100 ms until it is truthy, at most `limit`; its last value.
    pub async fn wait_for(
        &mut self,
        page: &Page,
        frame: Option<i64>,
        expression: &str,
        limit: Duration,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let wrapped =
                format!("(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()");
            let value = self.eval(page, frame, &wrapped).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "waited {limit:?} for `{expression}` (last: {value})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An execution context in the first child frame of `page` whose URL contains `part`.
    pub async fn frame_context(&mut self, page: &Page, part: &str) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let tree = self
                .call(Some(&page.session), "Page.getFrameTree", json!({}))
                .await;
            let frame = tree["frameTree"]["childFrames"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["frame"]["url"].as_str().is_some_and(|u| u.contains(part)));
            if let Some(frame) = frame {
                let world = self
                    .call(
                        Some(&page.session),
                        "Page.createIsolatedWorld",
                        json!({"frameId": frame["frame"]["id"], "worldName": "test"}),
                    )
                    .await;
                return world["executionContextId"].as_i64().expect("context id");
            }
            assert!(Instant::now() < deadline, "no frame with {part:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes a PNG of the page to `path`.
    pub async fn screenshot(&mut self, page: &Page, path: &Path) {
        let shot = self
            .call(
                Some(&page.session),
                "Page.captureScreenshot",
                json!({"format": "png"}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Where the screenshots go: `target/tmp/admin-page/`.
pub fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("admin-page")
        .join(format!("{name}.png"))
}
