//! The server side of the AppWebsocket login (appwebsocket.md §3) as a plain type (sans-IO).
//!
//! [`LoginSession`] holds one connection's login state and turns the peer's login messages
//! into verdicts: which messages are taken before login (§3.1), the single-use challenge
//! (§3.2), the digest checked with the App object's password and then the operator's admin
//! token (§3.4, "server order of checks"), the role of the login (§3.3, [`login_role`]), whether
//! it may administer, the session key, and the AppCheckLogin oracle's per-connection budget.
//! The actor only carries frames, asks the address throttle for a delay and runs timers; every
//! rule is unit-tested here with the spec's vectors (§4.3).

use crate::appws::crypto::{self, LoginFields};
use crate::appws::received::{AppCheckLogin, AppLogin};
use crate::appws::role::{LoginRole, login_role};
use crate::seal::Secret;

/// Messages taken before login (appwebsocket.md §3.1); anything else closes the connection.
pub const PRE_LOGIN: [&str; 5] = [
    "KeepAlive",
    "CheckBuild",
    "AppChallenge",
    "AppLogin",
    "AppCheckLogin",
];

/// Failed AppCheckLogin checks one connection may make before it is closed.
pub const MAX_FAILED_CHECKS: u32 = 5;

/// What a login is checked against: the service's settings.
#[derive(Clone, Copy)]
pub struct LoginPolicy<'a> {
    /// The App object's password.
    pub password: &'a Secret,
    /// `admin.token`: a digest made with it logs in an operator (the standalone admin page).
    pub operator_token: Option<&'a Secret>,
    /// The PBX's App object: `app.object`, or the name pinned at its first PbxInfo.
    pub own_object: Option<&'a str>,
    /// `admin.app`: logins made for this App object (`info.appobj`) administer.
    pub admin_app: Option<&'a str>,
}

/// A login that succeeded: who it is and what it may do.
#[derive(Debug, Clone)]
pub struct Login {
    /// The session key (decrypts ProvisioningPhone passwords), from the challenge and the
    /// secret the digest was made with.
    pub key: Secret,
    /// The `app` the peer logged in to.
    pub app: String,
    /// Who logged in (the AppLogin's `sip`), for logs and the PBX pin.
    pub who: String,
    /// The peer's domain, for the log line.
    pub domain: String,
    /// What kind of peer it is (§3.3), deciding what it may send.
    pub role: LoginRole,
    /// Made for `admin.app`, or an operator: may use the admin messages.
    pub admin: bool,
}

/// The verdict on an AppLogin.
#[derive(Debug, Clone)]
pub enum LoginVerdict {
    /// No challenge was outstanding (never issued, or already used): answer false and close.
    NoChallenge {
        /// The `app` to answer for.
        app: String,
    },
    /// Neither the password nor the operator token made the digest: count a failure for the
    /// address, answer false (after the address's delay) and close.
    WrongDigest {
        /// The `app` to answer for.
        app: String,
        /// Who tried, for the close reason.
        who: String,
    },
    /// Accepted: after the address's delay, answer true and [`LoginSession::finish`] it.
    Accepted(Login),
}

/// The verdict on an AppCheckLogin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckVerdict {
    /// The digest matches: answer with `ok`.
    pub ok: bool,
    /// The connection has used up its failed checks: close after the answer.
    pub close: bool,
}

/// Where a connection is in the login.
#[derive(Debug, Clone)]
enum State {
    /// Not logged in; the outstanding challenge, if one was issued and not yet used.
    Pending {
        /// The challenge, single-use.
        challenge: Option<String>,
    },
    /// Logged in.
    Done(Login),
}

/// One connection's login state.
#[derive(Debug, Clone)]
pub struct LoginSession {
    /// Where the login is.
    state: State,
    /// Failed AppCheckLogin checks so far: it must not become a free password oracle.
    failed_checks: u32,
}

impl Default for LoginSession {
    fn default() -> Self {
        LoginSession {
            state: State::Pending { challenge: None },
            failed_checks: 0,
        }
    }
}

