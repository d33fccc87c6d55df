//! The PBX's App object connection (appwebsocket.md §8): it connects to the app, logs in with
//! the App object's password, sends PbxInfo and AppInfo, and serves the Services API.

use serde_json::Value;

use super::client::{AppWsClient, ClientError, Identity};
use super::wire;

/// A simulated PBX App object.
#[derive(Debug, Clone)]
pub struct PbxSim {
    /// What the App object logs in as.
    pub identity: Identity,
    /// The App object's password.
    pub password: String,
}

impl PbxSim {
    /// The spec §8 PBX (domain `example.com`, App object `acme-prov`) for an app named `app`.
    pub fn new(app: &str, app_url: &str, password: &str) -> PbxSim {
        let info = format!(
            "{{\"appobj\":\"innoprov\",\"appdn\":\"Third-party phones\",\"appurl\":{},\"pbx\":\"master\",\"cn\":\"Third-party phones\",\"apps\":[]}}",
            wire::json_str(app_url)
        );
        PbxSim {
            identity: Identity {
                app: app.to_string(),
                domain: "example.com".into(),
                sip: "innoprov".into(),
                guid: "0123456789abcdef0123456789abcdef".into(),
                dn: "Third-party phones".into(),
                info: Some(info),
            },
            password: password.to_string(),
        }
    }

    /// Connects to `ws_url` and logs in; fails unless the login is accepted.
    pub async fn connect(&self, ws_url: &str) -> Result<PbxConnection, ClientError> {
        let mut client = AppWsClient::connect(ws_url).await?;
        let reply = client.login(&self.identity, &self.password).await?;
        if reply["ok"] != true {
            return Err(ClientError::Protocol(format!("login refused: {reply}")));
        }
        Ok(PbxConnection {
            client,
            services_src: None,
            users_src: Value::Null,
        })
    }
}

/// A logged-in PBX connection.
pub struct PbxConnection {
    /// The websocket.
    pub client: AppWsClient,
    /// The `src` of the app's SubscribeServices, echoed on every ServicesInfo.
    pub services_src: Option<String>,
    /// The `src` of the app's last ReplicateNext, carried by the live user changes.
    pub users_src: Value,
}

impl PbxConnection {
    /// Sends PbxInfo listing `apis`.
    pub async fn send_pbx_info(&mut self, apis: &[&str]) -> Result<(), ClientError> {
        let apis: Vec<String> = apis.iter().map(|a| wire::json_str(a)).collect();
        let text = format!(
            "{{\"mt\":\"PbxInfo\",\"domain\":\"example.com\",\"pbx\":\"master\",\"pbxDns\":\"pbx.example.com\",\"apis\":[{}],\"version\":\"13r3 sr1\",\"build\":\"137834\"}}",
            apis.join(",")
        );
        self.client.send_raw(&text).await
    }

    /// Sends AppInfo and returns the AppInfoResult.
    pub async fn app_info(&mut self, app: &str) -> Result<Value, ClientError> {
        self.client
            .send_raw(&format!("{{\"mt\":\"AppInfo\",\"app\":{}}}", wire::json_str(app)))
            .await?;
        self.client.recv_mt("AppInfoResult").await
    }

    /// Waits for the app's SubscribeServices, answers it and sends the first ServicesInfo with
    /// `services` (a JSON array text). Returns the subscription message.
    pub async fn serve_services(&mut self, services: &str) -> Result<Value, ClientError> {
        let subscribe = self.client.recv_mt("SubscribeServices").await?;
        if subscribe["api"] != "Services" {
            return Err(ClientError::Protocol(format!(
                "SubscribeServices without api Services: {subscribe}"
            )));
        }
        let src = subscribe["src"].as_str().map(str::to_string);
        let src_member = src
            .as_deref()
            .map(|s| format!(",\"src\":{}", wire::json_str(s)))
            .unwrap_or_default();
        self.client
            .send_raw(&format!(
                "{{\"api\":\"Services\",\"mt\":\"SubscribeServicesResult\"{src_member}}}"
            ))
            .await?;
        self.services_src = src;
        self.push_services(services).await?;
        Ok(subscribe)
    }

    /// Sends a ServicesInfo (a change) with `services` (a JSON array text).
    pub async fn push_services(&mut self, services: &str) -> Result<(), ClientError> {
        let src_member = self
            .services_src
            .as_deref()
            .map(|s| format!(",\"src\":{}", wire::json_str(s)))
            .unwrap_or_default();
        self.client
            .send_raw(&format!(
                "{{\"api\":\"Services\",\"mt\":\"ServicesInfo\"{src_member},\"services\":{services}}}"
            ))
            .await
    }
}

