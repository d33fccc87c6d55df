//! The phones as the download handler reads them. Each phone's record is decoded once, with
//! its provisioning password opened and its rendered files beside it, and used while the
//! stored bytes are unchanged. On top of that, each worker thread keeps its own copy of a phone
//! it serves ([`WorkerPhone`]), used only while the store's write epoch is unchanged: two
//! workers serving one phone then share no lock or reference count for it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use innoprov::provisioning::PhoneAccess;
use innoprov::seal::SealPurpose;
use innoprov::store::Freshness;
use innoprov::{Mac, PhoneRecord, Sealer, Store};

/// Most rendered files kept in memory.
const MAX_CACHED: usize = 20_000;
/// Most phones each worker thread keeps its own copies for (see [`WorkerPhone`]).
const MAX_WORKER_PHONES: usize = 1_024;

thread_local! {
    /// The phones this worker thread served lately, by [`PhoneViews`] and MAC (see [`WorkerPhone`]).
    static WORKER_PHONES: RefCell<HashMap<(u64, Mac), Rc<WorkerPhone>>> = RefCell::new(HashMap::new());
}

/// Tells [`PhoneViews`] apart in [`WORKER_PHONES`] (tests run several services in one process).
static NEXT_STATE_ID: AtomicU64 = AtomicU64::new(0);

