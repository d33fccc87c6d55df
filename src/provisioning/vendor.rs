//! Vendor descriptors (`vendors.toml`): which files a vendor's phones ask for, how to tell its
//! phones apart (OUI, User-Agent), which template renders them, and how to make them resync.

use serde::Deserialize;

use crate::mac::Mac;

/// The built-in descriptors.
const BUILTIN: &str = include_str!("vendors.toml");

/// How a vendor's files are written (for checks and parsing back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// `key = value` lines (Yealink).
    KeyValue,
    /// XML (Snom, Grandstream).
    Xml,
    /// Fanvil's `<<VOIP CONFIG FILE>>` with `Key :Value` lines in modules.
    Fanvil,
}

/// Everything innoprov knows about one vendor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorDescriptor {
    /// Short name (`yealink`), used in logs, audit, pins and template overrides.
    pub name: String,
    /// Display name.
    pub display: String,
    /// The vendor's OUIs, 6 lowercase hex digits.
    pub ouis: Vec<String>,
    /// Whose IEEE registry blocks its phones carry (ieee-extract.csv's `vendor` column), when
    /// not only its own: Gigaset's P-series are made by Snom and carry Snom's.
    #[serde(default)]
    pub registrants: Vec<String>,
    /// Lowercase substrings of its phones' User-Agent.
    pub user_agents: Vec<String>,
    /// Per-phone file name patterns (these files carry secrets).
    pub files: Vec<String>,
    /// Model-wide file name patterns (no secrets).
    pub common_files: Vec<String>,
    /// Files the vendor's own boot sequence asks for that innoprov does not serve (firmware,
    /// encrypted variants, per-MAC boot files): answered 404, but never counted as misses, so a
    /// room of rebooting phones behind one address is never throttled.
    #[serde(default)]
    pub probes: Vec<String>,
    /// Content-Type of served files.
    pub content_type: String,
    /// Built-in template of the per-phone file.
    pub template: String,
    /// Built-in template of the model-wide files.
    pub common_template: String,
    /// File format.
    pub format: FileFormat,
    /// SIP NOTIFY `Event` that makes the phone fetch again.
    pub resync_event: String,
    /// Keys of the file that carry the provisioning credentials.
    pub credential_keys: Vec<String>,
    /// The remote phonebook's format, when the vendor's phones take one (not the Gigaset
    /// Nx70 bases: LDAP only).
    #[serde(default)]
    pub phonebook: Option<super::phonebook::PhonebookFormat>,
    /// Key of the file that sets the periodic re-check.
    pub recheck_key: String,
}

/// What a requested file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// A phone's own file.
    Phone {
        /// The phone.
        mac: Mac,
        /// The model, when the file name carries one.
        model: Option<String>,
    },
    /// A model-wide file, or a per-MAC file without secrets (Yealink's `<mac>.boot`).
    Common {
        /// The model, when the file name carries one.
        model: Option<String>,
        /// The MAC, when the file name carries one (served alike for every MAC: no lookup).
        mac: Option<Mac>,
    },
}

/// A vendor whose patterns match a requested file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Index into [`Vendors::all`].
    pub vendor: usize,
    /// What the file is.
    pub kind: FileKind,
}

/// Why descriptors cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("vendor descriptors: {0}")]
pub struct VendorError(String);

