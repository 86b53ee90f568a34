//! An independent reader of HTTP/1.x requests, the second opinion of the differential tests.
//!
//! `httparse` splits the request line and the field lines (as the brief allows); everything
//! after that is written here from the RFCs and shares no code with the edge:
//! - field values (RFC 9110 5.5): HTAB, SP, VCHAR, obs-text only;
//! - the request target (RFC 9112 3.2): origin form, `*`, absolute form `scheme://authority...`
//!   (no user information), authority form for CONNECT only. Lenient where RFC 9112 only says
//!   SHOULD and nginx is lenient too: UTF-8 beyond ASCII in a path (RFC 3986 wants it
//!   percent-encoded) and a fragment (which is dropped) are accepted; other bytes outside RFC
//!   3986 are refused with the reason "target characters" (the edge's URI type accepts some,
//!   `"{}|^\`, as browsers send them: a tolerated difference);
//! - Host (RFC 9112 3.2): at most one, exactly one on HTTP/1.1 (absolute form included), and a
//!   valid `uri-host [":" port]` or empty;
//! - framing (RFC 9112 6.1, 6.3): Transfer-Encoding on HTTP/1.0 → reject; Transfer-Encoding
//!   beside Content-Length → reject; a Transfer-Encoding that is not exactly `chunked` →
//!   reject (501 for a coding the server does not implement, 400 for nonsense); Content-Length
//!   values (lists and repeated fields) must be decimal and agree (RFC 9110 8.6);
//! - chunked bodies (RFC 9112 7.1), with a bare LF accepted as a line end (RFC 9112 2.2 lets a
//!   recipient do so; nginx and HAProxy do) and a bare CR refused anywhere.
//!
//! Deliberate caps, the same as the edge's (a recipient must guard against overflow, RFC 9112
//! 7.1 and RFC 9110 8.6, and both sides choose to refuse rather than saturate): a Content-Length
//! of at most 19 digits, a chunk size of at most 15 hex digits, a chunk-size line of at most
//! 4096 bytes, at most 100 header fields. Chunk extensions are read the way nginx reads them:
//! after the size, optional blanks, then `;` and any visible characters (their grammar is not
//! checked; they are dropped).

#![allow(dead_code)]

/// Why the reference refused a stream: 501 (a transfer coding it does not implement) or 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadRequest(&'static str),
    NotImplemented,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefFraming {
    None,
    Length(u64),
    Chunked,
}

/// One request as the reference read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
    pub framing: RefFraming,
    /// Bytes of the head, its final empty line included.
    pub head_len: usize,
    /// Bytes of the body on the wire (chunk framing and trailers included).
    pub body_len: usize,
    /// The body's content once decoded.
    pub body: Vec<u8>,
}

