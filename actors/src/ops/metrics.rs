//! Prometheus metrics (prometheus-client), all named `innoprov_`: what happened is counted where
//! it happens (logins, provisioning, links, downloads, store flushes); what the phones are doing
//! now is computed at each scrape from the registry. One set per process, like the process
//! itself; `/metrics` (admin_http) encodes it with the bearer token.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// One label: a name and a value, both fixed strings (no allocation per event).
pub type Label = (&'static str, &'static str);

/// Every counter and histogram of the process.
pub struct Metrics {
    /// Their registry (encoded at each scrape).
    registry: Registry,
    /// ProvisioningPhone answers, by outcome (`ok`, `failed`).
    pub provisioning: Family<[Label; 1], Counter>,
    /// Seconds from ProvisioningPhone to its `ok`.
    pub time_to_ok: Histogram,
    /// Phone downloads, by vendor and outcome.
    pub downloads: Family<[Label; 2], Counter>,
    /// Download answers by HTTP status.
    pub download_statuses: Family<[Label; 1], Counter>,
    /// Failed AppLogins and AppCheckLogins.
    pub login_failures: Counter,
    /// PbxInfo from an App object login that is not the configured or pinned PBX.
    pub pbx_refused: Counter,
    /// Admin requests (REST, /metrics) with a missing or wrong bearer token.
    pub admin_auth_failures: Counter,
    /// Connections not yet logged in that were closed to give their slot to another address.
    pub login_slots_evicted: Counter,
    /// Devices links back up after being down.
    pub link_reconnects: Counter,
    /// Seconds one store flush (group commit) took.
    pub store_flush: Histogram,
    /// Live changes of the PBX's user table taken (ReplicateAdd, Update, Del that changed it).
    pub user_table_changes: Counter,
    /// Phonebooks rendered (once per table change and format, however many phones fetch).
    pub phonebook_renders: Counter,
}

fn build() -> Metrics {
    let mut registry = Registry::with_prefix("innoprov");
    let provisioning = Family::<[Label; 1], Counter>::default();
    registry.register(
        "provisioning",
        "ProvisioningPhone answers by outcome",
        provisioning.clone(),
    );
    let time_to_ok = Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]);
    registry.register(
        "provisioning_time_to_ok_seconds",
        "Seconds from ProvisioningPhone to ok (record and complete Devices configuration stored)",
        time_to_ok.clone(),
    );
    let downloads = Family::<[Label; 2], Counter>::default();
    registry.register(
        "downloads",
        "Phone file downloads by vendor and outcome",
        downloads.clone(),
    );
    let download_statuses = Family::<[Label; 1], Counter>::default();
    registry.register(
        "download_responses",
        "Answers on the provisioning path by HTTP status (401, 404, 429, ...)",
        download_statuses.clone(),
    );
    let login_failures = Counter::default();
    registry.register(
        "login_failures",
        "Failed AppLogin and AppCheckLogin checks",
        login_failures.clone(),
    );
    let mut counter = |name: &str, help: &str| {
        let counter = Counter::default();
        registry.register(name, help, counter.clone());
        counter
    };
    let link_reconnects = counter("link_reconnects", "Devices links back up after being down");
    let pbx_refused = counter(
        "pbx_refused",
        "PbxInfo from an App object login that is not the configured or pinned PBX",
    );
    let admin_auth_failures = counter(
        "admin_auth_failures",
        "Admin requests (REST, /metrics) with a missing or wrong bearer token",
    );
    let login_slots_evicted = counter(
        "login_slots_evicted",
        "Connections not yet logged in closed to give their slot to another address",
    );
    let user_table_changes = counter(
        "user_table_changes",
        "Live changes of the PBX's user table taken (ReplicateAdd, Update, Del that changed it)",
    );
    let phonebook_renders = counter(
        "phonebook_renders",
        "Phonebooks rendered (once per table change and format, however many phones fetch)",
    );
    let store_flush = Histogram::new([0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0]);
    registry.register(
        "store_flush_seconds",
        "Seconds one store flush (group commit) took",
        store_flush.clone(),
    );
    Metrics {
        registry,
        provisioning,
        time_to_ok,
        downloads,
        download_statuses,
        login_failures,
        pbx_refused,
        admin_auth_failures,
        login_slots_evicted,
        link_reconnects,
        store_flush,
        user_table_changes,
        phonebook_renders,
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(build)
}

