//! Secrets at rest. Every secret the service stores (the user's SIP password, and later the
//! sysclient and admin passwords) is sealed with XChaCha20-Poly1305 under a per-installation
//! key, so a copied store directory without its key file gives nothing away. The associated
//! data binds each sealed value to its phone and purpose: a value moved elsewhere fails to open.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::Mac;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Bytes of the installation key.
const KEY_BYTES: usize = 32;
/// Bytes of the random nonce stored in front of each ciphertext.
const NONCE_BYTES: usize = 24;
/// Format tag of a sealed value, so the scheme can change without ambiguity.
const TAG: &str = "v1:";

/// What a sealed secret is for. Its label is bound into the seal as associated data, so a
/// secret opened under another purpose (another phone, another field) fails. The labels are
/// part of the stored data: they never change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealPurpose {
    /// The phone's SIP password from Users.
    UserPassword(Mac),
    /// The sysclient password Devices gave the phone.
    SysclientPassword(Mac),
    /// The phone's own provisioning password (downloads).
    ProvPassword(Mac),
    /// The Devices provisioning code from ProvisioningPhone.
    ProvisioningCode(Mac),
    /// The phone's web admin password.
    WebPassword(Mac),
    /// The administrative password Devices deployed.
    AdminPassword(Mac),
    /// A secret field of one Devices configuration item.
    ConfigSecret {
        /// The phone.
        mac: Mac,
        /// The item's key.
        key: String,
        /// The field.
        field: String,
    },
    /// A fixed value a shared database keeps to tell whether an instance has the
    /// installation's seal key.
    InstallationCheck,
}

impl SealPurpose {
    /// The label bound into the seal (e.g. `user-password/0015651a2b3c`).
    pub fn label(&self) -> String {
        match self {
            SealPurpose::UserPassword(mac) => format!("user-password/{mac}"),
            SealPurpose::SysclientPassword(mac) => format!("sysclient-password/{mac}"),
            SealPurpose::ProvPassword(mac) => format!("prov-password/{mac}"),
            SealPurpose::ProvisioningCode(mac) => format!("provisioning-code/{mac}"),
            SealPurpose::WebPassword(mac) => format!("web-password/{mac}"),
            SealPurpose::AdminPassword(mac) => format!("admin-password/{mac}"),
            SealPurpose::ConfigSecret { mac, key, field } => format!("config-secret/{mac}/{key}/{field}"),
            SealPurpose::InstallationCheck => "installation-check".to_string(),
        }
    }
}

/// A secret in memory. Its `Debug` never shows the value, so it cannot slip into a log line.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a plaintext secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The plaintext, for the few places that must use it (sealing, rendering a phone file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A sealed secret as stored: `v1:` and hex of nonce and ciphertext.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(..)")
    }
}

/// What went wrong with the key file or a sealed value.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be read or created.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file exists but does not hold a key.
    #[error("key file {0}: not a {KEY_BYTES}-byte hex key")]
    BadKey(String),
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(getrandom::Error),
    /// A stored value is damaged, or was sealed under another key or for another purpose.
    #[error("sealed value does not open (damaged, or sealed under another key)")]
    Open,
}

