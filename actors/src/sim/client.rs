//! A minimal AppWebsocket client over a real websocket, for the simulators and tests: it sends
//! text exactly as given and reads replies as JSON.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use super::wire;

/// What went wrong talking to the service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or the websocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// No message within the time allowed.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The service closed the connection.
    #[error("connection closed by the service")]
    Closed,
    /// The service sent something that is not what the protocol says.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// The identity a simulated peer logs in with.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `app`: the last segment of the App URL.
    pub app: String,
    /// `domain`.
    pub domain: String,
    /// `sip`.
    pub sip: String,
    /// `guid`.
    pub guid: String,
    /// `dn`.
    pub dn: String,
    /// The compact `info` object text, sent as is and hashed as is; `None` sends no `info`.
    pub info: Option<String>,
}

/// One AppWebsocket connection.
pub struct AppWsClient {
    /// The websocket.
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// How long to wait for any single reply.
    pub timeout: Duration,
    /// The session key after a successful login.
    pub session_key: Option<String>,
}

impl AppWsClient {
    /// Connects to `url` (`ws://host:port/path`).
    pub async fn connect(url: &str) -> Result<AppWsClient, ClientError> {
        let (ws, _) = connect_async_with_config(url, Some(super::websocket_config()), false).await?;
        Ok(AppWsClient {
            ws,
            timeout: Duration::from_secs(10),
            session_key: None,
        })
    }

    /// Connects to `url` from the local address `from` (any 127.0.0.0/8 address on
    /// loopback), sending `headers` with the upgrade (a reverse proxy's `X-Forwarded-For`).
    pub async fn connect_from(
        url: &str,
        from: std::net::IpAddr,
        headers: &[(&str, &str)],
    ) -> Result<AppWsClient, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::Protocol(format!("header name {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| ClientError::Protocol(format!("header value {value:?}: {e}")))?;
            request.headers_mut().append(name, value);
        }
        let target = format!(
            "{}:{}",
            request.uri().host().unwrap_or("127.0.0.1"),
            request.uri().port_u16().unwrap_or(80)
        );
        let target: std::net::SocketAddr = target
            .parse()
            .map_err(|e| ClientError::Protocol(format!("address {target}: {e}")))?;
        let tcp = super::phone::connect_from(from, target)
            .await
            .map_err(|e| ClientError::Protocol(format!("connect from {from}: {e}")))?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            request,
            MaybeTlsStream::Plain(tcp),
            Some(super::websocket_config()),
        )
        .await?;
        Ok(AppWsClient {
            ws,
            timeout: Duration::from_secs(10),
            session_key: None,
        })
    }

    /// The websocket itself, for a peer that reads and writes at once (split it).
    pub fn into_stream(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.ws
    }

    /// Sends one text frame exactly as given.
    pub async fn send_raw(&mut self, text: &str) -> Result<(), ClientError> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.ws.send(Message::binary(bytes)).await?;
        Ok(())
    }

    /// The next text message, parsed; pings and pongs are skipped.
    pub async fn recv_json(&mut self) -> Result<Value, ClientError> {
        let (text, _) = self.recv_text_with_frames().await?;
        serde_json::from_str(&text)
            .map_err(|e| ClientError::Protocol(format!("reply is not JSON ({e}): {text}")))
    }

    /// The next text message as sent (tungstenite reassembles fragments).
    pub async fn recv_text_with_frames(&mut self) -> Result<(String, ()), ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout("a message".into()))?;
            match next {
                None => return Err(ClientError::Closed),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(text))) => return Ok((text.to_string(), ())),
                Some(Ok(Message::Close(_))) => return Err(ClientError::Closed),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Waits for the next message whose `mt` is `mt`, skipping others.
    pub async fn recv_mt(&mut self, mt: &str) -> Result<Value, ClientError> {
        loop {
            let msg = self.recv_json().await?;
            if msg["mt"] == mt {
                return Ok(msg);
            }
        }
    }

    /// True if the service closes the connection within the timeout (any text before the
    /// close is skipped).
    pub async fn closed_by_service(&mut self) -> bool {
        loop {
            match self.recv_json().await {
                Err(ClientError::Closed) | Err(ClientError::Ws(_)) => return true,
                Err(_) => return false,
                Ok(_) => continue,
            }
        }
    }

    /// Requests a challenge.
    pub async fn challenge(&mut self) -> Result<String, ClientError> {
        self.send_raw(r#"{"mt":"AppChallenge"}"#).await?;
        let reply = self.recv_mt("AppChallengeResult").await?;
        reply["challenge"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Protocol(format!("AppChallengeResult without challenge: {reply}")))
    }

    /// The AppLogin text for `identity` under `challenge` and `password`, with the digest a
    /// peer computes (over the exact `info` text it sends).
    pub fn login_text(identity: &Identity, challenge: &str, password: &str) -> String {
        let digest_input = match &identity.info {
            Some(info) => format!(
                "{}:{}:{}:{}:{}:{}:{}:{}",
                identity.app,
                identity.domain,
                identity.sip,
                identity.guid,
                identity.dn,
                info,
                challenge,
                password
            ),
            None => format!(
                "{}:{}:{}:{}:{}:{}:{}",
                identity.app, identity.domain, identity.sip, identity.guid, identity.dn, challenge, password
            ),
        };
        let digest = wire::sha256_hex(&digest_input);
        // Key order as the captured PBX login (appwebsocket.md §3.3a).
        let mut text = format!(
            "{{\"mt\":\"AppLogin\",\"sip\":{},\"guid\":{},\"dn\":{},\"digest\":\"{digest}\",\"domain\":{},\"app\":{}",
            wire::json_str(&identity.sip),
            wire::json_str(&identity.guid),
            wire::json_str(&identity.dn),
            wire::json_str(&identity.domain),
            wire::json_str(&identity.app),
        );
        if let Some(info) = &identity.info {
            text.push_str(",\"info\":");
            text.push_str(info);
        }
        text.push('}');
        text
    }

    /// Challenge and login; on success the session key is kept. Returns the AppLoginResult.
    pub async fn login(&mut self, identity: &Identity, password: &str) -> Result<Value, ClientError> {
        let challenge = self.challenge().await?;
        self.send_raw(&Self::login_text(identity, &challenge, password))
            .await?;
        let reply = self.recv_mt("AppLoginResult").await?;
        if reply["ok"] == true {
            self.session_key = Some(wire::session_key(&challenge, password));
        }
        Ok(reply)
    }

    /// Sends a websocket close and waits briefly for the service's.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}
