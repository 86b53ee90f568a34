//! What stands between the internet and the replicas besides the HTTP codec: who the client
//! is (`X-Forwarded-For` believed only from trusted proxies), per-client rate limits (GCRA),
//! per-client connection limits, path allowlists, and maintenance mode. Pure state and
//! decisions; the proxy and the accept loops call them.
//!
//! The rate limiter is GCRA (the generic cell rate algorithm that governor also implements)
//! over sharded maps written here, because the edge must bound its memory under a flood of
//! distinct addresses: each limit keeps at most [`MAX_CLIENTS`] addresses, dropping the ones
//! whose state has expired first and then arbitrary ones (whose clients get a fresh budget:
//! limits loosen under such a flood, memory never grows). governor's keyed limiter has no
//! such bound. IPv6 clients are keyed by their /64, as one host usually owns a whole /64.
//!
//! Knows nothing of HTTP framing, routing or replicas.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_model::routing::{AllowRule, Maintenance, RateLimit};
use hyper::header::HeaderMap;
use ipnet::IpNet;

/// Most client addresses one rate limit keeps state for.
pub const MAX_CLIENTS: usize = 64 * 1024;
const SHARDS: usize = 16;

/// The address a rate limit or an allowlist judges: the TCP peer, or, when the peer is a
/// trusted proxy, the right-most address of `X-Forwarded-For` that is not one (what a chain of
/// trusted proxies appended last is the client they saw).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_in(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Garbage in the chain: stop at what is known.
            break;
        };
        client = ip.to_canonical();
        if !is_in(client, trusted) {
            break;
        }
    }
    client
}

/// Whether `ip` is in one of `networks`.
pub fn is_in(ip: IpAddr, networks: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    networks.iter().any(|n| n.contains(&ip))
}

/// The key of a client in the limiters: IPv4 as is, IPv6 by its /64.
fn client_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64 << 64) | 1,
    }
}

/// One GCRA limit: `burst` requests at once, then one per `interval`, per client.
pub struct Gcra {
    pub rule: RateLimit,
    interval: u64,
    tolerance: u64,
    epoch: Instant,
    shards: Vec<Mutex<HashMap<u128, u64>>>,
    hasher: std::collections::hash_map::RandomState,
    /// How many times a full shard was swept (a flood's cost; read by tests).
    sweeps: std::sync::atomic::AtomicU64,
}

impl Gcra {
    pub fn new(rule: RateLimit) -> Self {
        let interval = (rule.interval.as_nanos() as u64).max(1);
        let tolerance = interval.saturating_mul(u64::from(rule.burst.max(1)) - 1);
        Self {
            rule,
            interval,
            tolerance,
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            sweeps: Default::default(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Counts a request of `ip` now. Err: it is over the limit; retry after the duration.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, self.now())
    }

    fn check_at(&self, ip: IpAddr, now: u64) -> Result<(), Duration> {
        let key = client_key(ip);
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        let mut clients = shard.lock().unwrap_or_else(|e| e.into_inner());
        // The theoretical arrival time of the next request: never in the past.
        let tat = clients.get(&key).copied().unwrap_or(now).max(now);
        if tat - now > self.tolerance {
            return Err(Duration::from_nanos(tat - now - self.tolerance));
        }
        if !clients.contains_key(&key) && clients.len() >= MAX_CLIENTS / SHARDS {
            // Full: first forget clients whose budget is whole again, then arbitrary ones (the
            // map's order is random per process) down to 7/8 of the shard, so that a flood of
            // new addresses sweeps once per 1/8 of a shard, not once per address.
            self.sweeps
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            clients.retain(|_, t| *t > now);
            let keep = MAX_CLIENTS / SHARDS - MAX_CLIENTS / SHARDS / 8;
            if clients.len() > keep {
                let victims: Vec<u128> =
                    clients.keys().take(clients.len() - keep).copied().collect();
                for victim in victims {
                    clients.remove(&victim);
                }
            }
        }
        clients.insert(key, tat + self.interval);
        Ok(())
    }

    /// Forgets clients whose budget is whole again (their state equals no state).
    pub fn forget_idle(&self) {
        let now = self.now();
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, tat| *tat > now);
        }
    }

    /// Client addresses with state.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rate limits in force, kept across routing tables while a rule is unchanged (so a new
