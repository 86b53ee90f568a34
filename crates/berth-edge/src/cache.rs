//! The response cache on the request path (`docs/edge.md`, "Response cache"): the one place
//! where `berth_cache`'s decisions become requests to the replicas and answers to clients.
//! After routing and the WAF, a GET or HEAD under a `[[cache.rule]]` is answered from the
//! store (`X-Cache: HIT`), or fetched once for every concurrent request of its key (the others
//! wait for it, bounded), stored when the policy allows and answered `X-Cache: MISS`; a stale
//! answer is served (`X-Cache: STALE`) while one background request refreshes it, or when the
//! replicas fail within its stale-if-error window; conditional requests are answered `304`
//! from it. POST, PUT, DELETE and PATCH to a URL drop its entries (RFC 9111 4.4).
//!
//! Where compression will sit: it applies to the replica's answer inside `forward`, so what is
//! stored is what the client gets, compressed once; the key then holds the `Vary`ed
//! `Accept-Encoding` normalised by the store's hook (`Store::set_normalizer`).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use berth_cache::policy::{self, RangeAnswer, Rule, NOT_MODIFIED_HEADERS, UNKEYED_REQUEST_HEADERS};
use berth_cache::{FillPermit, Flight, Object, Rules, State, Store};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri};

use crate::errors::{EdgeError, Side};
use crate::http1::head::Framing;
use crate::metrics::{CacheFillLabels, CacheLabels};
use crate::pool::Lease;
use crate::proxy::{AnswerBody, CompiledTable, Edge, Failed, Peer, PrefixedBody, ProxyBody};

/// How long a request waits for another's fetch of the same key before asking itself.
const FOLLOW_LIMIT: Duration = Duration::from_secs(10);

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The body of a request the cache sends on its own (a refresh): none.
type NoBody = http_body_util::combinators::MapErr<Empty<Bytes>, fn(Infallible) -> EdgeError>;

fn no_body() -> NoBody {
    Empty::new().map_err(|never: Infallible| match never {})
}

/// What the cache does with a request.
pub(crate) enum CachePlan {
    /// A GET or HEAD under a cache rule.
    Use {
        store: Arc<Store>,
        rules: Arc<Rules>,
        rule: usize,
        primary: String,
    },
    /// An unsafe method on a URL under a cache rule: its entries go on a non-error answer.
    Invalidate { store: Arc<Store>, primary: String },
    /// A GET with `Range` under a cache rule: answered from a fresh stored whole answer, else
    /// forwarded as it is (the replica answers the range; nothing is stored).
    Range {
        store: Arc<Store>,
        rules: Arc<Rules>,
        rule: usize,
        primary: String,
    },
}

type Answer = (Response<AnswerBody>, Option<Lease>, Option<String>);

impl Edge {
    /// Whether `req` goes through the cache (None: forwarded as if there were none).
    pub(crate) fn cache_plan<B: Body>(
        &self,
        table: &CompiledTable,
        req: &Request<B>,
        secure: bool,
        trusted: bool,
        _service: &str,
    ) -> Option<CachePlan> {
        let rules = table.cache_rules.as_ref()?;
        // Rules match the path as the application reads it (`/%61dmin` is `/admin`); a path
        // that does not decode is not cached. First: most requests of most stacks match no rule.
        let normal = crate::guard::normalize_path(req.uri().path())?;
        let rule = rules.select_index(&normal)?;
        let spec = &rules.rules[rule];
        // A WebSocket handshake is a GET, but its answer is a tunnel: never a stored answer.
        if crate::proxy::is_upgrade(req.headers()) {
            return None;
        }
        // The private test route (smoke checks of a release before it takes traffic) must
        // reach that release, and what it gets must never be stored for everyone.
        if crate::proxy::test_route(req.headers(), table.test_key.as_deref()).is_some() {
            return None;
        }
        let store = self.cache_store.load_full()?;
        // The host exactly as the replica gets it (port included: `Host: site:1` makes
        // applications write `http://site:1/...` into redirects and pages), not the routed
        // host, which has no port.
        let mut primary = policy::primary_key(
            spec,
            secure,
            &forwarded_host(req),
            req.uri().path(),
            req.uri().query(),
            req.headers(),
        );
        // A trusted proxy's X-Forwarded-Proto, -Host... reach the replica as they are.
        if trusted {
            policy::add_forwarded(&mut primary, req.headers());
        }
        if policy::invalidates(req.method()) {
            return Some(CachePlan::Invalidate { store, primary });
        }
        let allowed = policy::request_allowed(spec, req.method(), req.headers()).and_then(|()| {
            match body_framing_of(req) {
                true => Err(policy::Skip::Method),
                false => Ok(()),
            }
        });
        if allowed == Err(policy::Skip::Range) && req.method() == Method::GET {
            return Some(CachePlan::Range {
                store,
                rules: rules.clone(),
                rule,
                primary,
            });
        }
        if allowed.is_err() {
            self.cache_count("bypass");
            return None;
        }
        Some(CachePlan::Use {
            store,
            rules: rules.clone(),
            rule,
            primary,
        })
    }