impl Message {
    /// Head and body: where the next request starts.
    pub fn len(&self) -> usize {
        self.head_len + self.body_len
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The stream ends before the request does.
    Incomplete,
    Refused(Refusal),
    Accepted(Message),
}

const MAX_HEADERS: usize = 100;
const MAX_CL_DIGITS: usize = 19;
const MAX_CHUNK_DIGITS: usize = 15;
const MAX_CHUNK_LINE: usize = 4096;

fn bad(why: &'static str) -> Verdict {
    Verdict::Refused(Refusal::BadRequest(why))
}

macro_rules! refuse {
    ($why:expr) => {
        return bad($why)
    };
}

/// Reads the request at the start of `input`.
pub fn read_request(input: &[u8]) -> Verdict {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let head_len = match request.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Verdict::Incomplete,
        Err(_) => refuse!("syntax"),
    };
    let method = request.method.unwrap_or_default().to_string();
    // httparse hands the target over as `str` without checking UTF-8: take its bytes.
    let target = match std::str::from_utf8(request.path.unwrap_or_default().as_bytes()) {
        Ok(target) => target.to_string(),
        Err(_) => refuse!("a target that is not UTF-8"),
    };
    let version = match request.version {
        Some(v @ (0 | 1)) => v,
        _ => refuse!("version"),
    };
    let headers: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    for (_, value) in &headers {
        if !value.iter().all(|&b| field_vchar(b)) {
            refuse!("a control character in a field value");
        }
    }
    let all = |name: &str| -> Vec<&[u8]> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    };

    // The request target, and the authority it names if any.
    if !target.bytes().all(|b| uri_char(b) || b >= 0x80) {
        refuse!("target characters");
    }
    let absolute = absolute_authority(&target);
    let authority: Option<&str> = if method == "CONNECT" {
        // Authority form, and only for CONNECT (RFC 9112 3.2.3).
        if target.contains(['/', '?', '#', '@']) {
            refuse!("CONNECT without authority form");
        }
        Some(target.as_str())
    } else if target == "*" {
        None
    } else if target.starts_with('/') {
        None
    } else if absolute.is_some() {
        absolute
    } else {
        // Neither origin, asterisk nor absolute form: the authority form (or nonsense), which
        // only CONNECT may use.
        refuse!("a target form other than the method's");
    };
    if let Some(authority) = authority {
        if !valid_host(authority.as_bytes()) {
            refuse!("target authority");
        }
    }

    let hosts = all("host");
    if hosts.len() > 1 {
        refuse!("two Host fields");
    }
    if version == 1 && hosts.is_empty() {
        if authority.is_some() {
            refuse!("HTTP/1.1 without Host, the target naming the host");
        }
        refuse!("HTTP/1.1 without Host");
    }
    if let Some(host) = hosts.first() {
        if !host.is_empty() && !valid_host(host) {
            if authority.is_some() {
                refuse!("invalid Host, the target naming the host");
            }
            if valid_host_but_port(host) {
                refuse!("invalid Host port");
            }
            refuse!("invalid Host");
        }
    }

    // Framing, RFC 9112 6.3.
    let codings = all("transfer-encoding");
    let lengths = all("content-length");
    let framing = if !codings.is_empty() {
        if version == 0 {
            refuse!("Transfer-Encoding on HTTP/1.0");
        }
        if !lengths.is_empty() {
            refuse!("Transfer-Encoding and Content-Length");
        }
        let joined: Vec<&[u8]> = codings
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows)
            .collect();
        if joined.len() == 1 && joined[0].eq_ignore_ascii_case(b"chunked") {
            RefFraming::Chunked
        } else if joined
            .iter()
            .all(|c| !c.is_empty() && c.iter().all(|&b| tchar(b)))
        {
            // A list of codings, e.g. gzip, chunked: not implemented (nginx: 501).
            return Verdict::Refused(Refusal::NotImplemented);
        } else {
            refuse!("malformed Transfer-Encoding");
        }
    } else if !lengths.is_empty() {
        let mut length: Option<u64> = None;
        for value in &lengths {
            for item in value.split(|&b| b == b',') {
                let item = trim_ows(item);
                if item.is_empty()
                    || item.len() > MAX_CL_DIGITS
                    || !item.iter().all(u8::is_ascii_digit)
                {
                    refuse!("Content-Length");
                }
                let n: u64 = std::str::from_utf8(item).unwrap().parse().unwrap();
                if length.is_some_and(|l| l != n) {
                    refuse!("Content-Lengths disagree");
                }
                length = Some(n);
            }
        }
        RefFraming::Length(length.unwrap())
    } else {
        RefFraming::None
    };

    let rest = &input[head_len..];
    let (body_len, body) = match framing {
        RefFraming::None => (0, Vec::new()),
        RefFraming::Length(n) => {
            if (rest.len() as u64) < n {
                return Verdict::Incomplete;
            }
            (n as usize, rest[..n as usize].to_vec())
        }
        RefFraming::Chunked => match read_chunked(rest) {
            Ok(Some(read)) => read,
            Ok(None) => return Verdict::Incomplete,
            Err(why) => refuse!(why),
        },
    };
    Verdict::Accepted(Message {
        method,
        target,
        version,
        headers,
        framing,
        head_len,
        body_len,
        body,
    })
}

/// Reads every request in `input` in turn until one is not accepted.
pub fn read_stream(mut input: &[u8]) -> Vec<Verdict> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let verdict = read_request(input);
        let next = match &verdict {
            Verdict::Accepted(m) => Some(m.len()),
            _ => None,
        };
        out.push(verdict);
        match next {
            Some(n) => input = &input[n..],
            None => break,
        }
    }
    out
}

