//! The remote phonebook as each vendor's phone finds, fetches and reads it, written from the
//! vendors' documents in docs/vendors/directory-and-keys.md (not from innoprov's renderer):
//!
//! - Yealink: `remote_phonebook.data.1.url` with `.username`/`.password`, a
//!   `YealinkIPPhoneDirectory` of `DirectoryEntry` `Name`/`Telephone` (the `YealinkIPPhoneBook`
//!   `Unit` form is read too);
//! - Grandstream: P330 (1 HTTP, 3 HTTPS), P331 `host/path` to which it adds `phonebook.xml`,
//!   P6713/P6714; an `AddressBook` of `Contact` `FirstName`/`LastName` and `Phone/phonenumber`;
//! - Fanvil: `XML-PBook1 Addr` with `UserName`/`PassWd`; a `FanvilIPPhoneDirectory` like
//!   Yealink's;
//! - Poly: `<mac>-directory.xml` from its provisioning server, with its provisioning
//!   credentials; `<directory><item_list><item>` with `fn`/`ln` and `ct`;
//! - Snom (and the Gigaset P-series): a `<tbook>` of `item` `name`/`number` inside the settings
//!   file, taken at each settings fetch (`complete="true"` replaces the phone's directory);
//!   the Gigaset Nx70 bases take none (LDAP only).

use super::{AuthStyle, Handset, HandsetError, Url, fault};

/// Where a phone's phonebook is and how the phone asks for it.
#[derive(Debug, Clone)]
pub struct PhonebookSource {
    /// Its URL.
    pub url: Url,
    /// The credentials the phone answers a challenge with.
    pub credentials: Option<(String, String)>,
    /// How the phone authenticates.
    style: AuthStyle,
    /// The vendor, for errors.
    vendor: &'static str,
}

/// One entry as the phone shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhonebookLine {
    /// The name shown.
    pub name: String,
    /// The number dialled.
    pub number: String,
}

fn pair(
    settings: &std::collections::BTreeMap<String, String>,
    user: &str,
    pass: &str,
) -> Option<(String, String)> {
    Some((settings.get(user)?.clone(), settings.get(pass)?.clone()))
}

impl Handset {
    /// Where the phone's file told it its phonebook is; `None` when it set none. `mac` is the
    /// phone's own (Poly names the file by it).
    pub fn phonebook_source(&self, mac: &str) -> Option<PhonebookSource> {
        let (url, credentials, style, vendor) = match self {
            Handset::Yealink(p) => (
                Url::parse(p.settings.get("remote_phonebook.data.1.url")?)?,
                pair(
                    &p.settings,
                    "remote_phonebook.data.1.username",
                    "remote_phonebook.data.1.password",
                ),
                AuthStyle::Digest,
                "yealink",
            ),
            Handset::Grandstream(p) => {
                let scheme = match p.settings.get("P330")?.as_str() {
                    "1" => "http",
                    "3" => "https",
                    _ => return None,
                };
                let dir = Url::parse(&format!("{scheme}://{}", p.settings.get("P331")?))?;
                let credentials = pair(&p.settings, "P6713", "P6714");
                (
                    dir.join("phonebook.xml"),
                    credentials,
                    AuthStyle::Digest,
                    "grandstream",
                )
            }
            Handset::Fanvil(p) => {
                let key = |k: &str| format!("<PHONE FEATURE MODULE> XML-PBook1 {k}");
                let url = Url::parse(p.settings.get(&key("Addr"))?)?;
                (
                    url,
                    pair(&p.settings, &key("UserName"), &key("PassWd")),
                    AuthStyle::Basic,
                    "fanvil",
                )
            }
            Handset::Poly(p) => (
                p.server
                    .join(&format!("{}-directory.xml", mac.to_ascii_lowercase())),
                p.credentials.clone(),
                AuthStyle::Digest,
                "poly",
            ),
            Handset::Snom(_) | Handset::Gigaset(_) => return None,
        };
        Some(PhonebookSource {
            url,
            credentials,
            style,
            vendor,
        })
    }

    /// The phonebook as the phone shows it after its next refresh: Snom fetches its settings
    /// (which carry the tbook), the others their phonebook URL.
    pub async fn refreshed_phonebook(&mut self, mac: &str) -> Result<Vec<PhonebookLine>, HandsetError> {
        if let Handset::Snom(phone) = self {
            phone.provision().await?;
            return Ok(phone.tbook.clone());
        }
        self.fetch_phonebook(mac).await
    }