impl LoginSession {
    /// Whether a message of type `mt` is taken now: everything after login, only
    /// [`PRE_LOGIN`] before.
    pub fn admits(&self, mt: &str) -> bool {
        self.logged_in().is_some() || PRE_LOGIN.contains(&mt)
    }

    /// The login, once done.
    pub fn logged_in(&self) -> Option<&Login> {
        match &self.state {
            State::Done(login) => Some(login),
            State::Pending { .. } => None,
        }
    }

    /// An AppChallenge was answered with `challenge`: it is outstanding, and any previous
    /// identity is forgotten (§3.1: AppChallenge is accepted at any time).
    pub fn challenge_issued(&mut self, challenge: String) {
        self.state = State::Pending {
            challenge: Some(challenge),
        };
    }

    /// The verdict on `login`. The challenge is used up whatever the outcome.
    pub fn login(&mut self, login: &AppLogin, policy: &LoginPolicy<'_>) -> LoginVerdict {
        let challenge = match &mut self.state {
            State::Pending { challenge } => challenge.take(),
            State::Done(_) => None,
        };
        let Some(challenge) = challenge else {
            return LoginVerdict::NoChallenge {
                app: login.app.clone(),
            };
        };
        let fields = login.fields();
        let made_with = |secret: &Secret| {
            let expected = crypto::login_digest(&fields, login.info.as_ref(), &challenge, secret.expose());
            crypto::digest_matches(&expected, &login.digest)
        };
        // The App object's password first; failing that, maybe an operator's page.
        let secret = if made_with(policy.password) {
            policy.password
        } else {
            match policy.operator_token.filter(|token| made_with(token)) {
                Some(token) => token,
                None => {
                    return LoginVerdict::WrongDigest {
                        app: login.app.clone(),
                        who: login.sip.clone(),
                    };
                }
            }
        };
        let operator = !std::ptr::eq(secret, policy.password);
        // Which App object the login was made for is `info.appobj` (under the digest); only
        // logins for the admin App object administer, never the PBX's or Users' logins for
        // this provisioning App object.
        let appobj = login.appobj();
        let admin = operator || policy.admin_app.is_some_and(|a| !a.is_empty() && a == appobj);
        LoginVerdict::Accepted(Login {
            key: Secret::new(crypto::session_key(&challenge, secret.expose())),
            app: login.app.clone(),
            who: login.sip.clone(),
            domain: login.domain.clone(),
            role: match operator {
                true => LoginRole::Operator,
                false => login_role(login, policy.own_object),
            },
            admin,
        })
    }

    /// An accepted login takes effect (after the address's delay, if any).
    pub fn finish(&mut self, login: Login) {
        self.state = State::Done(login);
    }

