//! What a value must not contain to be written into any vendor's file as it is
//! (docs/vendors/*.md, "Value safety"). innoprov never alters a value to make it fit: a
//! ProvisioningPhone carrying one is refused with the field named, and a Devices value is
//! refused when the file is rendered. The reasons never quote the value (it may be a password).

/// Why a value cannot be written safely; `None` when it can.
pub fn check_value(value: &str) -> Result<(), &'static str> {
    if value.chars().any(char::is_control) {
        // A newline would add keys to a `key = value` file (Yealink, Fanvil).
        return Err("contains control characters");
    }
    if value.contains(['\u{2028}', '\u{2029}', '\u{85}']) {
        return Err("contains a Unicode line or paragraph separator");
    }
    if value.chars().any(is_noncharacter) {
        // XML 1.0 §2.2 excludes U+FFFE and U+FFFF (Snom, Grandstream); the others are
        // permanently unassigned and no phone renders them.
        return Err("contains a Unicode noncharacter (such as U+FFFE or U+FFFF)");
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        // Key = value parsers trim around the value (Yealink, Fanvil): the phone would use
        // another string than the one the PBX knows.
        return Err("starts or ends with white space, which the phones' parsers trim");
    }
    if value.eq_ignore_ascii_case("%NULL%") {
        return Err("is the token Yealink uses to clear a key instead of setting it");
    }
    let upper = value.to_ascii_uppercase();
    if upper.contains("<<END OF FILE>>") || upper.contains("<<VOIP CONFIG FILE>>") {
        return Err("contains a Fanvil file marker (<<END OF FILE>> or <<VOIP CONFIG FILE>>)");
    }
    if upper.starts_with('<') && upper.ends_with("MODULE>") {
        return Err("looks like a Fanvil module header (<... MODULE>)");
    }
    Ok(())
}

fn is_noncharacter(c: char) -> bool {
    let u = c as u32;
    (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_values_pass() {
        for ok in [
            "alice",
            "Alice Ämple & Co",
            "p<&>\"w'1 Ü",
            "pbx.example.com",
            "a#b",
            "日本語",
            "",
            "50% NULL",
        ] {
            assert_eq!(check_value(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn unsafe_values_are_refused_with_a_reason() {
        for bad in [
            "a\nb",
            "a\rb",
            "a\u{7f}",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{2029}",
            "a\u{fffe}",
            "\u{ffff}",
            "\u{fdd0}",
            "\u{1fffe}",
            " alice",
            "secret\t",
            "alice ",
            "\u{a0}x",
            "%NULL%",
            "%null%",
            "x<<END OF FILE>>",
            "<<voip config file>>",
            "<SIP CONFIG MODULE>",
        ] {
            let reason = check_value(bad).expect_err(bad);
            assert!(!reason.is_empty());
        }
    }
}
