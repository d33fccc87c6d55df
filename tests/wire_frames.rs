//! What the service puts on the wire, read frame by frame with a hand-written RFC 6455 client
//! (tungstenite would reassemble fragments and hide them).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use innoprov_actors::sim::client::AppWsClient;
use innoprov_actors::sim::users::UsersSim;

use crate::common::{APP_PATH, PASSWORD, Service};

/// A blocking websocket client that shows frames as they arrive.
struct RawWs {
    tcp: TcpStream,
}

impl RawWs {
    fn connect(addr: std::net::SocketAddr, path: &str) -> RawWs {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // RFC 6455 §1.3 example key and accept value.
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        RawWs { tcp }
    }

    /// Sends one masked text frame.
    fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).unwrap();
    }

    /// The next frame: (fin, opcode, payload); server frames are unmasked.
    fn frame(&mut self) -> (bool, u8, Vec<u8>) {
        let mut head = [0u8; 2];
        self.tcp.read_exact(&mut head).unwrap();
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.tcp.read_exact(&mut b).unwrap();
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.tcp.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        self.tcp.read_exact(&mut payload).unwrap();
        (head[0] & 0x80 != 0, head[0] & 0x0f, payload)
    }

    /// The next whole message as (frame sizes, text), skipping pings.
    fn message(&mut self) -> (Vec<usize>, String) {
        let mut sizes = Vec::new();
        let mut text = Vec::new();
        loop {
            let (fin, opcode, payload) = self.frame();
            if opcode == 0x9 || opcode == 0xa {
                continue;
            }
            assert!(
                opcode == 0x1 || (opcode == 0x0 && !sizes.is_empty()),
                "opcode {opcode}"
            );
            sizes.push(payload.len());
            text.extend(payload);
            if fin {
                return (sizes, String::from_utf8(text).unwrap());
            }
        }
    }
}

#[test]
fn large_replies_go_out_in_frames_of_at_most_16_kib() {
    let title = "Ü".repeat(20_000); // 40,000 bytes of UTF-8: AppInfoResult spans three frames
    let dir = tempfile::tempdir().unwrap();
    let config = crate::common::config_text(dir.path(), "")
        .replace("title = \"Test phones\"", &format!("title = \"{title}\""));
    std::fs::write(dir.path().join("custom.toml"), &config).unwrap();
    let service = Service::start_with_config_file(&dir.path().join("custom.toml"));

    let mut ws = RawWs::connect(service.addr, APP_PATH);
    ws.send_text(r#"{"mt":"AppChallenge"}"#);
    let (sizes, reply) = ws.message();
    assert_eq!(sizes.len(), 1);
    let challenge: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let identity = UsersSim::new("innoprov", PASSWORD).identity;
    ws.send_text(&AppWsClient::login_text(
        &identity,
        challenge["challenge"].as_str().unwrap(),
        PASSWORD,
    ));
    let (_, login) = ws.message();
    assert!(login.contains("\"ok\":true"), "{login}");
    ws.send_text(r#"{"mt":"AppInfo","app":"innoprov"}"#);
    let (sizes, info) = ws.message();
    assert!(sizes.len() >= 3, "fragmented: {sizes:?}");
    assert!(sizes.iter().all(|s| *s <= 16 * 1024), "{sizes:?}");
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        info["serviceInfo"]["apis"]["com.innovaphone.provisioning"]["title"],
        title.as_str()
    );
}
