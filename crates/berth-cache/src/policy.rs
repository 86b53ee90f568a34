//! The decisions of the cache as pure functions (RFC 9111 for a shared cache): which rule a path
//! falls under, whether a request may use the cache, whether an answer may be stored and for
//! how long, how old a stored answer is, and the cache key. No clock is read here: the caller
//! passes the times in. Knows nothing of the store, of sockets or of the edge.

use std::time::{Duration, SystemTime};

use berth_spec::{CacheQuery, CacheRuleSpec, CacheSpec};
use http::{header, HeaderMap, HeaderName, Method};

/// A CloudFront-style path pattern: `*` matches any run of characters (`/` included), `?` one
/// character, everything else itself (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<u8>);

impl Pattern {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.as_bytes().to_vec())
    }

    /// Whether `path` matches the whole pattern. Iterative with one backtrack point: linear in
    /// practice, O(path × pattern) at worst (patterns are short: the spec caps them).
    pub fn matches(&self, path: &str) -> bool {
        let (p, s) = (&self.0, path.as_bytes());
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) && p[pi] != b'*' {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

/// One cache rule, ready to match.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub pattern: Pattern,
    pub spec: CacheRuleSpec,
}

impl Rule {
    /// Patterns are matched in lower case, against the lower-case decoded path.
    pub fn new(spec: &CacheRuleSpec) -> Self {
        Self {
            pattern: Pattern::new(&spec.path.to_ascii_lowercase()),
            spec: spec.clone(),
        }
    }

    /// A never-cache rule (`max_ttl = 0`, CloudFront's way to say it).
    pub fn is_never(&self) -> bool {
        self.spec.max_ttl.is_zero()
    }
}

/// The rules of `[cache]`, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub max_object: u64,
    pub max_size: u64,
}

impl Rules {
    pub fn new(spec: &CacheSpec) -> Self {
        Self {
            rules: spec.rules.iter().map(Rule::new).collect(),
            max_object: spec.max_object,
            max_size: spec.max_size,
        }
    }

    /// The rule for `path` (the path as the application reads it: decoded, dot segments
    /// resolved). A never-cache rule that matches wins over every other, wherever it is written
    /// (`/account/x.css` stays uncached under `/account*` even with a `*.css` rule first: no
    /// cache deception); otherwise the first matching rule. None: not cached.
    pub fn select(&self, path: &str) -> Option<&Rule> {
        self.select_index(path).map(|i| &self.rules[i])
    }

    /// [`Rules::select`], as an index into `rules`.
    pub fn select_index(&self, path: &str) -> Option<usize> {
        let mut first = None;
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.pattern.matches(path) {
                continue;
            }
            if rule.is_never() {
                return None;
            }
            first = first.or(Some(index));
        }
        first
    }
}

/// Why a request does not use the cache, or an answer is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not GET or HEAD.
    Method,
    /// The request carries `Authorization` and the rule does not allow it.
    Authorization,
    /// A `Range` request (the cache keeps whole answers only).
    Range,
    /// The status is not cacheable by default and the answer has no explicit lifetime.
    Status,
    NoStore,
    Private,
    NoCache,
    /// `Set-Cookie` on the answer (never stored, whatever the rule says of cookies: one
    /// visitor's session would be handed to every other).
    SetCookie,
    /// `Vary: *`.
    VaryStar,
    /// The lifetime works out at zero (or the answer arrived already stale).
    NoLifetime,
    /// Larger than `max_object`.
    TooLarge,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Method => "method",
            Skip::Authorization => "authorization",
            Skip::Range => "range",
            Skip::Status => "status",
            Skip::NoStore => "no-store",
            Skip::Private => "private",
            Skip::NoCache => "no-cache",
            Skip::SetCookie => "set-cookie",
            Skip::VaryStar => "vary",
            Skip::NoLifetime => "no-lifetime",
            Skip::TooLarge => "too-large",
        }
    }
}

/// Whether a request under `rule` may be answered from (and fill) the cache. The request's own
/// `Cache-Control` is not obeyed (as CloudFront does not): a client cannot make every request
/// go to the replicas.
pub fn request_allowed(rule: &Rule, method: &Method, headers: &HeaderMap) -> Result<(), Skip> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Skip::Method);
    }
    if headers.contains_key(header::AUTHORIZATION) && !rule.spec.authorization {
        return Err(Skip::Authorization);
    }
    if headers.contains_key(header::RANGE) {
        return Err(Skip::Range);
    }
    Ok(())
}

