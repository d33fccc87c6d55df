//! Function keys and key profiles (interface.md "Directory and function keys").
//!
//! A key profile is a named, ordered list of keys an admin keeps in the store; a phone gets its
//! own profile, else the profile named like its user's PBX config template. Each vendor's
//! template writes the keys in the vendor's own syntax (docs/vendors/directory-and-keys.md).
//! Everything a profile carries reaches a phone's file, so every value is checked here, before
//! it is stored: a bad key is refused with its position and reason, and nothing is stored.

use serde::{Deserialize, Serialize};

/// Most keys in one profile: more than any phone with its expansion modules has.
pub const MAX_KEYS: usize = 200;
/// Longest label: phones show a dozen characters; the rest is cut by the phone.
pub const MAX_LABEL: usize = 64;
/// Longest profile name (the PBX's config template names are short).
pub const MAX_NAME: usize = 64;
/// Longest SIP name or number.
pub const MAX_TARGET: usize = 64;

/// One programmable key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FunctionKey {
    /// A busy lamp: the phone subscribes to the target's dialog state at the PBX (RFC 4235)
    /// and calls it when pressed.
    Blf {
        /// The partner's SIP name at the PBX (`h323` in the user table).
        target: String,
        /// What the key shows (the target when empty).
        #[serde(default)]
        label: String,
    },
    /// Dials a number.
    SpeedDial {
        /// The number dialled.
        number: String,
        /// What the key shows (the number when empty).
        #[serde(default)]
        label: String,
    },
    /// The phone's line (its one SIP account).
    Line,
    /// Do not disturb on and off.
    Dnd,
}

/// A named, ordered list of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyProfile {
    /// Its name: chosen by the admin, or the name of a PBX config template.
    pub name: String,
    /// The keys, in key order.
    pub keys: Vec<FunctionKey>,
}