/// The set of known vendors.
#[derive(Debug, Clone)]
pub struct Vendors {
    /// The descriptors, in file order.
    all: Vec<VendorDescriptor>,
    /// Every file pattern, parsed once: (vendor index, per-phone?, pattern), in match order.
    patterns: Vec<(usize, bool, Pattern)>,
    /// Every probe pattern, parsed once: (vendor index, pattern).
    probes: Vec<(usize, Pattern)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VendorFile {
    /// The `[[vendor]]` entries of the built-in catalogue.
    vendor: Vec<VendorDescriptor>,
}

/// One `[[vendor]]` of an operator's catalogue: for a built-in vendor, lists are added to the
/// built-in ones and scalars replace them; a new vendor gives every field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VendorPatch {
    /// The vendor it patches or adds.
    name: String,
    /// Replaces the display name.
    display: Option<String>,
    /// More OUIs that name the vendor.
    #[serde(default)]
    ouis: Vec<String>,
    /// More User-Agent substrings that name the vendor.
    #[serde(default)]
    user_agents: Vec<String>,
    /// More per-phone file name patterns.
    #[serde(default)]
    files: Vec<String>,
    /// More model-wide file name patterns.
    #[serde(default)]
    common_files: Vec<String>,
    /// More file names answered 404 without counting as misses.
    #[serde(default)]
    probes: Vec<String>,
    /// Replaces the Content-Type of served files.
    content_type: Option<String>,
    /// Replaces the per-phone file's template name.
    template: Option<String>,
    /// Replaces the model-wide files' template name.
    common_template: Option<String>,
    /// Replaces the file format.
    format: Option<FileFormat>,
    /// Sets the phonebook format.
    #[serde(default)]
    phonebook: Option<super::phonebook::PhonebookFormat>,
    /// Replaces the SIP NOTIFY event that makes the phone fetch again.
    resync_event: Option<String>,
    /// Replaces the keys that carry the provisioning credentials.
    credential_keys: Option<Vec<String>>,
    /// Replaces the key that sets the periodic re-check.
    recheck_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchFile {
    /// The `[[vendor]]` entries of the operator's catalogue.
    #[serde(default)]
    vendor: Vec<VendorPatch>,
}

fn extend_unique(list: &mut Vec<String>, more: Vec<String>) {
    for item in more {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

impl Vendors {
    /// The descriptors shipped with innoprov.
    pub fn builtin() -> Vendors {
        // The built-in file is part of the source and covered by tests.
        Vendors::parse(BUILTIN).unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// Descriptors from TOML text.
    pub fn parse(text: &str) -> Result<Vendors, VendorError> {
        let file: VendorFile = toml::from_str(text).map_err(|e| VendorError(one_line(&e.to_string())))?;
        Vendors::from_descriptors(file.vendor)
    }

    /// These descriptors with an operator's catalogue (TOML text) merged over them.
    pub fn merged_with(&self, text: &str) -> Result<Vendors, VendorError> {
        let file: PatchFile = toml::from_str(text).map_err(|e| VendorError(one_line(&e.to_string())))?;
        let mut all = self.all.clone();
        for patch in file.vendor {
            match all.iter_mut().find(|v| v.name == patch.name) {
                Some(v) => {
                    extend_unique(&mut v.ouis, patch.ouis);
                    extend_unique(&mut v.user_agents, patch.user_agents);
                    extend_unique(&mut v.files, patch.files);
                    extend_unique(&mut v.common_files, patch.common_files);
                    extend_unique(&mut v.probes, patch.probes);
                    let replace = |target: &mut String, value: Option<String>| {
                        if let Some(value) = value {
                            *target = value;
                        }
                    };
                    replace(&mut v.display, patch.display);
                    replace(&mut v.content_type, patch.content_type);
                    replace(&mut v.template, patch.template);
                    replace(&mut v.common_template, patch.common_template);
                    replace(&mut v.resync_event, patch.resync_event);
                    replace(&mut v.recheck_key, patch.recheck_key);
                    if let Some(format) = patch.format {
                        v.format = format;
                    }
                    if let Some(phonebook) = patch.phonebook {
                        v.phonebook = Some(phonebook);
                    }
                    if let Some(keys) = patch.credential_keys {
                        v.credential_keys = keys;
                    }
                }
                None => {
                    let name = patch.name.clone();
                    let missing =
                        |field: &str| VendorError(format!("vendor {name}: a new vendor needs {field}"));
                    if patch.files.is_empty() {
                        return Err(missing("files"));
                    }
                    all.push(VendorDescriptor {
                        display: patch.display.unwrap_or_else(|| patch.name.clone()),
                        ouis: patch.ouis,
                        registrants: Vec::new(),
                        user_agents: patch.user_agents,
                        files: patch.files,
                        common_files: patch.common_files,
                        probes: patch.probes,
                        content_type: patch.content_type.ok_or_else(|| missing("content_type"))?,
                        template: patch.template.ok_or_else(|| missing("template"))?,
                        common_template: patch.common_template.unwrap_or_default(),
                        format: patch.format.ok_or_else(|| missing("format"))?,
                        phonebook: patch.phonebook,
                        resync_event: patch.resync_event.unwrap_or_else(|| "check-sync".into()),
                        credential_keys: patch.credential_keys.unwrap_or_default(),
                        recheck_key: patch.recheck_key.unwrap_or_default(),
                        name: patch.name,
                    });
                }
            }
        }
        Vendors::from_descriptors(all)
    }

    fn from_descriptors(all: Vec<VendorDescriptor>) -> Result<Vendors, VendorError> {
        let mut patterns = Vec::new();
        let mut probes = Vec::new();
        for (index, v) in all.iter().enumerate() {
            let name_ok = !v.name.is_empty()
                && v.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !name_ok {
                return Err(VendorError(format!(
                    "vendor {:?}: a name is lowercase letters, digits and '_'",
                    v.name
                )));
            }
            if all.iter().filter(|o| o.name == v.name).count() > 1 {
                return Err(VendorError(format!("vendor {}: named twice", v.name)));
            }
            for oui in &v.ouis {
                // MA-L, MA-M and MA-S blocks: 6, 7 or 9 hex digits of the MAC.
                if ![6, 7, 9].contains(&oui.len())
                    || !oui
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(VendorError(format!(
                        "vendor {}: OUI {oui:?} is not 6, 7 or 9 lowercase hex digits (an IEEE MA-L, MA-M or MA-S block)",
                        v.name
                    )));
                }
            }
            if v.user_agents
                .iter()
                .any(|ua| ua.is_empty() || ua.to_ascii_lowercase() != *ua)
            {
                return Err(VendorError(format!(
                    "vendor {}: User-Agent patterns are non-empty and lowercase",
                    v.name
                )));
            }
            let phone = v.files.iter().map(|p| (true, p));
            for (per_phone, text) in phone.chain(v.common_files.iter().map(|p| (false, p))) {
                let pattern = Pattern::parse(text)
                    .map_err(|e| VendorError(format!("vendor {}: {text}: {e}", v.name)))?;
                if per_phone && !pattern.has_mac() {
                    return Err(VendorError(format!(
                        "vendor {}: {text}: a phone's file name needs {{mac}} or {{MAC}}",
                        v.name
                    )));
                }
                patterns.push((index, per_phone, pattern));
            }
            for text in &v.probes {
                let pattern = Pattern::parse(text)
                    .map_err(|e| VendorError(format!("vendor {}: {text}: {e}", v.name)))?;
                probes.push((index, pattern));
            }
        }
        Ok(Vendors {
            all,
            patterns,
            probes,
        })
    }

    /// The vendor whose boot sequence asks for `file` without innoprov serving it, if any.
    pub fn probe(&self, file: &str) -> Option<&VendorDescriptor> {
        self.probes
            .iter()
            .find(|(_, pattern)| pattern.matches(file).is_some())
            .map(|(index, _)| &self.all[*index])
    }

    /// All descriptors.
    pub fn all(&self) -> &[VendorDescriptor] {
        &self.all
    }

    /// The descriptor named `name`.
    pub fn by_name(&self, name: &str) -> Option<&VendorDescriptor> {
        self.all.iter().find(|v| v.name == name)
    }

    /// Every vendor whose patterns match `file` (a vendor's per-phone patterns before its
    /// model-wide ones; one candidate per vendor).
    pub fn candidates(&self, file: &str) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for (vendor, per_phone, pattern) in &self.patterns {
            if out.iter().any(|c| c.vendor == *vendor) {
                continue;
            }
            let Some(m) = pattern.matches(file) else { continue };
            let kind = match (per_phone, m.mac) {
                (true, Some(mac)) => FileKind::Phone {
                    mac,
                    model: m.model.map(str::to_string),
                },
                (true, None) => continue,
                (false, mac) => FileKind::Common {
                    model: m.model.map(str::to_string),
                    mac,
                },
            };
            out.push(Candidate {
                vendor: *vendor,
                kind,
            });
        }
        out
    }
}

impl VendorDescriptor {
    /// Whether `mac` carries one of this vendor's OUIs.
    pub fn owns_oui(&self, mac: &Mac) -> bool {
        let hex = mac.hex();
        self.ouis
            .iter()
            .any(|oui| starts_with_bytes(&hex, oui.as_bytes()))
    }

    /// Whether `user_agent` names this vendor.
    pub fn named_in(&self, user_agent: &str) -> bool {
        self.named_in_lowercase(&user_agent.to_ascii_lowercase())
    }

    /// [`Self::named_in`] for a User-Agent already in lower case (checked against every
    /// vendor on each download, so lower-cased once).
    pub fn named_in_lowercase(&self, user_agent: &str) -> bool {
        self.user_agents
            .iter()
            .any(|needle| user_agent.contains(needle.as_str()))
    }
}

/// One piece of a file name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    MacLower,
    MacUpper,
    Model,
    /// `{any}`: one or more of letters, digits, `.`, `_`, `-` (probe names such as Fanvil's
    /// `f0X4hw1.100.cfg`).
    Any,
}

/// A parsed file name pattern.
#[derive(Debug, Clone)]
struct Pattern {
    /// Its pieces.
    tokens: Vec<Token>,
    /// The literal it starts with and the one it ends with (empty if none): every download
    /// tries every vendor's patterns, and these two comparisons turn most of them down.
    ends: (String, String),
}

/// Whether `a` and `b` are the same bytes, compared in a loop: the download path compares
/// many short names (patterns, OUIs, the audit's texts), where a library call per comparison
/// cost more than the comparison (README, the profiles of 2026-12-06).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Whether `bytes` start with `prefix` ([`same_bytes`]).
fn starts_with_bytes(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .get(..prefix.len())
        .is_some_and(|start| same_bytes(start, prefix))
}

/// Whether `bytes` end with `suffix` ([`same_bytes`]).
fn ends_with_bytes(bytes: &[u8], suffix: &[u8]) -> bool {
    bytes.len() >= suffix.len() && same_bytes(&bytes[bytes.len() - suffix.len()..], suffix)
}

/// What a pattern captured, borrowed from the file name (a match is tried on every download,
/// against every vendor's patterns: nothing is allocated until one matches).
#[derive(Debug, Default)]
struct Captures<'a> {
    /// The MAC, when the pattern has a MAC placeholder.
    mac: Option<Mac>,
    /// The model, when the pattern has a model placeholder.
    model: Option<&'a str>,
}

