//! A simulated SIP phone fetching its provisioning files over HTTP/1.1 (RFC 9112), written by
//! hand: it sends its vendor's file names and User-Agent, answers 401 with Basic or Digest
//! (RFC 7616, MD5) computed here, and keeps the ETag for If-None-Match.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use md5::{Digest as _, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire;

/// A response as the phone saw it.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (names lowercase; repeated headers joined with "\n").
    pub headers: HashMap<String, String>,
    /// Body.
    pub body: String,
}

/// How the phone authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No credentials.
    None,
    /// Basic, sent up front.
    Basic(String, String),
    /// Digest, after the 401 challenge.
    Digest(String, String),
}

/// GETs `path` from `addr` with the given headers; one connection per request.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await??;
    request_on(tcp, "GET", addr, path, headers).await
}

/// A TCP connection to `addr` from the local address `from` (on loopback, any address of
/// 127.0.0.0/8: several clients on one machine).
pub async fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(from, 0))?;
    tokio::time::timeout(Duration::from_secs(10), socket.connect(addr)).await?
}

/// `method` of `path` at `addr` from the local address `from`, with the given headers.
pub async fn request_from(
    from: std::net::IpAddr,
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let tcp = connect_from(from, addr).await?;
    request_on(tcp, method, addr, path, headers).await
}

async fn request_on(
    mut tcp: TcpStream,
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw)).await??;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::other(format!("bad HTTP response: {:?}", String::from_utf8_lossy(&raw)))
    })
}

pub(crate) fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers
            .entry(name.trim().to_ascii_lowercase())
            .and_modify(|v| {
                v.push('\n');
                v.push_str(value.trim());
            })
            .or_insert_with(|| value.trim().to_string());
    }
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn md5_hex(text: &str) -> String {
    wire::to_hex(&Md5::digest(text.as_bytes()))
}

/// The Digest MD5 `Authorization` answering `challenge` (a `WWW-Authenticate` value).
pub fn digest_authorization(challenge: &str, user: &str, password: &str, path: &str) -> Option<String> {
    let params = challenge.strip_prefix("Digest ")?;
    let value = |key: &str| {
        params.split(',').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            (k == key).then(|| v.trim_matches('"').to_string())
        })
    };
    let (realm, nonce) = (value("realm")?, value("nonce")?);
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("GET:{path}"));
    let cnonce = "0a4f113b";
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
    Some(format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{path}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\", response=\"{response}\""
    ))
}

/// A phone: its User-Agent and how it authenticates.
#[derive(Debug, Clone)]
pub struct PhoneSim {
    /// Where innoprov listens.
    pub addr: SocketAddr,
    /// The User-Agent it sends.
    pub user_agent: String,
}

impl PhoneSim {
    /// Fetches `path` the way a phone does: with `auth`, answering a Digest challenge once,
    /// with If-None-Match when `etag` is given.
    pub async fn fetch(&self, path: &str, auth: &Auth, etag: Option<&str>) -> std::io::Result<Response> {
        let mut headers: Vec<(&str, String)> = vec![("User-Agent", self.user_agent.clone())];
        if let Some(etag) = etag {
            headers.push(("If-None-Match", etag.to_string()));
        }
        if let Auth::Basic(user, password) = auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            headers.push(("Authorization", format!("Basic {token}")));
        }
        let borrowed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = get(self.addr, path, &borrowed).await?;
        let Auth::Digest(user, password) = auth else {
            return Ok(response);
        };
        if response.status != 401 {
            return Ok(response);
        }
        let challenge = response.headers.get("www-authenticate").and_then(|all| {
            all.lines()
                .find(|c| c.starts_with("Digest") && c.contains("MD5"))
                .map(str::to_string)
        });
        let Some(authorization) = challenge.and_then(|c| digest_authorization(&c, user, password, path))
        else {
            return Ok(response);
        };
        headers.push(("Authorization", authorization));
        let borrowed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        get(self.addr, path, &borrowed).await
    }
}
