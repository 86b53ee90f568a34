//! Berth's web application firewall: request parts in, verdict out.
//!
//! It owns the detection of five families of attacks (SQL injection, cross-site scripting, path
//! traversal / local file inclusion, remote command execution, PHP injection) in the parts of a
//! request an application reads: the path, the query string (decoded parameters, names and
//! values), the headers a browser or client fills with data (`User-Agent`, `Referer`, cookies,
//! and custom headers), and urlencoded, multipart (field values and file names, never file
//! contents), JSON (string values and keys, recursively) and XML bodies, up to a configured
//! size. Values are normalised before matching (`decode`).
//!
//! It never knows sockets, the edge, async runtimes, the spec file or logging: the edge hands it
//! borrowed parts and acts on the [`Verdict`] (403 page, access-log fields, metrics). Everything
//! is precompiled in [`Waf::new`]; [`Waf::inspect`] does no I/O and keeps nothing between
//! requests but per-thread scratch buffers and a small memory of values every group found
//! clean (a browser's `User-Agent`, a client's cookies), which saves work and never changes a
//! verdict.

mod body;
mod chars;
mod decode;
mod lexicon;
mod rules;
mod sqli;
mod xss;

use std::fmt;
use std::str::FromStr;

/// A rule group, one per attack family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Sqli,
    Xss,
    Lfi,
    Rce,
    Php,
}

impl Group {
    pub const ALL: [Group; 5] = [Group::Sqli, Group::Xss, Group::Lfi, Group::Rce, Group::Php];

    pub fn name(self) -> &'static str {
        match self {
            Group::Sqli => "sqli",
            Group::Xss => "xss",
            Group::Lfi => "lfi",
            Group::Rce => "rce",
            Group::Php => "php",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Group {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Group::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| ConfigError::UnknownGroup(s.to_string()))
    }
}

/// What a group does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Refuse the request (the edge answers 403).
    #[default]
    Block,
    /// Let it through, but report the finding (log and metrics only).
    Count,
    /// Do not run the group.
    Off,
}

impl FromStr for Mode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "block" => Ok(Mode::Block),
            "count" => Ok(Mode::Count),
            "off" => Ok(Mode::Off),
            _ => Err(ConfigError::UnknownMode(s.to_string())),
        }
    }
}

/// The action a finding carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Block,
    Count,
}

/// A part of requests the WAF skips under a path prefix: whole groups, or some targets only
/// (`query:q`, `cookie:*`, `body:form:content`, `body`, `header:user-agent`...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclusion {
    /// Requests whose path starts with this (`/admin/editor`).
    pub path_prefix: String,
    /// Groups skipped; empty means all.
    pub groups: Vec<Group>,
    /// Targets skipped; empty means all. A target matches a finding's location when equal to
    /// it, when it is a prefix of it followed by `:` (`body` skips `body:form:x`), or when it
    /// ends with `*` and the location starts with what comes before.
    pub targets: Vec<String>,
}

impl Exclusion {
    /// Builds an exclusion from the spec's strings, checking group names and target forms.
    pub fn parse(
        path_prefix: &str,
        groups: &[&str],
        targets: &[&str],
    ) -> Result<Self, ConfigError> {
        let groups = groups
            .iter()
            .map(|g| g.parse())
            .collect::<Result<Vec<Group>, _>>()?;
        let e = Exclusion {
            path_prefix: path_prefix.to_string(),
            groups,
            targets: targets.iter().map(|t| t.to_string()).collect(),
        };
        e.validate()?;
        Ok(e)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.path_prefix.starts_with('/') {
            return Err(ConfigError::BadExclusion {
                prefix: self.path_prefix.clone(),
                reason: "the path prefix must start with `/`".into(),
            });
        }
        for t in &self.targets {
            let kind = t.split(':').next().unwrap_or("");
            if !matches!(
                kind,
                "path" | "query" | "query-name" | "header" | "cookie" | "cookie-name" | "body"
            ) {
                return Err(ConfigError::BadExclusion {
                    prefix: self.path_prefix.clone(),
                    reason: format!(
                        "unknown target `{t}`: use path, query[:NAME], query-name[:NAME], header[:NAME], cookie[:NAME], cookie-name[:NAME] or body[:form|multipart|json|xml[:NAME]]"
                    ),
                });
            }
        }
        Ok(())
    }

