//! Message heads, both directions, and the one authority on body framing.
//!
//! A client's request head is parsed here once into a [`RequestHead`] whose [`Framing`] every
//! later decision uses; a replica's answer head likewise into its parts and body [`Decoder`].
//! The `Content-Length` and `Transfer-Encoding` a peer sent never travel on: the edge writes the
//! framing of what it actually sends ([`write_request_head`], [`write_response_head`]).
//! Refused as RFC 9112 says (and as nginx does): a `Transfer-Encoding` beside `Content-Length`,
//! on HTTP/1.0, twice, or with a coding other than `chunked` (501); `Content-Length` values that
//! disagree or are not numbers; an HTTP/1.1 request without exactly one valid `Host`.
//!
//! Knows nothing of routing, replicas or sockets.

use bytes::{Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::response;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};

use super::body::Decoder;
use crate::errors::{EdgeError, ErrorKind};

/// At most this many header fields in a request head (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// Largest answer head accepted from a replica, and its most fields.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// How a message body is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes (0 included: the sender said so).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Framing {
    /// Whether body bytes follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::Empty | Framing::Length(0))
    }
}

/// A parsed request head and what the connection needs to know about it.
#[derive(Debug)]
pub struct RequestHead {
    pub parts: Parts,
    pub framing: Framing,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

fn bad(why: &'static str) -> EdgeError {
    EdgeError::bad_request(why)
}

/// Parses the request head at the start of `buf`. `Ok(None)`: incomplete, read more. On
/// success the head's bytes are taken off `buf`; header values share their allocation.
/// The framing headers stay in `parts.headers` for the record; [`write_request_head`] never
/// copies them.
pub fn parse_request(
    buf: &mut BytesMut,
    max_head: usize,
) -> Result<Option<RequestHead>, EdgeError> {
    let too_large = || EdgeError::new(ErrorKind::HeadersTooLarge);
    // Offsets into `buf` of each header's name and value, taken during the one parse (as many
    // as there are, not a zeroed array of MAX_HEADERS).
    let (head_len, method, path, version, spans) = {
        // Not initialised: httparse writes the ones it fills (initialising all 100 was a
        // visible share of a small request's instructions).
        let mut headers =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let base = buf.as_ptr() as usize;
        let len = match request.parse_with_uninit_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return if buf.len() > max_head {
                    Err(too_large())
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
            Err(httparse::Error::Version) => {
                return Err(bad("only HTTP/1.0 and HTTP/1.1 are served here"))
            }
            Err(_) => return Err(bad("the request head is not valid HTTP/1.1")),
        };
        if len > max_head {
            return Err(too_large());
        }
        let method = Method::from_bytes(request.method.unwrap_or("").as_bytes())
            .map_err(|_| bad("invalid method"))?;
        let path = request.path.unwrap_or("");
        let path = (path.as_ptr() as usize - base, path.len());
        let version = if request.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let spans: Vec<Span> = request.headers.iter().map(|h| span_of(base, h)).collect();
        (len, method, path, version, spans)
    };
    let head: Bytes = buf.split_to(head_len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path.0..path.0 + path.1))
        .map_err(|_| bad("invalid request target"))?;
    let mut headers = header_map(&head, &spans).map_err(bad)?;

