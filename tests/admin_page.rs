//! The admin page in a real browser (Debian's headless Chromium over the DevTools protocol),
//! against the release binary: outside myApps with the admin token, and inside a test double
//! of the myApps client that answers the page's `getLogin` by computing the login digest as
//! appwebsocket.md §3.3 (b) and §3.4 say (the double's code is its own, not the page's).
//! Screenshots go to `target/tmp/admin-page/`.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use innoprov_actors::sim::users::{SimPhone, UsersSim};

use crate::admin::call;
use crate::cdp::{Browser, screenshot_path};
use crate::common::{PASSWORD, Service, start_with_devices};

const TOKEN: &str = "page-admin-token-1-7c0e5b9a2d4f6183";
const API: &str = "/example.com/innoprov/api/v1";
const PAGE: &str = "/example.com/innoprov/innoprov-admin.htm";
const WAIT: Duration = Duration::from_secs(20);
const ROWS: &str = "document.querySelectorAll('#phones tbody tr').length";

struct Setup {
    service: Service,
    _dir: tempfile::TempDir,
    sim: innoprov_actors::sim::devices::DevicesSim,
    users: innoprov_actors::sim::users::UsersConnection,
    phones: Vec<SimPhone>,
}

async fn setup() -> Setup {
    setup_with("", [71, 72]).await
}

/// The service with an admin token and `admin.app`, `extra` admin keys, and two provisioned
/// Snom phones numbered `numbers`.
async fn setup_with(extra: &str, numbers: [u32; 2]) -> Setup {
    let (service, dir, sim) = start_with_devices(&format!(
        "[admin]\ntoken = \"{TOKEN}\"\napp = \"innoprov-admin\"\n{extra}"
    ))
    .await;
    let mut users = UsersSim::new("innoprov", PASSWORD)
        .connect(&service.ws_url())
        .await
        .expect("users");
    let mut phones = Vec::new();
    for n in numbers {
        let phone = SimPhone {
            mac: format!("000413{n:06x}"),
            code: sim.issue_code(),
            ..SimPhone::numbered(n)
        };
        assert_eq!(users.provision(&phone).await.expect("reply")["result"], "ok");
        phones.push(phone);
    }
    Setup {
        service,
        _dir: dir,
        sim,
        users,
        phones,
    }
}

fn row(mac: &str, column: usize) -> String {
    format!("document.querySelector('#phones tr[data-mac=\"{mac}\"]').children[{column}].textContent")
}

