//! The store: stored answers in memory under a byte cap (quick_cache's S3-FIFO with a weigher,
//! std's SipHash so that client-chosen keys cannot be made to collide), the variants of an
//! answer that `Vary`s, request coalescing (one request to the replicas per key at a time,
//! the others wait a bounded time for its result), purges by service and path prefix, and
//! the budget of bytes that answers being read for the store may hold at once ([`FillPermit`]).
//! Knows nothing of sockets or of how answers are fetched: the caller fetches, asks
//! [`crate::policy::storable`], and inserts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{OptionsBuilder, Weighter};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::policy::{self, Freshness, Normalizer, State};

/// A stored answer: what the client gets, with what the cache needs to judge it.
#[derive(Debug)]
pub struct Object {
    pub status: u16,
    /// The answer's headers as the replica sent them (hop-by-hop ones removed).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The service it came from (what `purge --service` matches).
    pub service: String,
    /// The request path (what a purge's prefix matches).
    pub path: String,
    pub stored_at: Instant,
    pub freshness: Freshness,
    /// Set while one request refreshes it (stale-while-revalidate): only one does.
    refreshing: AtomicBool,
}

impl Object {
    pub fn new(
        status: u16,
        headers: HeaderMap,
        body: Bytes,
        service: &str,
        path: &str,
        freshness: Freshness,
        now: Instant,
    ) -> Self {
        Self {
            status,
            headers,
            body,
            service: service.to_string(),
            path: path.to_string(),
            stored_at: now,
            freshness,
            refreshing: AtomicBool::new(false),
        }
    }

    /// Its age now (RFC 9111 4.2.3 `current_age`).
    pub fn age(&self, now: Instant) -> Duration {
        self.freshness
            .initial_age
            .saturating_add(now.saturating_duration_since(self.stored_at))
    }

    pub fn state(&self, now: Instant) -> State {
        self.freshness
            .state(now.saturating_duration_since(self.stored_at))
    }

    /// Claims the one background refresh of a stale object; false when another request has it.
    pub fn claim_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// Gives the claim back (the refresh failed; a later request may try again).
    pub fn release_refresh(&self) {
        self.refreshing.store(false, Ordering::Release);
    }

    /// What it weighs against `max_size`.
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        (self.body.len() + headers + self.path.len() + self.service.len() + 128) as u64
    }
}

/// What the cache holds under a key: an answer, or, under the key of a URL whose answers
/// `Vary`, the request headers they vary on (the variants are under keys that add their
/// values and this marker's nonce, so a new marker orphans the old variants).
#[derive(Debug, Clone)]
enum Slot {
    Object(Arc<Object>),
    Vary(Arc<VaryMarker>),
}

#[derive(Debug)]
struct VaryMarker {
    names: Vec<HeaderName>,
    nonce: u64,
    service: String,
    path: String,
}

#[derive(Clone)]
struct Weigh;

impl Weighter<String, Slot> for Weigh {
    fn weight(&self, key: &String, slot: &Slot) -> u64 {
        key.len() as u64
            + match slot {
                Slot::Object(object) => object.weight(),
                Slot::Vary(marker) => {
                    64 + marker.names.len() as u64 * 24 + marker.path.len() as u64
                }
            }
    }
}

/// Counters of what the cache did, for the edge's Prometheus text.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale: AtomicU64,
    /// Requests under a rule that did not use the cache (method, Authorization, Range...).
    pub bypasses: AtomicU64,
    /// Misses that waited for another request's answer instead of asking the replicas.
    pub coalesced: AtomicU64,
    pub stored: AtomicU64,
    /// Answers not stored (policy or size).
    pub not_stored: AtomicU64,
    pub revalidated: AtomicU64,
    pub purged: AtomicU64,
    /// Fills that passed their answer through because the fill budget was spent.
    pub over_budget: AtomicU64,
}

/// A key's place in line for the replicas: the first miss leads (asks the replicas), the
/// others follow (wait for it).
pub enum Flight {
    Leader(FlightGuard),
    Follower(watch::Receiver<bool>),
}

/// Held by the one request that fetches a key; dropping it (stored or not, failed or not)
/// wakes the followers, who look again.
pub struct FlightGuard {
    store: Arc<StoreInner>,
    key: String,
    done: watch::Sender<bool>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.store
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        let _ = self.done.send(true);
    }
}

