//! Who a login is (appwebsocket.md §3.3), decided from the fields its digest covers, so that
//! each connection gets only the messages its kind of peer legitimately sends.
//!
//! - (a) the PBX's own App object connection: `sip` is the App object itself, so `sip` equals
//!   `info.appobj`, and there is no `pbxObj`;
//! - (b) a myApps user and (c) another App Service (GetServiceLogin) carry `pbxObj`, the App
//!   object the login was made for; a user's `sip` is the user, not `info.appobj`;
//! - (d) a password login (AP manager, scripts): `guid` of 32 zeros and no `info`.
//!
//! `pbxObj` is not covered by the digest, so its absence alone proves nothing: the PBX role
//! also needs `sip == info.appobj` (both covered), and with `app.object` configured, that the
//! `sip` is this App object's own name.

use super::AppLogin;

/// The kind of peer a login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRole {
    /// The PBX's App object connection (may send PbxInfo and serve Services).
    Pbx,
    /// A password login with the App object's password (treated like the PBX: it holds the
    /// same secret the PBX does).
    Password,
    /// A myApps user: `info.appobj` names an App object that is not the login's own `sip`.
    User,
    /// Another App Service (GetServiceLogin), or a login that does not say.
    Peer,
    /// An operator without myApps: the digest was made with `admin.token` instead of the App
    /// object's password (the standalone admin page). Admin messages only.
    Operator,
}

impl LoginRole {
    /// Whether this login may tell the service about the PBX (PbxInfo → Services, and so
    /// where Devices is).
    pub fn may_act_as_pbx(self) -> bool {
        matches!(self, LoginRole::Pbx | LoginRole::Password)
    }

    /// Whether a login `sip` of this role may send ProvisioningPhone: only the App Services in
    /// `provisioners` when that list is configured, else any login but a myApps user's.
    pub fn may_provision(self, sip: &str, provisioners: Option<&[String]>) -> bool {
        let may = !matches!(self, LoginRole::User | LoginRole::Operator);
        match provisioners {
            Some(list) => may && list.iter().any(|p| p == sip),
            None => may,
        }
    }
}

/// The role of a verified AppLogin; `own_object` is `app.object` when configured.
pub fn login_role(login: &AppLogin, own_object: Option<&str>) -> LoginRole {
    let sip = login.sip.as_str();
    if login.info.is_none() && login.guid == "0".repeat(32) {
        return LoginRole::Password;
    }
    let appobj = login.appobj();
    let own = own_object.is_none_or(|own| own == sip);
    if !sip.is_empty() && sip == appobj && !login.pbx_obj && own {
        LoginRole::Pbx
    } else if !appobj.is_empty() && appobj != sip {
        LoginRole::User
    } else {
        LoginRole::Peer
    }
}

/// Whether a login of role [`LoginRole::Pbx`] named `sip` is the PBX, when it sends PbxInfo.
/// The PBX's identity is never a guess: `app.object` when configured, else the first name
/// that acted as the PBX, pinned in the store (trust on first use, as SSH does with host
/// keys: the PBX's own connection arrives within seconds of the App object's creation, long
/// before anyone else's, and the pin can be reset by an administrator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PbxVerdict {
    /// `sip` is the configured or pinned PBX.
    Known,
    /// Nothing is configured or pinned: pin `sip` (durably) and it is the PBX.
    PinNow,
    /// Another name is the PBX.
    Refused {
        /// The configured or pinned name.
        pbx: String,
    },
}

