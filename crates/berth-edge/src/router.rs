//! Route matching: host (exact, `*.suffix`, or any) and path prefix → service. The most
//! specific route wins: an exact host beats a wildcard, a wildcard beats any host, and among
//! those the longest path prefix wins.

use berth_model::routing::RouteEntry;

/// Routes sorted most specific first.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<RouteEntry>,
}

fn host_rank(host: &Option<String>) -> u8 {
    match host {
        Some(h) if h.starts_with("*.") => 1,
        Some(_) => 2,
        None => 0,
    }
}

impl Router {
    pub fn new(mut routes: Vec<RouteEntry>) -> Self {
        routes.sort_by(|a, b| {
            host_rank(&b.host)
                .cmp(&host_rank(&a.host))
                .then(b.path.len().cmp(&a.path.len()))
        });
        Self { routes }
    }

    /// The service for a request's host (without port, any case) and path.
    pub fn route(&self, host: &str, path: &str) -> Option<&str> {
        self.route_entry(host, path).map(|r| r.service.as_str())
    }

    /// The route a request's host and path match.
    pub fn route_entry(&self, host: &str, path: &str) -> Option<&RouteEntry> {
        let host = host.to_ascii_lowercase();
        self.routes
            .iter()
            .find(|r| host_matches(r.host.as_deref(), &host) && path_matches(&r.path, path))
    }
}

fn host_matches(pattern: Option<&str>, host: &str) -> bool {
    match pattern {
        None => true,
        Some(p) => match p.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(&suffix.to_ascii_lowercase())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => p.eq_ignore_ascii_case(host),
        },
    }
}

/// `/api` matches `/api`, `/api/x` and `/api?q`, not `/apix`.
fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" || prefix.is_empty() {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The host of a request, from `Host` (HTTP/1.1) or the URI authority (HTTP/2), without port.
pub fn request_host(req: &hyper::Request<impl Sized>) -> String {
    let raw = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    strip_port(raw).to_string()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [::1]:8080
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, path: &str, service: &str) -> RouteEntry {
        RouteEntry {
            host: host.map(str::to_string),
            path: path.into(),
            service: service.into(),
            headers: Default::default(),
            compress: None,
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let router = Router::new(vec![
            route(None, "/", "default"),
            route(None, "/api", "api"),
            route(Some("*.example.com"), "/", "wild"),
            route(Some("shop.example.com"), "/", "shop"),
            route(Some("shop.example.com"), "/admin", "admin"),
        ]);
        assert_eq!(router.route("shop.example.com", "/admin/x"), Some("admin"));
        assert_eq!(router.route("SHOP.example.com", "/cart"), Some("shop"));
        assert_eq!(router.route("blog.example.com", "/api"), Some("wild"));
        assert_eq!(router.route("example.com", "/api/v1"), Some("api"));
        assert_eq!(router.route("example.com", "/apix"), Some("default"));
        assert_eq!(router.route("other.org", "/"), Some("default"));
    }

    #[test]
    fn no_match_is_none() {
        let router = Router::new(vec![route(Some("a.com"), "/", "a")]);
        assert_eq!(router.route("b.com", "/"), None);
        assert_eq!(Router::default().route("a.com", "/"), None);
    }

    #[test]
    fn wildcard_needs_a_subdomain() {
        assert!(host_matches(Some("*.example.com"), "a.example.com"));
        assert!(!host_matches(Some("*.example.com"), "example.com"));
        assert!(!host_matches(Some("*.example.com"), "badexample.com"));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.com:8080"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }
}