#[tokio::test]
async fn outside_myapps_the_token_page_lists_phones_live_and_runs_actions() {
    let mut s = setup().await;
    let base = format!("http://{}", s.service.addr);
    let mut browser = Browser::launch().await;
    let page = browser.open(&format!("{base}{PAGE}#token={TOKEN}")).await;
    browser
        .wait_for(&page, None, &format!("{ROWS} === 2"), WAIT)
        .await;
    assert_eq!(
        browser
            .eval(&page, None, "document.getElementById('status').dataset.state")
            .await,
        "connected"
    );
    assert_eq!(
        browser.eval(&page, None, "location.hash").await,
        "",
        "the token is taken out of the address bar"
    );
    // The page's own SHA-256 (used for the token digest) against FIPS 180-4's vectors and a
    // long multi-byte text digested here.
    let long = "Ünï-".repeat(300);
    let expected_long = hex::encode(Sha256::digest(long.as_bytes()));
    let hashes = browser
        .eval(
            &page,
            None,
            &format!(
                "[innoprovSha256('abc'), innoprovSha256(''), innoprovSha256('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'), innoprovSha256({})]",
                json!(long)
            ),
        )
        .await;
    assert_eq!(
        hashes,
        json!([
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            expected_long
        ])
    );
    let (mac1, mac2) = (s.phones[0].mac.clone(), s.phones[1].mac.clone());
    assert_eq!(
        browser.eval(&page, None, &row(&mac1, 1)).await,
        s.phones[0].username.as_str()
    );
    assert_eq!(browser.eval(&page, None, &row(&mac1, 4)).await, "configured");
    browser.screenshot(&page, &screenshot_path("token-list")).await;

    // Live, without reloading: a new phone appears, a Devices update moves a version.
    browser.eval(&page, None, "window.notReloaded = true").await;
    let third = SimPhone {
        mac: "00041300004a".to_string(),
        code: s.sim.issue_code(),
        ..SimPhone::numbered(74)
    };
    assert_eq!(s.users.provision(&third).await.expect("reply")["result"], "ok");
    browser
        .wait_for(&page, None, &format!("{ROWS} === 3"), WAIT)
        .await;
    browser
        .wait_for(
            &page,
            None,
            &format!("{} === 'configured'", row(&third.mac, 4)),
            WAIT,
        )
        .await;
    let update = r#"{"id":3,"domainId":1,"type":"PHONE","categories":[],"gk1":"pbx2.example.com","coder":"OPUS-WB","frameSize":40}"#;
    assert_eq!(s.sim.push_update(&mac1, update), 1);
    browser
        .wait_for(&page, None, &format!("{} === '2'", row(&mac1, 6)), WAIT)
        .await;
    assert_eq!(browser.eval(&page, None, "window.notReloaded").await, true);

    // Filtering by text and by state.
    browser
        .eval(
            &page,
            None,
            &format!(
                "(() => {{ const f = document.getElementById('filter'); f.value = {}; f.dispatchEvent(new Event('input')); return true; }})()",
                json!(third.username)
            ),
        )
        .await;
    browser
        .wait_for(&page, None, &format!("{ROWS} === 1"), WAIT)
        .await;
    browser
        .eval(
            &page,
            None,
            "(() => { const f = document.getElementById('filter'); f.value = '00:04:13'; f.dispatchEvent(new Event('input')); const s = document.getElementById('state-filter'); s.value = 'link_down'; s.dispatchEvent(new Event('change')); return true; })()",
        )
        .await;
    browser
        .wait_for(&page, None, &format!("{ROWS} === 0"), WAIT)
        .await;
    browser
        .eval(
            &page,
            None,
            "(() => { const s = document.getElementById('state-filter'); s.value = 'configured'; s.dispatchEvent(new Event('change')); return true; })()",
        )
        .await;
    browser
        .wait_for(&page, None, &format!("{ROWS} === 3"), WAIT)
        .await;

    // One phone's detail and timeline: its state changes and its Devices update.
    browser
        .eval(
            &page,
            None,
            &format!("document.querySelector('#phones tr[data-mac=\"{mac1}\"]').click()"),
        )
        .await;
    browser
        .wait_for(&page, None, "!document.getElementById('detail').hidden", WAIT)
        .await;
    let timeline = browser
        .wait_for(
            &page,
            None,
            "(() => { const t = document.getElementById('timeline').textContent; return t.includes('state linking') && t.includes('configuration v2') ? t : null; })()",
            WAIT,
        )
        .await;
    assert!(
        timeline.as_str().is_some_and(|t| t.contains("state configured")),
        "{timeline}"
    );
    assert!(
        browser
            .eval(
                &page,
                None,
                "document.getElementById('detail-fields').textContent"
            )
            .await
            .as_str()
            .is_some_and(|t| t.contains(s.phones[0].username.as_str())),
    );
    browser.screenshot(&page, &screenshot_path("token-detail")).await;

    // Actions: pin a vendor, then delete the second phone (two clicks).
    browser
        .eval(
            &page,
            None,
            "(() => { document.getElementById('act-vendor-choice').value = 'snom'; document.getElementById('act-vendor').click(); return true; })()",
        )
        .await;
    browser
        .wait_for(
            &page,
            None,
            "document.getElementById('message').textContent.includes('vendor done')",
            WAIT,
        )
        .await;
    let (status, detail) = call(
        &s.service,
        "GET",
        &format!("{API}/phones/{mac1}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((status, detail["pinned_vendor"].clone()), (200, json!("snom")));
    browser
        .eval(
            &page,
            None,
            &format!("document.querySelector('#phones tr[data-mac=\"{mac2}\"]').click()"),
        )
        .await;
    browser
        .wait_for(
            &page,
            None,
            &format!("document.getElementById('detail-title').textContent.includes('{mac2}')"),
            WAIT,
        )
        .await;
    browser
        .eval(&page, None, "document.getElementById('act-delete').click()")
        .await;
    assert_eq!(
        browser.eval(&page, None, ROWS).await,
        3,
        "one click only arms the delete"
    );
    browser
        .eval(&page, None, "document.getElementById('act-delete').click()")
        .await;
    browser
        .wait_for(&page, None, &format!("{ROWS} === 2"), WAIT)
        .await;
    let (status, _) = call(
        &s.service,
        "GET",
        &format!("{API}/phones/{mac2}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404);
    browser
        .screenshot(&page, &screenshot_path("token-after-actions"))
        .await;

    // A wrong token is refused and asked for again; the right one then logs in.
    let other = browser.open(&format!("{base}{PAGE}#token=wrong-token")).await;
    browser
        .wait_for(
            &other,
            None,
            "document.getElementById('status').dataset.state === 'failed'",
            WAIT,
        )
        .await;
    assert_eq!(
        browser
            .eval(&other, None, "document.getElementById('login').hidden")
            .await,
        false
    );
    assert_eq!(browser.eval(&other, None, ROWS).await, 0);
    browser
        .eval(
            &other,
            None,
            &format!(
                "(() => {{ document.getElementById('token').value = {}; document.getElementById('token-go').click(); return true; }})()",
                json!(TOKEN)
            ),
        )
        .await;
    browser
        .wait_for(&other, None, &format!("{ROWS} === 2"), WAIT)
        .await;
}

/// Serves the myApps double on a loopback port: every GET gets the parent page, which frames
/// the admin page and answers its getLogin as the myApps client would, with the App object
/// password `password` and `info.appobj` = `appobj`.
async fn myapps_double(
    page_url: String,
    password: &'static str,
    appobj: &'static str,
) -> std::net::SocketAddr {
    myapps_double_with(
        page_url,
        password,
        appobj,
        "?name=innoprov-admin&lang=en&scheme=light",
    )
    .await
}

/// The myApps double with the page's URL arguments given (`query`, "" for a website-mode App
/// object). It records every message the page posts in `window.fromApp`, and
/// `window.toApp(obj)` posts one to the page as JSON text, as the client does.
async fn myapps_double_with(
    page_url: String,
    password: &'static str,
    appobj: &'static str,
    query: &str,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = json!({
        "page": page_url,
        "name": "innoprov-admin",
        "app": "innoprov-admin",
        "appobj": appobj,
        "appurl": page_url.trim_end_matches(".htm"),
        "password": password,
        "query": query,
    });
    let html = format!(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>myApps double</title></head>
<body style="margin:0"><iframe id="app" style="width:1260px;height:780px;border:0"></iframe>
<script>
const cfg = {config};
const toHex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
window.getLogins = [];
window.fromApp = [];
window.toApp = (obj) => document.getElementById("app").contentWindow.postMessage(JSON.stringify(obj), "*");
window.addEventListener("message", async (event) => {{
  let m;
  try {{ m = JSON.parse(event.data); }} catch (e) {{ return; }}
  if (!m) return;
  window.fromApp.push(m);
  if (m.mt !== "getLogin") return;
  window.getLogins.push(m);
  // What the PBX puts into AppGetLoginResult for a user of this App object.
  const info = {{ appobj: cfg.appobj, appdn: "innoprov admin", appurl: cfg.appurl, pbx: "pbx-main", cn: "olga", unlicensed: true, groups: [], apps: [] }};
  const who = {{ app: cfg.app, domain: "example.com", sip: "olga", guid: "f48b06484a8a61015853009033400109", dn: "Ops, Olga" }};
  const text = [who.app, who.domain, who.sip, who.guid, who.dn, JSON.stringify(info), m.challenge, cfg.password].join(":");
  const digest = toHex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  event.source.postMessage(JSON.stringify({{ mt: "Login", app: who.app, domain: who.domain, sip: who.sip, guid: who.guid, dn: who.dn, info: info, digest: digest, pbxObj: m.app, salt: "0011", key: "00" }}), "*");
}});
document.getElementById("app").src = cfg.page + cfg.query;
</script></body></html>"#
    );
    tokio::spawn(async move {
        // Bounded: the test ends long before; each connection gets one answer.
        for _ in 0..64 {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = tcp.write_all(answer.as_bytes()).await;
        }
    });
    addr
}

#[tokio::test]
async fn inside_myapps_the_page_logs_in_through_the_client_and_only_for_the_admin_object() {
    let s = setup().await;
    let page_url = format!("http://{}{PAGE}", s.service.addr);
    let mut browser = Browser::launch().await;

    // A user of the admin App object.
    let parent = myapps_double(page_url.clone(), PASSWORD, "innoprov-admin").await;
    let top = browser.open(&format!("http://{parent}/")).await;
    let frame = browser.frame_context(&top, "innoprov-admin.htm").await;
    browser
        .wait_for(&top, Some(frame), &format!("{ROWS} === 2"), WAIT)
        .await;
    let asked: Value = browser.eval(&top, None, "window.getLogins").await;
    assert_eq!(
        asked[0]["app"], "innoprov-admin",
        "getLogin names the App object: {asked}"
    );
    assert!(
        asked[0]["challenge"].as_str().is_some_and(|c| c.len() == 16),
        "{asked}"
    );
    assert_eq!(
        browser
            .eval(&top, Some(frame), "document.getElementById('login').hidden")
            .await,
        true,
        "no token asked for inside myApps"
    );
    assert_eq!(
        browser
            .eval(&top, Some(frame), "document.documentElement.dataset.scheme")
            .await,
        "light"
    );
    browser.screenshot(&top, &screenshot_path("myapps-list")).await;

    // A login made for the provisioning App object (what the PBX and Users hold) gets no
    // admin messages.
    let parent = myapps_double(page_url.clone(), PASSWORD, "innoprov").await;
    let top = browser.open(&format!("http://{parent}/")).await;
    let frame = browser.frame_context(&top, "innoprov-admin.htm").await;
    let message = browser
        .wait_for(
            &top,
            Some(frame),
            "document.getElementById('status').textContent === 'not allowed' && document.getElementById('message').textContent",
            WAIT,
        )
        .await;
    assert!(
        message.as_str().is_some_and(|m| m.contains("not allowed")),
        "{message}"
    );
    assert_eq!(browser.eval(&top, Some(frame), ROWS).await, 0);
    browser
        .screenshot(&top, &screenshot_path("myapps-not-allowed"))
        .await;

    // A myApps that computes the digest with another password is refused.
    let parent = myapps_double(page_url, "not-the-password", "innoprov-admin").await;
    let top = browser.open(&format!("http://{parent}/")).await;
    let frame = browser.frame_context(&top, "innoprov-admin.htm").await;
    browser
        .wait_for(
            &top,
            Some(frame),
            "document.getElementById('status').textContent === 'login refused'",
            WAIT,
        )
        .await;
    assert_eq!(browser.eval(&top, Some(frame), ROWS).await, 0);
}

#[tokio::test]
async fn the_demo_prints_an_admin_page_where_its_phones_appear() {
    let mut demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_innoprov"))
        .args(["demo", "--phones", "12", "--keep-running"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the demo");
    let stdout = demo.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let url = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(at) = line.find("http://")
                && line.contains("innoprov-admin.htm#token=")
            {
                return line[at..].split_whitespace().next().map(str::to_string);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the demo prints the admin page's URL");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut browser = Browser::launch().await;
    let page = browser.open(&url).await;
    browser
        .wait_for(&page, None, &format!("{ROWS} === 12"), WAIT)
        .await;
    browser
        .wait_for(
            &page,
            None,
            "document.querySelectorAll('#phones td.state-configured').length === 12",
            WAIT,
        )
        .await;
    browser.screenshot(&page, &screenshot_path("demo")).await;
    let _ = demo.start_kill();
}

#[tokio::test]
async fn the_page_shows_the_pinned_pbx_and_resets_the_pin() {
    let s = setup().await;
    let base = format!("http://{}", s.service.addr);
    let mut pbx = innoprov_actors::sim::pbx::PbxSim::new(
        "innoprov",
        &format!("{base}/example.com/innoprov/innoprov"),
        PASSWORD,
    )
    .connect(&s.service.ws_url())
    .await
    .expect("PBX login");
    pbx.send_pbx_info(&["Services"]).await.expect("PbxInfo");
    pbx.client
        .recv_mt("SubscribeServices")
        .await
        .expect("pinned and subscribed");
    let mut browser = Browser::launch().await;
    let page = browser.open(&format!("{base}{PAGE}#token={TOKEN}")).await;
    browser
        .wait_for(
            &page,
            None,
            "document.getElementById('pbx-name').textContent === 'innoprov'",
            WAIT,
        )
        .await;
    assert_eq!(
        browser
            .eval(&page, None, "document.getElementById('pbx-how').textContent")
            .await,
        "(pinned at its first login)"
    );
    // Two clicks: the first arms the button, the second resets.
    for _ in 0..2 {
        browser
            .eval(&page, None, "document.getElementById('pbx-reset').click(), ''")
            .await;
    }
    browser
        .wait_for(
            &page,
            None,
            "document.getElementById('pbx-name').textContent === 'not yet known' && document.getElementById('pbx-reset').hidden",
            WAIT,
        )
        .await;
    browser.screenshot(&page, &screenshot_path("pbx-reset")).await;
    let (status, body) = {
        let reply = innoprov_actors::sim::phone::get(
            s.service.addr,
            &format!("{API}/pbx"),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
        )
        .await
        .expect("GET pbx");
        (reply.status, reply.body)
    };
    assert_eq!((status, body.as_str()), (200, r#"{"object":null,"pinned":null}"#));
}

/// `admin.badge_link_down_minutes = 0`: a phone whose link is down counts at once.
async fn setup_badge() -> Setup {
    setup_with("badge_link_down_minutes = 0\n", [81, 82]).await
}

const FROM_APP: &str = "JSON.stringify(window.fromApp)";

#[tokio::test]
async fn inside_myapps_the_page_follows_scheme_language_args_reload_and_shows_a_badge() {
    let s = setup_badge().await;
    let page_url = format!("http://{}{PAGE}", s.service.addr);
    let mut browser = Browser::launch().await;
    let parent = myapps_double(page_url, PASSWORD, "innoprov-admin").await;
    let top = browser.open(&format!("http://{parent}/")).await;
    let frame = browser.frame_context(&top, "innoprov-admin.htm").await;
    browser
        .wait_for(&top, Some(frame), &format!("{ROWS} === 2"), WAIT)
        .await;
    // Alive first, and a badge of 0: nothing needs an administrator.
    browser
        .wait_for(
            &top,
            None,
            "window.fromApp.some(m => m.mt === 'Action' && m.type === 'SetBadge' && m.value === 0)",
            WAIT,
        )
        .await;
    let sent: Value = serde_json::from_str(browser.eval(&top, None, FROM_APP).await.as_str().unwrap_or("[]"))
        .expect("messages");
    assert_eq!(sent[0]["mt"], "Alive", "{sent}");

    // SetScheme recolours at once.
    const BACKGROUND: &str = "getComputedStyle(document.body).backgroundColor";
    assert_eq!(
        browser.eval(&top, Some(frame), BACKGROUND).await,
        "rgb(255, 255, 255)"
    );
    browser
        .eval(&top, None, "window.toApp({mt: 'SetScheme', scheme: 'dark'}), ''")
        .await;
    browser
        .wait_for(
            &top,
            Some(frame),
            &format!("{BACKGROUND} === 'rgb(25, 25, 25)'"),
            WAIT,
        )
        .await;

    // SetLang retranslates the page, the list and the status.
    browser
        .eval(&top, None, "window.toApp({mt: 'SetLang', lang: 'de'}), ''")
        .await;
    browser
        .wait_for(
            &top,
            Some(frame),
            "document.querySelectorAll('#phones th')[1].textContent === 'Benutzer' && document.getElementById('status').textContent === 'verbunden' && document.getElementById('count').textContent === '2 von 2 Telefonen'",
            WAIT,
        )
        .await;
    browser.screenshot(&top, &screenshot_path("myapps-dark-de")).await;

    // PrepareReload is answered.
    browser
        .eval(&top, None, "window.toApp({mt: 'PrepareReload'}), ''")
        .await;
    browser
        .wait_for(
            &top,
            None,
            "window.fromApp.some(m => m.mt === 'PrepareReloadComplete')",
            WAIT,
        )
        .await;

    // SetArgs opens a phone.
    let mac = s.phones[1].mac.clone();
    browser
        .eval(
            &top,
            None,
            &format!("window.toApp({{mt: 'SetArgs', args: {{mac: '{mac}'}}}}), ''"),
        )
        .await;
    browser
        .wait_for(
            &top,
            Some(frame),
            &format!("!document.getElementById('detail').hidden && document.getElementById('detail-title').textContent.includes('{mac}')"),
            WAIT,
        )
        .await;

    // A phone whose link goes down (Devices refusing it) is counted in the badge.
    s.sim.set_refuse(true);
    assert!(s.sim.drop_link(&s.phones[0].mac) > 0);
    browser
        .wait_for(
            &top,
            None,
            "window.fromApp.some(m => m.mt === 'Action' && m.type === 'SetBadge' && m.value === 1)",
            WAIT,
        )
        .await;
}

#[tokio::test]
async fn the_url_argument_is_followed_for_an_accepted_origin_and_refused_otherwise() {
    // The service's port is fixed before the start, so that admin.url_origins can name it
    // under another host name (localhost) than the page is loaded from (127.0.0.1).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = innoprov_actors::sim::devices::DevicesSim::start().await;
    let text = crate::common::config_text(
        dir.path(),
        &format!(
            "{}[admin]\ntoken = \"{TOKEN}\"\napp = \"innoprov-admin\"\nurl_origins = [\"http://localhost:{port}\"]\n",
            crate::common::devices_config(&sim)
        ),
    )
    .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    let file = dir.path().join("config.toml");
    std::fs::write(&file, text).expect("config");
    let service = Service::start_with_config_file(&file);
    let page_url = format!("http://{}{PAGE}", service.addr);

    // The CSP names the websocket origins (CSP Level 2 does not count ws: as 'self').
    let page = innoprov_actors::sim::phone::get(service.addr, PAGE, &[])
        .await
        .expect("page");
    let csp = page
        .headers
        .get("content-security-policy")
        .cloned()
        .unwrap_or_default();
    assert!(
        csp.contains(&format!(
            "connect-src 'self' ws://127.0.0.1:{port} wss://127.0.0.1:{port} ws://localhost:{port};"
        )),
        "{csp}"
    );

    let mut browser = Browser::launch().await;
    let accepted = format!("http://localhost:{port}/example.com/innoprov/innoprov-admin");
    let parent = myapps_double_with(
        page_url.clone(),
        PASSWORD,
        "innoprov-admin",
        &format!(
            "?name=innoprov-admin&lang=en&scheme=light&url={}",
            urlencode(&accepted)
        ),
    )
    .await;
    let (top, frame) = open_connected(&mut browser, parent).await;
    assert_eq!(
        browser
            .eval(&top, Some(frame), "document.documentElement.dataset.websocket")
            .await,
        format!("ws://localhost:{port}/example.com/innoprov"),
        "the url argument is used"
    );

    let refused = "https://elsewhere.example/example.com/innoprov/innoprov-admin";
    let parent = myapps_double_with(
        page_url,
        PASSWORD,
        "innoprov-admin",
        &format!("?name=innoprov-admin&url={}", urlencode(refused)),
    )
    .await;
    let (top, frame) = open_connected(&mut browser, parent).await;
    let said = browser
        .eval(
            &top,
            Some(frame),
            "document.getElementById('message').textContent",
        )
        .await;
    assert!(
        said.as_str()
            .is_some_and(|m| m.contains(refused) && m.contains("admin.url_origins")),
        "{said}"
    );
    assert_eq!(
        browser
            .eval(&top, Some(frame), "document.documentElement.dataset.websocket")
            .await,
        format!("ws://127.0.0.1:{port}/example.com/innoprov")
    );
}

/// The myApps double at `parent` opened, once `condition` holds in its framed page; with the
/// condition's value.
async fn open_until(
    browser: &mut Browser,
    parent: std::net::SocketAddr,
    condition: &str,
) -> (crate::cdp::Page, i64, Value) {
    let top = browser.open(&format!("http://{parent}/")).await;
    let frame = browser.frame_context(&top, "innoprov-admin.htm").await;
    let value = browser.wait_for(&top, Some(frame), condition, WAIT).await;
    (top, frame, value)
}

/// [`open_until`] the framed page is connected.
async fn open_connected(browser: &mut Browser, parent: std::net::SocketAddr) -> (crate::cdp::Page, i64) {
    let (top, frame, _) = open_until(
        browser,
        parent,
        "document.getElementById('status').dataset.state === 'connected'",
    )
    .await;
    (top, frame)
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn website_mode_and_a_refused_login_say_why_and_a_refused_login_is_tried_again() {
    let s = setup().await;
    let page_url = format!("http://{}{PAGE}", s.service.addr);
    let mut browser = Browser::launch().await;
    // An App object marked "website": no arguments, no messages.
    let parent = myapps_double_with(page_url.clone(), PASSWORD, "innoprov-admin", "").await;
    let (_top, _frame, said) = open_until(
        &mut browser,
        parent,
        "!document.getElementById('login').hidden && document.getElementById('message').textContent",
    )
    .await;
    assert!(said.as_str().is_some_and(|m| m.contains("Website")), "{said}");

    // A refused login shows Connection.js's reason and is tried again with backoff.
    let parent = myapps_double(page_url, "not-the-password", "innoprov-admin").await;
    let (top, _frame, said) = open_until(
        &mut browser,
        parent,
        "document.getElementById('status').dataset.state === 'refused' && document.getElementById('message').textContent",
    )
    .await;
    assert!(said.as_str().is_some_and(|m| m.contains("UNLICENSED")), "{said}");
    browser
        .wait_for(&top, None, "window.getLogins.length >= 2", WAIT)
        .await;
}

#[tokio::test]
async fn the_page_may_be_named_apart_from_the_app_object() {
    // innovaphone's own pattern: App object `provadmin`, page `innoprov-admin.htm`.
    let (service, _dir, _sim) = start_with_devices(&format!(
        "[admin]\ntoken = \"{TOKEN}\"\napp = \"provadmin\"\npage = \"innoprov-admin\"\n"
    ))
    .await;
    let page_url = format!("http://{}{PAGE}", service.addr);
    assert_eq!(
        innoprov_actors::sim::phone::get(service.addr, "/example.com/innoprov/provadmin.htm", &[])
            .await
            .expect("GET")
            .status,
        404,
        "the page is under admin.page only"
    );
    let mut browser = Browser::launch().await;
    let parent = myapps_double_with(
        page_url,
        PASSWORD,
        "provadmin",
        "?name=provadmin&lang=en&scheme=light",
    )
    .await;
    let top = browser.open(&format!("http://{parent}/")).await;
    let frame = browser.frame_context(&top, "innoprov-admin.htm").await;
    browser
        .wait_for(&top, Some(frame), "document.getElementById('status').dataset.state === 'connected' && !document.getElementById('main').hidden", WAIT)
        .await;
    let asked: Value = browser.eval(&top, None, "window.getLogins").await;
    assert_eq!(
        asked[0]["app"], "provadmin",
        "getLogin names the App object: {asked}"
    );
}

#[tokio::test]
async fn the_page_edits_key_profiles_with_the_pbx_users_and_gives_one_to_a_phone() {
    let s = setup().await;
    let base = format!("http://{}", s.service.addr);
    let mut pbx = innoprov_actors::sim::pbx::PbxSim::new(
        "innoprov",
        &format!("{base}/example.com/innoprov/innoprov"),
        PASSWORD,
    )
    .connect(&s.service.ws_url())
    .await
    .expect("PBX login");
    pbx.send_pbx_info(&["PbxTableUsers"]).await.expect("PbxInfo");
    let rows = [
        serde_json::json!({"guid":"a1","h323":"alice","cn":"Alice","dn":"Archer, Alice","e164":"201","hide":false}),
        serde_json::json!({"guid":"b2","h323":"bob","cn":"Bob","e164":"202","hide":false}),
    ];
    pbx.serve_user_table(&rows).await.expect("replication");
    let mut browser = Browser::launch().await;
    let page = browser.open(&format!("{base}{PAGE}#token={TOKEN}")).await;
    // The PBX's users are offered as BLF partners, and the state is shown.
    browser
        .wait_for(
            &page,
            None,
            "document.querySelectorAll('#directory-users option').length === 2",
            WAIT,
        )
        .await;
    let state = browser
        .eval(
            &page,
            None,
            "document.getElementById('directory-state').textContent",
        )
        .await;
    assert!(
        state
            .as_str()
            .is_some_and(|s| s.starts_with("2 users from the PBX, 2 in the phonebook")),
        "{state}"
    );
    // A profile: a BLF to alice, a DND; saved through the admin door.
    let script = "(() => { const v = (id, x) => { document.getElementById(id).value = x; };\
        v('profile-name', 'sales'); v('key-type', 'blf'); v('key-target', 'alice'); v('key-label', 'Alice');\
        document.getElementById('key-add').click(); v('key-type', 'dnd'); document.getElementById('key-add').click();\
        document.getElementById('profile-save').click(); return ''; })()";
    browser.eval(&page, None, script).await;
    browser
        .wait_for(
            &page,
            None,
            "document.getElementById('profile-choice').value === 'sales'",
            WAIT,
        )
        .await;
    let (status, body) = crate::admin::call(
        &s.service,
        "GET",
        &format!("{API}/key-profiles"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["profiles"][0],
        serde_json::json!({"name":"sales","keys":[{"type":"blf","target":"alice","label":"Alice"},{"type":"dnd"}]})
    );
    // A bad key (the third, after the two of the profile on screen) is refused with its
    // position, and nothing is stored.
    let bad = "(() => { const v = (id, x) => { document.getElementById(id).value = x; };\
        v('profile-name', 'bad'); v('key-type', 'blf'); v('key-target', 'not a sip name');\
        document.getElementById('key-add').click(); document.getElementById('profile-save').click(); return ''; })()";
    browser.eval(&page, None, bad).await;
    browser
        .wait_for(
            &page,
            None,
            "document.getElementById('message').textContent.startsWith('key profile: key 3: blf target')",
            WAIT,
        )
        .await;
    // The profile given to the first phone from its detail.
    let mac = s.phones[0].mac.clone();
    browser
        .wait_for(
            &page,
            None,
            &format!("!!document.querySelector('#phones tr[data-mac=\"{mac}\"]')"),
            WAIT,
        )
        .await;
    browser
        .eval(
            &page,
            None,
            &format!("document.querySelector('#phones tr[data-mac=\"{mac}\"]').click(), ''"),
        )
        .await;
    browser
        .wait_for(&page, None, "!document.getElementById('detail').hidden", WAIT)
        .await;
    browser
        .eval(&page, None, "document.getElementById('act-profile-choice').value = 'sales', document.getElementById('act-profile').click(), ''")
        .await;
    browser
        .wait_for(
            &page,
            None,
            "document.getElementById('message').textContent.startsWith('key_profile done')",
            WAIT,
        )
        .await;
    browser
        .wait_for(
            &page,
            None,
            "document.getElementById('detail-fields').textContent.includes('busy lamp (BLF) alice (Alice)')",
            WAIT,
        )
        .await;
    browser.screenshot(&page, &screenshot_path("key-profiles")).await;
    let (_, phone) = crate::admin::call(
        &s.service,
        "GET",
        &format!("{API}/phones/{mac}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(phone["key_profile"], "sales");
    assert_eq!(phone["keys"][0]["target"], "alice");
    let (_, body) = crate::admin::call(
        &s.service,
        "GET",
        &format!("{API}/key-profiles"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(
        body["profiles"].as_array().map(Vec::len),
        Some(1),
        "the bad profile is not stored: {body}"
    );
}

#[tokio::test]
async fn the_page_shows_a_phones_redirect_and_registers_it_with_the_device_code_typed_in() {
    let gigaset = innoprov_actors::sim::redirect::GigasetRedirectSim::start("acme-gs", "gs-page-pass")
        .await
        .expect("gigaset double");
    gigaset.manufacture("7c2f80000d01", "K9P3");
    let extra = format!(
        "[provisioning]\npublic_url = \"http://127.0.0.1:9/example.com/innoprov/prov/\"\n[redirect.gigaset]\nurl = \"{}\"\nuser = \"acme-gs\"\npassword = \"gs-page-pass\"\n",
        gigaset.url()
    );
    let mut s = setup_with(&extra, [81, 82]).await;
    let phone = SimPhone {
        mac: "7c2f80000d01".into(),
        code: s.sim.issue_code(),
        ..SimPhone::numbered(83)
    };
    assert_eq!(s.users.provision(&phone).await.expect("reply")["result"], "ok");
    let base = format!("http://{}", s.service.addr);
    let mut browser = Browser::launch().await;
    let page = browser.open(&format!("{base}{PAGE}#token={TOKEN}")).await;
    let selector = format!("#phones tr[data-mac=\"{}\"]", phone.mac);
    browser
        .wait_for(
            &page,
            None,
            &format!("!!document.querySelector('{selector}')"),
            WAIT,
        )
        .await;
    browser
        .eval(
            &page,
            None,
            &format!("document.querySelector('{selector}').click(), ''"),
        )
        .await;
    // The service's state in its words: the code is missing.
    let fields = "document.getElementById('detail-fields').textContent";
    browser
        .wait_for(
            &page,
            None,
            &format!("{fields}.includes('failed') && {fields}.includes('device code')"),
            WAIT,
        )
        .await;
    browser
        .eval(
            &page,
            None,
            "document.getElementById('act-device-code').value = ' k9p3 ', document.getElementById('act-redirect').click(), ''",
        )
        .await;
    browser
        .wait_for(
            &page,
            None,
            "document.getElementById('message').textContent.startsWith('redirect done')",
            WAIT,
        )
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    while !gigaset.devices().contains_key("7C2F80000D01") {
        assert!(
            std::time::Instant::now() < deadline,
            "never registered: {:?}",
            gigaset.calls()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The detail follows the registration (it is re-read after the action and on changes).
    browser
        .eval(
            &page,
            None,
            &format!("document.querySelector('{selector}').click(), ''"),
        )
        .await;
    browser
        .wait_for(
            &page,
            None,
            &format!("{fields}.includes('registered') && {fields}.includes('K9P3')"),
            WAIT,
        )
        .await;
    browser
        .screenshot(&page, &screenshot_path("redirect-device-code"))
        .await;
}
