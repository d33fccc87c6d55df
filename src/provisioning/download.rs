//! Who gets which file: the download path's decisions as a plain type (sans-IO).
//!
//! [`DownloadRequest`] holds what the HTTP edge knows of one request (file name, User-Agent,
//! client address, method, whether it carries credentials, whether its address is over its
//! miss limit). Its methods turn those facts, a phone's stored record and download state, the
//! credentials check and the clock into decisions: which route the name takes
//! ([`Route`]), which vendor serves it, whether it is served, challenged or refused
//! ([`Authorization`]), what the phone's download state must remember ([`AccessWrite`]), and
//! the audit outcome. The edge only reads the store, renders, and writes the answer; every
//! rule of interface.md "The phone side" is here and unit-tested without sockets.

use std::net::IpAddr;

use crate::config::IpNet;
use crate::mac::Mac;
use crate::phone::PhoneRecord;
use crate::provisioning::access::{Decision, PhoneAccess};
use crate::provisioning::vendor::{Candidate, FileKind, Vendors};

/// The file of the CAs phones are told to trust (`provisioning.trust_anchors`), by URL where
/// the vendor loads them so (Yealink's `static.trusted_certificates.url`).
pub const TRUST_ANCHORS_FILE: &str = "innoprov-ca.crt";

/// What the edge knows of one download request before it reads any phone.
#[derive(Debug, Clone, Copy)]
pub struct DownloadRequest<'a> {
    /// The file name after the provisioning path (may be empty or contain `/`: then it matches
    /// no vendor and is a miss).
    pub file: &'a str,
    /// The User-Agent, empty when absent: a hint that can only make us refuse.
    pub user_agent: &'a str,
    /// The client (behind a trusted proxy, the one it forwarded for): misses and nonces are
    /// counted against it.
    pub client: IpAddr,
    /// A HEAD: audited as a check, never enrols the phone or uses up a one-time hand-out.
    pub head: bool,
    /// The request carries an `Authorization` header: an address over its limit is still
    /// heard out, so a phone that proves itself is served behind a noisy NAT.
    pub has_authorization: bool,
    /// The client's address has missed too often this minute.
    pub over_miss_limit: bool,
}

/// A refusal and how it counts against the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 429: the address is over its miss limit (not counted again).
    TooMany,
    /// 404, counted as a miss (a scan, a wrong vendor, an unknown phone).
    Miss,
    /// 404 without a miss: a file this vendor's own boot sequence asks for.
    Probe {
        /// The vendor whose probe it is (for the debug log).
        vendor: String,
    },
}

/// Where a request goes before any phone is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The public CA file: the same for everyone, no lookup, no credentials.
    TrustAnchors,
    /// Refused without reading anything.
    Refuse(Refusal),
    /// A model-wide file (or a per-MAC file without secrets), rendered for the first of these
    /// vendors the User-Agent names, else the first.
    Common {
        /// The vendors whose patterns match, best first.
        candidates: Vec<Candidate>,
        /// The model the name carries.
        model: Option<String>,
        /// The MAC the name carries.
        mac: Option<Mac>,
    },
    /// A phone's remote phonebook (`phonebook/<mac>/phonebook.xml`, Poly's `<mac>-directory.xml`):
    /// read the phone, then [`DownloadRequest::authorize_phonebook`].
    Phonebook {
        /// The phone the name names.
        mac: Mac,
    },
    /// A phone's own file: read the phone, then [`DownloadRequest::choose_vendor`].
    Phone {
        /// The phone the name names.
        mac: Mac,
        /// The model the name carries.
        model: Option<String>,
        /// Every vendor whose patterns match.
        candidates: Vec<Candidate>,
    },
}

/// What the credentials the request carried proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// None were sent.
    Absent,
    /// They are the phone's provisioning credentials.
    Valid,
    /// Sent but wrong (or the phone has none): counted as a miss.
    Invalid,
}

impl Credentials {
    /// Whether they prove the phone.
    pub fn valid(self) -> bool {
        self == Credentials::Valid
    }
}

/// The enrolment rules of the service (`provisioning.enrolment_window_secs`,
/// `enrolment_once`, `enrol_from`).
#[derive(Debug, Clone, Copy)]
pub struct EnrolmentPolicy<'a> {
    /// How long after ProvisioningPhone (or an admin's reopening) a file is served without
    /// credentials.
    pub window_secs: u64,
    /// Hand a file out only once without credentials.
    pub once: bool,
    /// Networks a file may be handed out to without credentials (empty: any).
    pub enrol_from: &'a [IpNet],
}