/// The PBX's side of PbxTableUsers (docs/pbx-table-users.md §6, written from the SDK's
/// PbxTableUsers and Replication pages and captured PBX traffic, not from innoprov's client):
/// it answers one replication from `rows` (each a JSON object of column values with a `guid`).
impl PbxConnection {
    /// Waits for the app's `ReplicateStart`, checks it, answers `ReplicateStartResult` (the
    /// requested columns it knows, `src` echoed), then every `ReplicateNext` with the next row
    /// (only the requested columns; empty strings left out, bools always sent, as the
    /// captures show), and after the last row a `ReplicateNextResult` without `columns`.
    /// Returns the `ReplicateStart`. Messages of other APIs meanwhile are skipped.
    pub async fn serve_user_table(&mut self, rows: &[Value]) -> Result<Value, ClientError> {
        let start = self.recv_users("ReplicateStart").await?;
        if start["add"] != true || start["del"] != true {
            return Err(ClientError::Protocol(format!(
                "ReplicateStart without add/del true: {start}"
            )));
        }
        let requested: Vec<String> = start["columns"]
            .as_object()
            .ok_or_else(|| ClientError::Protocol(format!("ReplicateStart columns not an object: {start}")))?
            .keys()
            .cloned()
            .collect();
        if requested.iter().any(|c| c == "pwd") {
            return Err(ClientError::Protocol(
                "the app asked for the users' passwords".into(),
            ));
        }
        let known = [
            "guid", "h323", "cn", "dn", "e164", "hide", "config", "node", "loc", "pseudo",
        ];
        let offered: serde_json::Map<String, Value> = requested
            .iter()
            .filter(|c| known.contains(&c.as_str()))
            .map(|c| (c.clone(), serde_json::json!({})))
            .collect();
        let src = start["src"].clone();
        let answer = serde_json::json!({"api":"PbxTableUsers","mt":"ReplicateStartResult","src":src,"columns":offered});
        self.client.send_raw(&answer.to_string()).await?;
        for row in rows {
            let next = self.recv_users("ReplicateNext").await?;
            let mut message = serde_json::json!({"api":"PbxTableUsers","mt":"ReplicateNextResult","src":next["src"].clone()});
            message["columns"] = Value::Object(requested_columns(row, &requested));
            self.client.send_raw(&message.to_string()).await?;
            self.users_src = next["src"].clone();
        }
        let next = self.recv_users("ReplicateNext").await?;
        let end =
            serde_json::json!({"api":"PbxTableUsers","mt":"ReplicateNextResult","src":next["src"].clone()});
        self.users_src = next["src"].clone();
        self.client.send_raw(&end.to_string()).await?;
        Ok(start)
    }

    /// Sends a live change (`ReplicateAdd`, `ReplicateUpdate` with the whole row, or
    /// `ReplicateDel`) with the `src` of the last ReplicateNext, as a PBX does; no ack is awaited.
    pub async fn push_user_change(&mut self, mt: &str, row: &Value) -> Result<(), ClientError> {
        let message =
            serde_json::json!({"api":"PbxTableUsers","mt":mt,"src":self.users_src.clone(),"columns":row});
        self.client.send_raw(&message.to_string()).await
    }

    async fn recv_users(&mut self, mt: &str) -> Result<Value, ClientError> {
        loop {
            let msg = self.client.recv_json().await?;
            if msg["mt"] == mt {
                if msg["api"] != "PbxTableUsers" {
                    return Err(ClientError::Protocol(format!(
                        "{mt} without api PbxTableUsers: {msg}"
                    )));
                }
                return Ok(msg);
            }
        }
    }
}

/// The columns of `row` the app asked for, leaving out empty strings (a PBX sends no empty
/// column; bools are always sent).
fn requested_columns(row: &Value, requested: &[String]) -> serde_json::Map<String, Value> {
    row.as_object()
        .map(|row| {
            row.iter()
                .filter(|(column, value)| {
                    requested.contains(column) && value.as_str().is_none_or(|text| !text.is_empty())
                })
                .map(|(column, value)| (column.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A ServicesInfo `services` array text naming a Devices instance at `devices_url` (http(s)).
pub fn devices_services(devices_url: &str) -> String {
    format!(
        "[{{\"name\":\"devices\",\"title\":\"Devices\",\"url\":{},\"info\":{{\"apis\":{{\"com.innovaphone.devices\":{{}}}}}}}}]",
        wire::json_str(devices_url)
    )
}
