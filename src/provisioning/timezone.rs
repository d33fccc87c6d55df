//! POSIX time zones (the `tz` of Devices' NTP item, e.g. `CET-1CEST,M3.5.0,M10.5.0/3`) parsed
//! into offsets and daylight-saving rules, so that each vendor's template can write the zone
//! in the phone's own form (docs/vendors/*.md, "Time zone"). The grammar is POSIX.1-2017 §8.3
//! (`TZ`), with the common extensions: angle-quoted names (`<+0530>-5:30`) and transition
//! times outside 0..24 h (RFC 8536 §3.3.1).

use serde::Serialize;

/// A parsed POSIX `TZ` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PosixTz {
    /// Standard time's abbreviation (`CET`, `+0530`).
    pub std_name: String,
    /// Standard time's offset from UTC in seconds, east positive (POSIX counts west).
    pub std_offset: i32,
    /// Daylight saving time, when the zone has it.
    pub dst: Option<Dst>,
}

/// A zone's daylight saving time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dst {
    /// Its abbreviation (`CEST`).
    pub name: String,
    /// Its offset from UTC in seconds, east positive (default: standard + 1 h).
    pub offset: i32,
    /// When it starts, in standard (local) time.
    pub start: Transition,
    /// When it ends, in daylight (local) time.
    pub end: Transition,
}

/// A transition date and its local time of day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// The day.
    pub date: TransitionDate,
    /// Seconds after local midnight (may be negative or above 24 h).
    pub time: i32,
}

/// The day of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransitionDate {
    /// `Mm.w.d`: day `weekday` (0 = Sunday) of week `week` (1..4, 5 = last) of `month` (1..12).
    MonthWeekDay {
        /// Month, 1..12.
        month: u8,
        /// Week of the month, 1..5 (5 = the last).
        week: u8,
        /// Day of the week, 0 = Sunday .. 6.
        weekday: u8,
    },
    /// `Jn`: day 1..365, February 29 never counted.
    Julian(u16),
    /// `n`: day 0..365, February 29 counted in leap years.
    ZeroBased(u16),
}

/// Why a `TZ` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time zone {text:?}: {reason}")]
pub struct TzError {
    /// The value (a zone, never a secret).
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

struct Cursor<'a> {
    /// What is left to read of the POSIX TZ string.
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn name(&mut self) -> Result<String, &'static str> {
        if self.eat('<') {
            let end = self.rest.find('>').ok_or("unclosed '<' in a zone name")?;
            let name = &self.rest[..end];
            if name.len() < 3
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
            {
                return Err("a quoted zone name must be 3 or more letters, digits, '+' or '-'");
            }
            self.rest = &self.rest[end + 1..];
            return Ok(name.to_string());
        }
        let len = self.rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if len < 3 {
            return Err("a zone name must be 3 or more letters");
        }
        let name = &self.rest[..len];
        self.rest = &self.rest[len..];
        Ok(name.to_string())
    }

    fn number(&mut self, max: u32) -> Result<u32, &'static str> {
        let len = self.rest.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 || len > 3 {
            return Err("a number is missing or too long");
        }
        let value: u32 = self.rest[..len].parse().map_err(|_| "bad number")?;
        if value > max {
            return Err("a number is out of range");
        }
        self.rest = &self.rest[len..];
        Ok(value)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds; hours up to `max_hours`.
    fn hms(&mut self, max_hours: u32) -> Result<i32, &'static str> {
        let sign = if self.eat('-') {
            -1
        } else {
            self.eat('+');
            1
        };
        let mut seconds = self.number(max_hours)? * 3600;
        if self.eat(':') {
            seconds += self.number(59)? * 60;
            if self.eat(':') {
                seconds += self.number(59)?;
            }
        }
        Ok(sign * seconds as i32)
    }

    fn transition(&mut self) -> Result<Transition, &'static str> {
        let date = if self.eat('M') {
            let month = self.number(12)? as u8;
            if month == 0 || !self.eat('.') {
                return Err("a rule Mm.w.d needs a month 1..12");
            }
            let week = self.number(5)? as u8;
            if week == 0 || !self.eat('.') {
                return Err("a rule Mm.w.d needs a week 1..5");
            }
            let weekday = self.number(6)? as u8;
            TransitionDate::MonthWeekDay { month, week, weekday }
        } else if self.eat('J') {
            let day = self.number(365)? as u16;
            if day == 0 {
                return Err("a rule Jn needs a day 1..365");
            }
            TransitionDate::Julian(day)
        } else {
            TransitionDate::ZeroBased(self.number(365)? as u16)
        };
        let time = if self.eat('/') { self.hms(167)? } else { 2 * 3600 };
        Ok(Transition { date, time })
    }
}

