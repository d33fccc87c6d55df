//! The remote phonebook in each vendor's format (docs/vendors/directory-and-keys.md, with the
//! sources): the PBX's users as [`PhonebookEntry`]s, written as the vendor documents them.
//! Every value is escaped for XML; control characters (which no phonebook shows and XML 1.0
//! forbids) are left out.

use serde::Deserialize;

use crate::pbx_users::PhonebookEntry;

/// A vendor's phonebook format (`phonebook` in vendors.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhonebookFormat {
    /// `YealinkIPPhoneDirectory` / `DirectoryEntry` / `Name`, `Telephone`.
    Yealink,
    /// Snom's `<tbook complete="true">` with `item` / `name`, `number` (Gigaset P-series too).
    Snom,
    /// Grandstream's `AddressBook` / `Contact` / `FirstName` / `Phone` / `phonenumber`.
    Grandstream,
    /// `FanvilIPPhoneDirectory` / `DirectoryEntry` / `Name`, `Telephone`.
    Fanvil,
    /// Poly's contact directory `<directory><item_list><item>` with `fn`, `ct`.
    Poly,
}

/// `text` escaped for XML element content and attribute values.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The phonebook of `entries` in `format`.
pub fn render(format: PhonebookFormat, entries: &[PhonebookEntry]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let (open, close) = match format {
        PhonebookFormat::Yealink => ("<YealinkIPPhoneDirectory>\n", "</YealinkIPPhoneDirectory>\n"),
        PhonebookFormat::Fanvil => ("<FanvilIPPhoneDirectory>\n", "</FanvilIPPhoneDirectory>\n"),
        PhonebookFormat::Snom => ("<tbook e=\"2\" complete=\"true\">\n", "</tbook>\n"),
        PhonebookFormat::Grandstream => ("<AddressBook>\n", "</AddressBook>\n"),
        PhonebookFormat::Poly => ("<directory>\n<item_list>\n", "</item_list>\n</directory>\n"),
    };
    out.push_str(open);
    for (index, entry) in entries.iter().enumerate() {
        let (name, number) = (xml_escape(&entry.name), xml_escape(&entry.number));
        let line = match format {
            PhonebookFormat::Yealink | PhonebookFormat::Fanvil => {
                format!(
                    "<DirectoryEntry><Name>{name}</Name><Telephone>{number}</Telephone></DirectoryEntry>\n"
                )
            }
            PhonebookFormat::Snom => format!(
                "<item context=\"active\" type=\"colleagues\" index=\"{index}\"><name>{name}</name><number>{number}</number></item>\n"
            ),
            PhonebookFormat::Grandstream => format!(
                "<Contact><FirstName>{name}</FirstName><Phone><phonenumber>{number}</phonenumber><accountindex>0</accountindex></Phone></Contact>\n"
            ),
            PhonebookFormat::Poly => format!("<item><fn>{name}</fn><ct>{number}</ct></item>\n"),
        };
        out.push_str(&line);
    }
    out.push_str(close);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<PhonebookEntry> {
        vec![
            PhonebookEntry {
                name: "Archer, Alice & Co <\"sales\">".into(),
                number: "201".into(),
            },
            PhonebookEntry {
                name: "Bob\u{7}".into(),
                number: "bob".into(),
            },
        ]
    }

    #[test]
    fn every_format_is_well_formed_xml_with_the_entries_escaped() {
        for format in [
            PhonebookFormat::Yealink,
            PhonebookFormat::Snom,
            PhonebookFormat::Grandstream,
            PhonebookFormat::Fanvil,
            PhonebookFormat::Poly,
        ] {
            let text = render(format, &entries());
            let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{format:?}: {e}\n{text}"));
            let texts: Vec<&str> = doc
                .descendants()
                .filter_map(|n| n.text())
                .map(str::trim)
                .collect();
            assert!(
                texts.contains(&"Archer, Alice & Co <\"sales\">"),
                "{format:?}: {text}"
            );
            assert!(
                texts.contains(&"Bob"),
                "the control character is left out: {text}"
            );
            assert!(texts.contains(&"201") && texts.contains(&"bob"), "{text}");
        }
    }

    #[test]
    fn the_vendors_documented_shapes() {
        let yealink = render(PhonebookFormat::Yealink, &entries()[..1]);
        assert!(yealink.contains(
            "<YealinkIPPhoneDirectory>\n<DirectoryEntry><Name>Archer, Alice &amp; Co &lt;&quot;sales&quot;&gt;</Name><Telephone>201</Telephone></DirectoryEntry>"
        ));
        let snom = render(PhonebookFormat::Snom, &entries());
        assert!(snom.contains("<tbook e=\"2\" complete=\"true\">"));
        assert!(snom.contains("index=\"1\"><name>Bob</name><number>bob</number></item>"));
        let grandstream = render(PhonebookFormat::Grandstream, &entries()[1..]);
        assert!(grandstream.contains(
            "<Contact><FirstName>Bob</FirstName><Phone><phonenumber>bob</phonenumber><accountindex>0</accountindex></Phone></Contact>"
        ));
        let poly = render(PhonebookFormat::Poly, &[]);
        assert_eq!(
            poly,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<directory>\n<item_list>\n</item_list>\n</directory>\n"
        );
    }
}
