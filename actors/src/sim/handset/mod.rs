//! Phone emulators: one per vendor, each walking its vendor's boot sequence exactly as the
//! notes in `docs/vendors/<vendor>.md` describe it (written from those notes, not from
//! innoprov's templates): the probes that get 404, the model-wide files, the phone's own file,
//! includes, then the re-check at the URL and with the credentials the file itself gave, and
//! the resync after a SIP NOTIFY when the file allows it.
//!
//! What each emulator keeps is what a handset keeps: the settings it applied (by the key the
//! vendor documents) and the provisioning server and credentials it will use next time.
//!
//! - [`HttpClient`]: HTTP/1.1 over TCP or TLS, written by hand, Basic and Digest (RFC 7616).
//! - [`Url`]: the URLs a file hands the phone.
//! - [`SipListener`]: the phone's SIP port, receiving NOTIFY and answering 200 OK.
//! - [`yealink`], [`snom`] (also Gigaset's Snom-made P-series), [`grandstream`], [`fanvil`],
//!   [`poly`], [`gigaset`] (the Nx70 DECT bases): the boot sequences.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use md5::{Digest as _, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::phone::Response;
use super::wire;

pub mod fanvil;
pub mod gigaset;
pub mod grandstream;
pub mod phonebook;
pub mod poly;
pub mod snom;
pub mod yealink;

/// A URL as a phone takes it from DHCP or a file: `scheme://[user:pass@]host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`.
    pub scheme: String,
    /// User info, if the URL carries it (Snom's `setting_server`).
    pub userinfo: Option<(String, String)>,
    /// Host as written.
    pub host: String,
    /// Port (default by scheme).
    pub port: u16,
    /// Path, starting with `/`.
    pub path: String,
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

impl Url {
    /// Parses `text`; `None` when it is not an http(s) URL. Written out rather than taken from
    /// the `url` crate on purpose: it reads a URL the lenient way a phone's firmware does
    /// (host and path as written, no normalisation), which is what the emulators must check.
    pub fn parse(text: &str) -> Option<Url> {
        let (scheme, rest) = text.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((info, hostport)) => {
                let (user, pass) = info.split_once(':').unwrap_or((info, ""));
                (Some((percent_decode(user), percent_decode(pass))), hostport)
            }
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => {
                (host.to_string(), port.parse().ok()?)
            }
            _ => (hostport.to_string(), default_port),
        };
        if host.is_empty() {
            return None;
        }
        Some(Url {
            scheme,
            userinfo,
            host,
            port,
            path,
        })
    }

    /// The URL of `file` in the directory this URL names (phones append the file name to the
    /// configured server path, adding a `/` when the path has none).
    pub fn join(&self, file: &str) -> Url {
        let mut url = self.clone();
        if !url.path.ends_with('/') {
            url.path.push('/');
        }
        url.path.push_str(file);
        url
    }

    /// `host:port` for the Host header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// HTTP/1.1 as a phone speaks it: one connection per request, TLS when the URL says https.
#[derive(Clone)]
pub struct HttpClient {
    /// Trusted roots for https (the test certificate).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The User-Agent the phone sends.
    pub user_agent: String,
    /// Every request made, in order: (path, status).
    pub log: Arc<std::sync::Mutex<Vec<(String, u16)>>>,
}

/// How a phone answers a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// Sends Basic up front when it has credentials.
    Basic,
    /// Sends nothing first; answers a Digest (MD5) challenge.
    Digest,
}

fn md5_hex(text: &str) -> String {
    wire::to_hex(&Md5::digest(text.as_bytes()))
}

impl HttpClient {
    /// A client sending `user_agent`, trusting `tls_roots` for https.
    pub fn new(user_agent: &str, tls: Option<Arc<rustls::ClientConfig>>) -> HttpClient {
        HttpClient {
            tls,
            user_agent: user_agent.to_string(),
            log: Arc::default(),
        }
    }

