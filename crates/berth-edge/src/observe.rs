//! What the admin listener shows of the control plane's metrics without knowing its store: the
//! daemon serves its read-only metrics API on `observe.sock` in the edge's folder; the admin
//! listener forwards `/api/metrics` (and `/api/metrics/names`) there and adds the daemon's
//! newest values to its own `/metrics`, and the dashboard's page (`/dashboard/*`) and read-only
//! JSON (`/api/status`, `/api/deploys`, `/api/releases`, `/api/alarms`, `/api/features`, `/api/backups`) the same way. Whatever
//! the method, the daemon is asked with GET: nothing reached from here changes state. When the
//! admin listener is not on loopback, every path but `/healthz` and `/dashboard/login` needs
//! `Authorization: Bearer TOKEN` or the `berth_admin` cookie holding it (the token is in
//! `admin.token` in the edge's folder, 0600, made once); `/dashboard/login?token=TOKEN` sets the
//! cookie (HttpOnly, SameSite=Strict) and sends the browser on without the token in its URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// The most a forwarded answer may hold.
pub const FORWARD_LIMIT: usize = 32 * 1024 * 1024;
/// How long a forwarded request may take.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/metrics` waits for the daemon's part (without it, the edge's own is served).
pub const METRICS_WAIT: Duration = Duration::from_secs(2);

/// The admin listener's link to the daemon's metrics and its access rule.
#[derive(Debug, Clone)]
pub struct Observe {
    pub socket: PathBuf,
    /// Required when the admin listener is not on loopback.
    pub token: Option<String>,
    /// The same token, made whatever the listener: the replicas' logs (`/api/logs`) need it
    /// even on loopback, where every local user reaches this listener while `berth logs`
    /// needs the owner's 0600 socket.
    pub log_token: String,
}

impl Observe {
    /// For an edge in `dir` whose admin listener is `admin`: the token is read (or made) only
    /// when the listener is reachable from other hosts.
    pub fn new(dir: &Path, admin: std::net::SocketAddr) -> std::io::Result<Observe> {
        let log_token = load_or_create_token(&dir.join("admin.token"))?;
        let token = (!admin.ip().is_loopback()).then(|| log_token.clone());
        Ok(Observe {
            socket: dir.join("observe.sock"),
            token,
            log_token,
        })
    }

    /// Whether a request with this `Authorization` header and these `Cookie` headers may read
    /// `path`.
    pub fn allowed(&self, path: &str, authorization: Option<&[u8]>, cookies: &[&[u8]]) -> bool {
        if path == "/healthz" || path == LOGIN_PATH || path == SESSION_PATH {
            return true;
        }
        if path == LOGS_PATH {
            return has_token(&self.log_token, authorization, cookies);
        }
        match &self.token {
            None => true,
            Some(token) => has_token(token, authorization, cookies),
        }
    }

    /// The answer to `GET /dashboard/login?QUERY`: with the right `token=`, a redirect to the
    /// dashboard that sets the cookie; else the form asking for it (401 after a wrong one).
    /// The token never goes into a log.
    pub fn login(&self, query: Option<&str>) -> Login {
        // On loopback too: the token opens the replicas' logs.
        let token = &self.log_token;
        // The token is hex: no percent-decoding is needed to compare it (a pasted space or
        // newline comes as `+` or `%..` and is trimmed).
        let given = query.and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .map(|v| v.trim_matches(|c: char| c == '+' || c.is_whitespace()))
                .map(|v| {
                    v.trim_start_matches("%20")
                        .trim_end_matches("%0A")
                        .trim_end_matches("%0D")
                        .to_string()
                })
        });
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                Login::Redirect {
                    cookie: Some(format!(
                        "berth_admin={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"
                    )),
                }
            }
            Some(_) => Login::Form { wrong: true },
            None => Login::Form { wrong: false },
        }
    }
}