/// Seals and opens secrets under the installation key.
#[derive(Clone)]
pub struct Sealer {
    /// The AEAD keyed with the installation key.
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Reads the key file, or creates it (mode 0600, written and synced before use) on first
    /// start.
    pub fn load_or_create(path: &Path) -> Result<Sealer, SealError> {
        let shown = path.display().to_string();
        let io = |source| SealError::KeyFile {
            path: shown.clone(),
            source,
        };
        match fs::read_to_string(path) {
            Ok(text) => {
                let mut key = [0u8; KEY_BYTES];
                hex::decode_to_slice(text.trim(), &mut key).map_err(|_| SealError::BadKey(shown.clone()))?;
                // A key file readable by others is repaired rather than refused: the service
                // must keep running, and the log says so.
                if let Ok(meta) = fs::metadata(path)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    log::warn!("key file {shown} was readable by others; setting mode 0600");
                    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io)?;
                }
                Ok(Sealer::from_key(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_BYTES];
                getrandom::fill(&mut key).map_err(SealError::Random)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                file.write_all(hex::encode(key).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Sealer::from_key(&key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A sealer over a given key (tests, benches).
    pub fn from_key(key: &[u8; KEY_BYTES]) -> Sealer {
        // A 32-byte slice is always a valid XChaCha20-Poly1305 key.
        let cipher = XChaCha20Poly1305::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        Sealer { cipher }
    }

    /// Seals `secret` for `purpose`, which must be given again to open it.
    pub fn seal(&self, secret: &Secret, purpose: &SealPurpose) -> Result<Sealed, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(SealError::Random)?;
        let label = purpose.label();
        let payload = Payload {
            msg: secret.expose().as_bytes(),
            aad: label.as_bytes(),
        };
        let ciphertext = self
            .cipher
            .encrypt(&XNonce::from(nonce), payload)
            .map_err(|_| SealError::Open)?;
        let mut out = String::with_capacity(TAG.len() + 2 * (NONCE_BYTES + ciphertext.len()));
        out.push_str(TAG);
        out.push_str(&hex::encode(nonce));
        out.push_str(&hex::encode(ciphertext));
        Ok(Sealed(out))
    }

    /// Opens a sealed value sealed for `purpose`.
    pub fn open(&self, sealed: &Sealed, purpose: &SealPurpose) -> Result<Secret, SealError> {
        let label = purpose.label();
        let body = sealed.0.strip_prefix(TAG).ok_or(SealError::Open)?;
        let bytes = hex::decode(body).map_err(|_| SealError::Open)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let mut nonce_array = [0u8; NONCE_BYTES];
        nonce_array.copy_from_slice(nonce);
        let payload = Payload {
            msg: ciphertext,
            aad: label.as_bytes(),
        };
        let plain = self
            .cipher
            .decrypt(&XNonce::from(nonce_array), payload)
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map(Secret).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let sealer = Sealer::from_key(&[7; 32]);
        let secret = Secret::new("pässwörd ✓");
        let mac: Mac = "0015651a2b3c".parse().unwrap();
        let purpose = SealPurpose::UserPassword(mac);
        let sealed = sealer.seal(&secret, &purpose).unwrap();
        assert!(!format!("{sealed:?}{:?}", secret).contains("pässwörd"));
        assert_eq!(sealer.open(&sealed, &purpose).unwrap(), secret);
        let other_phone = SealPurpose::UserPassword("0015651a2b3d".parse().unwrap());
        assert!(sealer.open(&sealed, &other_phone).is_err());
        assert!(sealer.open(&sealed, &SealPurpose::WebPassword(mac)).is_err());
        assert!(Sealer::from_key(&[8; 32]).open(&sealed, &purpose).is_err());
        assert!(sealer.open(&Sealed("v1:00".into()), &purpose).is_err());
    }

    #[test]
    fn purpose_labels_never_change() {
        // Part of the stored data: a changed label would make every stored secret unreadable.
        let mac: Mac = "0015651a2b3c".parse().unwrap();
        let labels: Vec<String> = [
            SealPurpose::UserPassword(mac),
            SealPurpose::SysclientPassword(mac),
            SealPurpose::ProvPassword(mac),
            SealPurpose::ProvisioningCode(mac),
            SealPurpose::WebPassword(mac),
            SealPurpose::AdminPassword(mac),
            SealPurpose::ConfigSecret {
                mac,
                key: "5".into(),
                field: "turnPassword".into(),
            },
            SealPurpose::InstallationCheck,
        ]
        .iter()
        .map(SealPurpose::label)
        .collect();
        assert_eq!(
            labels,
            [
                "user-password/0015651a2b3c",
                "sysclient-password/0015651a2b3c",
                "prov-password/0015651a2b3c",
                "provisioning-code/0015651a2b3c",
                "web-password/0015651a2b3c",
                "admin-password/0015651a2b3c",
                "config-secret/0015651a2b3c/5/turnPassword",
                "installation-check",
            ]
        );
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seal.key");
        let first = Sealer::load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let purpose = SealPurpose::WebPassword("0015651a2b3c".parse().unwrap());
        let sealed = first.seal(&Secret::new("x"), &purpose).unwrap();
        let second = Sealer::load_or_create(&path).unwrap();
        assert_eq!(second.open(&sealed, &purpose).unwrap().expose(), "x");
        fs::write(&path, "short").unwrap();
        assert!(matches!(Sealer::load_or_create(&path), Err(SealError::BadKey(_))));
    }
}