/// The phones' views, shared by the workers, and the key of this set in each worker's own.
pub struct PhoneViews {
    /// Where the phones are read.
    store: Arc<dyn Store>,
    /// Opens the provisioning passwords.
    sealer: Sealer,
    /// Decoded records and their rendered files, by MAC; an entry is used only while the
    /// stored bytes are unchanged, so every store write is seen at once.
    views: Mutex<HashMap<Mac, Arc<PhoneView>>>,
    /// This set's key in the worker threads' [`WORKER_PHONES`].
    id: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PhoneViews {
    /// The views of the phones in `store`, their passwords opened with `sealer`.
    pub fn new(store: Arc<dyn Store>, sealer: Sealer) -> PhoneViews {
        PhoneViews {
            store,
            sealer,
            views: Mutex::default(),
            id: NEXT_STATE_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The phone's view and download state as last checked, while the store's write epoch is
    /// unchanged since: the common download reads nothing from the store.
    pub fn cached(&self, mac: &Mac) -> Option<Checked> {
        let epoch = self.store.write_epoch();
        let view = lock(&self.views).get(mac).cloned()?;
        let access = {
            let checked = lock(&view.checked);
            (checked.0 == epoch).then(|| checked.1.clone())?
        };
        Some((epoch, view, access))
    }

    /// The phone's view and download state, re-read only when the store has been written since.
    /// Blocks on the store: callers run it off the actix workers.
    pub fn current(&self, mac: &Mac) -> Result<Option<Checked>, innoprov::StoreError> {
        // Read the epoch before the data: a write in between only causes one more re-read.
        let epoch = self.store.write_epoch();
        if let Some(found) = self.cached(mac) {
            return Ok(Some(found));
        }
        let Some(view) = self.view(mac)? else {
            return Ok(None);
        };
        let access = self.store.get_access(mac)?;
        *lock(&view.checked) = (epoch, access.clone());
        Ok(Some((epoch, view, access)))
    }

    /// This worker thread's copy of the phone, while the store's write epoch is unchanged.
    pub fn worker_phone(&self, mac: Mac) -> Option<Rc<WorkerPhone>> {
        let epoch = self.store.write_epoch();
        WORKER_PHONES.with_borrow(|phones| {
            phones
                .get(&(self.id, mac))
                .filter(|phone| phone.epoch == epoch)
                .cloned()
        })
    }

    /// Keeps `checked` as this worker thread's copy of the phone (its renders are kept while
    /// the view is the same).
    pub fn keep_on_worker(&self, mac: Mac, (epoch, view, access): Checked) -> Rc<WorkerPhone> {
        WORKER_PHONES.with_borrow_mut(|phones| {
            let renders = match phones.remove(&(self.id, mac)) {
                Some(old) if Arc::ptr_eq(&old.view, &view) => old.renders.take(),
                _ => Vec::new(),
            };
            if phones.len() >= MAX_WORKER_PHONES {
                phones.clear();
            }
            let phone = Rc::new(WorkerPhone {
                epoch,
                view,
                access,
                renders: RefCell::new(renders),
            });
            phones.insert((self.id, mac), Rc::clone(&phone));
            phone
        })
    }

    /// Forgets this worker thread's copy of a phone the store no longer has.
    pub fn forget_on_worker(&self, mac: Mac) {
        WORKER_PHONES.with_borrow_mut(|phones| phones.remove(&(self.id, mac)));
    }

    /// The phone's current view: the cached one while the stored bytes are unchanged.
    fn view(&self, mac: &Mac) -> Result<Option<Arc<PhoneView>>, innoprov::StoreError> {
        let cached = lock(&self.views).get(mac).cloned();
        let raw = match &cached {
            Some(view) => match self.store.phone_changed(mac, &view.raw)? {
                Freshness::Unchanged => return Ok(cached),
                Freshness::Changed(raw) => raw,
                Freshness::Missing => {
                    lock(&self.views).remove(mac);
                    return Ok(None);
                }
            },
            None => match self.store.get_phone_bytes(mac)? {
                Some(raw) => raw,
                None => return Ok(None),
            },
        };
        let record = innoprov::store::decode_record(mac, &raw)?;
        let prov_password = record
            .prov_password
            .as_ref()
            .and_then(|sealed| self.sealer.open(sealed, &SealPurpose::ProvPassword(*mac)).ok());
        let basic_header = prov_password.as_ref().map(|p| {
            use base64::Engine;
            let token = format!("{}:{}", record.prov_username, p.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(token)
            )
        });
        let view = Arc::new(PhoneView {
            raw,
            record,
            prov_password,
            basic_header,
            renders: Mutex::new(Vec::new()),
            logged_version: std::sync::atomic::AtomicU64::new(u64::MAX),
            denial_logged: std::sync::atomic::AtomicU64::new(0),
            checked: Mutex::new((u64::MAX, Default::default())),
        });
        let mut views = lock(&self.views);
        if views.len() >= MAX_CACHED {
            views.clear();
        }
        views.insert(*mac, Arc::clone(&view));
        Ok(Some(view))
    }
}

/// A phone as one worker thread serves it while the store is unchanged: the view and download
/// state as checked at `epoch`, and this thread's own copies of its rendered files. With the
/// two workers serving one phone, every reference count and lock they shared moved between the
/// cores on each download, which cost more than the rest of the download's own work.
pub struct WorkerPhone {
    /// The store's write epoch at which `view` and `access` were checked.
    epoch: u64,
    /// The phone's record and what is derived from it (shared by the workers).
    pub view: Arc<PhoneView>,
    /// Its download state at `epoch`.
    pub access: PhoneAccess,
    /// This thread's copies of the phone's rendered files.
    pub renders: RefCell<Vec<WorkerRender>>,
}

/// One worker thread's copy of a rendered file.
pub struct WorkerRender {
    /// What the file was rendered for (the download handler's render key).
    pub key: Vec<u8>,
    /// The file with its headers.
    pub answer: Answer,
}

/// A phone's file with the headers it goes with, as one worker thread sends it.
#[derive(Clone)]
pub struct Answer {
    /// The file.
    pub body: Bytes,
    /// Its ETag.
    pub etag: HeaderValue,
    /// Its vendor's content type.
    pub content_type: HeaderValue,
}

impl WorkerRender {
    /// A copy of `shared` in memory of this thread's own.
    pub fn copy_of(key: Vec<u8>, shared: &Rendered, content_type: &HeaderValue) -> WorkerRender {
        let own =
            |value: &HeaderValue| HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        let answer = Answer {
            body: Bytes::copy_from_slice(&shared.body),
            etag: own(&shared.etag),
            content_type: own(content_type),
        };
        WorkerRender { key, answer }
    }
}

/// A phone as last read from the store, with what is derived from it.
pub struct PhoneView {
    /// The stored bytes this view was decoded from.
    raw: Vec<u8>,
    /// The record.
    pub record: PhoneRecord,
    /// Its provisioning password, opened once.
    pub prov_password: Option<innoprov::Secret>,
    /// The `Authorization: Basic ...` value its credentials make.
    pub basic_header: Option<String>,
    /// Rendered files by their whole key (the download handler's render key: never a hash of
    /// it, or a client choosing its Host could aim at another's render), each with its URL.
    pub renders: Mutex<Vec<(Vec<u8>, String, Rendered)>>,
    /// The store's write epoch at which this view and the download state beside it were last
    /// checked: while the epoch is unchanged, a download reads nothing from the store.
    checked: Mutex<(u64, innoprov::provisioning::PhoneAccess)>,
    /// The configuration version last logged as served, to log once per version.
    pub logged_version: std::sync::atomic::AtomicU64,
    /// When (Unix seconds) a refused request for this phone was last logged at info level.
    pub denial_logged: std::sync::atomic::AtomicU64,
}

/// A phone's view and download state with the store's write epoch they were checked at.
pub type Checked = (u64, Arc<PhoneView>, PhoneAccess);

/// A rendered file and its ETag.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The file.
    pub body: Bytes,
    /// Its ETag, as the header value it is sent in (built once, not on every answer).
    pub etag: HeaderValue,
}