    fn cache_count(&self, result: &'static str) {
        self.metrics
            .cache_requests
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    /// A new table's `[cache]`: the store is made, kept (same sizes) or dropped.
    pub(crate) fn install_cache(
        &self,
        spec: Option<&berth_spec::CacheSpec>,
        compress: &berth_spec::CompressSpec,
    ) {
        let current = self.cache_store.load();
        let same = match (current.as_ref(), spec) {
            (Some(store), Some(spec)) => {
                store.max_size() == spec.max_size
                    && store.max_object == spec.max_object
                    && store.normalizes(&header::ACCEPT_ENCODING)
                        == normalizes_accept_encoding(compress)
            }
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.cache_store
                .store(spec.map(|spec| new_store(spec, compress)));
        }
    }

    /// Refreshes the cache gauges (on each metrics scrape).
    pub(crate) fn refresh_cache_gauges(&self) {
        let store = self.cache_store.load();
        let (entries, bytes) = store.as_ref().map_or((0, 0), |s| s.usage());
        self.metrics.cache_entries.set(entries as i64);
        self.metrics.cache_bytes.set(bytes as i64);
        if let Some(store) = store.as_ref() {
            self.metrics
                .export_cache_stats(Arc::as_ptr(store) as usize, &store.stats);
        }
    }

    /// `berth cache purge`: drops the entries of `service` (all when None) under `prefix`
    /// (all paths when None); returns how many answers went.
    pub fn purge_cache(&self, service: Option<&str>, prefix: Option<&str>) -> u64 {
        let Some(store) = self.cache_store.load_full() else {
            return 0;
        };
        // Stored paths are normalised (`purge_path`): the prefix too, so `//img/x`,
        // `/%69mg/x` and `/img/./x` all go with a purge of `/img/x`.
        let normal = prefix.map(|p| {
            let mut normal = purge_path(p);
            if p.ends_with('/') && !normal.ends_with('/') {
                normal.push('/');
            }
            normal
        });
        let removed = store.purge(service, normal.as_deref());
        self.metrics.cache_purged.inc_by(removed);
        tracing::info!(
            "cache purge (service {}, prefix {}): {removed} answers",
            service.unwrap_or("*"),
            prefix.unwrap_or("/")
        );
        removed
    }

    /// Serves a request through the cache (see the module's doc).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn through_cache<B>(
        self: Arc<Self>,
        plan: CachePlan,
        table: &Arc<CompiledTable>,
        req: Request<B>,
        framing: Framing,
        inspected: Vec<Frame<Bytes>>,
        client: Peer,
        host: &str,
        request_id: &HeaderValue,
        service: String,
    ) -> Result<Answer, Failed>
    where
        B: Body<Data = Bytes, Error = EdgeError> + Send + Sync + Unpin + 'static,
    {
        let (store, rules, rule, primary) = match plan {
            CachePlan::Invalidate { store, primary } => {
                let answer = self
                    .forward(
                        table, req, framing, inspected, client, host, request_id, service,
                    )
                    .await?;
                if answer.0.status().as_u16() < 400 {
                    store.invalidate(&primary);
                    self.metrics.cache_purged.inc();
                }
                return Ok(answer);
            }
            CachePlan::Range {
                store,
                rules,
                rule,
                primary,
            } => {
                let mut headers = req.headers().clone();
                as_the_replica_gets_it(&rules.rules[rule], &mut headers);
                let now = Instant::now();
                if let (_, Some(object)) = store.lookup(&primary, &headers, now) {
                    if object.state(now) == State::Fresh {
                        self.cache_count("hit");
                        let method = req.method().clone();
                        return Ok(served(&object, "HIT", &method, req.headers(), service));
                    }
                }
                self.cache_count("bypass");
                return self
                    .forward(
                        table, req, framing, inspected, client, host, request_id, service,
                    )
                    .await;
            }
            CachePlan::Use {
                store,
                rules,
                rule,
                primary,
            } => (store, rules, rule, primary),
        };
        let spec = &rules.rules[rule];
        let method = req.method().clone();
        let (mut parts, _body) = req.into_parts();
        let client_headers = parts.headers.clone();
        if let Some(uri) = cache_uri(&parts.uri, policy::cache_query(spec, parts.uri.query())) {
            parts.uri = uri;
        }
        as_the_replica_gets_it(spec, &mut parts.headers);
        let now = Instant::now();
        let (key, found) = store.lookup(&primary, &parts.headers, now);
        let mut stale = None;
        if let Some(object) = found {
            match object.state(now) {
                State::Fresh => {
                    self.cache_count("hit");
                    return Ok(served(&object, "HIT", &method, &client_headers, service));
                }
                State::StaleRevalidate => {
                    if object.claim_refresh() {
                        let edge = self.clone();
                        let (table, parts, host, request_id) = (
                            table.clone(),
                            parts.clone(),
                            host.to_string(),
                            request_id.clone(),
                        );
                        let (store, rules, object, primary, service) = (
                            store.clone(),
                            rules.clone(),
                            object.clone(),
                            primary.clone(),
                            service.clone(),
                        );
                        tokio::spawn(async move {
                            let refresh = Refresh {
                                store: &store,
                                rules: &rules,
                                rule,
                                primary: &primary,
                            };
                            let started = Instant::now();
                            let fetched = refresh
                                .fetch(
                                    &edge,
                                    &table,
                                    parts,
                                    Some(&object),
                                    client,
                                    &host,
                                    &request_id,
                                    service,
                                )
                                .await;
                            // No client waits for this answer, but the replica's part in it
                            // counts for its release as any request's does: a release that
                            // fails its refreshes is seen failing by a deploy's analysis.
                            let (stored, failed) = match &fetched {
                                Ok(r) => {
                                    count_against_release(r.lease.as_ref(), r.status, started);
                                    (r.stored, r.failed_status())
                                }
                                Err(failed) => {
                                    if failed.error.side == Side::Replica {
                                        count_against_release(
                                            failed.lease.as_ref(),
                                            failed.error.status().as_u16(),
                                            started,
                                        );
                                    }
                                    (false, failed.error.side != Side::Client)
                                }
                            };
                            if failed {
                                edge.metrics
                                    .cache_fills
                                    .get_or_create(&CacheFillLabels {
                                        outcome: "refresh_failed",
                                    })
                                    .inc();
                            }
                            if !stored {
                                object.release_refresh();
                            }
                        });
                    }
                    self.cache_count("stale");
                    return Ok(served(&object, "STALE", &method, &client_headers, service));
                }
                State::StaleIfError | State::Expired => stale = Some(object),
            }
        }
        // A miss (or a stale answer to refresh). HEAD is sent on as it is, never stored.
        if method == Method::HEAD {
            self.cache_count("miss");
            return self
                .forward(
                    table,
                    Request::from_parts(parts, no_body()),
                    Framing::Empty,
                    Vec::new(),
                    client,
                    host,
                    request_id,
                    service,
                )
                .await
                .map(|mut a| {
                    a.0.headers_mut()
                        .insert(X_CACHE.clone(), HeaderValue::from_static("MISS"));
                    a
                });
        }
        let guard = match store.join(&key) {
            Flight::Leader(guard) => Some(guard),
            Flight::Follower(done) => {
                berth_cache::follow(done, FOLLOW_LIMIT).await;
                let (_, again) = store.lookup(&primary, &parts.headers, Instant::now());
                if let Some(object) = again.filter(|o| o.state(Instant::now()) == State::Fresh) {
                    store.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    self.cache_count("hit");
                    return Ok(served(&object, "HIT", &method, &client_headers, service));
                }
                // Not stored (or too slow): this request asks on its own.
                None
            }
        };
        let refresh = Refresh {
            store: &store,
            rules: &rules,
            rule,
            primary: &primary,
        };
        let started = Instant::now();
        let fetched = refresh
            .fetch(
                &self,
                table,
                parts,
                stale.as_ref(),
                client,
                host,
                request_id,
                service.clone(),
            )
            .await;
        drop(guard);
        let usable_stale = stale.filter(|o| o.state(Instant::now()) != State::Expired);
        match fetched {
            Ok(fetched) if fetched.failed_status() && usable_stale.is_some() => {
                let object = usable_stale.expect("checked");
                count_against_release(fetched.lease.as_ref(), fetched.status, started);
                tracing::warn!(
                    "cache: {} answered {}; serving {} stale",
                    service,
                    fetched.status,
                    object.path
                );
                self.cache_count("stale");
                Ok(served(&object, "STALE", &method, &client_headers, service))
            }
            Ok(fetched) => {
                self.cache_count("miss");
                let label = if fetched.revalidated { "HIT" } else { "MISS" };
                match fetched.answer {
                    Fetched::Stored(object) => {
                        let mut answer = served(&object, label, &method, &client_headers, service);
                        answer.1 = fetched.lease;
                        Ok(answer)
                    }
                    Fetched::Passed(response) => {
                        let mut response = *response;
                        response
                            .headers_mut()
                            .insert(X_CACHE.clone(), HeaderValue::from_static("MISS"));
                        Ok((response, fetched.lease, Some(service)))
                    }
                }
            }
            Err(failed) if failed.error.side != Side::Client && usable_stale.is_some() => {
                let object = usable_stale.expect("checked");
                tracing::warn!("cache: {}; serving {} stale", failed.error, object.path);
                if failed.error.side == Side::Replica {
                    count_against_release(
                        failed.lease.as_ref(),
                        failed.error.status().as_u16(),
                        started,
                    );
                }
                self.cache_count("stale");
                Ok(served(&object, "STALE", &method, &client_headers, service))
            }
            Err(failed) => {
                self.cache_count("miss");
                Err(failed)
            }
        }
    }
}