    fn covers_target(&self, location: &str) -> bool {
        self.targets.is_empty()
            || self.targets.iter().any(|t| {
                location == t
                    || location
                        .strip_prefix(t.as_str())
                        .is_some_and(|r| r.starts_with(':'))
                    || t.strip_suffix('*').is_some_and(|p| location.starts_with(p))
            })
    }
}

/// A group's mode for requests under a path prefix (`/api` → `sqli` in `count`); the longest
/// matching prefix wins over the group's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeOverride {
    pub path_prefix: String,
    pub group: Group,
    pub mode: Mode,
}

impl ModeOverride {
    /// Builds an override from the spec's strings.
    pub fn parse(path_prefix: &str, group: &str, mode: &str) -> Result<Self, ConfigError> {
        let o = ModeOverride {
            path_prefix: path_prefix.to_string(),
            group: group.parse()?,
            mode: mode.parse()?,
        };
        o.validate()?;
        Ok(o)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.path_prefix.starts_with('/') {
            return Err(ConfigError::BadOverride {
                prefix: self.path_prefix.clone(),
                reason: "the path prefix must start with `/`".into(),
            });
        }
        Ok(())
    }
}

/// Configuration, built by the edge from the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WafConfig {
    pub sqli: Mode,
    pub xss: Mode,
    pub lfi: Mode,
    pub rce: Mode,
    pub php: Mode,
    /// How much of a body is inspected; the rest passes unread (default 64 KiB).
    pub max_body_bytes: usize,
    /// Remember, per thread, the last values found clean by every group (a browser's
    /// `User-Agent`, a client's cookies), so the next request that repeats one skips it. The
    /// verdict is the same either way; this only saves work (default on).
    pub remember_clean_values: bool,
    pub exclusions: Vec<Exclusion>,
    /// Per-path modes (`/api` → `sqli` in `count`), over the defaults above.
    pub overrides: Vec<ModeOverride>,
}

impl Default for WafConfig {
    fn default() -> Self {
        WafConfig {
            sqli: Mode::Block,
            xss: Mode::Block,
            lfi: Mode::Block,
            rce: Mode::Block,
            php: Mode::Block,
            max_body_bytes: 64 * 1024,
            remember_clean_values: true,
            exclusions: Vec::new(),
            overrides: Vec::new(),
        }
    }
}

impl WafConfig {
    pub fn mode(&self, g: Group) -> Mode {
        match g {
            Group::Sqli => self.sqli,
            Group::Xss => self.xss,
            Group::Lfi => self.lfi,
            Group::Rce => self.rce,
            Group::Php => self.php,
        }
    }

    /// A group's mode for a request path: the longest matching override, else the default.
    pub fn mode_at(&self, g: Group, path: &[u8]) -> Mode {
        self.overrides
            .iter()
            .filter(|o| o.group == g && path.starts_with(o.path_prefix.as_bytes()))
            .max_by_key(|o| o.path_prefix.len())
            .map_or(self.mode(g), |o| o.mode)
    }

    /// Sets a group's mode from the spec's strings (`set("sqli", "count")`).
    pub fn set(&mut self, group: &str, mode: &str) -> Result<(), ConfigError> {
        let g: Group = group.parse()?;
        let m: Mode = mode.parse()?;
        *match g {
            Group::Sqli => &mut self.sqli,
            Group::Xss => &mut self.xss,
            Group::Lfi => &mut self.lfi,
            Group::Rce => &mut self.rce,
            Group::Php => &mut self.php,
        } = m;
        Ok(())
    }
}

/// A configuration problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown WAF rule group `{0}`: use sqli, xss, lfi, rce or php")]
    UnknownGroup(String),
    #[error("unknown WAF mode `{0}`: use block, count or off")]
    UnknownMode(String),
    #[error("bad WAF exclusion for `{prefix}`: {reason}")]
    BadExclusion { prefix: String, reason: String },
    #[error("bad WAF mode override for `{prefix}`: {reason}")]
    BadOverride { prefix: String, reason: String },
    #[error("max_body_bytes must be at most 16 MiB, not {0}")]
    BodyLimit(usize),
}