/// A TOML error on one line (its messages span several, with a source excerpt).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Pattern {
    fn has_mac(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::MacLower | Token::MacUpper))
    }

    fn parse(pattern: &str) -> Result<Pattern, String> {
        let mut tokens = Vec::new();
        let mut rest = pattern;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or("unclosed '{'")?;
                    tokens.push(match &rest[1..end] {
                        "mac" => Token::MacLower,
                        "MAC" => Token::MacUpper,
                        "model" => Token::Model,
                        "any" => Token::Any,
                        other => return Err(format!("unknown placeholder {{{other}}}")),
                    });
                    rest = &rest[end + 1..];
                }
                Some(at) => {
                    tokens.push(Token::Literal(rest[..at].to_string()));
                    rest = &rest[at..];
                }
                None => {
                    tokens.push(Token::Literal(rest.to_string()));
                    rest = "";
                }
            }
        }
        let literal = |token: Option<&Token>| match token {
            Some(Token::Literal(lit)) => lit.clone(),
            _ => String::new(),
        };
        let ends = (literal(tokens.first()), literal(tokens.last()));
        Ok(Pattern { tokens, ends })
    }

    fn matches<'a>(&self, file: &'a str) -> Option<Captures<'a>> {
        let mut captures = Captures::default();
        let (first, last) = &self.ends;
        if !starts_with_bytes(file.as_bytes(), first.as_bytes())
            || !ends_with_bytes(file.as_bytes(), last.as_bytes())
        {
            return None;
        }
        match_tokens(&self.tokens, file, &mut captures).then_some(captures)
    }
}