impl PosixTz {
    /// Parses a POSIX `TZ` value.
    pub fn parse(text: &str) -> Result<PosixTz, TzError> {
        let error = |reason| TzError {
            text: text.chars().take(64).collect(),
            reason,
        };
        let mut c = Cursor { rest: text.trim() };
        let std_name = c.name().map_err(error)?;
        let std_offset = -c.hms(24).map_err(error)?;
        if c.rest.is_empty() {
            return Ok(PosixTz {
                std_name,
                std_offset,
                dst: None,
            });
        }
        let name = c.name().map_err(error)?;
        let offset = match c.peek() {
            Some(ch) if ch == '+' || ch == '-' || ch.is_ascii_digit() => -c.hms(24).map_err(error)?,
            _ => std_offset + 3600,
        };
        // No rule: POSIX leaves it to the implementation; glibc and the US use M3.2.0,M11.1.0.
        let (start, end) = if c.rest.is_empty() {
            let us = |month, week| Transition {
                date: TransitionDate::MonthWeekDay {
                    month,
                    week,
                    weekday: 0,
                },
                time: 2 * 3600,
            };
            (us(3, 2), us(11, 1))
        } else {
            if !c.eat(',') {
                return Err(error("expected ',' before the daylight saving rule"));
            }
            let start = c.transition().map_err(error)?;
            if !c.eat(',') {
                return Err(error("expected ',' between the two transitions"));
            }
            (start, c.transition().map_err(error)?)
        };
        if !c.rest.is_empty() {
            return Err(error("unexpected text after the zone"));
        }
        Ok(PosixTz {
            std_name,
            std_offset,
            dst: Some(Dst {
                name,
                offset,
                start,
                end,
            }),
        })
    }

    /// The zone written back in canonical POSIX form (every field explicit, times `hh:mm:ss`),
    /// the form Grandstream documents for its own zone strings.
    pub fn to_posix_explicit(&self) -> String {
        let name = |n: &str| {
            if n.bytes().all(|b| b.is_ascii_alphabetic()) {
                n.to_string()
            } else {
                format!("<{n}>")
            }
        };
        let mut out = format!("{}{}", name(&self.std_name), hms(-self.std_offset, false));
        if let Some(dst) = &self.dst {
            out.push_str(&format!(
                "{}{},{}/{},{}/{}",
                name(&dst.name),
                hms(-dst.offset, false),
                dst.start.date.posix(),
                hms(dst.start.time, true),
                dst.end.date.posix(),
                hms(dst.end.time, true),
            ));
        }
        out
    }
}

/// `-5:30`, `1`, or with `full` `02:00:00`.
fn hms(seconds: i32, full: bool) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    if full {
        format!("{sign}{h:02}:{m:02}:{sec:02}")
    } else if sec != 0 {
        format!("{sign}{h}:{m:02}:{sec:02}")
    } else if m != 0 {
        format!("{sign}{h}:{m:02}")
    } else {
        format!("{sign}{h}")
    }
}

impl TransitionDate {
    fn posix(&self) -> String {
        match self {
            TransitionDate::MonthWeekDay { month, week, weekday } => format!("M{month}.{week}.{weekday}"),
            TransitionDate::Julian(day) => format!("J{day}"),
            TransitionDate::ZeroBased(day) => day.to_string(),
        }
    }
}