/// Whether a request with this method invalidates the stored answers of its URL on a non-error
/// answer (RFC 9111 4.4).
pub fn invalidates(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The directives of `Cache-Control` the cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// Every `Cache-Control` line of `headers`, comma-separated directives, names without
    /// regard to case. A directive given twice keeps its smallest value; an unparsable
    /// number counts as 0 (stale at once, RFC 9111 4.2.1), one too large as 2^31 s
    /// ([`delta_seconds`]).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                // Not text: treated as `no-store`, the safe reading.
                cc.no_store = true;
                continue;
            };
            for directive in split_list(value) {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive, None),
                };
                let seconds = || arg.map_or(0, |a| delta_seconds(a).unwrap_or(0));
                let keep = |slot: &mut Option<u64>, v: u64| {
                    *slot = Some(slot.map_or(v, |old| old.min(v)));
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    // The qualified forms (`no-cache="Set-Cookie"`, `private="X"`) are read as
                    // the whole answer: safe, and what most caches do.
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    "max-age" => keep(&mut cc.max_age, seconds()),
                    "s-maxage" => keep(&mut cc.s_maxage, seconds()),
                    "stale-while-revalidate" => keep(&mut cc.stale_while_revalidate, seconds()),
                    "stale-if-error" => keep(&mut cc.stale_if_error, seconds()),
                    _ => {}
                }
            }
        }
        cc
    }
}

/// The greatest number of seconds the cache counts with (RFC 9111 1.2.2: a larger value, or
/// one that overflows, is taken as 2^31).
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// A `delta-seconds` value (digits only), at most [`MAX_DELTA_SECONDS`]; None when it is not
/// one.
pub fn delta_seconds(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        value
            .parse::<u64>()
            .map_or(MAX_DELTA_SECONDS, |v| v.min(MAX_DELTA_SECONDS)),
    )
}

/// The comma-separated items of a list header, trimmed, empty ones dropped.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Statuses a cache may store without an explicit lifetime (RFC 9110 15.1, "heuristically
/// cacheable").
pub fn cacheable_by_default(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The longest an error answer (4xx, 5xx) without its own lifetime is kept: CloudFront's
/// error caching minimum.
pub const ERROR_TTL: Duration = Duration::from_secs(10);

/// How long a stored answer is fresh, and how long after that it may still be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The freshness lifetime (RFC 9111 4.2.1), clamped into the rule's `min_ttl..=max_ttl`.
    pub ttl: Duration,
    /// The answer's age when it arrived (RFC 9111 4.2.3 `corrected_initial_age`).
    pub initial_age: Duration,
    /// After `ttl`: served stale while one background request refreshes it.
    pub stale_while_revalidate: Duration,
    /// After `ttl`: served stale when the replicas fail (5xx, no connection).
    pub stale_if_error: Duration,
}

impl Freshness {
    /// How long the answer is worth keeping at all, counted from its arrival.
    pub fn keep_for(&self) -> Duration {
        self.ttl
            .saturating_sub(self.initial_age)
            .saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }

    /// The state of a stored answer `resident` after it arrived.
    pub fn state(&self, resident: Duration) -> State {
        let age = self.initial_age.saturating_add(resident);
        if age < self.ttl {
            return State::Fresh;
        }
        let over = age - self.ttl;
        if over < self.stale_while_revalidate {
            State::StaleRevalidate
        } else if over < self.stale_if_error {
            State::StaleIfError
        } else {
            State::Expired
        }
    }
}

/// Where a stored answer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Served as is.
    Fresh,
    /// Served stale; one request refreshes it in the background.
    StaleRevalidate,
    /// Only served when the replicas fail; else fetched again (conditionally).
    StaleIfError,
    /// Kept only for its validators: fetched again, conditionally when it has some.
    Expired,
}