    let framing = request_framing(&headers, version)?;
    check_target(&method, &uri)?;
    check_host(&mut headers, &uri, version)?;
    let connection = connection_tokens(&headers);
    let keep_alive = if version == Version::HTTP_10 {
        connection.keep_alive && !connection.close
    } else {
        !connection.close
    };
    let expect_continue = match headers.get(header::EXPECT) {
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"100-continue") => {
            headers.remove(header::EXPECT);
            version == Version::HTTP_11
        }
        _ => false,
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    let (parts, ()) = request.into_parts();
    Ok(Some(RequestHead {
        parts,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// The body framing of a request, refusing every ambiguous form (RFC 9112 6.1 and 6.3).
pub fn request_framing(headers: &HeaderMap, version: Version) -> Result<Framing, EdgeError> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next() {
        if codings.next().is_some() {
            return Err(bad("more than one Transfer-Encoding header"));
        }
        if version == Version::HTTP_10 {
            return Err(bad("Transfer-Encoding on HTTP/1.0"));
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        let coding = coding.as_bytes().trim_ascii();
        if coding.eq_ignore_ascii_case(b"chunked") {
            return Ok(Framing::Chunked);
        }
        if coding.is_empty() {
            return Err(bad("an empty Transfer-Encoding"));
        }
        // gzip, deflate, "gzip, chunked", "chunked, chunked"...: the edge would have to
        // decode them to forward the body faithfully (nginx answers 501 too).
        return Err(EdgeError::new(ErrorKind::NotImplemented(
            "transfer codings other than chunked",
        )));
    }
    Ok(match content_length(headers)? {
        None => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// The value of the `Content-Length` headers: `None` without one; an error when a value is not
/// a number or the values disagree. Identical values (`5, 5`, or the header twice) count as
/// one (RFC 9110 8.6 lets a recipient take them as one; the edge then writes one).
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, EdgeError> {
    let mut length: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|b| *b == b',') {
            let item = item.trim_ascii();
            // At most 19 digits: always fits a u64.
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                return Err(bad("invalid Content-Length"));
            }
            let n = item.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// The request target's form must be one the method allows (RFC 9112 3.2): origin form
/// (`/path`) or absolute form (`http://host/path`) for every method, `*` for `OPTIONS` only.
/// `CONNECT` (authority form, a tunnel) is not something a reverse proxy does: 501.
fn check_target(method: &Method, uri: &Uri) -> Result<(), EdgeError> {
    if *method == Method::CONNECT {
        return Err(EdgeError::new(ErrorKind::NotImplemented("CONNECT")));
    }
    if uri.scheme().is_some() {
        let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
        if !scheme_ok || uri.authority().is_none() {
            return Err(bad("a request target that is not an http(s) URL"));
        }
        return Ok(());
    }
    if uri.authority().is_some() {
        // Authority form (`host:443`) belongs to CONNECT.
        return Err(bad("a request target in authority form"));
    }
    let target = uri.path_and_query().map_or("", |p| p.as_str());
    if target.starts_with('/') || (target == "*" && *method == Method::OPTIONS) {
        Ok(())
    } else {
        Err(bad("a request target that is not a path"))
    }
}

/// Whether `value` is a valid `Host` (RFC 9112 3.2, RFC 3986 3.2.2-3.2.3): a name of letters,
/// digits, `-`, `.`, `_` and `~`, an IPv4 address, or a bracketed IPv6 address; then
/// optionally `:` and a port of digits.
pub fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|b| *b == b']') else {
            return false;
        };
        let inside = &value[1..end];
        let valid_v6 = std::str::from_utf8(inside)
            .ok()
            .is_some_and(|t| t.parse::<std::net::Ipv6Addr>().is_ok());
        if !valid_v6 {
            return false;
        }
        (&value[..=end], &value[end + 1..])
    } else {
        match value.iter().position(|b| *b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        }
    };
    let host_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b)));
    let port_ok = port.is_empty()
        || (port[0] == b':' && port.len() <= 6 && port[1..].iter().all(u8::is_ascii_digit));
    host_ok && port_ok
}

/// An HTTP/1.1 request names its host exactly once, validly (RFC 9112 3.2), even when its
/// target is in absolute form; two `Host` headers, none, or one that is not a host are refused.
/// A request in absolute form is routed by its URI's authority, which then replaces the
/// `Host` header (RFC 9112 3.2.2), so the replica and the router never see two different hosts.
fn check_host(headers: &mut HeaderMap, uri: &Uri, version: Version) -> Result<(), EdgeError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    match host {
        None if version == Version::HTTP_11 => return Err(bad("an HTTP/1.1 request without Host")),
        // An empty Host is what a client sends for a target without a host (RFC 9112 3.2).
        Some(value) if !value.is_empty() && !is_valid_host(value.as_bytes()) => {
            return Err(bad("an invalid Host header"))
        }
        _ => {}
    }
    if let Some(authority) = uri.authority() {
        if authority.as_str().contains('@') {
            return Err(bad("a request target with user information"));
        }
        if !is_valid_host(authority.as_str().as_bytes()) {
            return Err(bad("an invalid host in the request target"));
        }
        let value =
            HeaderValue::from_str(authority.as_str()).map_err(|_| bad("invalid request target"))?;
        headers.insert(header::HOST, value);
    }
    Ok(())
}