/// Waits (at most `limit`) for the leader of a key to finish; false on timeout.
pub async fn follow(mut done: watch::Receiver<bool>, limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, done.wait_for(|d| *d)).await,
        Ok(Ok(_))
    ) || *done.borrow()
}

struct StoreInner {
    inflight: Mutex<HashMap<String, watch::Receiver<bool>>>,
}

/// Bytes held, while it is read, by one answer on its way into the store (a fill), counted
/// against the store's fill budget ([`Store::fill_budget`]); given back on drop. A fill that
/// cannot grow its permit stops buffering and passes its answer through; whoever holds the
/// bytes already read keeps the permit until they are gone.
#[derive(Debug, Default)]
pub struct FillPermit(Option<OwnedSemaphorePermit>);

impl FillPermit {
    /// Bytes it holds.
    pub fn bytes(&self) -> u64 {
        self.0.as_ref().map_or(0, |p| p.num_permits() as u64)
    }
}

/// The in-memory cache of one edge.
pub struct Store {
    cache: Cache<String, Slot, Weigh, std::hash::RandomState, DefaultLifecycle<String, Slot>>,
    inner: Arc<StoreInner>,
    normalizers: Vec<(HeaderName, Normalizer)>,
    max_size: u64,
    pub max_object: u64,
    pub stats: Stats,
    /// Bytes of fills in flight, at most: fills are outside the byte cap until stored.
    fills: Arc<Semaphore>,
    fill_budget: u64,
    /// Purges so far; held for writing while a purge runs, for reading while a fill inserts.
    purges: RwLock<Purges>,
}

/// How many purges there were, of all services and of each: a fill that started before a
/// purge of its service must not store its (old) answer after it.
#[derive(Default)]
struct Purges {
    all: u64,
    services: HashMap<String, u64>,
}

impl Purges {
    fn generation(&self, service: &str) -> u64 {
        self.all + self.services.get(service).copied().unwrap_or(0)
    }
}

impl Store {
    /// A store of at most `max_size` bytes that keeps objects of at most `max_object`. The
    /// `Accept-Encoding` of keys is normalised with [`policy::accept_encoding_choice`].
    pub fn new(max_size: u64, max_object: u64) -> Self {
        // quick_cache splits its capacity among shards and refuses an item heavier than a
        // shard's hot part: enough shards for concurrency, few enough that the largest
        // object (headers and key included) fits in one.
        let per_object = max_object.saturating_add(64 * 1024).max(1);
        let mut shards = 1usize;
        while shards < 16 && max_size / (shards as u64 * 2) >= per_object * 2 {
            shards *= 2;
        }
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity((max_size / 16_384).clamp(64, 1 << 20) as usize)
            .weight_capacity(max_size)
            .build()
            .expect("valid cache options");
        Self {
            cache: Cache::with_options(
                options,
                Weigh,
                std::hash::RandomState::new(),
                DefaultLifecycle::default(),
            ),
            inner: Arc::new(StoreInner {
                inflight: Mutex::new(HashMap::new()),
            }),
            normalizers: vec![(
                http::header::ACCEPT_ENCODING,
                policy::accept_encoding_choice as Normalizer,
            )],
            max_size,
            max_object,
            stats: Stats::default(),
            fills: Arc::new(Semaphore::new(budget_permits(Self::default_fill_budget(
                max_size, max_object,
            )))),
            fill_budget: Self::default_fill_budget(max_size, max_object),
            purges: RwLock::new(Purges::default()),
        }
    }

    /// The purge generation of `service`: what a fill notes when it starts, for
    /// [`Store::insert_since`].
    pub fn generation(&self, service: &str) -> u64 {
        self.purges
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation(service)
    }