/// Whether a phone's own file is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Serve it; `enrolling` when without credentials inside the window.
    Serve {
        /// Served without credentials.
        enrolling: bool,
    },
    /// 429: the address is over its limit and did not prove itself.
    TooMany,
    /// 401 with a fresh challenge, audited with `outcome`.
    Challenge {
        /// The audit outcome.
        outcome: &'static str,
        /// Counts as a miss (a refused enrolment from outside `enrol_from`).
        counts_miss: bool,
        /// Worth an info line (rate-limited per phone by the edge): why.
        reason: &'static str,
    },
}

/// What the phone's download state must remember after a serve, before the answer goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessWrite {
    /// Nothing.
    Nothing,
    /// The phone used its provisioning credentials: enrolment for this generation is over.
    Enrol {
        /// The address the file was handed out to without credentials, when another one:
        /// someone else may hold the phone's secrets, or the phone moved (flagged, not refused).
        handed_out_to_other: Option<String>,
    },
    /// The first credential-less serve of this generation: remembered (and with
    /// `enrolment_once` the last). A failure to write it refuses the file.
    HandOut {
        /// The client it goes to.
        to: String,
    },
}

impl AccessWrite {
    /// The write as a change of the stored state, for `generation`.
    pub fn apply(&self, access: &mut PhoneAccess, generation: u64) {
        match self {
            AccessWrite::Nothing => {}
            AccessWrite::Enrol { .. } => access.enrolled_generation = Some(generation),
            AccessWrite::HandOut { to } => {
                access.handed_out_generation = Some(generation);
                access.handed_out_to = Some(to.clone());
            }
        }
    }

    /// The audit outcome of a served file (200) after this write.
    pub fn outcome(&self, head: bool, enrolling: bool) -> String {
        match self {
            _ if head => "checked (HEAD)".into(),
            AccessWrite::Enrol {
                handed_out_to_other: Some(other),
            } => format!("enrolled (file was handed out to {other})"),
            AccessWrite::Enrol { .. } => "enrolled".into(),
            _ if enrolling => "served for enrolment".into(),
            _ => "served".into(),
        }
    }
}

