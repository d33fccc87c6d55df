//! One outgoing HTTP/1.1 request to a vendor's redirect service: plain or TLS (the system's
//! web PKI roots), `Connection: close`, every part bounded before it is read (connect and
//! answer time, header size, body size), chunked or length-delimited answers. Only the
//! redirect worker uses it; the request itself comes from the core's sans-IO exchanges.

use std::sync::Arc;
use std::time::Duration;

use innoprov::redirect::{HttpCall, HttpReply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most an answer may hold, headers and body.
pub const MAX_ANSWER: usize = 256 * 1024;

/// What went wrong, for the phone's status and the log.
#[derive(Debug, thiserror::Error)]
pub enum HttpCallError {
    /// The URL is not one we can call.
    #[error("bad URL {0}")]
    Url(String),
    /// Connecting, TLS, writing or reading failed.
    #[error("{0}")]
    Io(String),
    /// The peer took longer than the bound.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer broke HTTP or a bound.
    #[error("bad answer: {0}")]
    Answer(String),
}

/// Makes `call` within `timeout` and reads its answer.
pub async fn perform(
    call: &HttpCall,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<HttpReply, HttpCallError> {
    tokio::time::timeout(timeout, exchange(call, tls))
        .await
        .map_err(|_| HttpCallError::Timeout(timeout))?
}

async fn exchange(call: &HttpCall, tls: &Arc<rustls::ClientConfig>) -> Result<HttpReply, HttpCallError> {
    let url = url::Url::parse(&call.url).map_err(|e| HttpCallError::Url(format!("{}: {e}", call.url)))?;
    let host = url
        .host_str()
        .ok_or_else(|| HttpCallError::Url(format!("{}: no host", call.url)))?
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| HttpCallError::Url(format!("{}: no port", call.url)))?;
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| HttpCallError::Io(format!("connect {host}:{port}: {e}")))?;
    let mut head = format!("{} {}", call.method, url.path());
    if let Some(query) = url.query() {
        head.push('?');
        head.push_str(query);
    }
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    head.push_str(&format!(
        " HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\nUser-Agent: innoprov/{}\r\nContent-Length: {}\r\n",
        env!("CARGO_PKG_VERSION"),
        call.body.len()
    ));
    for (name, value) in &call.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(&call.body);
    match url.scheme() {
        "http" => send_and_read(tcp, &request).await,
        "https" => {
            let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| HttpCallError::Url(format!("{host}: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                .connect(name, tcp)
                .await
                .map_err(|e| HttpCallError::Io(format!("TLS with {host}: {e}")))?;
            send_and_read(stream, &request).await
        }
        other => Err(HttpCallError::Url(format!("scheme {other}"))),
    }
}

async fn send_and_read<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> Result<HttpReply, HttpCallError> {
    stream
        .write_all(request)
        .await
        .map_err(|e| HttpCallError::Io(format!("write: {e}")))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A peer that closes TLS without close_notify after a complete answer.
            Err(_) if answer_complete(&raw) => 0,
            Err(e) => return Err(HttpCallError::Io(format!("read: {e}"))),
        };
        if n == 0 {
            break;
        }
        if raw.len() + n > MAX_ANSWER {
            return Err(HttpCallError::Answer(format!("more than {MAX_ANSWER} bytes")));
        }
        raw.extend_from_slice(&chunk[..n]);
        if answer_complete(&raw) {
            break;
        }
    }
    parse_answer(&raw)
}

/// Whether `raw` holds a whole length-delimited or chunked answer.
fn answer_complete(raw: &[u8]) -> bool {
    framed(raw) && parse_answer(raw).is_ok()
}

/// Whether the answer says where it ends (and so need not wait for the close).
fn framed(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    matches!(response.parse(raw), Ok(httparse::Status::Complete(_)))
        && response.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("content-length")
                || (h.name.eq_ignore_ascii_case("transfer-encoding")
                    && String::from_utf8_lossy(h.value)
                        .to_ascii_lowercase()
                        .contains("chunked"))
        })
}

/// Reads a whole answer: status, headers and body (chunked, by length, or to the end).
pub fn parse_answer(raw: &[u8]) -> Result<HttpReply, HttpCallError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let start = match response.parse(raw) {
        Ok(httparse::Status::Complete(start)) => start,
        Ok(httparse::Status::Partial) => return Err(HttpCallError::Answer("headers cut short".into())),
        Err(e) => return Err(HttpCallError::Answer(e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &raw[start..];
    let body = if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| HttpCallError::Answer(format!("Content-Length {length:?}")))?;
        if rest.len() < length {
            return Err(HttpCallError::Answer("body cut short".into()));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    let headers = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    Ok(HttpReply {
        status,
        body,
        headers,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, HttpCallError> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| HttpCallError::Answer("chunk size cut short".into()))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|_| HttpCallError::Answer(format!("chunk size {size_text:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err(HttpCallError::Answer("chunk cut short".into()));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_length_chunks_or_to_the_end() {
        let by_length = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").expect("length");
        assert_eq!(
            (by_length.status, by_length.body.as_slice()),
            (200, &b"hello"[..])
        );
        let chunked = parse_answer(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!((chunked.status, chunked.body.as_slice()), (201, &b"hello"[..]));
        let to_end = parse_answer(b"HTTP/1.0 503 Busy\r\n\r\nlater").expect("to the end");
        assert_eq!((to_end.status, to_end.body.as_slice()), (503, &b"later"[..]));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(parse_answer(b"garbage").is_err());
    }

    /// The module's promise: an answer is bounded before it is read whole, and a peer that
    /// never answers is cut off at the timeout.
    #[tokio::test]
    async fn a_huge_or_missing_answer_is_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            // First: an endless answer. Second: none at all.
            for huge in [true, false] {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                if huge {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                    let chunk = vec![b'x'; 64 * 1024];
                    for _ in 0..8 {
                        if stream.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                } else {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        });
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        let call = HttpCall {
            method: "GET",
            url: format!("http://{addr}/"),
            headers: Vec::new(),
            body: Vec::new(),
        };
        let huge = perform(&call, &tls, Duration::from_secs(5)).await;
        assert!(
            matches!(huge, Err(HttpCallError::Answer(ref e)) if e.contains("262144")),
            "{huge:?}"
        );
        let silent = perform(&call, &tls, Duration::from_millis(300)).await;
        assert!(matches!(silent, Err(HttpCallError::Timeout(_))), "{silent:?}");
    }
}