    /// Fetches the phonebook as the phone does and reads its entries.
    pub async fn fetch_phonebook(&self, mac: &str) -> Result<Vec<PhonebookLine>, HandsetError> {
        let source = self
            .phonebook_source(mac)
            .ok_or_else(|| fault("phonebook", "the phone's file sets no phonebook"))?;
        let body = self
            .http()
            .fetch_file(
                source.vendor,
                &source.url,
                source.credentials.as_ref(),
                source.style,
            )
            .await?
            .ok_or_else(|| fault(source.vendor, "the phonebook is not there (404)"))?;
        read_phonebook(source.vendor, &body)
    }
}

fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.children()
        .find(|c| c.has_tag_name(name))
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

/// The entries of a Snom `<tbook>` (its `item`s' `name` and `number`), in file order.
pub(super) fn tbook_items(tbook: roxmltree::Node<'_, '_>) -> Vec<PhonebookLine> {
    tbook
        .children()
        .filter(|n| n.has_tag_name("item"))
        .filter_map(|n| {
            Some(PhonebookLine {
                name: child_text(n, "name")?,
                number: child_text(n, "number")?,
            })
        })
        .collect()
}

/// The entries of a phonebook file in `vendor`'s format.
pub fn read_phonebook(vendor: &'static str, text: &str) -> Result<Vec<PhonebookLine>, HandsetError> {
    let doc =
        roxmltree::Document::parse(text).map_err(|e| fault(vendor, format!("phonebook is no XML: {e}")))?;
    let root = doc.root_element();
    let line = |name: Option<String>, number: Option<String>| {
        Some(PhonebookLine {
            name: name?,
            number: number?,
        })
    };
    let entries: Vec<PhonebookLine> = match (vendor, root.tag_name().name()) {
        ("yealink", "YealinkIPPhoneDirectory") | ("fanvil", "FanvilIPPhoneDirectory") => root
            .children()
            .filter(|n| n.has_tag_name("DirectoryEntry"))
            .filter_map(|n| line(child_text(n, "Name"), child_text(n, "Telephone")))
            .collect(),
        ("yealink", "YealinkIPPhoneBook") => root
            .descendants()
            .filter(|n| n.has_tag_name("Unit"))
            .filter_map(|n| {
                line(
                    n.attribute("Name").map(str::to_string),
                    n.attribute("Phone1").map(str::to_string),
                )
            })
            .collect(),
        ("grandstream", "AddressBook") => root
            .children()
            .filter(|n| n.has_tag_name("Contact"))
            .filter_map(|n| {
                let names: Vec<String> = ["FirstName", "LastName"]
                    .iter()
                    .filter_map(|t| child_text(n, t))
                    .collect();
                let phone = n.children().find(|c| c.has_tag_name("Phone"))?;
                line(
                    Some(names.join(" ")).filter(|s| !s.is_empty()),
                    child_text(phone, "phonenumber"),
                )
            })
            .collect(),
        ("poly", "directory") => root
            .descendants()
            .filter(|n| n.has_tag_name("item"))
            .filter_map(|n| {
                let names: Vec<String> = ["fn", "ln"].iter().filter_map(|t| child_text(n, t)).collect();
                line(
                    Some(names.join(" ")).filter(|s| !s.is_empty()),
                    child_text(n, "ct"),
                )
            })
            .collect(),
        ("snom" | "gigaset_p", "tbook") => tbook_items(root),
        (_, other) => {
            return Err(fault(
                vendor,
                format!("a phonebook with root <{other}> is not this vendor's"),
            ));
        }
    };
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_examples_read() {
        // docs/vendors/directory-and-keys.md's minimal examples.
        let yealink = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<YealinkIPPhoneDirectory>\n  <DirectoryEntry><Name>Anna Berg</Name><Telephone>+4970311234</Telephone></DirectoryEntry>\n</YealinkIPPhoneDirectory>";
        assert_eq!(
            read_phonebook("yealink", yealink).expect("yealink"),
            vec![PhonebookLine {
                name: "Anna Berg".into(),
                number: "+4970311234".into()
            }]
        );
        let grandstream = "<AddressBook><Contact><LastName>Berg</LastName><FirstName>Anna</FirstName><Phone><phonenumber>+4970311234</phonenumber><accountindex>0</accountindex></Phone></Contact></AddressBook>";
        assert_eq!(
            read_phonebook("grandstream", grandstream).expect("gs")[0].name,
            "Anna Berg"
        );
        let poly = "<directory><item_list><item><fn>Anna</fn><ln>Berg</ln><ct>+4970311234</ct></item><item><ln>Empfang</ln><ct>empfang</ct></item></item_list></directory>";
        assert_eq!(read_phonebook("poly", poly).expect("poly").len(), 2);
        assert!(
            read_phonebook("fanvil", yealink).is_err(),
            "another vendor's root"
        );
    }
}