impl DownloadRequest<'_> {
    /// A miss: 404 and counted, or 429 for an address already over its limit.
    pub fn miss(&self) -> Refusal {
        if self.over_miss_limit {
            Refusal::TooMany
        } else {
            Refusal::Miss
        }
    }

    /// A file that serves nobody here: no miss where a vendor's own boot sequence asks for it
    /// (also where the name is another vendor's file: a Snom asks for `<MAC>.xml`, a Gigaset
    /// base's own file), else a miss.
    pub fn probe_or_miss(&self, vendors: &Vendors) -> Refusal {
        match vendors.probe(self.file) {
            Some(vendor) => Refusal::Probe {
                vendor: vendor.name.clone(),
            },
            None => self.miss(),
        }
    }

    /// Where the request goes; `trust_anchors` when `provisioning.trust_anchors` is set.
    pub fn route(&self, vendors: &Vendors, trust_anchors: bool) -> Route {
        if self.file == TRUST_ANCHORS_FILE && trust_anchors {
            return Route::TrustAnchors;
        }
        if self.over_miss_limit && !self.has_authorization {
            return Route::Refuse(Refusal::TooMany);
        }
        if let Some(mac) = phonebook_mac(self.file) {
            return Route::Phonebook { mac };
        }
        let candidates = vendors.candidates(self.file);
        let Some(first) = candidates.first() else {
            return Route::Refuse(self.probe_or_miss(vendors));
        };
        // A model-wide file named by MAC (Poly's master `<mac>.cfg`) belongs to the vendor that
        // owns the MAC's OUI, even where another vendor's per-phone file has the same name.
        let by_oui = candidates.iter().find(|c| {
            matches!(&c.kind, FileKind::Common { mac: Some(mac), .. } if vendors.all()[c.vendor].owns_oui(mac))
        });
        if let Some(Candidate {
            kind: FileKind::Common { model, mac },
            ..
        }) = by_oui
        {
            return Route::Common {
                model: model.clone(),
                mac: *mac,
                candidates: by_oui.into_iter().cloned().collect(),
            };
        }
        match first.kind.clone() {
            FileKind::Common { model, mac } => Route::Common {
                candidates,
                model,
                mac,
            },
            FileKind::Phone { mac, model } => Route::Phone {
                mac,
                model,
                candidates,
            },
        }
    }

    /// The vendor (index into [`Vendors::all`]) that serves a phone's own file: the vendor an
    /// admin pinned, else the one owning the MAC's OUI; never one the User-Agent contradicts.
    /// A refusal comes with the reason for the log.
    pub fn choose_vendor(
        &self,
        vendors: &Vendors,
        candidates: &[Candidate],
        mac: &Mac,
        pinned: Option<&str>,
    ) -> Result<usize, (Refusal, &'static str)> {
        let all = vendors.all();
        let per_phone = || {
            candidates
                .iter()
                .filter(|c| matches!(c.kind, FileKind::Phone { .. }))
        };
        let chosen = match pinned {
            Some(pinned) => per_phone().find(|c| all[c.vendor].name == pinned),
            None => per_phone().find(|c| all[c.vendor].owns_oui(mac)),
        };
        let Some(vendor) = chosen.map(|c| c.vendor) else {
            return Err((self.probe_or_miss(vendors), "does not fit the phone's vendor"));
        };
        // The User-Agent is a hint, never an identity: it can only make us refuse.
        let ua = self.user_agent.to_ascii_lowercase();
        if !all[vendor].named_in_lowercase(&ua) && all.iter().any(|v| v.named_in_lowercase(&ua)) {
            return Err((self.miss(), "with another vendor's User-Agent"));
        }
        Ok(vendor)
    }

    /// Whether the phone's own file is served, given its record, its download state, what the
    /// credentials proved and the time.
    pub fn authorize(
        &self,
        record: &PhoneRecord,
        access: &PhoneAccess,
        credentials: Credentials,
        policy: &EnrolmentPolicy<'_>,
        now: u64,
    ) -> Authorization {
        if self.over_miss_limit && !credentials.valid() {
            return Authorization::TooMany;
        }
        match access.decide(record, now, policy.window_secs, policy.once, credentials.valid()) {
            Decision::Unauthorized => Authorization::Challenge {
                outcome: match credentials {
                    Credentials::Absent => "credentials required",
                    _ => "bad credentials",
                },
                counts_miss: false,
                reason: "credentials required",
            },
            // Secrets without credentials only to the phone networks: anyone else must
            // authenticate (401 with a challenge, as interface.md answers a request that needs
            // credentials), and the refusal counts as a miss.
            Decision::Serve { enrolling: true }
                if !policy.enrol_from.is_empty()
                    && !policy.enrol_from.iter().any(|net| net.contains(self.client)) =>
            {
                Authorization::Challenge {
                    outcome: "enrolment refused: address outside enrol_from",
                    counts_miss: true,
                    reason: "enrolment refused outside provisioning.enrol_from",
                }
            }
            Decision::Serve { enrolling } => Authorization::Serve { enrolling },
        }
    }

    /// Whether a phone's phonebook is served: only with the phone's own credentials, never
    /// inside the enrolment window without them (interface.md).
    pub fn authorize_phonebook(&self, credentials: Credentials) -> Authorization {
        match credentials {
            Credentials::Valid => Authorization::Serve { enrolling: false },
            _ if self.over_miss_limit => Authorization::TooMany,
            Credentials::Absent => Authorization::Challenge {
                outcome: "credentials required",
                counts_miss: false,
                reason: "credentials required for the phonebook",
            },
            Credentials::Invalid => Authorization::Challenge {
                outcome: "bad credentials",
                counts_miss: false,
                reason: "credentials required for the phonebook",
            },
        }
    }

    /// What a serve must record in the phone's download state first.
    pub fn access_write(
        &self,
        record: &PhoneRecord,
        access: &PhoneAccess,
        credentials: Credentials,
        enrolling: bool,
    ) -> AccessWrite {
        let generation = Some(record.generation);
        if self.head {
            AccessWrite::Nothing
        } else if credentials.valid() && !access.enrolled(record) {
            let client = self.client.to_string();
            AccessWrite::Enrol {
                handed_out_to_other: access
                    .handed_out_to
                    .clone()
                    .filter(|to| access.handed_out_generation == generation && *to != client),
            }
        } else if enrolling && access.handed_out_generation != generation {
            AccessWrite::HandOut {
                to: self.client.to_string(),
            }
        } else {
            AccessWrite::Nothing
        }
    }
}