/// What the admin listener does with a request (once its `Host` passed), decided here and done
/// by the server.
#[derive(Debug, PartialEq)]
pub enum Access {
    /// 401 with a pointer to the token.
    Unauthorized,
    /// 303 to `location`, setting the cookie when given.
    Redirect {
        location: &'static str,
        cookie: Option<String>,
    },
    /// The login form (401 when `wrong`).
    LoginForm { wrong: bool },
    /// GET this path on the daemon's socket and pass the answer on.
    Forward(String),
    /// `/api/session`: what this browser may see (`{"logs": true}` with the token).
    Session { logs: bool },
    /// One of the edge's own paths (`/metrics`, `/healthz`, `/table`, or 404).
    Local,
}

impl Observe {
    /// The decision for `path?query` with these credentials.
    pub fn access(
        &self,
        path: &str,
        query: Option<&str>,
        authorization: Option<&[u8]>,
        cookies: &[&[u8]],
    ) -> Access {
        if !self.allowed(path, authorization, cookies) {
            if path == "/dashboard" || path.starts_with("/dashboard/") {
                // A browser: to the form asking for the token.
                return Access::Redirect {
                    location: LOGIN_PATH,
                    cookie: None,
                };
            }
            return Access::Unauthorized;
        }
        if path == LOGIN_PATH {
            return match self.login(query) {
                Login::Redirect { cookie } => Access::Redirect {
                    location: "/dashboard/",
                    cookie,
                },
                Login::Form { wrong } => Access::LoginForm { wrong },
            };
        }
        if path == SESSION_PATH {
            return Access::Session {
                logs: has_token(&self.log_token, authorization, cookies),
            };
        }
        if path == "/" || path == "/dashboard" {
            return Access::Redirect {
                location: "/dashboard/",
                cookie: None,
            };
        }
        match forwarded_path(path, query) {
            Some(target) => Access::Forward(target),
            None => Access::Local,
        }
    }
}

/// Where a browser without the token is sent; it asks for the token.
pub const LOGIN_PATH: &str = "/dashboard/login";
/// What the page asks to know whether it may show the replicas' logs (answered by the edge).
pub const SESSION_PATH: &str = "/api/session";
/// The replicas' newest log lines (the token needed on loopback too).
pub const LOGS_PATH: &str = "/api/logs";

/// Whether the `Authorization: Bearer` header or a `berth_admin` cookie holds `token`.
fn has_token(token: &str, authorization: Option<&[u8]>, cookies: &[&[u8]]) -> bool {
    if let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) {
        return constant_time_eq(given.trim_ascii(), token.as_bytes());
    }
    cookies
        .iter()
        .flat_map(|header| header.split(|b| *b == b';'))
        .filter_map(|pair| pair.trim_ascii().strip_prefix(COOKIE_PREFIX))
        .any(|given| constant_time_eq(given, token.as_bytes()))
}
const COOKIE_PREFIX: &[u8] = b"berth_admin=";

/// What `/dashboard/login` answers.
#[derive(Debug, PartialEq)]
pub enum Login {
    /// 303 to `/dashboard/`, setting this cookie (None: no token needed on loopback).
    Redirect { cookie: Option<String> },
    /// The form; `wrong` after a token that was not the one.
    Form { wrong: bool },
}