/// Snom's `timezone` codes (docs/vendors/snom.md, "Time zone"): the code implies the DST rule,
/// so a zone maps only when offset and rule both match. (standard offset east in seconds,
/// DST rule as `start,end` in POSIX form or "" for none, code).
const SNOM_CODES: &[(i32, &str, &str)] = &[
    (3600, "M3.5.0/02:00:00,M10.5.0/03:00:00", "GER+1"),
    (0, "M3.5.0/01:00:00,M10.5.0/02:00:00", "GBR-0"),
    (7200, "M3.5.0/03:00:00,M10.5.0/04:00:00", "FIN+2"),
    (3 * 3600, "", "RUS+3"),
    (-5 * 3600, "M3.2.0/02:00:00,M11.1.0/02:00:00", "USA-5"),
    (-6 * 3600, "M3.2.0/02:00:00,M11.1.0/02:00:00", "USA-6"),
    (-7 * 3600, "M3.2.0/02:00:00,M11.1.0/02:00:00", "USA-7"),
    (-8 * 3600, "M3.2.0/02:00:00,M11.1.0/02:00:00", "USA-8"),
    (-7 * 3600, "", "USA2-7"),
    (5 * 3600 + 1800, "", "IND+5.5"),
    (9 * 3600, "", "JPN+9"),
    (10 * 3600, "M10.1.0/02:00:00,M4.1.0/03:00:00", "AUS+10"),
];

/// The DST rule of `tz` as `start,end` in POSIX form ("" for none); `None` when the clock
/// moves by other than an hour (no vendor's named zones cover that).
fn rule_key(tz: &PosixTz) -> Option<String> {
    match &tz.dst {
        None => Some(String::new()),
        Some(dst) if dst.offset - tz.std_offset == 3600 => Some(format!(
            "{}/{},{}/{}",
            dst.start.date.posix(),
            hms(dst.start.time, true),
            dst.end.date.posix(),
            hms(dst.end.time, true)
        )),
        Some(_) => None,
    }
}

/// Snom's code for `tz`, when one of its documented codes has the same offset and rule.
pub fn snom_code(tz: &PosixTz) -> Option<&'static str> {
    let rule = rule_key(tz)?;
    SNOM_CODES
        .iter()
        .find(|(offset, r, _)| *offset == tz.std_offset && *r == rule)
        .map(|(_, _, code)| *code)
}

/// The Gigaset Nx70's named zones (`DmGlobal.0.TimeZone`; docs/vendors/gigaset.md, "Time"):
/// the base accepts only names from its own list, so a zone maps to one of them when offset
/// and rule both match. (standard offset east in seconds, DST rule or "", zone name).
const GIGASET_ZONES: &[(i32, &str, &str)] = &[
    (0, "", "Greenwich"),
    (0, "M3.5.0/01:00:00,M10.5.0/02:00:00", "Europe/London"),
    (3600, "M3.5.0/02:00:00,M10.5.0/03:00:00", "Europe/Berlin"),
    (7200, "M3.5.0/03:00:00,M10.5.0/04:00:00", "Europe/Helsinki"),
    (3 * 3600, "", "Europe/Moscow"),
    (4 * 3600, "", "Asia/Dubai"),
    (5 * 3600, "", "Asia/Karachi"),
    (6 * 3600, "", "Asia/Dhaka"),
    (8 * 3600, "", "Asia/Hong_Kong"),
    (9 * 3600, "", "Asia/Tokyo"),
    (9 * 3600 + 1800, "", "Australia/Darwin"),
    (
        9 * 3600 + 1800,
        "M10.1.0/02:00:00,M4.1.0/03:00:00",
        "Australia/Adelaide",
    ),
    (10 * 3600, "", "Australia/Brisbane"),
    (10 * 3600, "M10.1.0/02:00:00,M4.1.0/03:00:00", "Australia/Sydney"),
    (11 * 3600, "", "Pacific/Noumea"),
    (-3 * 3600, "", "America/Sao_Paulo"),
    (-4 * 3600, "", "America/Caracas"),
    (-5 * 3600, "M3.2.0/02:00:00,M11.1.0/02:00:00", "America/New_York"),
    (-6 * 3600, "M3.2.0/02:00:00,M11.1.0/02:00:00", "America/Chicago"),
    (-7 * 3600, "M3.2.0/02:00:00,M11.1.0/02:00:00", "America/Denver"),
    (
        -8 * 3600,
        "M3.2.0/02:00:00,M11.1.0/02:00:00",
        "America/Los_Angeles",
    ),
    (-9 * 3600, "M3.2.0/02:00:00,M11.1.0/02:00:00", "America/Anchorage"),
    (-10 * 3600, "", "Pacific/Honolulu"),
];

/// The Gigaset zone name for `tz`, when one of the base's named zones has its offset and rule.
pub fn gigaset_zone(tz: &PosixTz) -> Option<&'static str> {
    let rule = rule_key(tz)?;
    GIGASET_ZONES
        .iter()
        .find(|(offset, r, _)| *offset == tz.std_offset && *r == rule)
        .map(|(_, _, zone)| *zone)
}