/// A request body as the edge buffered it.
#[derive(Clone, Copy, Debug)]
pub struct Body<'a> {
    /// The `Content-Type` header value.
    pub content_type: &'a [u8],
    /// The body, or its first bytes; only `max_body_bytes` of it are read.
    pub bytes: &'a [u8],
}

/// The parts of a request the WAF reads, borrowed from the edge's parsed head.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    pub method: &'a [u8],
    /// The raw path, without the query string (as on the request line).
    pub path: &'a [u8],
    /// The raw query string, without `?`.
    pub query: Option<&'a [u8]>,
    /// Header names and values as received.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    pub body: Option<Body<'a>>,
}

/// One match: the group, the rule, where it matched, and what the edge should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub group: Group,
    pub rule_id: &'static str,
    /// `path`, `query:id`, `query-name:id`, `header:user-agent`, `cookie:session`,
    /// `body:form:comment`, `body:multipart-filename:file`, `body:json:$.items[0].name`,
    /// `body:xml`.
    pub location: String,
    pub action: Action,
}

/// The WAF's answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// At most one finding per group (the first); count-mode findings let the request pass.
    Findings(Vec<Finding>),
}

impl Verdict {
    pub fn is_blocked(&self) -> bool {
        matches!(self, Verdict::Findings(f) if f.iter().any(|f| f.action == Action::Block))
    }

    pub fn findings(&self) -> &[Finding] {
        match self {
            Verdict::Allow => &[],
            Verdict::Findings(f) => f,
        }
    }
}

