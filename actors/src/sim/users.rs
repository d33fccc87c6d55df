//! The Users (Profile) service: it logs in to the app like another app service does and sends
//! ProvisioningPhone with the user's password encrypted under the connection's session key
//! (appwebsocket.md §5.2), then waits for ProvisioningPhoneResult.

use serde_json::Value;

use super::client::{AppWsClient, ClientError, Identity};
use super::wire;

/// A phone to provision, as Users would describe it.
#[derive(Debug, Clone)]
pub struct SimPhone {
    /// MAC as Users sends it.
    pub mac: String,
    /// Devices provisioning code.
    pub code: String,
    /// SIP user name.
    pub username: String,
    /// Display name.
    pub cn: String,
    /// The user's password in plaintext (the simulator encrypts it).
    pub password: String,
}

impl SimPhone {
    /// A phone with the `n`-th MAC of Yealink's OUI and a matching user.
    pub fn numbered(n: u32) -> SimPhone {
        SimPhone {
            mac: format!("001565{n:06x}"),
            code: format!("{:012}", 100_000_000_000u64 + u64::from(n)),
            username: format!("user{n}"),
            cn: format!("User {n}"),
            password: format!("pw-{n}-Ünï"),
        }
    }
}

/// A simulated Users service.
#[derive(Debug, Clone)]
pub struct UsersSim {
    /// What it logs in as (Users logs in through GetServiceLogin, case §3.3c).
    pub identity: Identity,
    /// The app's password (the digest comes from the PBX, which knows it).
    pub password: String,
}

impl UsersSim {
    /// The Users service of domain `example.com` logging in to app `app`.
    pub fn new(app: &str, password: &str) -> UsersSim {
        UsersSim {
            identity: Identity {
                app: app.to_string(),
                domain: "example.com".into(),
                sip: "users".into(),
                guid: "fedcba9876543210fedcba9876543210".into(),
                dn: "Users".into(),
                info: Some("{\"appobj\":\"users\",\"appdn\":\"Users\",\"apps\":[{\"name\":\"users\"},{\"name\":\"profile\"}],\"unlicensed\":true}".into()),
            },
            password: password.to_string(),
        }
    }

    /// Connects and logs in.
    pub async fn connect(&self, ws_url: &str) -> Result<UsersConnection, ClientError> {
        let mut client = AppWsClient::connect(ws_url).await?;
        let reply = client.login(&self.identity, &self.password).await?;
        if reply["ok"] != true {
            return Err(ClientError::Protocol(format!("login refused: {reply}")));
        }
        Ok(UsersConnection {
            client,
            seed_counter: 0,
        })
    }
}

/// A logged-in Users connection.
pub struct UsersConnection {
    /// The websocket.
    pub client: AppWsClient,
    /// Makes every seed1 different.
    seed_counter: u64,
}

impl UsersConnection {
    /// The ProvisioningPhone text for `phone`, with `src` when given.
    pub fn provisioning_text(&mut self, phone: &SimPhone, src: Option<&str>) -> Result<String, ClientError> {
        let key = self
            .client
            .session_key
            .clone()
            .ok_or(ClientError::Protocol("not logged in".into()))?;
        self.seed_counter += 1;
        let seed = format!("1004647831988009{:07}", self.seed_counter);
        let password = wire::encrypt(&seed, &key, &phone.password);
        let src = src
            .map(|s| format!(",\"src\":{}", wire::json_str(s)))
            .unwrap_or_default();
        Ok(format!(
            "{{\"mt\":\"ProvisioningPhone\"{src},\"mac\":{},\"code\":{},\"hwid\":{},\"usename\":{},\"cn\":{},\"seed1\":{},\"password\":\"{password}\",\"domain\":\"example.com\",\"dns\":\"pbx.example.com\"}}",
            wire::json_str(&phone.mac),
            wire::json_str(&phone.code),
            wire::json_str(&phone.mac),
            wire::json_str(&phone.username),
            wire::json_str(&phone.cn),
            wire::json_str(&seed),
        ))
    }

    /// Sends ProvisioningPhone and waits for its result (the Users Admin rhythm: one at a time).
    pub async fn provision(&mut self, phone: &SimPhone) -> Result<Value, ClientError> {
        let text = self.provisioning_text(phone, None)?;
        self.client.send_raw(&text).await?;
        self.client.recv_mt("ProvisioningPhoneResult").await
    }
}