/// Whether an answer to a request under `rule` may be stored, and its [`Freshness`].
/// `request_time` is when the request went to the replica, `response_time` when its answer
/// head came back (RFC 9111 4.2.3).
pub fn storable(
    rule: &Rule,
    request: &HeaderMap,
    status: u16,
    response: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Result<Freshness, Skip> {
    let cc = CacheControl::parse(response);
    if cc.no_store {
        return Err(Skip::NoStore);
    }
    if cc.private {
        return Err(Skip::Private);
    }
    if cc.no_cache {
        return Err(Skip::NoCache);
    }
    // Never stored, even under `cookies = true`: a cookieless visitor's key is shared by every
    // cookieless visitor, so the first one's `Set-Cookie: sid=...` would be replayed to all
    // (session fixation).
    if response.contains_key(header::SET_COOKIE) {
        return Err(Skip::SetCookie);
    }
    if request.contains_key(header::AUTHORIZATION) && !rule.spec.authorization {
        return Err(Skip::Authorization);
    }
    if vary_names(response).is_none() {
        return Err(Skip::VaryStar);
    }
    if status == 206 || status == 304 || status < 200 {
        return Err(Skip::Status);
    }
    let date = response
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let explicit = cc.s_maxage.or(cc.max_age).or_else(|| {
        let expires = response.get(header::EXPIRES)?;
        // An invalid `Expires` (`0`, `-1`) means already expired (RFC 9111 5.3).
        let Some(expires) = expires
            .to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return Some(0);
        };
        let date = date.unwrap_or(response_time);
        Some(expires.duration_since(date).map_or(0, |d| d.as_secs()))
    });
    let spec = &rule.spec;
    // An error (4xx, 5xx) is kept as long as the answer itself says (never raised to min_ttl),
    // else at most ERROR_TTL: a 404 for a URL that does not exist yet (the next upload's
    // name) must not outlive its creation by the rule's default_ttl.
    let error = status >= 400;
    let ttl = match explicit {
        Some(seconds) if error => Duration::from_secs(seconds).min(spec.max_ttl),
        Some(seconds) => Duration::from_secs(seconds).clamp(spec.min_ttl, spec.max_ttl),
        None if cacheable_by_default(status) => {
            let ttl = spec.default_ttl.clamp(spec.min_ttl, spec.max_ttl);
            if error {
                ttl.min(ERROR_TTL)
            } else {
                ttl
            }
        }
        None => return Err(Skip::Status),
    };
    let initial_age = initial_age(response, date, request_time, response_time);
    if ttl.is_zero() || initial_age >= ttl {
        return Err(Skip::NoLifetime);
    }
    // Windows: the answer's own (RFC 5861) else the rule's; none past `must-revalidate`
    // unless the answer names them itself.
    let window = |own: Option<u64>, rule: Duration| match own {
        Some(seconds) => Duration::from_secs(seconds),
        None if cc.must_revalidate => Duration::ZERO,
        None => rule,
    };
    Ok(Freshness {
        ttl,
        initial_age,
        stale_while_revalidate: window(cc.stale_while_revalidate, spec.stale_while_revalidate),
        stale_if_error: window(cc.stale_if_error, spec.stale_if_error),
    })
}

/// RFC 9111 4.2.3: the age of an answer when it arrived, from its `Age` and `Date` and how
/// long the request took.
pub fn initial_age(
    response: &HeaderMap,
    date: Option<SystemTime>,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let age_value = response
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(delta_seconds)
        .map_or(Duration::ZERO, Duration::from_secs);
    let apparent = date
        .and_then(|d| response_time.duration_since(d).ok())
        .unwrap_or(Duration::ZERO);
    let delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    // Saturating: a hostile `Age: 18446744073709551615` must not panic the request's task.
    apparent.max(age_value.saturating_add(delay))
}