/// The store of a `[cache]`. Where the key's normalisation of request headers is set: the
/// default keys `Accept-Encoding` as `br`, `zstd`, `gzip` or `identity`
/// ([`policy::accept_encoding_choice`]); a compressor that chooses otherwise sets its own
/// choice here (`Store::set_normalizer`).
pub(crate) fn new_store(
    spec: &berth_spec::CacheSpec,
    compress: &berth_spec::CompressSpec,
) -> Arc<Store> {
    let mut store = Store::new(spec.max_size, spec.max_object);
    if !normalizes_accept_encoding(compress) {
        store.keep_exact(&header::ACCEPT_ENCODING);
    }
    Arc::new(store)
}

/// Whether keys may hold `Accept-Encoding` as [`policy::accept_encoding_choice`] picks it:
/// only while the edge's compressor prefers the codings in that same order (the default).
/// Another `compress_algorithms` order keys the header exactly as sent (more variants, never a
/// variant served to a client that does not accept its coding).
fn normalizes_accept_encoding(compress: &berth_spec::CompressSpec) -> bool {
    use berth_spec::Coding;
    compress.algorithms == [Coding::Br, Coding::Zstd, Coding::Gzip]
}

/// What a fetch brought: an answer stored (or refreshed by a `304`), or one passed through.
enum Fetched {
    Stored(Arc<Object>),
    Passed(Box<Response<AnswerBody>>),
}