/// table does not hand every client a fresh budget).
#[derive(Default)]
pub struct RateLimits {
    limits: Mutex<Arc<Vec<Arc<Gcra>>>>,
}

impl RateLimits {
    /// Sets the rules; an unchanged rule keeps its state.
    pub fn set(&self, rules: &[RateLimit]) {
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let next: Vec<Arc<Gcra>> = rules
            .iter()
            .map(|rule| {
                limits
                    .iter()
                    .find(|l| l.rule == *rule)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Gcra::new(rule.clone())))
            })
            .collect();
        *limits = Arc::new(next);
    }

    pub fn current(&self) -> Arc<Vec<Arc<Gcra>>> {
        self.limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a request of `ip` for `path` against every rule whose path matches. Err: the
    /// longest wait of the rules it is over.
    pub fn check(&self, ip: IpAddr, path: &str) -> Result<(), Duration> {
        let limits = self.current();
        let mut wait: Option<Duration> = None;
        for limit in limits.iter() {
            if path_matches(&limit.rule.path, path) {
                if let Err(w) = limit.check(ip) {
                    wait = Some(wait.map_or(w, |x| x.max(w)));
                }
            }
        }
        wait.map_or(Ok(()), Err)
    }

    pub fn forget_idle(&self) {
        for limit in self.current().iter() {
            limit.forget_idle();
        }
    }
}

/// Open client connections per address (the TCP peer), for `max_connections_per_ip`.
#[derive(Default)]
pub struct ConnectionCounts {
    shards: [Mutex<HashMap<u128, u32>>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
}

impl ConnectionCounts {
    fn shard(&self, key: u128) -> &Mutex<HashMap<u128, u32>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Takes a connection slot for `ip` (IPv6 by its /64, like the rate limits) if it has
    /// fewer than `max` (0: no limit).
    pub fn open(&self, ip: IpAddr, max: u32) -> bool {
        let ip = client_key(ip);
        let mut counts = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if max > 0 && *count >= max {
            if *count == 0 {
                counts.remove(&ip);
            }
            return false;
        }
        *count += 1;
        true
    }

    pub fn close(&self, ip: IpAddr) {
        let ip = client_key(ip);
        let mut counts = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }

    pub fn count(&self, ip: IpAddr) -> u32 {
        let ip = client_key(ip);
        let counts = self.shard(ip).lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&ip).copied().unwrap_or(0)
    }
}

/// Connections refused over the per-address limit (for the metrics).
pub static REFUSED_CONNECTIONS: AtomicU32 = AtomicU32::new(0);

/// The request path as an application would read it, for allowlists: percent-decoded (so
/// `/%61dmin` is `/admin`), backslashes as slashes, `//` collapsed, `.` and `..` resolved,
/// lower case (so `/ADMIN` is `/admin` for case-insensitive applications). A path that
/// decodes to something unreadable is `None`: the caller refuses it for protected prefixes.
pub fn normalize_path(path: &str) -> Option<String> {
    // Most paths are already as an application reads them: one copy, not six.
    if is_normal(path) {
        return Some(path.to_string());
    }
    normalize_path_slowly(path)
}

/// Whether `normalize_path` would give `path` back unchanged: `/`, or `/` and non-empty
/// segments other than `.` and `..`, with nothing to decode, fold or cut (`%`, `\`, `;`,
/// upper case).
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes == b"/" {
        return true;
    }
    if bytes.first() != Some(&b'/') || bytes.last() == Some(&b'/') {
        return false;
    }
    if bytes
        .iter()
        .any(|&b| matches!(b, b'%' | b'\\' | b';') || b.is_ascii_uppercase() || !b.is_ascii())
    {
        return false;
    }
    path[1..]
        .split('/')
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