fn match_tokens<'a>(tokens: &[Token], input: &'a str, captures: &mut Captures<'a>) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return input.is_empty();
    };
    match first {
        // Equal bytes of a whole `lit` end on a character boundary of `input`.
        Token::Literal(lit) => {
            starts_with_bytes(input.as_bytes(), lit.as_bytes())
                && match_tokens(rest, &input[lit.len()..], captures)
        }
        Token::MacLower | Token::MacUpper => {
            let Some(digits) = input.get(..12) else {
                return false;
            };
            let case_ok = match first {
                Token::MacLower => !digits.bytes().any(|b| b.is_ascii_uppercase()),
                _ => !digits.bytes().any(|b| b.is_ascii_lowercase()),
            };
            if !case_ok || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return false;
            }
            let Ok(mac) = digits.parse::<Mac>() else {
                return false;
            };
            captures.mac = Some(mac);
            match_tokens(rest, &input[12..], captures)
        }
        Token::Any => {
            let longest = input
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
                .count();
            (1..=longest).any(|len| match_tokens(rest, &input[len..], captures))
        }
        Token::Model => {
            let longest = input.bytes().take_while(u8::is_ascii_alphanumeric).count();
            // Shortest model first, so "snom{model}-{MAC}.htm" splits at the right '-'.
            (1..=longest).any(|len| {
                captures.model = Some(&input[..len]);
                match_tokens(rest, &input[len..], captures)
            })
        }
    }
}

