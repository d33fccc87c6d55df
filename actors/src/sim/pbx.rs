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
        })
    }
}

/// A logged-in PBX connection.
pub struct PbxConnection {
    /// The websocket.
    pub client: AppWsClient,
    /// The `src` of the app's SubscribeServices, echoed on every ServicesInfo.
    pub services_src: Option<String>,
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

/// A ServicesInfo `services` array text naming a Devices instance at `devices_url` (http(s)).
pub fn devices_services(devices_url: &str) -> String {
    format!(
        "[{{\"name\":\"devices\",\"title\":\"Devices\",\"url\":{},\"info\":{{\"apis\":{{\"com.innovaphone.devices\":{{}}}}}}}}]",
        wire::json_str(devices_url)
    )
}
