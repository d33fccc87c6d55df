//! A phone's MAC address: parsed liberally (`:` / `-` separators, either case), shown and
//! stored in the one form Devices and the vendors' file names use (12 lowercase hex digits).

use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

/// Why a text is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (12 hex digits, optionally separated by ':' or '-')")]
pub struct MacError;

impl Mac {
    /// The six bytes, most significant first: also the store key, so keys sort by MAC.
    pub fn bytes(&self) -> [u8; 6] {
        self.0
    }

    /// From the six bytes of a store key.
    pub fn from_bytes(bytes: [u8; 6]) -> Mac {
        Mac(bytes)
    }

    /// Upper-case form, as Snom file names use it.
    pub fn upper(&self) -> String {
        self.to_string().to_uppercase()
    }

    /// The twelve lowercase hex digits, without an allocation (the download path compares
    /// and prints MACs on every request).
    pub fn hex(&self) -> [u8; 12] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 12];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        out
    }
}

/// One hex digit's value, either case.
fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(text: &str) -> Result<Mac, MacError> {
        let b = text.as_bytes();
        // Separators only between pairs: "00:15:65:..." or "00-15-..." or none at all; every
        // file name a phone asks for is tried, so no allocation.
        let stride = match b.len() {
            12 => 2,
            17 if (2..17).step_by(3).all(|i| b[i] == b':' || b[i] == b'-') => 3,
            _ => return Err(MacError),
        };
        let mut out = [0u8; 6];
        for (i, byte) in out.iter_mut().enumerate() {
            let at = i * stride;
            *byte = (nibble(b[at]).ok_or(MacError)? << 4) | nibble(b[at + 1]).ok_or(MacError)?;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_usual_spellings() {
        for text in [
            "0015651A2B3C",
            "00:15:65:1a:2b:3c",
            "00-15-65-1A-2B-3C",
            "0015651a2b3c",
        ] {
            assert_eq!(text.parse::<Mac>().unwrap().to_string(), "0015651a2b3c", "{text}");
        }
        assert_eq!("0015651a2b3c".parse::<Mac>().unwrap().upper(), "0015651A2B3C");
    }

    #[test]
    fn rejects_everything_else() {
        for text in [
            "",
            "0015651a2b3",
            "0015651a2b3cd",
            "00:15:65:1a:2b3c",
            "0015651a2b3g",
            "001:565:1a:2b:3c:",
            "+015651a2b3c",
        ] {
            assert_eq!(text.parse::<Mac>(), Err(MacError), "{text}");
        }
    }

    proptest! {
        #[test]
        fn display_parses_back(bytes in any::<[u8; 6]>()) {
            let mac = Mac::from_bytes(bytes);
            prop_assert_eq!(mac.to_string().parse::<Mac>().unwrap(), mac);
        }

        #[test]
        fn never_panics(text in "\\PC{0,30}") {
            let _ = text.parse::<Mac>();
        }

        /// The parser without allocation decides as the first one did (kept here as the
        /// reference): digits without separators, exactly 12 of them, and no separator or
        /// one between every pair.
        #[test]
        fn parses_as_the_reference_did(text in "[0-9a-fA-Fg:\\-]{0,3}([0-9a-fA-F]{2}[:\\-]?){5}[0-9a-fA-F]{2}[0-9a-fA-Fg:\\-]{0,2}") {
            let reference = || -> Option<Mac> {
                let digits: Vec<u8> = text.bytes().filter(|b| *b != b':' && *b != b'-').collect();
                let separators = text.len() - digits.len();
                if digits.len() != 12 || (separators != 0 && separators != 5) {
                    return None;
                }
                let b = text.as_bytes();
                if separators == 5 && (text.len() != 17 || !(2..17).step_by(3).all(|i| b[i] == b':' || b[i] == b'-')) {
                    return None;
                }
                let mut out = [0u8; 6];
                hex::decode_to_slice(&digits, &mut out).ok()?;
                Some(Mac(out))
            };
            prop_assert_eq!(text.parse::<Mac>().ok(), reference());
        }

        #[test]
        fn hex_is_the_bytes_in_lowercase_pairs(bytes in any::<[u8; 6]>()) {
            let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mac = Mac::from_bytes(bytes);
            let hex = mac.hex();
            prop_assert_eq!(hex.as_slice(), expected.as_bytes());
            prop_assert_eq!(mac.to_string(), expected);
        }
    }
}