struct FetchResult {
    status: u16,
    answer: Fetched,
    lease: Option<Lease>,
    /// Whether it was stored (or refreshed).
    stored: bool,
    /// A `304` refreshed the stale answer.
    revalidated: bool,
}

impl FetchResult {
    /// A 5xx that a stale answer may stand in for.
    fn failed_status(&self) -> bool {
        matches!(self.status, 500 | 502 | 503 | 504)
    }
}

/// One fetch of a key from the replicas.
struct Refresh<'a> {
    store: &'a Store,
    rules: &'a Rules,
    rule: usize,
    primary: &'a str,
}

impl Refresh<'_> {
    /// Sends the prepared request (conditional when `stale` has validators), stores what the
    /// policy allows, and reads at most `max_object` bytes of a body to do so (a longer one is
    /// passed through as it comes).
    #[allow(clippy::too_many_arguments)]
    async fn fetch(
        &self,
        edge: &Arc<Edge>,
        table: &CompiledTable,
        mut parts: hyper::http::request::Parts,
        stale: Option<&Arc<Object>>,
        client: Peer,
        host: &str,
        request_id: &HeaderValue,
        service: String,
    ) -> Result<FetchResult, Failed> {
        let rule = &self.rules.rules[self.rule];
        // A purge of the service from now on keeps this fill's answer out of the store.
        let generation = self.store.generation(&service);
        let mut conditional = false;
        if let Some(stale) = stale.filter(|o| o.status == 200) {
            if let Some(etag) = stale.headers.get(header::ETAG) {
                parts.headers.insert(header::IF_NONE_MATCH, etag.clone());
                conditional = true;
            } else if let Some(modified) = stale.headers.get(header::LAST_MODIFIED) {
                parts
                    .headers
                    .insert(header::IF_MODIFIED_SINCE, modified.clone());
                conditional = true;
            }
        }
        let path = purge_path(parts.uri.path());
        let sent = parts.headers.clone();
        let request_time = SystemTime::now();
        let (response, lease, _) = edge
            .forward(
                table,
                Request::from_parts(parts, no_body()),
                Framing::Empty,
                Vec::new(),
                client,
                host,
                request_id,
                service.clone(),
            )
            .await?;
        let response_time = SystemTime::now();
        let status = response.status().as_u16();
        let result = |answer, lease, stored, revalidated| FetchResult {
            status,
            answer,
            lease,
            stored,
            revalidated,
        };
        let passed = |response, lease| FetchResult {
            status,
            answer: Fetched::Passed(Box::new(response)),
            lease,
            stored: false,
            revalidated: false,
        };
        // 304 to the cache's own conditional: the stale answer is fresh again, with the
        // headers the 304 updates (RFC 9111 4.3.4).
        if status == 304 && conditional {
            let stale = stale.expect("conditional implies a stale answer");
            let mut headers = policy::merge_not_modified(&stale.headers, response.headers());
            strip_stored(&mut headers);
            let freshness = policy::storable(
                rule,
                &sent,
                stale.status,
                &headers,
                request_time,
                response_time,
            );
            let object = match freshness {
                Ok(freshness) => {
                    let object = Object::new(
                        stale.status,
                        headers,
                        stale.body.clone(),
                        &service,
                        &path,
                        freshness,
                        Instant::now(),
                    );
                    self.store.stats.revalidated.fetch_add(1, Ordering::Relaxed);
                    self.store
                        .insert_since(generation, self.primary, &sent, object)
                }
                Err(_) => None,
            };
            let stored = object.is_some();
            let object = object.unwrap_or_else(|| stale.clone());
            return Ok(result(Fetched::Stored(object), lease, stored, true));
        }
        let freshness = policy::storable(
            rule,
            &sent,
            status,
            response.headers(),
            request_time,
            response_time,
        );
        let too_large = response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n > self.store.max_object);
        // A coding that does not fit the variant is refused here, before the body is read
        // (the store would refuse it too).
        let fits = self.store.coding_fits(&sent, response.headers());
        let freshness = match freshness {
            Ok(f) if !too_large && fits => f,
            _ => {
                self.store.stats.not_stored.fetch_add(1, Ordering::Relaxed);
                return Ok(passed(response, lease));
            }
        };
        // Read the body, at most max_object bytes within the fill budget; past that it goes
        // on as it comes.
        let (head, body) = response.into_parts();
        let (data, permit) = match read_for_store(body, self.store).await {
            Err(error) => return Err(Failed::new(error).of(&service)),
            Ok(Read::Whole(data, permit)) => (data, permit),
            Ok(Read::Passed(body)) => {
                self.store.stats.not_stored.fetch_add(1, Ordering::Relaxed);
                let response = Response::from_parts(head, AnswerBody::Boxed { body: body.boxed() });
                return Ok(passed(response, lease));
            }
        };
        let mut headers = head.headers;
        strip_stored(&mut headers);
        let object = Object::new(
            status,
            headers,
            data.clone(),
            &service,
            &path,
            freshness,
            Instant::now(),
        );
        match self
            .store
            .insert_since(generation, self.primary, &sent, object)
        {
            Some(object) => Ok(result(Fetched::Stored(object), lease, true, false)),
            None => {
                // Refused by the store (size, a purge since the fill began): the parts go on
                // as a plain answer, its bytes
                // still counted against the fill budget until they are gone.
                let body = Full::new(data).map_err(|never| match never {}).boxed();
                let mut response = Response::new(AnswerBody::Boxed {
                    body: Budgeted {
                        body,
                        _permit: permit,
                    }
                    .boxed(),
                });
                *response.status_mut() = head.status;
                Ok(passed(response, lease))
            }
        }
    }
}