    /// [`Store::insert`], unless its service was purged since `generation` was noted (the
    /// answer may be from before the purge): then None, not stored.
    pub fn insert_since(
        &self,
        generation: u64,
        primary: &str,
        request: &HeaderMap,
        object: Object,
    ) -> Option<Arc<Object>> {
        let purges = self.purges.read().unwrap_or_else(|e| e.into_inner());
        if purges.generation(&object.service) != generation {
            self.stats.not_stored.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Inserted under the read lock: a purge waits for it, then removes it.
        self.insert(primary, request, object)
    }

    /// The default fill budget: a quarter of `max_size`, and at least one `max_object`.
    pub fn default_fill_budget(max_size: u64, max_object: u64) -> u64 {
        (max_size / 4).max(max_object)
    }

    /// Sets the bytes that answers being read for the store may hold at once.
    pub fn set_fill_budget(&mut self, bytes: u64) {
        self.fills = Arc::new(Semaphore::new(budget_permits(bytes)));
        self.fill_budget = bytes;
    }

    pub fn fill_budget(&self) -> u64 {
        self.fill_budget
    }

    /// Grows `permit` by `bytes` from the fill budget; false (the permit unchanged) when the
    /// budget has not that much left: the fill then passes its answer through unstored.
    pub fn reserve_fill(&self, permit: &mut FillPermit, bytes: u64) -> bool {
        let Ok(n) = u32::try_from(bytes) else {
            return false;
        };
        match self.fills.clone().try_acquire_many_owned(n) {
            Ok(more) => {
                match permit.0.as_mut() {
                    Some(held) => held.merge(more),
                    None => permit.0 = Some(more),
                }
                true
            }
            Err(_) => {
                self.stats.over_budget.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Sets how the values of request header `name` are normalised in keys (the hook for the
    /// compressing edge: `Accept-Encoding` → the encoding it would choose).
    pub fn set_normalizer(&mut self, name: HeaderName, normalizer: Normalizer) {
        self.normalizers.retain(|(n, _)| n != name);
        self.normalizers.push((name, normalizer));
    }

    /// Whether the values of request header `name` are normalised in keys.
    pub fn normalizes(&self, name: &HeaderName) -> bool {
        self.normalizers.iter().any(|(n, _)| n == name)
    }

    /// Keys hold request header `name`'s values as they are (trimmed): no normalisation.
    pub fn keep_exact(&mut self, name: &HeaderName) {
        self.normalizers.retain(|(n, _)| n != name);
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Entries (answers and `Vary` markers) and the bytes they weigh.
    pub fn usage(&self) -> (usize, u64) {
        (self.cache.len(), self.cache.weight())
    }

    /// The key of the variant a request asks for: `primary` plus the marker's nonce and the
    /// (normalised) values of the headers it varies on.
    fn variant_key(&self, primary: &str, marker: &VaryMarker, request: &HeaderMap) -> String {
        let mut key = String::with_capacity(primary.len() + 32);
        key.push_str(primary);
        key.push_str("\n#");
        key.push_str(&marker.nonce.to_string());
        for name in &marker.names {
            key.push('\n');
            key.push_str(name.as_str());
            key.push('=');
            let value = joined(request, name);
            match self.normalizers.iter().find(|(n, _)| n == name) {
                Some((_, normalize)) => key.push_str(&normalize(&value)),
                None => key.push_str(value.trim()),
            }
        }
        key
    }

    /// The key a request's answer is (or would be) under, and what is stored there. Expired
    /// objects without validators are dropped here.
    pub fn lookup(
        &self,
        primary: &str,
        request: &HeaderMap,
        now: Instant,
    ) -> (String, Option<Arc<Object>>) {
        let (key, slot) = match self.cache.get(primary) {
            Some(Slot::Vary(marker)) => {
                let key = self.variant_key(primary, &marker, request);
                let slot = self.cache.get(&key);
                (key, slot)
            }
            other => (primary.to_string(), other),
        };
        match slot {
            Some(Slot::Object(object)) if !policy::accepts_coding(request, &object.headers) => {
                // Keyed alike, but in a coding this client does not take: fetched again.
                (key, None)
            }
            Some(Slot::Object(object)) => {
                let keep = object.state(now) != State::Expired || has_validators(&object.headers);
                if keep {
                    (key, Some(object))
                } else {
                    self.cache.remove(&key);
                    (key, None)
                }
            }
            _ => (key, None),
        }
    }

    /// Joins the line for `key`: the first request leads, the others follow.
    pub fn join(&self, key: &str) -> Flight {
        let mut inflight = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(done) = inflight.get(key) {
            return Flight::Follower(done.clone());
        }
        let (done, receiver) = watch::channel(false);
        inflight.insert(key.to_string(), receiver);
        Flight::Leader(FlightGuard {
            store: self.inner.clone(),
            key: key.to_string(),
            done,
        })
    }

    /// Whether an answer in its `Content-Encoding` may be stored for `request`: `identity` (or
    /// none) always; another coding only when the request accepts it and, where the answer
    /// `Vary`s on a normalised `Accept-Encoding`, not in the identity variant. A replica that
    /// ignores q-values (`gzip;q=0`), or answers `x-gzip` with gzip, would otherwise put a gzip
    /// body in the identity variant. A gzip body in the `br` variant (an application that
    /// compresses itself, for a browser that takes both) is stored: refusing it would leave
    /// such applications uncached for every browser, and [`policy::accepts_coding`] keeps it
    /// from a client that does not take gzip.
    pub fn coding_fits(&self, request: &HeaderMap, response: &HeaderMap) -> bool {
        let compressed = response
            .get(http::header::CONTENT_ENCODING)
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|c| !c.is_empty() && c != "identity");
        if !compressed {
            return true;
        }
        if !policy::accepts_coding(request, response) {
            return false;
        }
        let name = http::header::ACCEPT_ENCODING;
        let varies = policy::vary_names(response).is_some_and(|names| names.contains(&name));
        match self.normalizers.iter().find(|(n, _)| *n == name) {
            Some((_, normalize)) if varies => normalize(&joined(request, &name)) != "identity",
            _ => true,
        }
    }

    /// Stores an answer to `request` under `primary` (and, when it `Vary`s, under its
    /// variant's key). Objects over `max_object`, or in a coding that does not fit the variant
    /// ([`Store::coding_fits`]), are refused (None).
    pub fn insert(
        &self,
        primary: &str,
        request: &HeaderMap,
        object: Object,
    ) -> Option<Arc<Object>> {
        if object.body.len() as u64 > self.max_object || !self.coding_fits(request, &object.headers)
        {
            self.stats.not_stored.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let names = policy::vary_names(&object.headers)?;
        let object = Arc::new(object);
        if names.is_empty() {
            self.cache
                .insert(primary.to_string(), Slot::Object(object.clone()));
        } else {
            let marker = match self.cache.get(primary) {
                Some(Slot::Vary(marker)) if marker.names == names => marker,
                _ => {
                    let marker = Arc::new(VaryMarker {
                        names,
                        nonce: rand_nonce(),
                        service: object.service.clone(),
                        path: object.path.clone(),
                    });
                    self.cache
                        .insert(primary.to_string(), Slot::Vary(marker.clone()));
                    marker
                }
            };
            let key = self.variant_key(primary, &marker, request);
            self.cache.insert(key, Slot::Object(object.clone()));
        }
        self.stats.stored.fetch_add(1, Ordering::Relaxed);
        Some(object)
    }

    /// Forgets what is stored for a URL (its `Vary` marker orphans the variants): after an
    /// unsafe method's non-error answer (RFC 9111 4.4).
    pub fn invalidate(&self, primary: &str) {
        if self.cache.remove(primary).is_some() {
            self.stats.purged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes every entry of `service` (all services when None) whose path starts with
    /// `prefix` (all paths when None); returns how many answers went.
    pub fn purge(&self, service: Option<&str>, prefix: Option<&str>) -> u64 {
        // Fills that started before this purge will not store (`insert_since`).
        let mut purges = self.purges.write().unwrap_or_else(|e| e.into_inner());
        match service {
            Some(s) => *purges.services.entry(s.to_string()).or_default() += 1,
            None => purges.all += 1,
        }
        let removed = AtomicU64::new(0);
        self.cache.retain(|_, slot| {
            let (s, path, counts) = match slot {
                Slot::Object(o) => (o.service.as_str(), o.path.as_str(), true),
                Slot::Vary(m) => (m.service.as_str(), m.path.as_str(), false),
            };
            let matches = service.is_none_or(|wanted| wanted == s)
                && prefix.is_none_or(|p| path.starts_with(p));
            if matches && counts {
                removed.fetch_add(1, Ordering::Relaxed);
            }
            !matches
        });
        drop(purges);
        let removed = removed.into_inner();
        self.stats.purged.fetch_add(removed, Ordering::Relaxed);
        removed
    }
}

/// The values of request header `name`, joined with `, ` (as one list).
fn joined(request: &HeaderMap, name: &HeaderName) -> String {
    let mut value = String::new();
    for (i, v) in request.get_all(name).iter().enumerate() {
        if i > 0 {
            value.push_str(", ");
        }
        value.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    value
}

/// Whether a stored answer can be revalidated (`ETag` or `Last-Modified`).
pub fn has_validators(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::ETAG) || headers.contains_key(http::header::LAST_MODIFIED)
}

/// Semaphore permits for a budget of `bytes` (within what a semaphore holds).
fn budget_permits(bytes: u64) -> usize {
    usize::try_from(bytes)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

/// A nonce for a `Vary` marker: unique in the process.
fn rand_nonce() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests;