/// Why a profile is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The name is empty, too long or has characters outside letters, digits, `-`, `_`, `.`.
    #[error("profile name {0:?}: 1 to 64 letters, digits, '-', '_' or '.'")]
    Name(String),
    /// Too many keys.
    #[error("{0} keys: at most {MAX_KEYS}")]
    TooMany(usize),
    /// One key is wrong.
    #[error("key {position}: {reason}")]
    Key {
        /// Its position, from 1.
        position: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Whether `name` may name a profile (it appears in URLs and in the store).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A SIP name as the PBX allows it in `h323`: letters, digits and `-_.+`, no spaces, no `@`.
fn valid_sip_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_TARGET
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

/// A dialled number: digits with `*`, `#`, a leading `+`.
fn valid_number(text: &str) -> bool {
    let digits = text.strip_prefix('+').unwrap_or(text);
    !digits.is_empty()
        && text.len() <= MAX_TARGET
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#'))
}

/// A label: any printable text up to [`MAX_LABEL`] characters (templates escape it).
fn valid_label(text: &str) -> bool {
    text.chars().count() <= MAX_LABEL && !text.chars().any(char::is_control)
}

impl FunctionKey {
    fn check(&self) -> Result<(), String> {
        match self {
            FunctionKey::Blf { target, label } => {
                if !valid_sip_name(target) {
                    return Err(format!(
                        "blf target {target:?} is no SIP name (letters, digits, '-', '_', '.', '+')"
                    ));
                }
                check_label(label)
            }
            FunctionKey::SpeedDial { number, label } => {
                if !valid_number(number) {
                    return Err(format!(
                        "speed_dial number {number:?}: digits, '*', '#', a leading '+'"
                    ));
                }
                check_label(label)
            }
            FunctionKey::Line | FunctionKey::Dnd => Ok(()),
        }
    }

    /// What the key shows: its label, else its target or number, else its kind.
    pub fn label(&self) -> &str {
        match self {
            FunctionKey::Blf { target, label } if label.is_empty() => target,
            FunctionKey::SpeedDial { number, label } if label.is_empty() => number,
            FunctionKey::Blf { label, .. } | FunctionKey::SpeedDial { label, .. } => label,
            FunctionKey::Line => "Line",
            FunctionKey::Dnd => "DND",
        }
    }
}

fn check_label(label: &str) -> Result<(), String> {
    if valid_label(label) {
        Ok(())
    } else {
        Err(format!(
            "label: at most {MAX_LABEL} characters, no control characters"
        ))
    }
}

impl KeyProfile {
    /// The profile, checked: `Err` names the first bad part.
    pub fn new(name: &str, keys: Vec<FunctionKey>) -> Result<KeyProfile, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::Name(name.to_string()));
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyError::TooMany(keys.len()));
        }
        for (index, key) in keys.iter().enumerate() {
            key.check().map_err(|reason| KeyError::Key {
                position: index + 1,
                reason,
            })?;
        }
        Ok(KeyProfile {
            name: name.to_string(),
            keys,
        })
    }

    /// The body of `PUT key-profiles/{name}` (`{"keys":[KEY, ...]}`), checked.
    pub fn from_body(name: &str, body: &[u8]) -> Result<KeyProfile, KeyError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            keys: Vec<serde_json::Value>,
        }
        let body: Body = serde_json::from_slice(body).map_err(|e| KeyError::Key {
            position: 0,
            reason: format!("the body is not {{\"keys\":[...]}}: {e}"),
        })?;
        let mut keys = Vec::with_capacity(body.keys.len().min(MAX_KEYS + 1));
        for (index, value) in body.keys.into_iter().enumerate() {
            let key = serde_json::from_value(value).map_err(|e| KeyError::Key {
                position: index + 1,
                reason: e.to_string(),
            })?;
            keys.push(key);
        }
        KeyProfile::new(name, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_examples_parse_in_order() {
        let body = br#"{"keys":[{"type":"line"},{"type":"blf","target":"alice","label":"Alice"},
            {"type":"speed_dial","number":"+49 7031","label":"x"},{"type":"dnd"}]}"#;
        // A space is no digit: refused, with the key's position.
        assert_eq!(
            KeyProfile::from_body("sales", body),
            Err(KeyError::Key {
                position: 3,
                reason: "speed_dial number \"+49 7031\": digits, '*', '#', a leading '+'".into()
            })
        );
        let body = br#"{"keys":[{"type":"line"},{"type":"blf","target":"alice","label":"Alice"},
            {"type":"speed_dial","number":"+497031*1#"},{"type":"dnd"}]}"#;
        let profile = KeyProfile::from_body("sales", body).expect("valid");
        assert_eq!(
            profile.keys,
            vec![
                FunctionKey::Line,
                FunctionKey::Blf {
                    target: "alice".into(),
                    label: "Alice".into()
                },
                FunctionKey::SpeedDial {
                    number: "+497031*1#".into(),
                    label: String::new()
                },
                FunctionKey::Dnd,
            ]
        );
        assert_eq!(profile.keys[2].label(), "+497031*1#");
        let json = serde_json::to_value(&profile).expect("json");
        assert_eq!(
            json["keys"][1],
            serde_json::json!({"type":"blf","target":"alice","label":"Alice"})
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let cases: [(&[u8], usize); 6] = [
            (br#"{"keys":[{"type":"park"}]}"#, 1),
            (br#"{"keys":[{"type":"line"},{"type":"blf"}]}"#, 2),
            (br#"{"keys":[{"type":"blf","target":"bob@evil.example"}]}"#, 1),
            (br#"{"keys":[{"type":"blf","target":"bob","label":"a\nb"}]}"#, 1),
            (br#"{"keys":[{"type":"blf","target":"bob","extra":1}]}"#, 1),
            (
                br#"{"keys":[{"type":"line"},{"type":"line"},{"type":"speed_dial","number":""}]}"#,
                3,
            ),
        ];
        for (body, position) in cases {
            match KeyProfile::from_body("p", body) {
                Err(KeyError::Key { position: p, .. }) => {
                    assert_eq!(p, position, "{}", String::from_utf8_lossy(body))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        assert!(matches!(
            KeyProfile::from_body("p", b"[]"),
            Err(KeyError::Key { position: 0, .. })
        ));
        let many = vec![FunctionKey::Line; MAX_KEYS + 1];
        assert_eq!(KeyProfile::new("p", many), Err(KeyError::TooMany(MAX_KEYS + 1)));
    }

    #[test]
    fn profile_names_are_plain() {
        for good in ["sales", "Standard-Template_2", "a.b"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a/b", "../x", "a b", "ä", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
            assert_eq!(KeyProfile::new(bad, vec![]), Err(KeyError::Name(bad.to_string())));
        }
    }
}