/// An answer's body as [`read_for_store`] leaves it.
enum Read {
    /// Read whole, within `max_object` and the fill budget: the bytes and their permit.
    Whole(Bytes, FillPermit),
    /// Over `max_object`, over the fill budget, or with trailers: what was read and the rest
    /// as it comes, for the client (never stored).
    Passed(Budgeted),
}

/// Reads an answer's body to store it: at most `max_object` bytes, each counted against the
/// store's fill budget (fills in flight sit outside the cache's byte cap, so many concurrent
/// misses on large answers would otherwise hold up to `max_object` each). When either runs
/// out, or trailers come, the answer passes through: what was read first, then the rest
/// streamed as it comes, the bytes read keeping their permit until the body is dropped.
async fn read_for_store<B>(mut body: B, store: &Store) -> Result<Read, EdgeError>
where
    B: Body<Data = Bytes, Error = EdgeError> + Send + Sync + Unpin + 'static,
{
    let mut frames: Vec<Frame<Bytes>> = Vec::new();
    let mut permit = FillPermit::default();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let keep = match frame.data_ref() {
            Some(data) => {
                size += data.len() as u64;
                size <= store.max_object && store.reserve_fill(&mut permit, data.len() as u64)
            }
            // Trailers: passed on, not stored.
            None => false,
        };
        frames.push(frame);
        if !keep {
            let body = PrefixedBody::new(frames.into(), body);
            return Ok(Read::Passed(Budgeted {
                body: body.boxed(),
                _permit: permit,
            }));
        }
    }
    let data = if frames.len() == 1 {
        frames
            .pop()
            .and_then(|f| f.into_data().ok())
            .unwrap_or_default()
    } else {
        let mut data = Vec::with_capacity(size as usize);
        for frame in &frames {
            if let Some(d) = frame.data_ref() {
                data.extend_from_slice(d);
            }
        }
        Bytes::from(data)
    };
    Ok(Read::Whole(data, permit))
}