/// Writes the request line and headers as sent to a replica: origin form, every header but the
/// hop-by-hop ones the caller removed and the framing ones, then the edge's own framing line.
/// A `POST`, `PUT` or `PATCH` without a body says `content-length: 0` (servers may demand it).
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    framing: Framing,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Empty if matches!(*method, Method::POST | Method::PUT | Method::PATCH) => {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        Framing::Empty => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// A replica's answer head: its parts (`Content-Length` normalised to one value, or removed
/// when `Transfer-Encoding` overrides it), the decoder of its body, and whether the connection
/// can carry another request afterwards.
pub struct ParsedResponse {
    pub parts: response::Parts,
    pub decoder: Decoder,
    pub reusable: bool,
}

/// Parses an answer head off the start of `buf` (RFC 9112 6.3 for its body). `Ok(None)`:
/// incomplete. An answer with both `Transfer-Encoding` and `Content-Length` is read by the
/// former and its connection closed after it (it may be an attempt to desync).
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ParsedResponse>, &'static str> {
    let (len, code, version, spans) = {
        // Not initialised, as for requests: httparse writes the ones it fills.
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() };
            MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let base = buf.as_ptr() as usize;
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut headers,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err("the replica's answer head is too large")
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("the replica's answer is not valid HTTP/1.1"),
        };
        if len > MAX_RESPONSE_HEAD {
            return Err("the replica's answer head is too large");
        }
        let spans: Vec<Span> = response.headers.iter().map(|h| span_of(base, h)).collect();
        let version = if response.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        (len, response.code.unwrap_or(0), version, spans)
    };
    let head: Bytes = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| "invalid status code")?;
    let mut headers = header_map(&head, &spans)?;
    let connection = connection_tokens(&headers);
    let mut reusable = match version {
        Version::HTTP_10 => connection.keep_alive && !connection.close,
        _ => !connection.close,
    };
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    if chunked && headers.contains_key(header::CONTENT_LENGTH) {
        headers.remove(header::CONTENT_LENGTH);
        reusable = false;
    }
    let length = content_length(&headers).map_err(|_| "invalid Content-Length in the answer")?;
    if let Some(n) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let decoder = if has_no_body(status, method) {
        Decoder::new(Framing::Empty)
    } else if chunked {
        if ends_in_chunked(&headers) {
            Decoder::new(Framing::Chunked)
        } else {
            reusable = false;
            Decoder::until_close()
        }
    } else if let Some(n) = length {
        Decoder::new(Framing::Length(n))
    } else {
        reusable = false;
        Decoder::until_close()
    };
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    let (parts, ()) = response.into_parts();
    Ok(Some(ParsedResponse {
        parts,
        decoder,
        reusable,
    }))
}

/// Where a header's name and value lie in a message head: (name at, name length, value at,
/// value length).
pub type Span = (usize, usize, usize, usize);

/// The span of a header `httparse` found in a buffer starting at address `base`.
pub fn span_of(base: usize, header: &httparse::Header<'_>) -> Span {
    (
        header.name.as_ptr() as usize - base,
        header.name.len(),
        header.value.as_ptr() as usize - base,
        header.value.len(),
    )
}

/// Headers the proxy adds to a request or an answer on its way (`X-Forwarded-*`,
/// `X-Request-Id`, `Via`, the security headers): room is made for them at once, since a full
/// map that grows rehashes every entry.
const ROOM_FOR_ADDED_HEADERS: usize = 10;

/// The headers at `spans` of `head`; values share its allocation.
pub fn header_map(head: &Bytes, spans: &[Span]) -> Result<HeaderMap, &'static str> {
    let mut headers = HeaderMap::with_capacity(spans.len() + ROOM_FOR_ADDED_HEADERS);
    for &(name_at, name_len, value_at, value_len) in spans {
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len])
            .map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
            .map_err(|_| "invalid header value")?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Whether the last transfer coding is `chunked`.
pub fn ends_in_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
}

/// The tokens of a `Connection` header that matter to the connection itself.
#[derive(Default)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
}

pub fn connection_tokens(headers: &HeaderMap) -> ConnectionTokens {
    let mut found = ConnectionTokens::default();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if token.eq_ignore_ascii_case("close") {
                found.close = true;
            } else if token.eq_ignore_ascii_case("keep-alive") {
                found.keep_alive = true;
            }
        }
    }
    found
}

/// Whether `headers` carry `Connection: close`.
pub fn says_close(headers: &HeaderMap) -> bool {
    connection_tokens(headers).close
}