fn normalize_path_slowly(path: &str) -> Option<String> {
    let mut decoded = path.as_bytes().to_vec();
    // Twice: `%252e` decodes to `%2e` and then to `.` in servers that decode again.
    for _ in 0..2 {
        if !decoded.contains(&b'%') {
            break;
        }
        decoded = percent_decode(&decoded)?;
    }
    let text = String::from_utf8(decoded).ok()?;
    let text = text.replace('\\', "/").to_ascii_lowercase();
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        // `;` parameters (`/admin;x=1`, `/..;/admin`) are not part of the segment for Java
        // servers: off before the dot segments are resolved.
        match segment.split(';').next().unwrap_or(segment) {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    if segments.iter().any(|s| s.contains('%')) {
        // Still encoded after two rounds: no path an application would agree on.
        return None;
    }
    Some(format!("/{}", segments.join("/")))
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `/api` matches `/api`, `/api/x` and `/api?q`, not `/apix`; `/` matches everything. A
/// prefix ending in `*` matches any continuation (`/admin*` matches `/administrator`).
pub fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" || prefix.is_empty() {
        return true;
    }
    if let Some(stem) = prefix.strip_suffix('*') {
        return path.starts_with(stem);
    }
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
        None => false,
    }
}

/// Whether `ip` may reach `path` under the allow rules: a path under a rule's prefix (after
/// normalisation) needs the address in that rule's ranges.
pub fn allowed(rules: &[AllowRule], path: &str, ip: IpAddr) -> bool {
    if rules.is_empty() {
        return true;
    }
    let Some(normal) = normalize_path(path) else {
        // Undecodable: allowed only where no rule could be meant (every rule must pass).
        return rules.iter().all(|rule| is_in(ip, &rule.from));
    };
    rules.iter().all(|rule| {
        let prefix = rule.path.to_ascii_lowercase();
        !path_matches(&prefix, &normal) || is_in(ip, &rule.from)
    })
}