/// A body that holds bytes counted against the fill budget: the permit goes with it.
struct Budgeted {
    body: ProxyBody,
    _permit: FillPermit,
}

impl Body for Budgeted {
    type Data = Bytes;
    type Error = EdgeError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A replica's failure that a stale answer hid from the client still counts against its
/// release: a deploy's error-rate rule must see a failing release even where the cache covers
/// for it.
fn count_against_release(lease: Option<&Lease>, status: u16, started: Instant) {
    if let Some(metrics) = lease.and_then(|l| l.upstream.metrics.as_ref()) {
        metrics.observe(None, status, started.elapsed().as_secs_f64(), 0);
    }
}

/// Whether the request has a body (a GET with one is not served from the cache).
fn body_framing_of<B: Body>(req: &Request<B>) -> bool {
    match req.body().size_hint().exact() {
        Some(0) => false,
        _ => !req.body().is_end_stream(),
    }
}

/// The path a stored answer is purged by: as an application reads it
/// ([`crate::guard::normalize_path`]: decoded, `//` and dot segments resolved, lower case), so
/// every spelling of a URL that the cache keys apart goes with one purge of it.
fn purge_path(path: &str) -> String {
    crate::guard::normalize_path(path).unwrap_or_else(|| path.to_string())
}

/// The `Host` a replica gets for `req` (`upstream_request`: the client's `Host`, else the
/// URI's authority, port included, else none).
fn forwarded_host<B>(req: &Request<B>) -> String {
    match req.headers().get(header::HOST) {
        Some(host) => String::from_utf8_lossy(host.as_bytes()).into_owned(),
        None => req
            .uri()
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_string()),
    }
}