/// The login form: no script, no style (the CSP allows neither inline).
pub fn login_page(wrong: bool) -> String {
    let note = if wrong {
        "<p><strong>That is not the token.</strong></p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Berth: log in</title></head><body>\
<h1>berth</h1><p>Give the token in <code>.berth/ENV/edge/admin.token</code> on the server (it opens the dashboard when the admin listener is reachable from other hosts, and the replicas' logs always).</p>{note}\
<form method=\"get\" action=\"/dashboard/login\"><label>Token <input name=\"token\" type=\"password\" autocomplete=\"off\" size=\"70\" required></label> <button>Log in</button></form></body></html>\n"
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the token file, or writes a new random one (0600) when there is none.
pub fn load_or_create_token(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_string();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(token)
}

/// Where an admin path is forwarded on the daemon's socket (None: not a forwarded path).
pub fn forwarded_path(path: &str, query: Option<&str>) -> Option<String> {
    if let Some(file) = path.strip_prefix("/dashboard/") {
        // The page and its files: one plain name, no query.
        let plain = file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        return (plain && !file.starts_with('.') && file.len() <= 64)
            .then(|| format!("/dashboard/{file}"));
    }
    let target = match path {
        "/api/metrics" => "/v1/metrics",
        "/api/metrics/names" => "/v1/metrics/names",
        "/api/status" => "/v1/status",
        "/api/deploys" => "/v1/deploys",
        "/api/releases" => "/v1/releases",
        "/api/alarms" => "/v1/alarms",
        "/api/features" => "/v1/dashboard/features",
        "/api/backups" => "/v1/dashboard/backups",
        LOGS_PATH => "/v1/dashboard/logs",
        _ => return None,
    };
    Some(match query {
        Some(q) if !q.is_empty() => format!("{target}?{q}"),
        _ => target.to_string(),
    })
}

/// The edge's OpenMetrics text with the daemon's Prometheus text put before its `# EOF`.
pub fn merge_metrics(edge: String, daemon: &str) -> String {
    if daemon.trim().is_empty() {
        return edge;
    }
    let (head, eof) = match edge.rfind("# EOF") {
        Some(at) => (&edge[..at], &edge[at..]),
        None => (edge.as_str(), ""),
    };
    let mut out = String::with_capacity(edge.len() + daemon.len() + 1);
    out.push_str(head);
    out.push_str(daemon);
    if !daemon.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(eof);
    out
}

/// The daemon's answer headers the admin listener passes on (the page's security headers).
pub const PASSED_HEADERS: &[hyper::header::HeaderName] = &[
    hyper::header::CONTENT_TYPE,
    hyper::header::CONTENT_SECURITY_POLICY,
    hyper::header::X_CONTENT_TYPE_OPTIONS,
    hyper::header::X_FRAME_OPTIONS,
    hyper::header::REFERRER_POLICY,
    hyper::header::CACHE_CONTROL,
];

/// An answer of the daemon's socket.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Those of [`PASSED_HEADERS`] it had.
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    pub body: Bytes,
}

/// GETs `path` on the daemon's socket.
pub async fn get(socket: &Path, path: &str, timeout: Duration) -> Result<Answer, String> {
    let attempt = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("the daemon's metrics socket: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let request = Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let headers = PASSED_HEADERS
            .iter()
            .filter_map(|name| {
                response
                    .headers()
                    .get(name)
                    .map(|value| (name.clone(), value.clone()))
            })
            .collect();
        let body = Limited::new(response.into_body(), FORWARD_LIMIT)
            .collect()
            .await
            .map_err(|e| format!("answer: {e}"))?
            .to_bytes();
        conn.abort();
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err("the daemon did not answer in time".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_needed_off_loopback_and_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let open = Observe::new(dir.path(), "127.0.0.1:9090".parse().unwrap()).unwrap();
        assert!(open.allowed("/metrics", None, &[]));
        assert_eq!(open.token, None);
        let guarded = Observe::new(dir.path(), "0.0.0.0:9090".parse().unwrap()).unwrap();
        let token = guarded.token.clone().unwrap();
        assert_eq!(open.log_token, token, "one token per edge folder");
        assert_eq!(token.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(guarded.allowed("/healthz", None, &[]));
        assert!(!guarded.allowed("/metrics", None, &[]));
        assert!(!guarded.allowed("/api/metrics", Some(b"Bearer wrong"), &[]));
        assert!(!guarded.allowed(
            "/api/metrics",
            Some(&format!("Bearer {}", &token[..63]).into_bytes()),
            &[]
        ));
        assert!(!guarded.allowed("/api/metrics", Some(token.as_bytes()), &[]));
        assert!(guarded.allowed(
            "/api/metrics",
            Some(&format!("Bearer {token}").into_bytes()),
            &[]
        ));
        // A browser: the cookie set by the login URL, among others.
        let cookie = format!("theme=dark; berth_admin={token}");
        assert!(guarded.allowed("/dashboard/app.js", None, &[cookie.as_bytes()]));
        let short = format!("berth_admin={}", &token[..63]);
        assert!(!guarded.allowed("/api/status", None, &[short.as_bytes()]));
        assert!(!guarded.allowed("/api/status", None, &[b"berth_admin="]));
        assert!(guarded.allowed(LOGIN_PATH, None, &[]));
        // A wrong bearer is not rescued by a cookie.
        assert!(!guarded.allowed("/api/status", Some(b"Bearer x"), &[cookie.as_bytes()]));
        // The same token next time.
        let again = Observe::new(dir.path(), "[::]:9090".parse().unwrap()).unwrap();
        assert_eq!(again.token, Some(token));
    }

    #[test]
    fn the_login_url_sets_the_cookie_only_for_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let open = Observe::new(dir.path(), "127.0.0.1:9090".parse().unwrap()).unwrap();
        // On loopback too the form asks for the token: it opens the replicas' logs.
        assert_eq!(open.login(None), Login::Form { wrong: false });
        let guarded = Observe::new(dir.path(), "0.0.0.0:9090".parse().unwrap()).unwrap();
        let token = guarded.token.clone().unwrap();
        assert_eq!(guarded.login(None), Login::Form { wrong: false });
        assert_eq!(
            guarded.login(Some("token=0123")),
            Login::Form { wrong: true }
        );
        match guarded.login(Some(&format!("token={token}+"))) {
            Login::Redirect {
                cookie: Some(cookie),
            } => {
                assert!(
                    cookie.starts_with(&format!("berth_admin={token};")),
                    "{cookie}"
                );
                assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
            }
            other => panic!("{other:?}"),
        }
        let page = login_page(true);
        assert!(
            !page.contains("<script") && !page.contains(&token),
            "{page}"
        );
    }

    #[test]
    fn a_browser_without_the_token_goes_to_the_login_form_and_comes_back_with_the_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let guarded = Observe::new(dir.path(), "0.0.0.0:9090".parse().unwrap()).unwrap();
        let token = guarded.token.clone().unwrap();
        let to_login = Access::Redirect {
            location: LOGIN_PATH,
            cookie: None,
        };
        assert_eq!(guarded.access("/dashboard/", None, None, &[]), to_login);
        assert_eq!(guarded.access("/dashboard", None, None, &[]), to_login);
        assert_eq!(
            guarded.access("/api/status", None, None, &[]),
            Access::Unauthorized
        );
        assert_eq!(guarded.access("/", None, None, &[]), Access::Unauthorized);
        assert_eq!(
            guarded.access(LOGIN_PATH, None, None, &[]),
            Access::LoginForm { wrong: false }
        );
        assert_eq!(
            guarded.access(LOGIN_PATH, Some("token=nope"), None, &[]),
            Access::LoginForm { wrong: true }
        );
        let query = format!("token={token}");
        let Access::Redirect {
            location: "/dashboard/",
            cookie: Some(cookie),
        } = guarded.access(LOGIN_PATH, Some(&query), None, &[])
        else {
            panic!("no cookie for the right token");
        };
        // The browser sends the cookie's name=value back.
        let sent = cookie.split(';').next().unwrap().to_string();
        assert_eq!(
            guarded.access("/api/status", Some("x=1"), None, &[sent.as_bytes()]),
            Access::Forward("/v1/status?x=1".into())
        );
        assert_eq!(
            guarded.access("/dashboard/", None, None, &[sent.as_bytes()]),
            Access::Forward("/dashboard/".into())
        );
        assert_eq!(
            guarded.access("/metrics", None, None, &[sent.as_bytes()]),
            Access::Local
        );
        assert_eq!(guarded.access("/healthz", None, None, &[]), Access::Local);
        // On loopback: no token for the dashboard; the login form is for the logs.
        let open = Observe::new(dir.path(), "127.0.0.1:9090".parse().unwrap()).unwrap();
        assert_eq!(
            open.access("/", None, None, &[]),
            Access::Redirect {
                location: "/dashboard/",
                cookie: None
            }
        );
        assert_eq!(
            open.access(LOGIN_PATH, None, None, &[]),
            Access::LoginForm { wrong: false }
        );
    }

    #[test]
    fn only_the_read_only_paths_are_forwarded() {
        assert_eq!(
            forwarded_path("/api/metrics", Some("name=requests&service=web")).as_deref(),
            Some("/v1/metrics?name=requests&service=web")
        );
        assert_eq!(
            forwarded_path("/api/metrics/names", None).as_deref(),
            Some("/v1/metrics/names")
        );
        assert_eq!(forwarded_path("/api/secrets", None), None);
        assert_eq!(forwarded_path("/api/metrics/../down", None), None);
        assert_eq!(
            forwarded_path("/api/deploys", Some("limit=5")).as_deref(),
            Some("/v1/deploys?limit=5")
        );
        assert_eq!(forwarded_path("/api/deploys/3/cancel", None), None);
        assert_eq!(forwarded_path("/api/down", None), None);
        assert_eq!(
            forwarded_path("/dashboard/app.js", Some("x=1")).as_deref(),
            Some("/dashboard/app.js")
        );
        assert_eq!(
            forwarded_path("/dashboard/", None).as_deref(),
            Some("/dashboard/")
        );
        assert_eq!(forwarded_path("/dashboard/../v1/down", None), None);
        assert_eq!(forwarded_path("/dashboard/..", None), None);
        assert_eq!(forwarded_path("/dashboard/a/b", None), None);
    }

    #[test]
    fn the_daemons_values_go_before_eof() {
        let merged = merge_metrics(
            "# TYPE a counter\na_total 1\n# EOF\n".into(),
            "# TYPE berth_x gauge\nberth_x 2\n",
        );
        assert_eq!(
            merged,
            "# TYPE a counter\na_total 1\n# TYPE berth_x gauge\nberth_x 2\n# EOF\n"
        );
        assert_eq!(merge_metrics("a 1\n".into(), ""), "a 1\n");
    }

    #[test]
    fn the_logs_need_the_token_even_on_loopback_and_the_session_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let open = Observe::new(dir.path(), "127.0.0.1:9090".parse().unwrap()).unwrap();
        let token = open.log_token.clone();
        // Everything else is open on loopback; the logs are not.
        assert_eq!(
            open.access("/api/status", None, None, &[]),
            Access::Forward("/v1/status".into())
        );
        assert_eq!(
            open.access(LOGS_PATH, Some("service=web"), None, &[]),
            Access::Unauthorized
        );
        assert_eq!(
            open.access(SESSION_PATH, None, None, &[]),
            Access::Session { logs: false }
        );
        let cookie = format!("berth_admin={token}");
        assert_eq!(
            open.access(LOGS_PATH, Some("service=web"), None, &[cookie.as_bytes()]),
            Access::Forward("/v1/dashboard/logs?service=web".into())
        );
        assert_eq!(
            open.access(SESSION_PATH, None, None, &[cookie.as_bytes()]),
            Access::Session { logs: true }
        );
        let bearer = format!("Bearer {token}");
        assert_eq!(
            open.access(LOGS_PATH, None, Some(bearer.as_bytes()), &[]),
            Access::Forward("/v1/dashboard/logs".into())
        );
        let wrong = format!("berth_admin={}", &token[..63]);
        assert_eq!(
            open.access(SESSION_PATH, None, None, &[wrong.as_bytes()]),
            Access::Session { logs: false }
        );
        // The login URL gives the cookie on loopback too.
        assert!(matches!(
            open.access(LOGIN_PATH, Some(&format!("token={token}")), None, &[]),
            Access::Redirect {
                location: "/dashboard/",
                cookie: Some(_)
            }
        ));
    }
}