/// Where a value came from; turned into a location string only when a rule matches.
#[derive(Clone, Copy)]
pub(crate) enum Loc<'a> {
    Path,
    QueryValue(&'a [u8]),
    QueryName(&'a [u8]),
    Header(&'a [u8]),
    CookieValue(&'a [u8]),
    CookieName(&'a [u8]),
    Form(&'a [u8]),
    FormName(&'a [u8]),
    Multipart(&'a [u8]),
    MultipartFilename(&'a [u8]),
    Json(&'a str),
    JsonKey(&'a str),
    Xml,
}

impl Loc<'_> {
    fn render(self) -> String {
        let s = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(64)]).into_owned();
        match self {
            Loc::Path => "path".into(),
            Loc::QueryValue(n) => format!("query:{}", s(n)),
            Loc::QueryName(n) => format!("query-name:{}", s(n)),
            Loc::Header(n) => format!("header:{}", s(n).to_ascii_lowercase()),
            Loc::CookieValue(n) => format!("cookie:{}", s(n)),
            Loc::CookieName(n) => format!("cookie-name:{}", s(n)),
            Loc::Form(n) => format!("body:form:{}", s(n)),
            Loc::FormName(n) => format!("body:form-name:{}", s(n)),
            Loc::Multipart(n) => format!("body:multipart:{}", s(n)),
            Loc::MultipartFilename(n) => format!("body:multipart-filename:{}", s(n)),
            Loc::Json(p) => format!("body:json:{p}"),
            Loc::JsonKey(p) => format!("body:json-key:{p}"),
            Loc::Xml => "body:xml".into(),
        }
    }
}

/// Headers never inspected: framing, negotiation, caching, credentials and the edge's own.
const SKIPPED_HEADERS: &[&str] = &[
    "host",
    "accept",
    "accept-encoding",
    "accept-language",
    "accept-charset",
    "connection",
    "keep-alive",
    "proxy-connection",
    "content-length",
    "content-type",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "cache-control",
    "pragma",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
    "authorization",
    "proxy-authorization",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "via",
    "x-request-id",
    "traceparent",
    "tracestate",
    "baggage",
    "dnt",
    "upgrade-insecure-requests",
    "priority",
    "origin",
    "content-encoding",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-fetch-user",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "x-csrf-token",
    "x-xsrf-token",
];

/// Header families never inspected: client hints and fetch metadata (`sec-ch-ua`,
/// `sec-fetch-*`: structured values a browser fills, no application data), content
/// negotiation and conditionals.
const SKIPPED_HEADER_PREFIXES: &[&str] = &["sec-", "accept-", "if-", "access-control-"];

/// The compiled WAF. Cheap to share (`Arc<Waf>`); `inspect` takes `&self`.
pub struct Waf {
    config: WafConfig,
    sqli: sqli::SqliDetector,
    rules: rules::Rules,
}

/// Per-request scratch buffers, kept per thread between requests so a request allocates
/// nothing for them once the buffers have grown.
#[derive(Default)]
struct Scratch {
    canon: Vec<u8>,
    lower: Vec<u8>,
    html: Vec<u8>,
    a: Vec<u8>,
    b: Vec<u8>,
    toks: Vec<sqli::T>,
    hits: Vec<lexicon::Hit>,
    clean: CleanValues,
}

/// A few recently seen values that every group found clean, by hash, compared in full.
#[derive(Default)]
struct CleanValues {
    slots: Vec<(u64, Vec<u8>)>,
}

impl CleanValues {
    const SLOTS: usize = 64;

    fn hash(raw: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in raw {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    fn contains(&self, h: u64, raw: &[u8]) -> bool {
        self.slots
            .get(h as usize % Self::SLOTS)
            .is_some_and(|(k, v)| *k == h && v == raw)
    }

    fn insert(&mut self, h: u64, raw: &[u8]) {
        if self.slots.is_empty() {
            self.slots.resize_with(Self::SLOTS, Default::default);
        }
        let slot = &mut self.slots[h as usize % Self::SLOTS];
        slot.0 = h;
        slot.1.clear();
        slot.1.extend_from_slice(raw);
    }
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// The state of one inspection.
struct Run<'w> {
    waf: &'w Waf,
    /// Groups still to run on the remaining values.
    active: u8,
    /// Exclusions that apply to this path and name targets.
    partial: Vec<&'w Exclusion>,
    findings: Vec<Finding>,
    /// Rule matches so far, excluded ones included: a value is clean only if none matched.
    matched: usize,
    /// Each group's mode at this request's path.
    modes: [Mode; 5],
    scratch: Scratch,
}

impl Waf {
    /// Compiles the configuration.
    pub fn new(config: WafConfig) -> Result<Waf, ConfigError> {
        for e in &config.exclusions {
            e.validate()?;
        }
        for o in &config.overrides {
            o.validate()?;
        }
        if config.max_body_bytes > 16 << 20 {
            return Err(ConfigError::BodyLimit(config.max_body_bytes));
        }
        Ok(Waf {
            config,
            sqli: sqli::SqliDetector::new(),
            rules: rules::Rules::new(),
        })
    }

    pub fn config(&self) -> &WafConfig {
        &self.config
    }

    /// How many body bytes the edge should buffer at most for [`Waf::inspect`].
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }

    /// The groups that run on requests to `path`, after mode and whole-group exclusions.
    fn active_groups(&self, path: &[u8]) -> (u8, Vec<&Exclusion>) {
        let mut active = 0u8;
        for g in Group::ALL {
            if self.config.mode_at(g, path) != Mode::Off {
                active |= g.bit();
            }
        }
        let mut partial = Vec::new();
        for e in &self.config.exclusions {
            if path.starts_with(e.path_prefix.as_bytes()) {
                if e.targets.is_empty() {
                    if e.groups.is_empty() {
                        active = 0;
                    }
                    for g in &e.groups {
                        active &= !g.bit();
                    }
                } else {
                    partial.push(e);
                }
            }
        }
        (active, partial)
    }

    /// Whether the edge should buffer this request's body: it has one (by its headers), its
    /// content type is one the WAF parses, and some group runs on bodies at this path.
    pub fn needs_body(&self, headers: &[(&[u8], &[u8])], path: &[u8]) -> bool {
        let has_body = headers.iter().any(|(n, v)| {
            (n.eq_ignore_ascii_case(b"content-length") && v.trim_ascii() != b"0")
                || n.eq_ignore_ascii_case(b"transfer-encoding")
        });
        has_body && self.reads_body(headers, path)
    }

    /// Whether the WAF reads a body of this request, knowing one follows (the edge knows from
    /// the framing it decided, HTTP/2 streams included, which need no length header). The
    /// content type is the first one (the one the edge forwards to decide on; the edge refuses
    /// requests with two).
    pub fn reads_body(&self, headers: &[(&[u8], &[u8])], path: &[u8]) -> bool {
        let ct = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
            .map(|(_, v)| *v);
        let Some(ct) = ct else { return false };
        if body::kind(ct).is_none() {
            return false;
        }
        let scope = scope_path(path);
        let (active, partial) = self.active_groups(&scope);
        active != 0
            && !partial
                .iter()
                .any(|e| e.groups.is_empty() && e.targets.iter().any(|t| t == "body"))
    }

    /// Inspects a request.
    pub fn inspect(&self, req: &RequestParts<'_>) -> Verdict {
        // Exclusions and overrides match the path the application will see: decoded, dot
        // segments resolved (`/admin/editor/../../search` is `/search`, not the editor).
        let scope = scope_path(req.path);
        let (active, partial) = self.active_groups(&scope);
        if active == 0 {
            return Verdict::Allow;
        }
        let mut run = Run {
            waf: self,
            active,
            partial,
            findings: Vec::new(),
            matched: 0,
            modes: Group::ALL.map(|g| self.config.mode_at(g, &scope)),
            scratch: SCRATCH.with(|s| s.take()),
        };
        run.path(req.path);
        if let Some(q) = req.query {
            run.params(q, Loc::QueryValue, Loc::QueryName);
        }
        for (name, value) in req.headers {
            if run.active == 0 {
                break;
            }
            if name.eq_ignore_ascii_case(b"cookie") {
                run.cookies(value);
            } else if name.eq_ignore_ascii_case(b"referer") {
                // A URL: its query parameters are data; the rest is a plain value.
                match memchr::memchr(b'?', value) {
                    Some(p) => {
                        run.value(&value[..p], Loc::Header(name), Kind::Value);
                        run.params(
                            &value[p + 1..],
                            |_| Loc::Header(name),
                            |_| Loc::Header(name),
                        );
                    }
                    None => run.value(value, Loc::Header(name), Kind::Value),
                }
            } else if !SKIPPED_HEADERS
                .iter()
                .any(|s| name.eq_ignore_ascii_case(s.as_bytes()))
                && !SKIPPED_HEADER_PREFIXES.iter().any(|p| {
                    name.len() > p.len() && name[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                })
            {
                let lname = name.to_ascii_lowercase();
                let kind = if memchr::memmem::find(&lname, b"filename").is_some()
                    || memchr::memmem::find(&lname, b"file-name").is_some()
                {
                    Kind::Filename
                } else {
                    Kind::Value
                };
                run.value(value, Loc::Header(name), kind);
            }
        }
        if let Some(b) = req.body {
            let bytes = &b.bytes[..b.bytes.len().min(self.config.max_body_bytes)];
            body::inspect(&mut run, b.content_type, bytes);
        }
        let Run {
            findings, scratch, ..
        } = run;
        SCRATCH.with(|s| s.replace(scratch));
        if findings.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Findings(findings)
        }
    }
}

/// How a value is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Value,
    /// A parameter or cookie name: the same detectors, as names carry payloads too.
    Name,
    /// A file name (multipart, `X-Filename`): also checked for executable PHP names.
    Filename,
}

impl Run<'_> {
    fn path(&mut self, path: &[u8]) {
        let s = &mut self.scratch;
        decode::canonical(path, &mut s.canon, &mut s.a);
        decode::lower_into(&s.canon, &mut s.lower);
        if self.active & Group::Lfi.bit() != 0 {
            // The raw path too: `/..%2f` and friends decode into traversal.
            let lower = std::mem::take(&mut s.lower);
            let r = self.waf.rules.lfi_path(&lower, &mut self.scratch.a);
            self.scratch.lower = lower;
            if let Some(r) = r {
                self.report(Group::Lfi, r, Loc::Path);
            }
        }
        // The other families look at the path's segments as values (`/get/<svg onload=...>`),
        // but a plain path (letters, digits, `/-_.~`) cannot carry any of them.
        if path
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"/-_.~,".contains(&c))
        {
            return;
        }
        let mut lower = std::mem::take(&mut self.scratch.lower);
        self.detect(&lower, Loc::Path, !Group::Lfi.bit());
        // An application routes a path segment as a value (`/item/<id>`): SQL written where
        // that value goes starts after a `/` (`/item/1 or 1=1--`, `/get/or '{}'::jsonb ?
        // 'a'`), which the whole path, starting with `/`, never reads as.
        if self.active & Group::Sqli.bit() != 0 {
            if let Some(r) = self
                .waf
                .sqli
                .detect_segments(&lower, &mut self.scratch.toks)
            {
                self.report(Group::Sqli, r, Loc::Path);
            }
        }
        // A `+` in a path is a literal plus, but applications that route a segment into a form
        // decoder read it as a blank (`/item/5'+union+select+1`): SQL sees it that way too.
        if lower.contains(&b'+') && lower.iter().any(|&c| matches!(c, b'\'' | b'"' | b'`')) {
            for c in lower.iter_mut().filter(|c| **c == b'+') {
                *c = b' ';
            }
            self.detect(&lower, Loc::Path, Group::Sqli.bit());
        }
        self.scratch.lower = lower;
    }

    /// `a=1&b=2` (query strings, urlencoded bodies, a Referer's query).
    fn params<'p>(
        &mut self,
        q: &'p [u8],
        val: impl Fn(&'p [u8]) -> Loc<'p>,
        name: impl Fn(&'p [u8]) -> Loc<'p>,
    ) {
        let mut dec = Vec::new();
        for pair in q.split(|&c| c == b'&') {
            if self.active == 0 {
                return;
            }
            if pair.is_empty() {
                continue;
            }
            let (n, v) = match memchr::memchr(b'=', pair) {
                Some(p) => (&pair[..p], Some(&pair[p + 1..])),
                None => (pair, None),
            };
            decode::percent_decode_into(n, true, &mut dec);
            self.value(&dec, name(n), Kind::Name);
            // An encoded `=` in a name (`a%3D1' or 1=1`) hides a value there: a backend
            // that decodes twice sees one, and splits what follows at `&` into more
            // parameters (`a%3D1%26b%3D2`: `a=1`, `b=2`).
            if let Some(p) = memchr::memchr(b'=', &dec) {
                let rest = dec[p + 1..].to_vec();
                self.value(&rest, name(n), Kind::Value);
                if memchr::memchr(b'&', &rest).is_some() {
                    for sub in rest.split(|&c| c == b'&') {
                        let (sn, sv) = match memchr::memchr(b'=', sub) {
                            Some(q) => (&sub[..q], &sub[q + 1..]),
                            None => (sub, &b""[..]),
                        };
                        self.value(sn, name(n), Kind::Name);
                        self.value(sv, name(n), Kind::Value);
                    }
                }
            }
            if let Some(v) = v {
                decode::percent_decode_into(v, true, &mut dec);
                self.value(&dec, val(n), Kind::Value);
            }
        }
    }

    fn cookies(&mut self, header: &[u8]) {
        for pair in header.split(|&c| c == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            match memchr::memchr(b'=', pair) {
                Some(p) => {
                    let (n, v) = (pair[..p].trim_ascii(), &pair[p + 1..]);
                    self.value(n, Loc::CookieName(n), Kind::Name);
                    self.value(v, Loc::CookieValue(n), Kind::Value);
                    // Multi-valued cookies (`a=1&b=2`, as ASP.NET writes them): the
                    // application reads each sub-value on its own.
                    if memchr::memchr(b'&', v).is_some() && memchr::memchr(b'=', v).is_some() {
                        for sub in v.split(|&c| c == b'&') {
                            let sv = memchr::memchr(b'=', sub).map_or(sub, |q| &sub[q + 1..]);
                            self.value(sv, Loc::CookieValue(n), Kind::Value);
                        }
                    }
                }
                None => self.value(pair, Loc::CookieName(pair), Kind::Name),
            }
        }
    }

    /// Normalises a value and runs the active groups on it.
    pub(crate) fn value(&mut self, raw: &[u8], loc: Loc<'_>, kind: Kind) {
        if self.active == 0 || raw.is_empty() {
            return;
        }
        // Long values that repeat across requests (user agents, cookies) are looked up first.
        let all = Group::ALL.iter().fold(0, |m, g| m | g.bit());
        let remember = self.waf.config.remember_clean_values
            && kind != Kind::Filename
            && (24..=2048).contains(&raw.len());
        let h = if remember { CleanValues::hash(raw) } else { 0 };
        if remember && self.scratch.clean.contains(h, raw) {
            return;
        }
        let complete = self.active == all;
        let matched_before = self.matched;
        self.value_uncached(raw, loc, kind);
        if remember && complete && self.matched == matched_before {
            self.scratch.clean.insert(h, raw);
        }
    }

    fn value_uncached(&mut self, raw: &[u8], loc: Loc<'_>, kind: Kind) {
        let s = &mut self.scratch;
        decode::canonical(raw, &mut s.canon, &mut s.a);
        decode::lower_into(&s.canon, &mut s.lower);
        let lower = std::mem::take(&mut s.lower);
        if kind == Kind::Filename && self.active & Group::Php.bit() != 0 {
            if let Some(r) = rules::Rules::php_filename(&lower) {
                self.report(Group::Php, r, loc);
            }
        }
        self.detect(&lower, loc, 0xff);
        self.scratch.lower = lower;
    }

    fn detect(&mut self, lower: &[u8], loc: Loc<'_>, mask: u8) {
        let mut hits = std::mem::take(&mut self.scratch.hits);
        self.waf.rules.lexicon.scan(lower, &mut hits);
        self.detect_with(lower, &hits, loc, mask);
        self.scratch.hits = hits;
    }

    fn detect_with(&mut self, lower: &[u8], hits: &[lexicon::Hit], loc: Loc<'_>, mask: u8) {
        let on = |g: Group, active: u8| active & mask & g.bit() != 0;
        // Which punctuation the value holds decides which detectors can match at all: most
        // values (ids, tokens, names, prose) need one or two of them, not five.
        let cs = chars::summary(lower);
        use chars::*;
        let sql_syntax = cs.any(
            QUOTE
                | EQ
                | LT
                | GT
                | PAREN
                | SEMI
                | DASH
                | HASH
                | SLASH
                | PIPE
                | AMP
                | AT
                | COLON
                | STAR
                | BANG
                | TILDE
                | SPACE
                // `1\nunion\nselect`: line breaks are blanks to SQL.
                | NEWLINE,
        );
        if on(Group::Sqli, self.active) {
            let r = if sql_syntax {
                self.waf.sqli.detect(lower, hits, &mut self.scratch.toks)
            } else {
                self.waf.sqli.detect_word(lower, hits)
            };
            if let Some(r) = r {
                self.report(Group::Sqli, r, loc);
            }
        }
        let js_hit = hits.iter().any(|h| h.family == lexicon::Family::Js);
        let hints = lexicon::hint_bits(hits);
        if on(Group::Xss, self.active)
            && (js_hit
                || cs.any(
                    LT | COLON | EQ | PAREN | BACKTICK | AMP | PLUS | BRACKET | DOLLAR | BACKSLASH,
                )
                // A DTD declaration, a comment's end, a module import: rarer syntax.
                || cs.any(BANG) && find(lower, b"!entity").is_some()
                || cs.any(GT) && xss::comment_breakout(lower)
                || cs.any(QUOTE) && hints & lexicon::HINT_IMPORT != 0)
        {
            decode::html_entities_into(lower, &mut self.scratch.html);
            if self.scratch.html.contains(&b'&') && self.scratch.html.len() < lower.len() {
                // Entities inside entities (`&amp;lt;`): one more round, as for `%`.
                decode::html_entities_into(&self.scratch.html, &mut self.scratch.b);
                std::mem::swap(&mut self.scratch.html, &mut self.scratch.b);
            }
            let html = std::mem::take(&mut self.scratch.html);
            let r = xss::detect(lower, &html, js_hit, hints, &mut self.scratch.b);
            self.scratch.html = html;
            if let Some(r) = r {
                self.report(Group::Xss, r, loc);
            }
        }
        let file_hit = hits.iter().any(|h| h.family == lexicon::Family::File);
        if on(Group::Lfi, self.active)
            && (file_hit
                || cs.any(SLASH | BACKSLASH | COLON)
                || (cs.any(DOT) && find(lower, b"..").is_some())
                || find(lower, b"0x").is_some())
        {
            if let Some(r) = self.waf.rules.lfi(lower, Some(hits), &mut self.scratch.a) {
                self.report(Group::Lfi, r, loc);
            }
        }
        if on(Group::Rce, self.active) {
            let r = self
                .waf
                .rules
                .rce(lower, Some(hits), cs, &mut self.scratch.a)
                .or_else(|| {
                    // Shell payloads inside markup-escaped values (`&#x7B;`).
                    if cs.any(AMP) {
                        decode::html_entities_into(lower, &mut self.scratch.html);
                        let c2 = chars::summary(&self.scratch.html);
                        self.waf
                            .rules
                            .rce(&self.scratch.html, None, c2, &mut self.scratch.b)
                    } else {
                        None
                    }
                });
            if let Some(r) = r {
                self.report(Group::Rce, r, loc);
            }
        }
        if on(Group::Php, self.active) && cs.any(PAREN | DOLLAR | LT | BRACKET | BRACE | COLON | EQ)
        {
            if let Some(r) = self.waf.rules.php(lower) {
                self.report(Group::Php, r, loc);
            }
        }
    }

    fn report(&mut self, group: Group, rule_id: &'static str, loc: Loc<'_>) {
        if self.active & group.bit() == 0 {
            return;
        }
        self.matched += 1;
        let location = loc.render();
        if self.partial.iter().any(|e| {
            (e.groups.is_empty() || e.groups.contains(&group)) && e.covers_target(&location)
        }) {
            return;
        }
        let action = match self.modes[group as usize] {
            Mode::Block => Action::Block,
            Mode::Count => Action::Count,
            Mode::Off => return,
        };
        self.active &= !group.bit();
        self.findings.push(Finding {
            group,
            rule_id,
            location,
            action,
        });
    }
}

/// The path exclusions and overrides are matched against: percent-decoded (repeatedly, like
/// values), `\` as `/`, and dot segments removed as RFC 3986 does.
fn scope_path(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // Most paths are their own scope: nothing to decode, no `\\`, no `;` parameters, no dot
    // segment. Those are taken as they are (this ran for every request).
    let plain = raw.first() == Some(&b'/')
        && !raw.iter().any(|&c| matches!(c, b'%' | b'\\' | b';'))
        && !raw.windows(2).any(|w| w == b"/.");
    if plain {
        return std::borrow::Cow::Borrowed(raw);
    }
    std::borrow::Cow::Owned(resolve_scope_path(raw))
}

/// The scope of any path: percent-decoded, `\\` read as `/`, `;` parameters and dot segments
/// resolved.
fn resolve_scope_path(raw: &[u8]) -> Vec<u8> {
    let (mut p, mut tmp) = (raw.to_vec(), Vec::new());
    decode::decode_repeated(&mut p, &mut tmp, decode::MAX_DECODE_ROUNDS);
    let mut out: Vec<&[u8]> = Vec::new();
    let replaced: Vec<u8> = p
        .iter()
        .map(|&c| if c == b'\\' { b'/' } else { c })
        .collect();
    let segs: Vec<&[u8]> = replaced.split(|&c| c == b'/').collect();
    let last = segs.len().saturating_sub(1);
    for (i, seg) in segs.iter().enumerate() {
        // `;` parameters are not part of the segment for Java servers (`/..;/admin`).
        let seg = &seg.split(|&c| c == b';').next().unwrap_or(seg);
        match *seg {
            b"." => {}
            b".." => {
                if out.len() > 1 {
                    out.pop();
                }
            }
            _ => out.push(seg),
        }
        // A trailing `.` or `..` leaves a trailing slash.
        if i == last && (*seg == b"." || *seg == b"..") {
            out.push(b"");
        }
    }
    let mut r = out.join(&b'/');
    if r.first() != Some(&b'/') {
        r.insert(0, b'/');
    }
    r
}

/// Substring search tuned for the short values a request carries and for many different
/// needles: `memchr` for the first byte, then a compare (building a `memmem` searcher per call
/// costs more than it saves here).
#[inline]
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = needle.split_first() else {
        return Some(0);
    };
    if haystack.len() < needle.len() {
        return None;
    }
    if haystack.len() < 48 {
        // Short values: a plain loop beats setting up a vector search per needle.
        return (0..=haystack.len() - needle.len())
            .find(|&i| haystack[i] == first && &haystack[i + 1..i + needle.len()] == rest);
    }
    let mut from = 0;
    while from + needle.len() <= haystack.len() {
        let p = from + memchr::memchr(first, &haystack[from..haystack.len() - rest.len()])?;
        if &haystack[p + 1..p + needle.len()] == rest {
            return Some(p);
        }
        from = p + 1;
    }
    None
}

#[cfg(test)]
mod tests;