/// Counts a ProvisioningPhone answer (`ok` or `failed`).
pub fn provisioning(outcome: &'static str) {
    metrics()
        .provisioning
        .get_or_create(&[("outcome", outcome)])
        .inc();
}

/// The download outcomes' fixed names, "other" last.
const OUTCOME_KINDS: [&str; 10] = [
    "checked (HEAD)",
    "served for enrolment",
    "served",
    "enrolled",
    "not modified",
    "credentials required",
    "bad credentials",
    "render failed",
    "enrolment refused",
    "other",
];

/// The index of a download outcome's fixed name (audit outcomes may carry an address).
fn outcome_index(outcome: &str) -> usize {
    OUTCOME_KINDS[..OUTCOME_KINDS.len() - 1]
        .iter()
        .position(|k| outcome.starts_with(k))
        .unwrap_or(OUTCOME_KINDS.len() - 1)
}

/// The provisioning path's statuses' fixed texts, "other" last.
const STATUS_KINDS: [&str; 9] = ["200", "304", "400", "401", "404", "405", "429", "500", "other"];

/// The index of an HTTP status's fixed text.
fn status_index(status: u16) -> usize {
    match status {
        200 => 0,
        304 => 1,
        400 => 2,
        401 => 3,
        404 => 4,
        405 => 5,
        429 => 6,
        500 => 7,
        _ => 8,
    }
}

/// The download counters by index: each is looked up in its family once, on its first use
/// (so `/metrics` shows the same series as before), and after that a download counts
/// without hashing its labels under the family's lock, which every worker shares.
pub struct DownloadCounters {
    /// `innoprov_download_responses` by [`status_index`].
    statuses: [OnceLock<Counter>; STATUS_KINDS.len()],
    /// By vendor index, the vendor's name and its `innoprov_downloads` by [`outcome_index`].
    downloads: Vec<(&'static str, [OnceLock<Counter>; OUTCOME_KINDS.len()])>,
}

impl DownloadCounters {
    /// Counters for the vendors named `vendors`, by vendor index.
    pub fn new(vendors: Vec<&'static str>) -> DownloadCounters {
        DownloadCounters {
            downloads: vendors.into_iter().map(|v| (v, Default::default())).collect(),
            statuses: Default::default(),
        }
    }

    /// Counts an answer of the provisioning path by status.
    pub fn count_status(&self, status: u16) {
        let i = status_index(status);
        self.statuses[i]
            .get_or_init(|| {
                metrics()
                    .download_statuses
                    .get_or_create(&[("status", STATUS_KINDS[i])])
                    .clone()
            })
            .inc();
    }

    /// Counts a phone's download by vendor and outcome.
    pub fn count_download(&self, vendor_index: usize, outcome: &str) {
        let Some((vendor, slots)) = self.downloads.get(vendor_index) else {
            return;
        };
        let i = outcome_index(outcome);
        slots[i]
            .get_or_init(|| {
                metrics()
                    .downloads
                    .get_or_create(&[("vendor", *vendor), ("outcome", OUTCOME_KINDS[i])])
                    .clone()
            })
            .inc();
    }
}

impl Metrics {
    /// The text exposition of the counters and histograms, followed by `gauges` (already in
    /// the text format, computed by the caller at scrape time).
    pub fn encode(&self, gauges: &str) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text.push_str(gauges);
        text.push_str("# EOF\n");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_statuses_map_to_their_fixed_labels() {
        let kind = |o: &str| OUTCOME_KINDS[outcome_index(o)];
        assert_eq!(
            kind("served for enrolment"),
            "served for enrolment",
            "the longer name first"
        );
        assert_eq!(kind("served"), "served");
        assert_eq!(
            kind("enrolment refused: handed out to 10.0.0.7"),
            "enrolment refused"
        );
        assert_eq!(kind("something new"), "other");
        let status = |s: u16| STATUS_KINDS[status_index(s)];
        assert_eq!((status(200), status(429), status(503)), ("200", "429", "other"));
    }

    #[test]
    fn download_counters_count_into_the_families_series() {
        let counters = DownloadCounters::new(vec!["counters-test-vendor"]);
        let labels = [("vendor", "counters-test-vendor"), ("outcome", "not modified")];
        let before = metrics().downloads.get_or_create(&labels).get();
        counters.count_download(0, "not modified");
        counters.count_download(0, "not modified");
        counters.count_download(7, "served"); // no such vendor: nothing, no panic
        assert_eq!(metrics().downloads.get_or_create(&labels).get(), before + 2);
    }
}
