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
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(text: &str) -> Result<Mac, MacError> {
        let digits: Vec<u8> = text.bytes().filter(|b| *b != b':' && *b != b'-').collect();
        // Separators only between pairs: "00:15:65:..." or "00-15-..." or none at all.
        let separators = text.len() - digits.len();
        if digits.len() != 12 || (separators != 0 && separators != 5) {
            return Err(MacError);
        }
        if separators == 5 {
            let b = text.as_bytes();
            if text.len() != 17 || !(2..17).step_by(3).all(|i| b[i] == b':' || b[i] == b'-') {
                return Err(MacError);
            }
        }
        let mut out = [0u8; 6];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| MacError)?;
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
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
    }
}