/// The request headers an answer varies on, lowercase, sorted, without repeats; None for
/// `Vary: *` (never stored).
pub fn vary_names(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in response.get_all(header::VARY) {
        let value = value.to_str().ok()?;
        for name in split_list(value) {
            if name == "*" {
                return None;
            }
            names.push(HeaderName::from_bytes(name.as_bytes()).ok()?);
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Some(names)
}

/// The key of a URL under `rule`: scheme, host (lowercase), path, the query string (all of it, none,
/// or only the listed parameters, sorted), and, when the rule lets them through, the request's
/// `Cookie` and `Authorization` (each cookie jar, each credential its own entries). Fields are
/// separated by `\n`, which none of them can hold. The host is the request's own (`Host` or
/// the authority); no `X-Forwarded-Host` or other header a client could set is read.
pub fn primary_key(
    rule: &Rule,
    secure: bool,
    host: &str,
    path: &str,
    query: Option<&str>,
    request: &HeaderMap,
) -> String {
    let mut key = String::with_capacity(host.len() + path.len() + 24);
    key.push_str(if secure { "https://" } else { "http://" });
    for c in host.chars() {
        key.push(c.to_ascii_lowercase());
    }
    key.push('\n');
    key.push_str(path);
    if let Some(query) = cache_query(rule, query) {
        key.push('?');
        key.push_str(&query);
    }
    let mut with = |name: header::HeaderName, tag: &str| {
        key.push('\n');
        key.push_str(tag);
        for value in request.get_all(name) {
            key.push_str(&String::from_utf8_lossy(value.as_bytes()));
            key.push(';');
        }
    };
    if rule.spec.cookies {
        with(header::COOKIE, "c:");
    }
    if rule.spec.authorization {
        with(header::AUTHORIZATION, "a:");
    }
    key
}

/// The headers a trusted proxy in front of the edge (`[edge] trusted_proxies`) may set and the
/// edge passes on as they are: they say which scheme, host, port and prefix the client asked
/// for, and applications build their redirects and links from them.
pub const FORWARDED_REQUEST_HEADERS: [&str; 6] = [
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "forwarded",
];

/// Adds to `key` the [`FORWARDED_REQUEST_HEADERS`] of a request from a trusted proxy, as the
/// replica gets them: a plain visit's `301 → https` is then not served to HTTPS visitors
/// (a redirect loop), nor a host the proxy passed on unchecked to everyone. Not called for
/// other clients: the edge replaces or removes those headers before the replica sees them.
pub fn add_forwarded(key: &mut String, request: &HeaderMap) {
    key.push_str("\nf:");
    for name in FORWARDED_REQUEST_HEADERS {
        key.push_str(name);
        key.push('=');
        // Each value after its length: no value can pass for another header's.
        for value in request.get_all(name) {
            key.push_str(&value.len().to_string());
            key.push(':');
            key.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        key.push(' ');
    }
}

/// The query string that is both keyed and sent to the replica under `rule`: all of it, none
/// (`query = "none"`), or only the listed parameters, sorted (`query = ["page"]`), as
/// CloudFront forwards them. What the replica does not see cannot change its answer, so a
/// parameter left out of the key cannot poison it.
pub fn cache_query(rule: &Rule, query: Option<&str>) -> Option<String> {
    let query = query.filter(|q| !q.is_empty())?;
    match &rule.spec.query {
        CacheQuery::All => Some(query.to_string()),
        CacheQuery::None => None,
        CacheQuery::Only(names) => {
            let mut kept: Vec<&str> = query
                .split('&')
                .filter(|pair| {
                    let name = pair.split('=').next().unwrap_or("");
                    names.iter().any(|n| n == name)
                })
                .collect();
            kept.sort_unstable();
            (!kept.is_empty()).then(|| kept.join("&"))
        }
    }
}

/// Request headers removed on their way to the replica under a cache rule: they are not in
/// the key, and some frameworks let them change what is answered (the path, the method, the
/// scheme), which would let one client poison the entry every other client gets.
pub const UNKEYED_REQUEST_HEADERS: [&str; 7] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-scheme",
    "x-host",
];

/// Turns a request header's value into what the key keeps of it, so that variants stay few:
/// (`Accept-Encoding: gzip, deflate, br` and `br;q=1, gzip` both pick `br`).
pub type Normalizer = fn(&str) -> String;

/// The encoding a compressing edge would choose for `Accept-Encoding`: `br`, `zstd`, `gzip` or
/// `identity` (the best one the client accepts with a non-zero q, in that order of
/// preference). The default normaliser of `Accept-Encoding` in keys.
pub fn accept_encoding_choice(value: &str) -> String {
    let mut best: Option<(&str, u32, usize)> = None;
    const PREFERENCE: [&str; 3] = ["br", "zstd", "gzip"];
    let mut star: Option<u32> = None;
    for item in split_list(value) {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .map_or(1000, parse_q);
        if coding == "*" {
            star = Some(q);
            continue;
        }
        let Some(rank) = PREFERENCE
            .iter()
            .position(|p| p.eq_ignore_ascii_case(coding))
        else {
            continue;
        };
        if q == 0 {
            continue;
        }
        if best.is_none_or(|(_, bq, br)| q > bq || (q == bq && rank < br)) {
            best = Some((PREFERENCE[rank], q, rank));
        }
    }
    match (best, star) {
        (Some((coding, _, _)), _) => coding.to_string(),
        (None, Some(q)) if q > 0 => PREFERENCE[0].to_string(),
        _ => "identity".to_string(),
    }
}

/// A q-value as thousandths (`0.5` → 500); unparsable → 0.
fn parse_q(q: &str) -> u32 {
    let q = q.trim();
    let (whole, frac) = q.split_once('.').unwrap_or((q, ""));
    let whole: u32 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return 0,
    };
    let mut thousandths = 0;
    for (i, digit) in frac.bytes().take(3).enumerate() {
        if !digit.is_ascii_digit() {
            return 0;
        }
        thousandths += u32::from(digit - b'0') * [100, 10, 1][i];
    }
    (whole + thousandths).min(1000)
}

/// Whether a client accepts the `Content-Encoding` of a stored answer (RFC 9110 12.5.3: a coding
/// listed with a non-zero q, or `*`; `identity` or no coding always). Keys normalise
/// `Accept-Encoding`, and an application may compress with a coding the edge would not pick: a
/// variant the client cannot decode is never served to it.
pub fn accepts_coding(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(coding) = stored
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
    else {
        return true;
    };
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_list)
        .any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .map_or(1000, parse_q);
            q > 0 && (name == "*" || name.eq_ignore_ascii_case(coding))
        })
}