/// Whether maintenance mode answers this request of `service` from `ip`.
pub fn in_maintenance(maintenance: Option<&Maintenance>, service: &str, ip: IpAddr) -> bool {
    match maintenance {
        None => false,
        Some(m) => {
            (m.services.is_empty() || m.services.iter().any(|s| s == service))
                && !is_in(ip, &m.allow)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use proptest::prelude::*;

    proptest! {
        /// The fast path gives what the full normalisation gives, whenever it is taken.
        #[test]
        fn a_normal_path_normalises_to_itself(path in "(/[a-zA-Z0-9.;%\\\\_~-]{0,6}){0,5}|[/a-z.%;]{0,12}") {
            if is_normal(&path) {
                prop_assert_eq!(normalize_path_slowly(&path), Some(path.clone()));
            }
            prop_assert_eq!(normalize_path(&path), normalize_path_slowly(&path));
        }
    }

    #[test]
    fn which_paths_are_already_normal() {
        for normal in [
            "/",
            "/a",
            "/img/x.png",
            "/a/b.c/d",
            "/.well-known/acme-challenge/t",
        ] {
            assert!(is_normal(normal), "{normal}");
        }
        for not in [
            "", "a", "/a/", "//a", "/a//b", "/./a", "/a/..", "/A", "/%61", "/a;b", "/a\\b",
        ] {
            assert!(!is_normal(not), "{not}");
            assert_ne!(normalize_path_slowly(not).as_deref(), Some(not), "{not}");
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn rule(path: &str, interval_ms: u64, burst: u32) -> RateLimit {
        RateLimit {
            path: path.into(),
            interval: Duration::from_millis(interval_ms),
            burst,
        }
    }

    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let gcra = Gcra::new(rule("/", 1000, 3));
        let a = ip("192.0.2.1");
        let ms = 1_000_000u64;
        assert!(gcra.check_at(a, 0).is_ok());
        assert!(gcra.check_at(a, 0).is_ok());
        assert!(gcra.check_at(a, 0).is_ok());
        let wait = gcra.check_at(a, 0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(1000));
        // Another client has its own budget.
        assert!(gcra.check_at(ip("192.0.2.2"), 0).is_ok());
        // One interval later, one more.
        assert!(gcra.check_at(a, 1000 * ms).is_ok());
        assert!(gcra.check_at(a, 1000 * ms).is_err());
        // Long idle: the whole burst again.
        for _ in 0..3 {
            assert!(gcra.check_at(a, 10_000 * ms).is_ok());
        }
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let gcra = Gcra::new(rule("/", 1000, 1));
        assert!(gcra.check_at(ip("2001:db8:1:2::1"), 0).is_ok());
        assert!(gcra.check_at(ip("2001:db8:1:2::ffff"), 0).is_err());
        assert!(gcra.check_at(ip("2001:db8:1:3::1"), 0).is_ok());
        // v4-mapped is the v4 address.
        assert!(gcra.check_at(ip("192.0.2.9"), 0).is_ok());
        assert!(gcra.check_at(ip("::ffff:192.0.2.9"), 0).is_err());
    }

    #[test]
    fn a_flood_of_addresses_keeps_memory_bounded() {
        let gcra = Gcra::new(rule("/", 1000, 5));
        for n in 0..(MAX_CLIENTS as u32 * 3) {
            let _ = gcra.check_at(IpAddr::from(n.to_be_bytes()), 0);
        }
        assert!(gcra.len() <= MAX_CLIENTS, "{}", gcra.len());
        // Every address is active (time stands still): sweeps free 1/8 of a shard each, so
        // 2 × MAX_CLIENTS new addresses past the full map cost about 16 × 16 sweeps, not one
        // per address.
        let sweeps = gcra.sweeps.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            sweeps <= 2 * 8 * SHARDS as u64 + SHARDS as u64,
            "{sweeps} sweeps"
        );
        gcra.forget_idle();
    }

    #[test]
    fn unchanged_rules_keep_their_state_across_tables() {
        let limits = RateLimits::default();
        limits.set(&[rule("/", 1000, 1), rule("/login", 1000, 1)]);
        let a = ip("192.0.2.1");
        assert!(limits.check(a, "/login").is_ok());
        assert!(limits.check(a, "/").is_err(), "the / rule counted /login");
        limits.set(&[rule("/", 1000, 1)]);
        assert!(limits.check(a, "/x").is_err(), "state kept");
        limits.set(&[rule("/", 500, 1)]);
        assert!(
            limits.check(a, "/x").is_ok(),
            "a changed rule starts afresh"
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.1.1.1"),
        );
        // From a trusted proxy: the right-most untrusted hop.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("203.0.113.7")
        );
        // From anyone else: the peer itself, whatever it claims.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &headers, &trusted),
            ip("198.51.100.1")
        );
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn allowlists_see_through_path_tricks() {
        let rules = vec![AllowRule {
            path: "/admin".into(),
            from: nets(&["10.0.0.0/8"]),
        }];
        let outsider = ip("203.0.113.7");
        let insider = ip("10.2.3.4");
        for path in [
            "/admin",
            "/admin/",
            "/ADMIN/users",
            "//admin",
            "/%61dmin",
            "/%2561dmin",
            "/x/../admin",
            "/./admin",
            "/admin;jsessionid=1",
            "\\admin",
            "/x/..;/admin",
            "/..;/admin",
            "/.;/admin",
            "/%2e%2e%3b/admin",
        ] {
            assert!(!allowed(&rules, path, outsider), "{path} let through");
            assert!(
                allowed(&rules, path, insider),
                "{path} refused to an insider"
            );
        }
        for path in ["/", "/administrator", "/shop/admin", "/adminx"] {
            assert!(allowed(&rules, path, outsider), "{path} refused");
        }
        assert!(
            !allowed(&rules, "/%zz", outsider),
            "undecodable paths are refused"
        );
    }

    #[test]
    fn connection_counts_are_per_address_and_bounded() {
        let counts = ConnectionCounts::default();
        let a = ip("192.0.2.1");
        assert!(counts.open(a, 2));
        assert!(counts.open(a, 2));
        assert!(!counts.open(a, 2));
        assert!(counts.open(ip("192.0.2.2"), 2));
        counts.close(a);
        assert!(counts.open(a, 2));
        assert_eq!(counts.count(a), 2);
        assert!(counts.open(a, 0), "0: no limit");
    }

    #[test]
    fn maintenance_applies_to_its_services_except_allowed_clients() {
        let m = Maintenance {
            services: vec!["web".into()],
            message: None,
            allow: nets(&["10.0.0.0/8"]),
        };
        assert!(in_maintenance(Some(&m), "web", ip("203.0.113.7")));
        assert!(!in_maintenance(Some(&m), "api", ip("203.0.113.7")));
        assert!(!in_maintenance(Some(&m), "web", ip("10.0.0.1")));
        assert!(!in_maintenance(None, "web", ip("203.0.113.7")));
        let all = Maintenance::default();
        assert!(in_maintenance(Some(&all), "api", ip("203.0.113.7")));
    }
}