/// The model a provisioning request's User-Agent names, for the per-MAC files whose names carry
/// none (Yealink's `<mac>.cfg`, Grandstream's `cfg<mac>.xml`): it places function keys on the
/// model's own keys and its expansion modules. The forms are documented in
/// docs/vendors/yealink.md and grandstream.md ("User-Agent"): `Yealink SIP-T46U 108.86.0.90
/// <mac>` (and `Yealink-T46U …`), `Grandstream Model HW GXP2170 [V2.2A] SW 1.0.11.3 DevId
/// <mac>`, and Fanvil's `Fanvil X4 2.10.2.6887 <mac>`. Only letters and digits are kept, at
/// most 16: the name is the client's to choose.
pub fn model_in_user_agent<'a>(vendor: &str, user_agent: &'a str) -> Option<std::borrow::Cow<'a, str>> {
    let mut words = user_agent.split_whitespace();
    let first = words.next()?;
    let word = match vendor {
        "yealink" if first.eq_ignore_ascii_case("yealink") => words.next()?.strip_prefix("SIP-")?,
        "yealink" => first
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("yealink-"))
            .and_then(|_| first.get(8..))?,
        "grandstream" if first.eq_ignore_ascii_case("grandstream") => {
            let mut rest = words.skip_while(|w| *w != "HW");
            rest.next()?;
            rest.next()?
        }
        "fanvil" if first.eq_ignore_ascii_case("fanvil") => words.next()?,
        _ => return None,
    };
    // Asked on every download of a per-MAC file: a model word as it stands is not copied.
    if word.len() <= 16 && word.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return (!word.is_empty()).then_some(std::borrow::Cow::Borrowed(word));
    }
    let model: String = word
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    (!model.is_empty()).then_some(std::borrow::Cow::Owned(model))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(c: &[Candidate], vendors: &Vendors) -> Vec<(String, String, Option<String>)> {
        c.iter()
            .filter_map(|c| match &c.kind {
                FileKind::Phone { mac, model } => Some((
                    vendors.all()[c.vendor].name.clone(),
                    mac.to_string(),
                    model.clone(),
                )),
                FileKind::Common { .. } => None,
            })
            .collect()
    }

    #[test]
    fn real_file_names_resolve() {
        let v = Vendors::builtin();
        let yealink_or_fanvil = phone(&v.candidates("0015651a2b3c.cfg"), &v);
        assert_eq!(
            yealink_or_fanvil.len(),
            2,
            "Yealink and Fanvil share <mac>.cfg: OUI decides"
        );
        assert_eq!(
            phone(&v.candidates("snomD785-000413A1B2C3.htm"), &v),
            [("snom".into(), "000413a1b2c3".into(), Some("D785".into()))]
        );
        assert_eq!(
            phone(&v.candidates("cfg000b82a1b2c3.xml"), &v),
            [("grandstream".into(), "000b82a1b2c3".into(), None)]
        );
        assert!(
            v.candidates("cfg000b82a1b2c3").is_empty(),
            "the binary file is a probe"
        );
        assert_eq!(v.probe("cfg000b82a1b2c3").unwrap().name, "grandstream");
        assert_eq!(v.probe("cfg000b82a1b2c3.bin").unwrap().name, "grandstream");
        assert_eq!(v.probe("f0X4hw1.100.cfg").unwrap().name, "fanvil");
        assert_eq!(v.probe("F0V00X600000.cfg").unwrap().name, "fanvil");
        assert!(v.probe("y000000000000.boot").is_some());
        assert!(v.probe("nonsense.txt").is_none());
        assert!(
            matches!(&v.candidates("805ec01a2b3c.boot")[0].kind, FileKind::Common { mac: Some(m), .. } if m.to_string() == "805ec01a2b3c"),
            "<mac>.boot carries no secret: a common file"
        );
        assert!(
            matches!(
                &v.candidates("y000000000108.cfg")[0].kind,
                FileKind::Common { .. }
            ),
            "3-digit model codes (T46U)"
        );
        assert!(
            matches!(&v.candidates("y000000000046.cfg")[0].kind, FileKind::Common { model: Some(m), .. } if m == "000000000046")
        );
        assert!(
            v.candidates("0015651A2B3C.cfg").is_empty(),
            "Yealink asks in lower case"
        );
        assert!(v.candidates("../etc/passwd").is_empty());
        assert!(
            v.candidates("snom-000413A1B2C3.htm")
                .iter()
                .all(|c| !matches!(c.kind, FileKind::Phone { .. }))
        );
    }

    #[test]
    fn ouis_and_user_agents() {
        let v = Vendors::builtin();
        let yealink = v.by_name("yealink").unwrap();
        assert!(yealink.owns_oui(&"805ec0123456".parse().unwrap()));
        assert!(!yealink.owns_oui(&"000413123456".parse().unwrap()));
        assert!(yealink.named_in("Yealink SIP-T46S 66.86.0.15 00:15:65:1a:2b:3c"));
        assert!(
            v.by_name("snom")
                .unwrap()
                .named_in("Mozilla/4.0 (compatible; snom D785 10.1.73.16)")
        );
        assert!(
            v.by_name("grandstream")
                .unwrap()
                .named_in("Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82a1b2c3")
        );
        assert!(
            v.by_name("fanvil")
                .unwrap()
                .named_in("Fanvil X4U 2.4.12 0c383e0a0b0c")
        );
    }

    /// The built-in catalogue holds exactly the IEEE registry's assignments to each vendor's
    /// companies, as the pinned extract (tools/ieee-extract.py) lists them.
    #[test]
    fn the_ouis_are_the_ieee_registrys() {
        let extract = include_str!("ieee-extract.csv");
        let mut registered: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> =
            Default::default();
        for line in extract.lines().filter(|l| !l.starts_with('#')).skip(1) {
            let mut fields = line.splitn(4, ',');
            let (Some(vendor), Some(_registry), Some(assignment)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("extract line {line:?}")
            };
            registered
                .entry(vendor)
                .or_default()
                .insert(assignment.to_string());
        }
        let vendors = Vendors::builtin();
        let mut catalogued = std::collections::BTreeSet::new();
        for vendor in vendors.all() {
            let ours: std::collections::BTreeSet<String> = vendor.ouis.iter().cloned().collect();
            let own = [vendor.name.clone()];
            let registrants = if vendor.registrants.is_empty() {
                &own[..]
            } else {
                &vendor.registrants[..]
            };
            let theirs: std::collections::BTreeSet<String> = registrants
                .iter()
                .flat_map(|r| registered.get(r.as_str()).cloned().unwrap_or_default())
                .collect();
            catalogued.extend(registrants.iter().cloned());
            assert_eq!(
                ours, theirs,
                "{}: the catalogue against the registry",
                vendor.name
            );
        }
        let missing: Vec<&str> = registered
            .keys()
            .copied()
            .filter(|v| !catalogued.contains(*v))
            .collect();
        assert!(
            missing.is_empty(),
            "vendors registered but not catalogued: {missing:?}"
        );
    }

    #[test]
    fn the_model_is_read_from_the_documented_user_agents() {
        let cases = [
            (
                "yealink",
                "Yealink SIP-T48U 108.86.0.90 80:5e:c0:aa:bb:cc",
                Some("T48U"),
            ),
            ("yealink", "Yealink-T46U 108.86.0.90", Some("T46U")),
            ("yealink", "Yealink W60B 77.85.0.20", None),
            (
                "grandstream",
                "Grandstream Model HW GXP2160 SW 1.0.11.3 DevId 000b82aabbcc",
                Some("GXP2160"),
            ),
            (
                "grandstream",
                "Grandstream Model HW GXV3350  V1.3A SW 1.0.1.33 DevId 000b82462d97",
                Some("GXV3350"),
            ),
            ("fanvil", "Fanvil X4 2.10.2.6887 0c383e000001", Some("X4")),
            ("yealink", "Yealink SIP-T4<script>8U 1", Some("T4script8U")),
            ("snom", "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33)", None),
            ("grandstream", "curl/8.5", None),
            ("yealink", "", None),
        ];
        for (vendor, ua, model) in cases {
            assert_eq!(model_in_user_agent(vendor, ua).as_deref(), model, "{ua}");
        }
    }
}