/// The phone whose phonebook `file` names: `phonebook/<mac>/phonebook.xml`, or Poly's
/// contact directory `<mac>-directory.xml` (MAC in lower case, as the files name it).
pub fn phonebook_mac(file: &str) -> Option<Mac> {
    let mac = file
        .strip_prefix("phonebook/")
        .and_then(|rest| rest.strip_suffix("/phonebook.xml"))
        .or_else(|| file.strip_suffix("-directory.xml"))?;
    let plain = mac.len() == 12
        && mac
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    plain.then(|| mac.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::sample_record;

    const YEALINK_MAC: &str = "805ec0123456";

    fn request(file: &str) -> DownloadRequest<'_> {
        DownloadRequest {
            file,
            user_agent: "Yealink SIP-T54W 96.86.0.70",
            client: "192.0.2.10".parse().expect("ip"),
            head: false,
            has_authorization: false,
            over_miss_limit: false,
        }
    }

    fn vendors() -> Vendors {
        Vendors::builtin()
    }

    fn name_of(vendors: &Vendors, index: usize) -> &str {
        &vendors.all()[index].name
    }

    const POLICY: EnrolmentPolicy<'static> = EnrolmentPolicy {
        window_secs: 600,
        once: false,
        enrol_from: &[],
    };

    fn phone_route(req: &DownloadRequest<'_>) -> (Mac, Vec<Candidate>) {
        match req.route(&vendors(), false) {
            Route::Phone { mac, candidates, .. } => (mac, candidates),
            other => panic!("not a phone's file: {other:?}"),
        }
    }

    #[test]
    fn phonebooks_are_routed_by_mac_and_need_the_phones_credentials() {
        let all = vendors();
        let mac: Mac = YEALINK_MAC.parse().expect("mac");
        for file in [
            format!("phonebook/{YEALINK_MAC}/phonebook.xml"),
            format!("{YEALINK_MAC}-directory.xml"),
        ] {
            assert_eq!(
                request(&file).route(&all, false),
                Route::Phonebook { mac },
                "{file}"
            );
        }
        for file in [
            "phonebook/805EC0123456/phonebook.xml",
            "phonebook/805ec0123456/../phonebook.xml",
            "phonebook//phonebook.xml",
            "000000000000-directory.xmlx",
        ] {
            assert!(
                !matches!(request(file).route(&all, false), Route::Phonebook { .. }),
                "{file}"
            );
        }
        let req = request("phonebook/805ec0123456/phonebook.xml");
        assert_eq!(
            req.authorize_phonebook(Credentials::Valid),
            Authorization::Serve { enrolling: false }
        );
        assert!(matches!(
            req.authorize_phonebook(Credentials::Absent),
            Authorization::Challenge { .. }
        ));
        assert!(matches!(
            req.authorize_phonebook(Credentials::Invalid),
            Authorization::Challenge {
                outcome: "bad credentials",
                ..
            }
        ));
        let over = DownloadRequest {
            over_miss_limit: true,
            has_authorization: true,
            ..req
        };
        assert_eq!(
            over.authorize_phonebook(Credentials::Invalid),
            Authorization::TooMany
        );
    }

    #[test]
    fn the_trust_anchors_file_is_public_only_when_configured() {
        let req = request(TRUST_ANCHORS_FILE);
        assert_eq!(req.route(&vendors(), true), Route::TrustAnchors);
        assert_eq!(req.route(&vendors(), false), Route::Refuse(Refusal::Miss));
    }

    #[test]
    fn an_address_over_its_limit_is_refused_unless_it_brings_credentials() {
        let file = format!("{YEALINK_MAC}.cfg");
        let mut req = request(&file);
        req.over_miss_limit = true;
        assert_eq!(req.route(&vendors(), false), Route::Refuse(Refusal::TooMany));
        req.has_authorization = true;
        assert!(matches!(req.route(&vendors(), false), Route::Phone { .. }));
        // Heard out, but wrong credentials stay refused with 429.
        let record = sample_record(YEALINK_MAC, 1);
        let verdict = req.authorize(&record, &PhoneAccess::default(), Credentials::Invalid, &POLICY, 0);
        assert_eq!(verdict, Authorization::TooMany);
        let verdict = req.authorize(&record, &PhoneAccess::default(), Credentials::Valid, &POLICY, 0);
        assert_eq!(verdict, Authorization::Serve { enrolling: false });
    }

    #[test]
    fn a_scan_is_a_miss_and_a_boot_probe_is_not() {
        assert_eq!(
            request("../etc/passwd").route(&vendors(), false),
            Route::Refuse(Refusal::Miss)
        );
        assert_eq!(request("").route(&vendors(), false), Route::Refuse(Refusal::Miss));
        let mut over = request("wp-login.php");
        over.over_miss_limit = true;
        over.has_authorization = true;
        assert_eq!(over.route(&vendors(), false), Route::Refuse(Refusal::TooMany));
        // Snom's boot sequence asks for `snom.htm`, Yealink's for `y000000000000.boot`.
        for probe in ["snom.htm", "y000000000000.boot"] {
            assert!(
                matches!(
                    request(probe).route(&vendors(), false),
                    Route::Refuse(Refusal::Probe { .. })
                ),
                "{probe}"
            );
        }
    }

    #[test]
    fn polys_master_file_named_by_mac_is_polys_common_file() {
        let req = request("0004f2123456.cfg");
        match req.route(&vendors(), false) {
            Route::Common { candidates, mac, .. } => {
                assert_eq!(candidates.len(), 1);
                assert_eq!(name_of(&vendors(), candidates[0].vendor), "poly");
                assert_eq!(mac.map(|m| m.to_string()).as_deref(), Some("0004f2123456"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_phone_file_goes_to_the_vendor_owning_the_oui_or_the_pinned_one() {
        let all = vendors();
        let file = format!("{YEALINK_MAC}.cfg");
        let req = request(&file);
        let (mac, candidates) = phone_route(&req);
        assert_eq!(mac.to_string(), YEALINK_MAC);
        let chosen = req.choose_vendor(&all, &candidates, &mac, None).expect("yealink");
        assert_eq!(name_of(&all, chosen), "yealink");
        // Pinned to a vendor whose pattern does not match this name: refused.
        let refused = req.choose_vendor(&all, &candidates, &mac, Some("snom"));
        assert!(refused.is_err(), "{refused:?}");
    }

    #[test]
    fn a_file_for_an_unknown_oui_fits_no_vendor() {
        let all = vendors();
        let file = "001122334455.cfg";
        let req = request(file);
        let (mac, candidates) = phone_route(&req);
        let (refusal, reason) = req
            .choose_vendor(&all, &candidates, &mac, None)
            .expect_err("no vendor");
        assert_eq!(refusal, Refusal::Miss);
        assert_eq!(reason, "does not fit the phone's vendor");
    }

    #[test]
    fn another_vendors_user_agent_is_refused_an_unknown_one_is_not() {
        let all = vendors();
        let file = format!("{YEALINK_MAC}.cfg");
        let mut req = request(&file);
        let (mac, candidates) = phone_route(&req);
        req.user_agent = "snom D785/10.1.141.13";
        let (refusal, reason) = req
            .choose_vendor(&all, &candidates, &mac, None)
            .expect_err("refused");
        assert_eq!(
            (refusal, reason),
            (Refusal::Miss, "with another vendor's User-Agent")
        );
        req.user_agent = "curl/8.5";
        assert!(req.choose_vendor(&all, &candidates, &mac, None).is_ok());
        req.user_agent = "";
        assert!(req.choose_vendor(&all, &candidates, &mac, None).is_ok());
    }

    #[test]
    fn inside_the_window_the_file_is_handed_out_once_and_remembered() {
        let file = format!("{YEALINK_MAC}.cfg");
        let req = request(&file);
        let mut record = sample_record(YEALINK_MAC, 3);
        record.provisioned_at = 1_000;
        let access = PhoneAccess::default();
        let verdict = req.authorize(&record, &access, Credentials::Absent, &POLICY, 1_100);
        assert_eq!(verdict, Authorization::Serve { enrolling: true });
        let write = req.access_write(&record, &access, Credentials::Absent, true);
        assert_eq!(
            write,
            AccessWrite::HandOut {
                to: "192.0.2.10".into()
            }
        );
        assert_eq!(write.outcome(false, true), "served for enrolment");
        let mut stored = access.clone();
        write.apply(&mut stored, record.generation);
        assert_eq!(stored.handed_out_generation, Some(record.generation));
        // Served again without credentials: nothing more to remember.
        assert_eq!(
            req.access_write(&record, &stored, Credentials::Absent, true),
            AccessWrite::Nothing
        );
        // With enrolment_once, the second credential-less request is challenged.
        let once = EnrolmentPolicy { once: true, ..POLICY };
        let verdict = req.authorize(&record, &stored, Credentials::Absent, &once, 1_100);
        assert!(matches!(
            verdict,
            Authorization::Challenge {
                outcome: "credentials required",
                ..
            }
        ));
        // After the window, credentials are needed in any case.
        let verdict = req.authorize(&record, &access, Credentials::Absent, &POLICY, 1_700);
        assert!(matches!(
            verdict,
            Authorization::Challenge {
                counts_miss: false,
                ..
            }
        ));
        let verdict = req.authorize(&record, &access, Credentials::Invalid, &POLICY, 1_700);
        assert!(matches!(
            verdict,
            Authorization::Challenge {
                outcome: "bad credentials",
                ..
            }
        ));
    }

    #[test]
    fn the_first_fetch_with_credentials_enrols_and_flags_another_address() {
        let file = format!("{YEALINK_MAC}.cfg");
        let req = request(&file);
        let record = sample_record(YEALINK_MAC, 4);
        let handed = PhoneAccess {
            handed_out_generation: Some(record.generation),
            handed_out_to: Some("198.51.100.7".into()),
            ..PhoneAccess::default()
        };
        let write = req.access_write(&record, &handed, Credentials::Valid, false);
        assert_eq!(
            write,
            AccessWrite::Enrol {
                handed_out_to_other: Some("198.51.100.7".into())
            }
        );
        assert_eq!(
            write.outcome(false, false),
            "enrolled (file was handed out to 198.51.100.7)"
        );
        // Handed out to this same address: plainly enrolled.
        let same = PhoneAccess {
            handed_out_to: Some("192.0.2.10".into()),
            ..handed.clone()
        };
        let write = req.access_write(&record, &same, Credentials::Valid, false);
        assert_eq!(write.outcome(false, false), "enrolled");
        let mut stored = same;
        write.apply(&mut stored, record.generation);
        assert!(stored.enrolled(&record));
        // Once enrolled, later fetches write nothing and are "served".
        let write = req.access_write(&record, &stored, Credentials::Valid, false);
        assert_eq!(write, AccessWrite::Nothing);
        assert_eq!(write.outcome(false, false), "served");
        // And credential-less requests are challenged even inside the window.
        let verdict = req.authorize(
            &record,
            &stored,
            Credentials::Absent,
            &POLICY,
            record.provisioned_at,
        );
        assert!(matches!(verdict, Authorization::Challenge { .. }));
    }

    #[test]
    fn a_head_neither_enrols_nor_uses_up_the_hand_out() {
        let file = format!("{YEALINK_MAC}.cfg");
        let mut req = request(&file);
        req.head = true;
        let record = sample_record(YEALINK_MAC, 1);
        let access = PhoneAccess::default();
        assert_eq!(
            req.access_write(&record, &access, Credentials::Valid, false),
            AccessWrite::Nothing
        );
        assert_eq!(
            req.access_write(&record, &access, Credentials::Absent, true),
            AccessWrite::Nothing
        );
        assert_eq!(AccessWrite::Nothing.outcome(true, true), "checked (HEAD)");
    }

    #[test]
    fn enrolment_outside_enrol_from_is_challenged_and_counted() {
        let file = format!("{YEALINK_MAC}.cfg");
        let req = request(&file);
        let mut record = sample_record(YEALINK_MAC, 1);
        record.provisioned_at = 50;
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let policy = EnrolmentPolicy {
            enrol_from: &nets,
            ..POLICY
        };
        let verdict = req.authorize(&record, &PhoneAccess::default(), Credentials::Absent, &policy, 60);
        assert_eq!(
            verdict,
            Authorization::Challenge {
                outcome: "enrolment refused: address outside enrol_from",
                counts_miss: true,
                reason: "enrolment refused outside provisioning.enrol_from",
            }
        );
        // Inside the network, or with credentials from anywhere: served.
        let inside = DownloadRequest {
            client: "10.1.2.3".parse().expect("ip"),
            ..req
        };
        assert_eq!(
            inside.authorize(&record, &PhoneAccess::default(), Credentials::Absent, &policy, 60),
            Authorization::Serve { enrolling: true }
        );
        assert_eq!(
            req.authorize(&record, &PhoneAccess::default(), Credentials::Valid, &policy, 60),
            Authorization::Serve { enrolling: false }
        );
    }
}