/// The verdict for `sip` given `app.object` (`configured`) and the pinned name.
pub fn pbx_verdict(configured: Option<&str>, pinned: Option<&str>, sip: &str) -> PbxVerdict {
    match configured.or(pinned) {
        Some(pbx) if pbx == sip => PbxVerdict::Known,
        Some(pbx) => PbxVerdict::Refused { pbx: pbx.to_string() },
        None => PbxVerdict::PinNow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(json: &str, own: Option<&str>) -> LoginRole {
        let msg = crate::appws::Inbound::parse(json).unwrap();
        let crate::appws::AppMessage::AppLogin(login) = crate::appws::AppMessage::decode(&msg) else {
            panic!("not an AppLogin: {json}")
        };
        login_role(&login, own)
    }

    #[test]
    fn the_captured_logins() {
        // §3.3(a), captured from a real PBX.
        let pbx = r#"{"mt":"AppLogin","sip":"go-search","guid":"3954ae7854c96301c9dd009033400109","dn":"go-search","digest":"x","domain":"fritz.box","app":"searchapi","info":{"appobj":"go-search","appdn":"go-search","appurl":"http://192.168.178.29:5000/fritz.box/go/instance/searchapi","pbx":"pbx-main","cn":"go-search","unlicensed":true,"apps":[]}}"#;
        assert_eq!(role(pbx, None), LoginRole::Pbx);
        assert_eq!(role(pbx, Some("go-search")), LoginRole::Pbx);
        assert_eq!(role(pbx, Some("innoprov")), LoginRole::Peer, "another App object");
        assert!(LoginRole::Peer.may_provision("go-search", None));
        // §3.3(b), a myApps user, with and without its (undigested) pbxObj.
        let user = r#"{"mt":"AppLogin","app":"admin","domain":"fritz.box","sip":"rico","guid":"f48b06484a8a61015853009033400109","dn":"Schulte, Rico","info":{"appobj":"go","appdn":"go","appurl":"http://192.168.178.29:5000/fritz.box/go/instance/admin","pbx":"pbx-main","cn":"rico","unlicensed":true,"groups":[],"apps":[]},"digest":"x","pbxObj":"go"}"#;
        assert_eq!(role(user, None), LoginRole::User);
        assert_eq!(
            role(&user.replace(",\"pbxObj\":\"go\"", ""), None),
            LoginRole::User
        );
        assert!(
            !LoginRole::User.may_provision("rico", None),
            "a user never provisions"
        );
        assert!(!LoginRole::User.may_provision("users", Some(&["users".to_string()])));
        // §3.3(c), another App Service through GetServiceLogin: carries pbxObj.
        let service = r#"{"mt":"AppLogin","sip":"acme-prov","guid":"ab","dn":"ACME","pbxObj":"devices","app":"innovaphone-devices","info":{"appobj":"acme-prov"},"digest":"x","domain":"example.com"}"#;
        assert_eq!(role(service, None), LoginRole::Peer);
        assert!(LoginRole::Peer.may_provision("acme-prov", None));
        let list = ["users".to_string()];
        assert!(
            !LoginRole::Peer.may_provision("acme-prov", Some(&list)),
            "not in app.provisioners"
        );
        assert!(LoginRole::Peer.may_provision("users", Some(&list)));
        // §3.3(d), a password login.
        let password = r#"{"mt":"AppLogin","app":"acme","domain":"","sip":"acme","guid":"00000000000000000000000000000000","dn":"Admin","digest":"x"}"#;
        assert_eq!(role(password, None), LoginRole::Password);
        assert!(LoginRole::Password.may_act_as_pbx() && !LoginRole::Peer.may_act_as_pbx());
    }

    #[test]
    fn an_operator_may_neither_provision_nor_act_as_the_pbx() {
        let op = LoginRole::Operator;
        assert!(!op.may_act_as_pbx());
        assert!(!op.may_provision("innoprov-admin", None));
        let listed = ["innoprov-admin".to_string()];
        assert!(!op.may_provision("innoprov-admin", Some(&listed)));
        assert!(LoginRole::Peer.may_provision("users", None));
    }

    #[test]
    fn the_pbx_is_configured_or_pinned_never_guessed() {
        assert_eq!(pbx_verdict(None, None, "innoprov"), PbxVerdict::PinNow);
        assert_eq!(pbx_verdict(None, Some("innoprov"), "innoprov"), PbxVerdict::Known);
        assert_eq!(
            pbx_verdict(None, Some("innoprov"), "users"),
            PbxVerdict::Refused {
                pbx: "innoprov".into()
            }
        );
        assert_eq!(pbx_verdict(Some("innoprov"), None, "innoprov"), PbxVerdict::Known);
        // The configuration wins over a pin left from before it was set.
        assert_eq!(
            pbx_verdict(Some("innoprov"), Some("old"), "old"),
            PbxVerdict::Refused {
                pbx: "innoprov".into()
            }
        );
    }
}