    /// A TLS client configuration trusting only the PEM certificate `cert_pem`.
    pub fn tls_trusting(cert_pem: &[u8]) -> Arc<rustls::ClientConfig> {
        use rustls_pki_types::pem::PemObject;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem).flatten() {
            let _ = roots.add(cert);
        }
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// GET `url` with credentials `auth` answered in `style`; the request is logged.
    pub async fn get(
        &self,
        url: &Url,
        auth: Option<&(String, String)>,
        style: AuthStyle,
    ) -> std::io::Result<Response> {
        let mut headers = Vec::new();
        if let (Some((user, pass)), AuthStyle::Basic) = (auth, style) {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            headers.push(format!("Authorization: Basic {token}"));
        }
        let mut response = self.request(url, &headers).await?;
        if response.status == 401
            && let (Some((user, pass)), AuthStyle::Digest) = (auth, style)
            // Phones speak Digest MD5 (RFC 7616 §3.7 lets the server offer several).
            && let Some(answer) = response.headers.get("www-authenticate").and_then(|all| {
                all.lines()
                    .filter(|c| c.starts_with("Digest") && c.contains("MD5"))
                    .find_map(|c| super::phone::digest_authorization(c, user, pass, &url.path))
            })
        {
            response = self.request(url, &[format!("Authorization: {answer}")]).await?;
        }
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((url.path.clone(), response.status));
        Ok(response)
    }

    async fn request(&self, url: &Url, extra: &[String]) -> std::io::Result<Response> {
        let host = if url.host == "localhost" {
            "127.0.0.1"
        } else {
            url.host.trim_start_matches('[').trim_end_matches(']')
        };
        let addr: SocketAddr = format!("{host}:{}", url.port)
            .parse()
            .or_else(|_| format!("[{host}]:{}", url.port).parse())
            .map_err(|_| std::io::Error::other(format!("cannot resolve {}", url.host)))?;
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nConnection: close\r\n",
            url.path,
            url.authority(),
            self.user_agent
        );
        for line in extra {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await??;
        let raw = if url.scheme == "https" {
            let config = self
                .tls
                .clone()
                .ok_or_else(|| std::io::Error::other("https URL but no trusted roots"))?;
            let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            exchange(tls, head.as_bytes()).await?
        } else {
            exchange(tcp, head.as_bytes()).await?
        };
        super::phone::parse_response(&raw)
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP response from {}", url.authority())))
    }

    /// A file as the phones fetch it: `Some(body)` on 200, `None` on 404 (the phones move on),
    /// an error naming the file for anything else.
    pub async fn fetch_file(
        &self,
        vendor: &'static str,
        url: &Url,
        auth: Option<&(String, String)>,
        style: AuthStyle,
    ) -> Result<Option<String>, HandsetError> {
        let response = self
            .get(url, auth, style)
            .await
            .map_err(|e| fault(vendor, format!("GET {}: {e}", url.path)))?;
        match response.status {
            200 => Ok(Some(response.body)),
            404 => Ok(None),
            other => Err(fault(vendor, format!("GET {}: status {other}", url.path))),
        }
    }

    /// The statuses of every request so far, in order.
    pub fn requests(&self) -> Vec<(String, u16)> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    stream.write_all(request).await?;
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify; what was read is the answer.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await?;
    Ok(raw)
}

/// The phone's SIP port: receives a NOTIFY and answers 200 OK, as a phone does before it acts.
pub struct SipListener {
    /// The UDP socket (innoprov's `provisioning.notify_port` points here).
    socket: UdpSocket,
}

/// A SIP request as received.
#[derive(Debug, Clone)]
pub struct SipRequest {
    /// The request line.
    pub request_line: String,
    /// Headers, names lowercase.
    pub headers: BTreeMap<String, String>,
}

impl SipListener {
    /// Binds 127.0.0.1 on an ephemeral port.
    pub async fn bind() -> std::io::Result<SipListener> {
        SipListener::bind_port(0).await
    }

    /// Binds 127.0.0.1 on `port` (0: an ephemeral one), where the phone's file told it to.
    pub async fn bind_port(port: u16) -> std::io::Result<SipListener> {
        Ok(SipListener {
            socket: UdpSocket::bind(("127.0.0.1", port)).await?,
        })
    }