/// The request URI with the query the cache keys and sends on (None: unchanged).
fn cache_uri(uri: &Uri, query: Option<String>) -> Option<Uri> {
    if uri.query() == query.as_deref() {
        return None;
    }
    let path_and_query = match query {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::from_maybe_shared(Bytes::from(path_and_query)).ok()?);
    Uri::from_parts(parts).ok()
}

/// The request's headers as the replica gets them from the cache: no Cookie unless the rule
/// lets it through, none of the unkeyed headers that change answers, no client conditionals
/// or range (the cache asks with its own, for whole answers).
fn as_the_replica_gets_it(rule: &Rule, headers: &mut HeaderMap) {
    if !rule.spec.cookies {
        headers.remove(header::COOKIE);
    }
    for name in UNKEYED_REQUEST_HEADERS {
        headers.remove(name);
    }
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
        header::RANGE,
    ] {
        headers.remove(name);
    }
}

/// Headers never kept in a stored answer: framing and hop-by-hop ones (the edge writes its
/// own) and `Age` (worked out anew on each answer).
fn strip_stored(headers: &mut HeaderMap) {
    for name in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::AGE,
        header::TRAILER,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
    ] {
        headers.remove(name);
    }
}

/// A stored answer as the client gets it: `304` when its conditional request matches, the
/// body left out for HEAD, with `Age` and `X-Cache`.
fn served(
    object: &Object,
    label: &'static str,
    method: &Method,
    client: &HeaderMap,
    service: String,
) -> Answer {
    let now = Instant::now();
    let mut headers = HeaderMap::with_capacity(object.headers.len() + 3);
    let not_modified =
        (200..300).contains(&object.status) && policy::not_modified(client, &object.headers);
    let status = if not_modified {
        for name in NOT_MODIFIED_HEADERS.iter() {
            for value in object.headers.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(modified) = object.headers.get(header::LAST_MODIFIED) {
            headers.insert(header::LAST_MODIFIED, modified.clone());
        }
        StatusCode::NOT_MODIFIED
    } else {
        headers.clone_from(&object.headers);
        StatusCode::from_u16(object.status).unwrap_or(StatusCode::OK)
    };
    let length = object.body.len() as u64;
    let range = if status == StatusCode::OK && *method == Method::GET {
        policy::range_answer(client, &object.headers, length)
    } else {
        RangeAnswer::Whole
    };
    headers.insert(header::AGE, HeaderValue::from(object.age(now).as_secs()));
    headers.insert(X_CACHE.clone(), HeaderValue::from_static(label));
    // HEAD: the stored length, no body (HTTP/1 would drop it, but an HTTP/2 server sends
    // whatever body it is given as DATA frames on the HEAD's stream).
    let (status, body) = match range {
        RangeAnswer::Whole => (status, None),
        RangeAnswer::Part { first, last } => {
            let content_range = format!("bytes {first}-{last}/{length}");
            if let Ok(value) = HeaderValue::from_str(&content_range) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            let part = object.body.slice(first as usize..=last as usize);
            (StatusCode::PARTIAL_CONTENT, Some(part))
        }
        RangeAnswer::Unsatisfiable => {
            // Nothing of the stored representation but where it ends (RFC 9110 15.5.17).
            let kept = headers.get(header::DATE).cloned();
            headers.clear();
            if let Some(date) = kept {
                headers.insert(header::DATE, date);
            }
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{length}")) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, Some(Bytes::new()))
        }
    };
    let body = if let Some(part) = body {
        part
    } else if not_modified {
        Bytes::new()
    } else if *method == Method::HEAD {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(object.body.len()));
        Bytes::new()
    } else {
        object.body.clone()
    };
    let mut response = Response::new(AnswerBody::Boxed {
        body: Full::new(body).map_err(|never| match never {}).boxed(),
    });
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    (response, None, Some(service))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_keeps_only_the_keyed_query() {
        let uri: Uri = "/img/a.png?utm=1&v=2".parse().unwrap();
        assert_eq!(
            cache_uri(&uri, Some("v=2".into())).unwrap().to_string(),
            "/img/a.png?v=2"
        );
        assert_eq!(cache_uri(&uri, None).unwrap().to_string(), "/img/a.png");
        assert!(cache_uri(&uri, Some("utm=1&v=2".into())).is_none());
        let plain: Uri = "/x".parse().unwrap();
        assert!(cache_uri(&plain, None).is_none());
    }

    #[test]
    fn stored_headers_lose_framing_and_age() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        headers.insert(header::AGE, HeaderValue::from_static("5"));
        headers.insert(header::ETAG, HeaderValue::from_static("\"1\""));
        strip_stored(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    /// A body of `count` data frames of `size` bytes (frame `i` filled with byte `i`).
    fn frames(count: u8, size: usize) -> PrefixedBody<ProxyBody> {
        let frames = (0..count)
            .map(|i| Frame::data(Bytes::from(vec![i; size])))
            .collect();
        PrefixedBody::new(frames, no_body().boxed())
    }

    async fn collect(body: impl Body<Data = Bytes, Error = EdgeError>) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn fills_beyond_the_budget_pass_through_whole_and_unstored() {
        let mut store = Store::new(16 << 20, 1 << 20);
        store.set_fill_budget(100_000);
        // Three misses at once, 60 KB each: the first is read within the budget; the second
        // gets 40 KB of it, then passes through, whole; so does the third.
        let first = match read_for_store(frames(3, 20_000), &store).await.unwrap() {
            Read::Whole(data, permit) => {
                assert_eq!(data.len(), 60_000);
                assert_eq!(permit.bytes(), 60_000);
                (data, permit)
            }
            Read::Passed(_) => panic!("the first fill is within the budget"),
        };
        let mut passed = Vec::new();
        for _ in 0..2 {
            match read_for_store(frames(3, 20_000), &store).await.unwrap() {
                Read::Whole(..) => panic!("over the budget, yet read for the store"),
                Read::Passed(body) => passed.push(body),
            }
        }
        let expected: Vec<u8> = (0..3u8).flat_map(|i| vec![i; 20_000]).collect();
        let second = passed.remove(0);
        // The 40 KB the second read keep their permit while its body lives.
        let mut one = FillPermit::default();
        assert!(!store.reserve_fill(&mut one, 1));
        assert_eq!(collect(second).await, expected);
        assert_eq!(collect(passed.remove(0)).await, expected);
        // Its body gone, the second's bytes are given back; the first's are not until stored.
        assert!(store.reserve_fill(&mut one, 40_000));
        assert!(!store.reserve_fill(&mut one, 1));
        drop((first, one));
        match read_for_store(frames(5, 20_000), &store).await.unwrap() {
            Read::Whole(data, _) => assert_eq!(data.len(), 100_000),
            Read::Passed(_) => panic!("the budget was given back"),
        }
        // Over max_object: passed through whole whatever the budget.
        store.set_fill_budget(64 << 20);
        match read_for_store(frames(60, 20_000), &store).await.unwrap() {
            Read::Whole(..) => panic!("over max_object"),
            Read::Passed(body) => assert_eq!(collect(body).await.len(), 1_200_000),
        }
    }
}