    /// The verdict on an AppCheckLogin (a peer asking whether a login it was shown is valid):
    /// checked with the App object's password; failures count towards [`MAX_FAILED_CHECKS`].
    pub fn check_login(&mut self, check: &AppCheckLogin, password: &Secret) -> CheckVerdict {
        let fields = LoginFields {
            app: &check.app,
            domain: &check.domain,
            ..LoginFields::default()
        };
        let expected = crypto::login_digest(&fields, None, &check.challenge, password.expose());
        let ok = !check.challenge.is_empty() && crypto::digest_matches(&expected, &check.digest);
        if !ok {
            self.failed_checks += 1;
        }
        CheckVerdict {
            ok,
            close: self.failed_checks >= MAX_FAILED_CHECKS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// appwebsocket.md §8 example and vector D5/K3: the PBX's App object `acme-prov` logs in
    /// with challenge `a1b2c3d4e5f60718` and password `secret`.
    fn d5_login() -> AppLogin {
        AppLogin {
            app: "acme-provisioning-service".into(),
            domain: "example.com".into(),
            sip: "acme-prov".into(),
            guid: "0123456789abcdef0123456789abcdef".into(),
            dn: "ACME Provisioning".into(),
            digest: "ee509289b7fcf2cb3bce4e76ccd97d289d93b5de3fac2f801362b78f5971670b".into(),
            info: Some(serde_json::json!({
                "appobj": "acme-prov",
                "appdn": "ACME Provisioning",
                "appurl": "https://apps.example.com/example.com/acme/acme-provisioning-service",
                "pbx": "master",
                "cn": "ACME Provisioning",
                "apps": []
            })),
            pbx_obj: false,
        }
    }
    const D5_CHALLENGE: &str = "a1b2c3d4e5f60718";
    const K3: &str = "e0b1cf7e8460b3a9facc9943c31092c4ef008a859b74013d785efe9015a3d501";

    fn secret(text: &str) -> Secret {
        Secret::new(text.to_string())
    }

    fn accepted(verdict: LoginVerdict) -> Login {
        match verdict {
            LoginVerdict::Accepted(login) => login,
            other => panic!("not accepted: {other:?}"),
        }
    }

    #[test]
    fn before_login_only_the_handshake_is_taken() {
        let mut session = LoginSession::default();
        for mt in PRE_LOGIN {
            assert!(session.admits(mt), "{mt}");
        }
        for mt in ["ProvisioningPhone", "PbxInfo", "AdminListPhones", "ServicesInfo"] {
            assert!(!session.admits(mt), "{mt}");
        }
        let password = secret("secret");
        let policy = LoginPolicy {
            password: &password,
            operator_token: None,
            own_object: None,
            admin_app: None,
        };
        session.challenge_issued(D5_CHALLENGE.into());
        let login = accepted(session.login(&d5_login(), &policy));
        assert!(!session.admits("ProvisioningPhone"), "not before finish");
        session.finish(login);
        assert!(session.admits("ProvisioningPhone"));
    }

    #[test]
    fn the_spec_pbx_login_is_accepted_with_its_session_key_and_role() {
        let password = secret("secret");
        let policy = LoginPolicy {
            password: &password,
            operator_token: None,
            own_object: Some("acme-prov"),
            admin_app: None,
        };
        let mut session = LoginSession::default();
        session.challenge_issued(D5_CHALLENGE.into());
        let login = accepted(session.login(&d5_login(), &policy));
        assert_eq!(login.key.expose(), K3);
        assert_eq!(login.role, LoginRole::Pbx);
        assert_eq!(
            (login.who.as_str(), login.app.as_str()),
            ("acme-prov", "acme-provisioning-service")
        );
        assert!(!login.admin);
        // Another App object than the configured one is no PBX.
        let policy = LoginPolicy {
            own_object: Some("other"),
            ..policy
        };
        session.challenge_issued(D5_CHALLENGE.into());
        assert_ne!(accepted(session.login(&d5_login(), &policy)).role, LoginRole::Pbx);
    }

    #[test]
    fn the_challenge_is_single_use_and_needed() {
        let password = secret("secret");
        let policy = LoginPolicy {
            password: &password,
            operator_token: None,
            own_object: None,
            admin_app: None,
        };
        let mut session = LoginSession::default();
        assert!(matches!(
            session.login(&d5_login(), &policy),
            LoginVerdict::NoChallenge { .. }
        ));
        session.challenge_issued(D5_CHALLENGE.into());
        let login = accepted(session.login(&d5_login(), &policy));
        // Replayed on the same challenge: refused, even before the first took effect.
        assert!(matches!(
            session.login(&d5_login(), &policy),
            LoginVerdict::NoChallenge { .. }
        ));
        session.finish(login);
        assert!(matches!(
            session.login(&d5_login(), &policy),
            LoginVerdict::NoChallenge { .. }
        ));
        // A wrong digest uses the challenge up too.
        session.challenge_issued("0000000000000000".into());
        assert!(matches!(
            session.login(&d5_login(), &policy),
            LoginVerdict::WrongDigest { .. }
        ));
        assert!(matches!(
            session.login(&d5_login(), &policy),
            LoginVerdict::NoChallenge { .. }
        ));
    }

    #[test]
    fn a_new_challenge_forgets_the_previous_identity() {
        let password = secret("secret");
        let policy = LoginPolicy {
            password: &password,
            operator_token: None,
            own_object: None,
            admin_app: None,
        };
        let mut session = LoginSession::default();
        session.challenge_issued(D5_CHALLENGE.into());
        let login = accepted(session.login(&d5_login(), &policy));
        session.finish(login);
        session.challenge_issued("1111111111111111".into());
        assert!(session.logged_in().is_none());
        assert!(!session.admits("ProvisioningPhone"));
    }

    #[test]
    fn an_uppercase_or_wrong_password_digest_is_refused() {
        let password = secret("secret");
        let policy = LoginPolicy {
            password: &password,
            operator_token: None,
            own_object: None,
            admin_app: None,
        };
        let mut session = LoginSession::default();
        let mut upper = d5_login();
        upper.digest = upper.digest.to_uppercase();
        session.challenge_issued(D5_CHALLENGE.into());
        assert!(matches!(
            session.login(&upper, &policy),
            LoginVerdict::WrongDigest { .. }
        ));
        let wrong = secret("Secret");
        let policy = LoginPolicy {
            password: &wrong,
            ..policy
        };
        session.challenge_issued(D5_CHALLENGE.into());
        match session.login(&d5_login(), &policy) {
            LoginVerdict::WrongDigest { who, .. } => assert_eq!(who, "acme-prov"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_admin_token_makes_an_operator_with_its_own_session_key() {
        // The D5 digest is made with "secret"; here that is the token, not the password.
        let password = secret("another App object password");
        let token = secret("secret");
        let policy = LoginPolicy {
            password: &password,
            operator_token: Some(&token),
            own_object: Some("acme-prov"),
            admin_app: None,
        };
        let mut session = LoginSession::default();
        session.challenge_issued(D5_CHALLENGE.into());
        let login = accepted(session.login(&d5_login(), &policy));
        assert_eq!(login.role, LoginRole::Operator);
        assert!(login.admin);
        assert_eq!(
            login.key.expose(),
            K3,
            "the key is made with the token the digest used"
        );
        assert!(
            !login.role.may_provision(&login.who, None),
            "an operator never provisions"
        );
    }

    #[test]
    fn only_logins_for_the_admin_app_object_administer() {
        let password = secret("secret");
        let policy = LoginPolicy {
            password: &password,
            operator_token: None,
            own_object: None,
            admin_app: Some("acme-prov"),
        };
        let mut session = LoginSession::default();
        session.challenge_issued(D5_CHALLENGE.into());
        assert!(accepted(session.login(&d5_login(), &policy)).admin);
        for admin_app in [Some("innoprov-admin"), Some(""), None] {
            let policy = LoginPolicy { admin_app, ..policy };
            session.challenge_issued(D5_CHALLENGE.into());
            assert!(
                !accepted(session.login(&d5_login(), &policy)).admin,
                "{admin_app:?}"
            );
        }
    }

    #[test]
    fn failed_check_logins_close_the_connection_at_the_fifth() {
        // D1: app `pbxadminapi`, empty domain, challenge 0123456789abcdef, password `pwd`.
        let password = secret("pwd");
        let good = AppCheckLogin {
            app: "pbxadminapi".into(),
            domain: String::new(),
            challenge: "0123456789abcdef".into(),
            digest: "a205299ed2ef2786c311e0be1b14db343f2cadd906a6ae7b564eee34bda5e9a1".into(),
        };
        let mut session = LoginSession::default();
        assert_eq!(
            session.check_login(&good, &password),
            CheckVerdict {
                ok: true,
                close: false
            }
        );
        let bad = AppCheckLogin {
            digest: "0".repeat(64),
            ..good.clone()
        };
        for n in 1..MAX_FAILED_CHECKS {
            assert_eq!(
                session.check_login(&bad, &password),
                CheckVerdict {
                    ok: false,
                    close: false
                },
                "{n}"
            );
        }
        assert_eq!(
            session.check_login(&bad, &password),
            CheckVerdict {
                ok: false,
                close: true
            }
        );
        // An empty challenge never checks, whatever the digest.
        let empty = AppCheckLogin {
            challenge: String::new(),
            ..good
        };
        assert!(!LoginSession::default().check_login(&empty, &password).ok);
    }
}