    /// The port to configure as `provisioning.notify_port`.
    pub fn port(&self) -> u16 {
        self.socket.local_addr().map_or(0, |a| a.port())
    }

    async fn receive(&self, limit: Duration) -> std::io::Result<(SipRequest, SocketAddr)> {
        let mut buf = vec![0u8; 8192];
        let (n, from) = tokio::time::timeout(limit, self.socket.recv_from(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no SIP request in time"))??;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut headers = BTreeMap::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        Ok((
            SipRequest {
                request_line,
                headers,
            },
            from,
        ))
    }

    async fn answer(
        &self,
        to: SocketAddr,
        request: &SipRequest,
        status: &str,
        extra: &str,
    ) -> std::io::Result<()> {
        let mut answer = format!("SIP/2.0 {status}\r\n");
        for name in ["via", "from", "to", "call-id", "cseq"] {
            if let Some(value) = request.headers.get(name) {
                answer.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        answer.push_str(extra);
        answer.push_str("Content-Length: 0\r\n\r\n");
        self.socket.send_to(answer.as_bytes(), to).await?;
        Ok(())
    }

    /// The next SIP request within `limit`, answered 200 OK (RFC 3261 §8.2.6: Via, From, To,
    /// Call-ID, CSeq copied).
    pub async fn next(&self, limit: Duration) -> std::io::Result<SipRequest> {
        let (request, from) = self.receive(limit).await?;
        self.answer(from, &request, "200 OK", "").await?;
        Ok(request)
    }

    /// The next NOTIFY, challenged first as a phone does when its file says so: `401` with a
    /// Digest challenge (RFC 3261 §22.4; `qop=auth` when `qop`), then the retry must carry a
    /// response computed with `credentials` (RFC 2617 §3.2.2, method NOTIFY) or it gets `403`.
    pub async fn next_challenged(
        &self,
        limit: Duration,
        credentials: Option<&(String, String)>,
        qop: bool,
    ) -> Result<SipRequest, HandsetError> {
        let io = |e: std::io::Error| fault("sip", e.to_string());
        let Some((user, password)) = credentials else {
            return self.next(limit).await.map_err(io);
        };
        let (first, from) = self.receive(limit).await.map_err(io)?;
        if first.headers.contains_key("authorization") {
            return Err(fault("sip", "credentials sent before any challenge"));
        }
        let nonce = format!("{:x}", rand_u64());
        let realm = "handset";
        let challenge = format!(
            "WWW-Authenticate: Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5{}\r\n",
            if qop { ", qop=\"auth\"" } else { "" }
        );
        self.answer(from, &first, "401 Unauthorized", &challenge)
            .await
            .map_err(io)?;
        let (second, from) = self.receive(limit).await.map_err(io)?;
        let param = |name: &str| -> Option<String> {
            let header = second.headers.get("authorization")?.strip_prefix("Digest ")?;
            header.split(',').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        let uri = second
            .request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
        let ha2 = md5_hex(&format!("NOTIFY:{uri}"));
        let expected = if qop {
            let (nc, cnonce) = (
                param("nc").unwrap_or_default(),
                param("cnonce").unwrap_or_default(),
            );
            md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        } else {
            md5_hex(&format!("{ha1}:{nonce}:{ha2}"))
        };
        let valid = param("username").as_deref() == Some(user.as_str())
            && param("nonce").as_deref() == Some(nonce.as_str())
            && param("uri").as_deref() == Some(uri.as_str())
            && param("response").as_deref() == Some(expected.as_str())
            && second.headers.get("call-id") == first.headers.get("call-id");
        if !valid {
            self.answer(from, &second, "403 Forbidden", "")
                .await
                .map_err(io)?;
            return Err(fault("sip", "the NOTIFY's Digest answer is wrong"));
        }
        self.answer(from, &second, "200 OK", "").await.map_err(io)?;
        Ok(second)
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// The CA certificates of a PEM text (what a phone installs from its file or a URL).
pub fn pem_certificates(vendor: &'static str, pem: &str) -> Result<Vec<Vec<u8>>, HandsetError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| fault(vendor, format!("a CA certificate that does not parse: {e}")))?;
    if certs.is_empty() {
        return Err(fault(vendor, "a CA file without a certificate"));
    }
    Ok(certs)
}

/// The CA certificates a file left as PEM texts under `keys` (keys unset or empty skipped).
pub fn cas_in(
    vendor: &'static str,
    settings: &BTreeMap<String, String>,
    keys: impl IntoIterator<Item = String>,
) -> Result<Vec<Vec<u8>>, HandsetError> {
    let mut out = Vec::new();
    for key in keys {
        if let Some(pem) = settings.get(&key).filter(|t| !t.trim().is_empty()) {
            out.extend(pem_certificates(vendor, pem)?);
        }
    }
    Ok(out)
}

/// Whether `chain_pem` (leaf first) is a valid chain for `name` under exactly the CAs in
/// `trusted` (what the phone's file installed), as a phone checks a SIP-TLS server.
pub fn verify_chain(
    vendor: &'static str,
    trusted: &[Vec<u8>],
    chain_pem: &[u8],
    name: &str,
) -> Result<(), HandsetError> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    for der in trusted {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| fault(vendor, format!("CA not usable: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| fault(vendor, format!("no CA to check against: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| fault(vendor, format!("server chain: {e}")))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| fault(vendor, "an empty server chain"))?;
    let server = ServerName::try_from(name.to_string()).map_err(|e| fault(vendor, format!("{name}: {e}")))?;
    verifier
        .verify_server_cert(leaf, intermediates, &server, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| fault(vendor, format!("{name}'s certificate is not trusted: {e}")))
}

/// Why a phone would not come up as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{vendor} emulator: {reason}")]
pub struct HandsetError {
    /// The vendor.
    pub vendor: &'static str,
    /// What went wrong.
    pub reason: String,
}

/// Shorthand for a [`HandsetError`].
pub fn fault(vendor: &'static str, reason: impl Into<String>) -> HandsetError {
    HandsetError {
        vendor,
        reason: reason.into(),
    }
}

/// An applied setting the phone needs, or why it would not come up.
pub fn setting(
    settings: &std::collections::BTreeMap<String, String>,
    vendor: &'static str,
    key: &str,
) -> Result<String, HandsetError> {
    settings
        .get(key)
        .cloned()
        .ok_or_else(|| fault(vendor, format!("{key} not set")))
}

/// The SIP account a phone ends up with, as read from its applied settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// Registrar host.
    pub server: String,
    /// Registrar port.
    pub port: u16,
    /// Whether the transport is TLS.
    pub tls: bool,
    /// SIP user.
    pub user: String,
    /// Authentication name.
    pub auth_user: String,
    /// Password.
    pub password: String,
    /// Display name.
    pub display_name: String,
}

/// A function key as the phone would show it, read from its applied settings in its vendor's
/// own key syntax (docs/vendors/directory-and-keys.md), whatever that syntax is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedKey {
    /// `blf`, `speed_dial`, `line` or `dnd`; anything else as `other:<what the file said>`.
    pub kind: String,
    /// The BLF target's SIP name (user part) or the number dialled; empty for line and DND.
    pub value: String,
    /// What the key shows.
    pub label: String,
    /// The expansion module it sits on (from 1); `None` on the phone itself.
    pub module: Option<u32>,
    /// For a BLF key, the URI the phone sends its dialog SUBSCRIBE to (RFC 4235).
    pub subscribe: Option<String>,
}

impl EmulatedKey {
    /// A key of `kind` showing `label`, on the phone itself.
    pub fn new(kind: &str, value: &str, label: &str) -> EmulatedKey {
        EmulatedKey {
            kind: kind.to_string(),
            value: value.to_string(),
            label: label.to_string(),
            module: None,
            subscribe: None,
        }
    }

    /// A BLF key on `target` as the vendors write it (a user part the phone completes with its
    /// account's registrar, or a whole `sip:` URI), subscribing through `registrar`.
    pub fn blf(target: &str, label: &str, registrar: &str) -> EmulatedKey {
        let (value, uri) = match target.strip_prefix("sip:") {
            Some(rest) => (
                rest.split('@').next().unwrap_or_default().to_string(),
                target.to_string(),
            ),
            None => (target.to_string(), format!("sip:{target}@{registrar}")),
        };
        EmulatedKey {
            subscribe: Some(uri),
            ..EmulatedKey::new("blf", &value, label)
        }
    }

    /// The same key on expansion module `module`.
    pub fn on_module(self, module: u32) -> EmulatedKey {
        EmulatedKey {
            module: Some(module),
            ..self
        }
    }
}

/// Any of the emulators, driven alike by tests and demos.
pub enum Handset {
    /// A Yealink.
    Yealink(yealink::YealinkPhone),
    /// A Snom.
    Snom(snom::SnomPhone),
    /// A Grandstream.
    Grandstream(grandstream::GrandstreamPhone),
    /// A Fanvil.
    Fanvil(fanvil::FanvilPhone),
    /// A Poly.
    Poly(poly::PolyPhone),
    /// A Gigaset Nx70 DECT base.
    Gigaset(gigaset::GigasetBase),
}

impl Handset {
    /// A factory-fresh phone of `vendor` with `mac`, told `server` (DHCP option 66 or the
    /// vendor's redirect), speaking through `http`. A typical model per vendor.
    pub fn new(vendor: &str, mac: &str, server: Url, http: HttpClient) -> Option<Handset> {
        Some(match vendor {
            "yealink" => Handset::Yealink(yealink::YealinkPhone::new(
                mac,
                "T46U",
                "108",
                "108.86.0.90",
                server,
                http,
            )),
            "snom" => Handset::Snom(snom::SnomPhone::new(mac, "D785", server, http)),
            "grandstream" => {
                Handset::Grandstream(grandstream::GrandstreamPhone::new(mac, "GXP2170", server, http))
            }
            "fanvil" => Handset::Fanvil(fanvil::FanvilPhone::new(mac, "X4", server, http)),
            "poly" => Handset::Poly(poly::PolyPhone::new(mac, "450", server, http)),
            "gigaset" => Handset::Gigaset(gigaset::GigasetBase::new(mac, "N870", server, http)),
            // No source gives the P-series' User-Agent (docs/vendors/gigaset.md): Snom's form
            // with the phone's own type is assumed.
            "gigaset_p" => Handset::Snom(snom::SnomPhone::gigaset_p(
                mac,
                "P82x",
                "Mozilla/4.0 (compatible; GigasetP820-SIP 10.1.54.13 {MAC})",
                server,
                http,
            )),
            _ => return None,
        })
    }

    /// A factory-fresh phone of `vendor` and `model`, where the vendor's emulator knows the
    /// model's keys: Yealink T4xS/T4xU/T5xW (the common-file codes of docs/vendors/yealink.md)
    /// and Grandstream GXP21xx/GRP26xx. `None` for any other.
    pub fn of_model(vendor: &str, model: &str, mac: &str, server: Url, http: HttpClient) -> Option<Handset> {
        let model = model.to_ascii_uppercase();
        Some(match vendor {
            "yealink" => {
                let (code, firmware) = match model.as_str() {
                    "T41S" | "T42S" | "T46S" | "T48S" => {
                        let code = match model.as_str() {
                            "T41S" => "068",
                            "T42S" => "067",
                            "T46S" => "066",
                            _ => "065",
                        };
                        (code, "66.86.0.15")
                    }
                    "T42U" => ("116", "108.86.0.90"),
                    "T46U" => ("108", "108.86.0.90"),
                    "T48U" => ("109", "108.86.0.90"),
                    "T54W" => ("096", "96.86.0.70"),
                    "T57W" => ("097", "96.86.0.70"),
                    _ => return None,
                };
                Handset::Yealink(yealink::YealinkPhone::new(
                    mac, &model, code, firmware, server, http,
                ))
            }
            "grandstream" if model.starts_with("GXP21") || model.starts_with("GRP26") => {
                Handset::Grandstream(grandstream::GrandstreamPhone::new(mac, &model, server, http))
            }
            _ => return None,
        })
    }

    /// One provisioning run: boot, periodic check, or the fetch after a resync.
    pub async fn provision(&mut self) -> Result<(), HandsetError> {
        match self {
            Handset::Yealink(p) => p.provision().await,
            Handset::Snom(p) => p.provision().await,
            Handset::Grandstream(p) => p.provision().await,
            Handset::Fanvil(p) => p.provision().await,
            Handset::Poly(p) => p.provision().await,
            Handset::Gigaset(p) => p.provision().await,
        }
    }

    /// The account the phone would register with.
    pub fn registration(&self) -> Result<Registration, HandsetError> {
        match self {
            Handset::Yealink(p) => p.registration(),
            Handset::Snom(p) => p.registration(),
            Handset::Grandstream(p) => p.registration(),
            Handset::Fanvil(p) => p.registration(),
            Handset::Poly(p) => p.registration(),
            Handset::Gigaset(p) => p.registration(),
        }
    }

    /// The UDP port it listens on for SIP, as its file left it (`None`: a random one).
    pub fn sip_port(&self) -> Option<u16> {
        match self {
            Handset::Yealink(p) => p.sip_port(),
            Handset::Snom(p) => p.sip_port(),
            Handset::Grandstream(p) => p.sip_port(),
            Handset::Fanvil(p) => p.sip_port(),
            Handset::Poly(p) => p.sip_port(),
            Handset::Gigaset(p) => p.sip_port(),
        }
    }

    /// The function keys it shows, in key order (the phone's own keys, then its modules').
    pub fn function_keys(&self) -> Vec<EmulatedKey> {
        match self {
            Handset::Yealink(p) => p.function_keys(),
            Handset::Snom(p) => p.function_keys(),
            Handset::Grandstream(p) => p.function_keys(),
            Handset::Fanvil(p) => p.function_keys(),
            Handset::Poly(p) => p.function_keys(),
            // No Nx70 source documents programmable keys (directory-and-keys.md, "Gigaset").
            Handset::Gigaset(_) => Vec::new(),
        }
    }

    /// The URIs its BLF keys subscribe to (`Event: dialog`), in key order.
    pub fn blf_subscriptions(&self) -> Vec<String> {
        self.function_keys()
            .into_iter()
            .filter_map(|k| k.subscribe)
            .collect()
    }

    /// Its SIP port, bound on loopback where its file says (an ephemeral one for `None`).
    pub async fn sip_listener(&self) -> std::io::Result<SipListener> {
        SipListener::bind_port(self.sip_port().unwrap_or(0)).await
    }

    /// Minutes between its periodic checks, as its file set them (`None`: no periodic check).
    pub fn recheck_minutes(&self) -> Option<u32> {
        match self {
            Handset::Yealink(p) => p.recheck_minutes(),
            Handset::Snom(p) => p.recheck_minutes(),
            Handset::Grandstream(p) => p.recheck_minutes(),
            Handset::Fanvil(p) => p.recheck_minutes(),
            Handset::Poly(p) => p.recheck_minutes(),
            Handset::Gigaset(p) => p.recheck_minutes(),
        }
    }

    /// Whether its file makes it ignore a provisioning server offered by DHCP (option 66).
    pub fn ignores_dhcp_server(&self) -> bool {
        match self {
            Handset::Yealink(p) => p.ignores_dhcp_server(),
            Handset::Snom(p) => p.ignores_dhcp_server(),
            Handset::Grandstream(p) => p.ignores_dhcp_server(),
            Handset::Fanvil(p) => p.ignores_dhcp_server(),
            Handset::Poly(p) => p.ignores_dhcp_server(),
            Handset::Gigaset(p) => p.ignores_dhcp_server(),
        }
    }

    /// Checks a SIP-TLS server's certificate chain as the phone would: against the CAs its
    /// file installed (Fanvil and the Gigaset bases take none from a file: they fail).
    pub fn verify_server(&self, chain_pem: &[u8], name: &str) -> Result<(), HandsetError> {
        match self {
            Handset::Yealink(p) => verify_chain("yealink", &p.trusted_cas, chain_pem, name),
            Handset::Snom(p) => verify_chain(p.vendor(), &p.trusted_cas, chain_pem, name),
            Handset::Grandstream(p) => p.verify_server(chain_pem, name),
            Handset::Poly(p) => p.verify_server(chain_pem, name),
            // No source documents a CA install through a Fanvil's or a Gigaset base's file
            // (docs/vendors/fanvil.md, gigaset.md).
            Handset::Fanvil(_) | Handset::Gigaset(_) => {
                Err(fault("sip", "this emulator takes no CA from its file"))
            }
        }
    }

    /// Where its next check goes, and with which credentials.
    pub fn next_check(&self) -> (&Url, Option<&(String, String)>) {
        match self {
            Handset::Yealink(p) => (&p.server, p.credentials.as_ref()),
            Handset::Snom(p) => (&p.server, p.credentials.as_ref()),
            Handset::Grandstream(p) => (&p.server, p.credentials.as_ref()),
            Handset::Fanvil(p) => (&p.server, p.credentials.as_ref()),
            Handset::Poly(p) => (&p.server, p.credentials.as_ref()),
            Handset::Gigaset(p) => (&p.server, p.credentials.as_ref()),
        }
    }

    /// Its HTTP side (request log, User-Agent).
    pub fn http(&self) -> &HttpClient {
        match self {
            Handset::Yealink(p) => &p.http,
            Handset::Snom(p) => &p.http,
            Handset::Grandstream(p) => &p.http,
            Handset::Fanvil(p) => &p.http,
            Handset::Poly(p) => &p.http,
            Handset::Gigaset(p) => &p.http,
        }
    }

    /// The credentials it challenges a NOTIFY with, if its file makes it challenge, and
    /// whether its challenge carries `qop=auth`.
    pub fn notify_challenge(&self) -> (Option<(String, String)>, bool) {
        match self {
            Handset::Snom(p) => (p.checksync_challenge(), false),
            Handset::Grandstream(p) => (p.notify_challenge(), true),
            Handset::Yealink(_) | Handset::Fanvil(_) | Handset::Poly(_) | Handset::Gigaset(_) => {
                (None, false)
            }
        }
    }

    /// Whether an (authenticated, where challenged) NOTIFY makes it fetch again.
    pub fn accepts(&self, notify: &SipRequest) -> bool {
        match self {
            Handset::Yealink(p) => p.accepts(notify),
            Handset::Snom(p) => p.accepts(notify),
            Handset::Grandstream(p) => p.accepts(notify),
            Handset::Fanvil(p) => p.accepts(notify),
            Handset::Poly(p) => p.accepts(notify),
            Handset::Gigaset(p) => p.accepts(notify),
        }
    }

    /// Waits for the NOTIFY innoprov sends, challenging it as the phone's file says, and
    /// tells whether the phone would act on it.
    pub async fn await_resync(&self, sip: &SipListener, limit: Duration) -> Result<SipRequest, HandsetError> {
        let (credentials, qop) = self.notify_challenge();
        let notify = sip.next_challenged(limit, credentials.as_ref(), qop).await?;
        if !self.accepts(&notify) {
            return Err(fault(
                "sip",
                format!("the phone ignores this NOTIFY: {:?}", notify.headers.get("event")),
            ));
        }
        Ok(notify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_phones_take_them() {
        let u = Url::parse("https://p1a2:x%40y@localhost:8443/example.com/innoprov/prov/").unwrap();
        assert_eq!(u.userinfo, Some(("p1a2".into(), "x@y".into())));
        assert_eq!((u.host.as_str(), u.port), ("localhost", 8443));
        assert_eq!(u.join("a.cfg").path, "/example.com/innoprov/prov/a.cfg");
        let bare = Url::parse("http://127.0.0.1:1234/prov").unwrap();
        assert_eq!(bare.join("a.cfg").path, "/prov/a.cfg");
        assert_eq!(Url::parse("http://h/").unwrap().port, 80);
        assert!(Url::parse("tftp://h/").is_none());
    }
}