/// Reads a chunked body: `Ok(Some((wire bytes, content)))`, `Ok(None)` when incomplete.
pub fn read_chunked(input: &[u8]) -> Result<Option<(usize, Vec<u8>)>, &'static str> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let Some((line, next)) = line_at(input, at, MAX_CHUNK_LINE)? else {
            return Ok(None);
        };
        let size = chunk_size(line)?;
        at = next;
        if size == 0 {
            break;
        }
        if ((input.len() - at) as u64) < size {
            return Ok(None);
        }
        body.extend_from_slice(&input[at..at + size as usize]);
        at += size as usize;
        match input.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            _ => match input.get(at) {
                None => return Ok(None),
                Some(b'\n') => at += 1,
                Some(b'\r') if at + 1 == input.len() => return Ok(None),
                Some(_) => return Err("chunk data not followed by a line end"),
            },
        }
    }
    // Trailer section: field lines, then an empty line.
    loop {
        let Some((line, next)) = line_at(input, at, usize::MAX)? else {
            return Ok(None);
        };
        at = next;
        if line.is_empty() {
            return Ok(Some((at, body)));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err("a trailer line without a colon");
        };
        if colon == 0 || !line[..colon].iter().all(|&b| tchar(b)) {
            return Err("a trailer field name that is not a token");
        }
        if !line[colon + 1..].iter().all(|&b| field_vchar(b)) {
            return Err("a control character in a trailer value");
        }
    }
}

/// The line starting at `at`: its content (without CRLF or LF) and where the next one starts.
fn line_at(input: &[u8], at: usize, max: usize) -> Result<Option<(&[u8], usize)>, &'static str> {
    let rest = &input[at..];
    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
        // A CR can only be the first half of a CRLF still to come.
        if rest.iter().rev().skip(1).any(|&b| b == b'\r') {
            return Err("a bare CR");
        }
        if rest.len() > max {
            return Err("a line too long");
        }
        return Ok(None);
    };
    let line = rest[..lf].strip_suffix(b"\r").unwrap_or(&rest[..lf]);
    if line.contains(&b'\r') {
        return Err("a bare CR");
    }
    if line.len() > max {
        return Err("a line too long");
    }
    Ok(Some((line, at + lf + 1)))
}

/// `1*HEXDIG [ BWS ";" ... ]` (see the module's note on extensions).
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_CHUNK_DIGITS {
        return Err("chunk size");
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    if !rest.is_empty()
        && (rest[0] != b';'
            || !rest
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Err("chunk size line");
    }
    Ok(u64::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap(), 16).unwrap())
}

/// The authority of an absolute-form target, `scheme "://" authority [ path-abempty ] [ "?" query ]`.
fn absolute_authority(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    let mut s = scheme.bytes();
    let first_alpha = s.next().is_some_and(|b| b.is_ascii_alphabetic());
    if !first_alpha || !s.all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
    {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() {
        return None;
    }
    Some(authority)
}

/// `uri-host [ ":" port ]` (RFC 3986 3.2.2, 3.2.3); user information is refused.
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &value[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match &value[close + 1..] {
            [] => (&value[..=close], None),
            [b':', port @ ..] => (&value[..=close], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
    if host.is_empty() || (host[0] != b'[' && !host.iter().all(|&b| reg_name(b))) {
        return false;
    }
    port.is_none_or(|p| p.iter().all(u8::is_ascii_digit))
}

/// Whether `value` would be a valid Host but for its port.
fn valid_host_but_port(value: &[u8]) -> bool {
    match value.iter().rposition(|&b| b == b':') {
        Some(colon) => !valid_host(value) && valid_host(&value[..colon]),
        None => false,
    }
}

/// RFC 3986 characters of a request target (pchar, "/", "?", "%"), and "#" (see above).
fn uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%#[]".contains(&b)
}

fn field_vchar(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

pub fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    let end = s.len()
        - s[start..]
            .iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
    &s[start..end]
}