/// Whether a client's conditional request is satisfied by a stored answer with these
/// headers, so it is answered `304 Not Modified` (RFC 9110 13.1: `If-None-Match` with the weak
/// comparison; `If-Modified-Since` only without it, and only for GET and HEAD).
pub fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(inm) = request.get(header::IF_NONE_MATCH) {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Ok(inm) = inm.to_str() else { return false };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        return split_list(inm).any(|t| t == "*" || weak(t) == weak(etag));
    }
    let Some(since) = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    stored
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .is_some_and(|modified| modified <= since)
}

/// What a `Range` request gets from a stored whole answer (RFC 9110 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole answer: no `Range`, one this cache does not serve (several ranges, another
    /// unit, invalid), or an `If-Range` that does not match the stored answer (14.2 lets a
    /// server ignore a `Range`).
    Whole,
    /// `206 Partial Content` with these bytes (first, last, both included).
    Part { first: u64, last: u64 },
    /// `416 Range Not Satisfiable` (`Content-Range: bytes */LENGTH`).
    Unsatisfiable,
}

/// The answer to a GET's `Range` from a stored `200` answer of `length` bytes with the headers
/// `stored`: one byte range (`bytes=A-B`, `bytes=A-`, `bytes=-N`), honoured when `If-Range`
/// (if any) names the stored answer by a strong `ETag` or its exact `Last-Modified` date.
pub fn range_answer(request: &HeaderMap, stored: &HeaderMap, length: u64) -> RangeAnswer {
    let Some(range) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Whole;
    };
    if request.get_all(header::RANGE).iter().count() > 1 {
        return RangeAnswer::Whole;
    }
    if let Some(if_range) = request.get(header::IF_RANGE) {
        let Ok(if_range) = if_range.to_str().map(str::trim) else {
            return RangeAnswer::Whole;
        };
        let matches = if if_range.starts_with('"') || if_range.starts_with("W/") {
            // Strong comparison (13.1.3): a weak tag on either side never matches.
            stored
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|etag| !if_range.starts_with("W/") && etag.trim() == if_range)
        } else {
            stored
                .get(header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|modified| modified.trim() == if_range)
        };
        if !matches {
            return RangeAnswer::Whole;
        }
    }
    let Some((unit, spec)) = range.split_once('=') else {
        return RangeAnswer::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) => {
            if suffix == 0 || length == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    first: length.saturating_sub(suffix),
                    last: length - 1,
                }
            }
        }
        (false, Some(first), None) if last.trim().is_empty() => {
            if first >= length {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    first,
                    last: length - 1,
                }
            }
        }
        (false, Some(first), Some(last)) if first <= last => {
            if first >= length {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    first,
                    last: last.min(length - 1),
                }
            }
        }
        // Not a valid range: ignored (14.2).
        _ => RangeAnswer::Whole,
    }
}

/// The headers of a stored answer after a `304` to the cache's own conditional request
/// (RFC 9111 4.3.4): the `304`'s headers replace the stored ones, except those that describe
/// the stored body or whom it may go to, which the cache keeps as they are (4.3.4 lets a cache
/// exclude headers): `Set-Cookie` is never taken (one client's cookie would be replayed to
/// all), and the stored `Vary`, `Content-Encoding`, `ETag` and framing headers stay those of
/// the stored body (the edge may have added `Vary: Accept-Encoding` and weakened the `ETag`
/// when it compressed: the replica's `Vary: Origin` or strong `ETag` would hand the compressed
/// body to every client, under a validator of another representation).
pub fn merge_not_modified(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut headers = stored.clone();
    let kept = [
        header::SET_COOKIE,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::VARY,
        header::CONTENT_ENCODING,
        header::ETAG,
    ];
    for name in not_modified.keys() {
        if kept.contains(name) {
            continue;
        }
        headers.remove(name);
        for value in not_modified.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// The headers a `304` from the cache carries (RFC 9110 15.4.5).
pub const NOT_MODIFIED_HEADERS: [HeaderName; 6] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
];

#[cfg(test)]
mod tests;