/// `+1`, `-5`, `+5:30`, `0`: an east-positive offset as phones write it.
pub fn offset_text(seconds: i32) -> String {
    if seconds == 0 {
        return "0".into();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    match s / 60 % 60 {
        0 => format!("{sign}{}", s / 3600),
        m => format!("{sign}{}:{m:02}", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mwd(month: u8, week: u8, weekday: u8, time: i32) -> Transition {
        Transition {
            date: TransitionDate::MonthWeekDay { month, week, weekday },
            time,
        }
    }

    #[test]
    fn europe_berlin() {
        for text in ["CET-1CEST,M3.5.0,M10.5.0/3", "CET-1CEST-2,M3.5.0/2,M10.5.0/3"] {
            let tz = PosixTz::parse(text).unwrap();
            assert_eq!(tz.std_offset, 3600);
            let dst = tz.dst.as_ref().unwrap();
            assert_eq!((dst.name.as_str(), dst.offset), ("CEST", 7200));
            assert_eq!(dst.start, mwd(3, 5, 0, 7200));
            assert_eq!(dst.end, mwd(10, 5, 0, 3 * 3600));
            assert_eq!(
                tz.to_posix_explicit(),
                "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00"
            );
        }
    }

    #[test]
    fn new_york_kolkata_tokyo_utc() {
        let ny = PosixTz::parse("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(ny.std_offset, -5 * 3600);
        assert_eq!(ny.dst.as_ref().unwrap().offset, -4 * 3600);
        assert_eq!(ny.dst.as_ref().unwrap().start, mwd(3, 2, 0, 7200));
        let kolkata = PosixTz::parse("IST-5:30").unwrap();
        assert_eq!((kolkata.std_offset, kolkata.dst), (5 * 3600 + 1800, None));
        assert_eq!(offset_text(kolkata.std_offset), "+5:30");
        let quoted = PosixTz::parse("<+0530>-5:30").unwrap();
        assert_eq!(quoted.std_name, "+0530");
        assert_eq!(quoted.to_posix_explicit(), "<+0530>-5:30");
        assert_eq!(PosixTz::parse("JST-9").unwrap().std_offset, 9 * 3600);
        assert_eq!(offset_text(PosixTz::parse("UTC0").unwrap().std_offset), "0");
        assert_eq!(offset_text(-5 * 3600), "-5");
        // No rule: the US default.
        let bare = PosixTz::parse("EST5EDT").unwrap();
        assert_eq!(bare.dst.unwrap().end, mwd(11, 1, 0, 7200));
    }

    #[test]
    fn other_rule_forms() {
        let tz = PosixTz::parse("<-03>3<-02>,M3.5.0/-2,M10.5.0/-1").unwrap();
        assert_eq!(tz.dst.as_ref().unwrap().start.time, -7200);
        let julian = PosixTz::parse("XXX3YYY,J60/2,300").unwrap();
        let dst = julian.dst.unwrap();
        assert_eq!(dst.start.date, TransitionDate::Julian(60));
        assert_eq!(dst.end.date, TransitionDate::ZeroBased(300));
    }

    #[test]
    fn snom_codes_need_offset_and_rule() {
        let code = |tz: &str| snom_code(&PosixTz::parse(tz).unwrap());
        assert_eq!(code("CET-1CEST,M3.5.0,M10.5.0/3"), Some("GER+1"));
        assert_eq!(code("EST5EDT,M3.2.0,M11.1.0"), Some("USA-5"));
        assert_eq!(code("IST-5:30"), Some("IND+5.5"));
        assert_eq!(code("JST-9"), Some("JPN+9"));
        assert_eq!(code("MST7"), Some("USA2-7"));
        assert_eq!(code("UTC0"), None, "no documented plain-UTC code");
        assert_eq!(code("CET-1"), None, "CET without DST is not Germany");
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            "",
            "garbage",
            "CET",
            "C-1",
            "CET-1CEST,M13.1.0,M10.5.0",
            "CET-1CEST,M3.5.0",
            "CET-1CEST,M3.5.7,M10.5.0",
            "CET-1 x",
            "<+05-5",
            "CET-99",
        ] {
            assert!(PosixTz::parse(bad).is_err(), "{bad:?}");
        }
    }
}