/// Whether a response with this status to this method has no body whatever its headers say.
pub fn has_no_body(status: StatusCode, method: &Method) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || method == Method::HEAD
}

/// Writes a response's status line and headers into `out`. `connection` is the
/// `Connection` value the edge decided on (`None`: none needed), `framing_header` the
/// `Content-Length`/`Transfer-Encoding` line the edge adds, if any. The answer's own
/// `Transfer-Encoding` is never written, nor its `Content-Length` unless `keep_length` (an
/// answer without a body, whose length describes what a `GET` would get).
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing_header: Option<&[u8]>,
    connection: Option<&'static str>,
    keep_length: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if (connection.is_some() && name == header::CONNECTION)
            || name == header::TRANSFER_ENCODING
            || (!keep_length && name == header::CONTENT_LENGTH)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(line) = framing_header {
        out.extend_from_slice(line);
    }
    if let Some(connection) = connection {
        out.extend_from_slice(b"connection: ");
        out.extend_from_slice(connection.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date::append(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The `Date` header value, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub fn append(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        CACHED.with(|cached| {
            let mut cached = cached.borrow_mut();
            if cached.0 != secs || cached.1.is_empty() {
                *cached = (secs, httpdate::fmt_http_date(now));
            }
            out.extend_from_slice(cached.1.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<RequestHead>, EdgeError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_request(&mut buf, 8192)
    }

    fn kind(raw: &str) -> ErrorKind {
        match parse(raw) {
            Err(e) => e.kind,
            Ok(head) => panic!("{raw:?} was accepted: {head:?}"),
        }
    }

    #[test]
    fn a_simple_request_is_parsed_and_taken_off_the_buffer() {
        let mut buf =
            BytesMut::from(&b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\nNEXT"[..]);
        let head = parse_request(&mut buf, 8192).unwrap().unwrap();
        assert_eq!(&buf[..], b"NEXT");
        assert_eq!(head.parts.method, Method::GET);
        assert_eq!(head.parts.uri, "/a?b=1");
        assert_eq!(head.parts.headers["host"], "x");
        assert_eq!(head.parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive);
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_are_refused() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(kind(&big), ErrorKind::HeadersTooLarge);
        let complete_but_big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(kind(&complete_but_big), ErrorKind::HeadersTooLarge);
        let many: String = (0..120).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            kind(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            ErrorKind::HeadersTooLarge
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3,\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /\r\n\r\n",
        ] {
            assert!(
                matches!(kind(raw), ErrorKind::BadRequest(_)),
                "{raw:?} was not a 400"
            );
        }
        for raw in [
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ] {
            assert!(
                matches!(kind(raw), ErrorKind::NotImplemented(_)),
                "{raw:?} was not a 501"
            );
        }
        // Identical values are one value (RFC 9110 8.6); the edge writes it once, plainly.
        for raw in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 003\r\n\r\n",
        ] {
            assert_eq!(parse(raw).unwrap().unwrap().framing, Framing::Length(3));
        }
        let chunked = parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  Chunked \r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(chunked.framing, Framing::Chunked);
        let zero = parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(zero.framing, Framing::Length(0));
        assert!(!zero.framing.has_body());
    }

    #[test]
    fn a_request_names_its_host_once() {
        for raw in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
            "GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(
                matches!(kind(raw), ErrorKind::BadRequest(_)),
                "{raw:?} was not a 400"
            );
        }
        assert!(parse("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
        let ipv6 = parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(ipv6.parts.headers["host"], "[::1]:8080");
        // Absolute form: the URI's authority is the host (RFC 9112 3.2.2).
        let absolute = parse("GET http://shop.example/a HTTP/1.1\r\nHost: other\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(absolute.parts.headers["host"], "shop.example");
        assert_eq!(absolute.parts.headers.get_all("host").iter().count(), 1);
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn expect_continue_is_taken_by_the_edge() {
        let head =
            parse("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(head.expect_continue);
        assert!(!head.parts.headers.contains_key("expect"));
    }

    #[test]
    fn a_response_head_gets_framing_connection_and_date() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            StatusCode::OK,
            &headers,
            Some(b"content-length: 2\r\n"),
            Some("close"),
            false,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\nconnection: close\r\ndate: "
        ));
        assert!(text.ends_with(" GMT\r\n\r\n"));
    }
}
