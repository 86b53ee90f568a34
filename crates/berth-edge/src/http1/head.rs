//! Message heads: parsing a client's request head (with the framing checks that keep request
//! smuggling out) and writing a response head.

use bytes::{Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, StatusCode, Uri, Version};

/// At most this many header fields in a request head (hyper's default too).
pub const MAX_HEADERS: usize = 100;

/// How a message body is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
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

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Over the head size limit or [`MAX_HEADERS`]: 431.
    TooLarge,
    /// Not HTTP/1.x, or framing that could be read two ways: 400.
    Malformed(&'static str),
}

/// Parses the request head at the start of `buf`. `Ok(None)`: incomplete, read more. On
/// success the head's bytes are taken off `buf`; header values share their allocation.
pub fn parse_request(
    buf: &mut BytesMut,
    max_head: usize,
) -> Result<Option<RequestHead>, HeadError> {
    // Offsets into `buf` of each header's name and value, filled during the one parse.
    let mut spans = [(0usize, 0usize, 0usize, 0usize); MAX_HEADERS];
    let (head_len, method, path, version, count) = {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let base = buf.as_ptr() as usize;
        let len = match request.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return if buf.len() > max_head {
                    Err(HeadError::TooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(httparse::Error::Version) => {
                return Err(HeadError::Malformed(
                    "only HTTP/1.0 and HTTP/1.1 are served here",
                ))
            }
            Err(_) => {
                return Err(HeadError::Malformed(
                    "the request head is not valid HTTP/1.1",
                ))
            }
        };
        if len > max_head {
            return Err(HeadError::TooLarge);
        }
        let method = Method::from_bytes(request.method.unwrap_or("").as_bytes())
            .map_err(|_| HeadError::Malformed("invalid method"))?;
        let path = request.path.unwrap_or("");
        let path = (path.as_ptr() as usize - base, path.len());
        let version = if request.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let count = request.headers.len();
        for (span, h) in spans.iter_mut().zip(request.headers.iter()) {
            *span = span_of(base, h);
        }
        (len, method, path, version, count)
    };
    let head: Bytes = buf.split_to(head_len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path.0..path.0 + path.1))
        .map_err(|_| HeadError::Malformed("invalid request target"))?;
    let mut headers = header_map(&head, &spans[..count]).map_err(HeadError::Malformed)?;

    let framing = framing(&headers, version)?;
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

/// The body framing of a request, refusing every ambiguous form (RFC 9112 6.1 and 6.3): a
/// `Transfer-Encoding` that does not end in `chunked`, one on HTTP/1.0, one beside
/// `Content-Length`, and `Content-Length` values that disagree or are not numbers.
fn framing(headers: &HeaderMap, version: Version) -> Result<Framing, HeadError> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if version == Version::HTTP_10 {
            return Err(HeadError::Malformed("Transfer-Encoding on HTTP/1.0"));
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if !ends_in_chunked(headers) {
            return Err(HeadError::Malformed(
                "a Transfer-Encoding must end in chunked",
            ));
        }
        return Ok(Framing::Chunked);
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value
            .to_str()
            .map_err(|_| HeadError::Malformed("invalid Content-Length"))?
            .split(',')
        {
            let item = item.trim();
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::Malformed("invalid Content-Length"));
            }
            let n: u64 = item
                .parse()
                .map_err(|_| HeadError::Malformed("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
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

/// The headers at `spans` of `head`; values share its allocation.
pub fn header_map(head: &Bytes, spans: &[Span]) -> Result<HeaderMap, &'static str> {
    let mut headers = HeaderMap::with_capacity(spans.len());
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

/// The first `Content-Length` value, when it is a number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
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
/// `Content-Length`/`Transfer-Encoding` line the edge adds, if any.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing_header: Option<&[u8]>,
    connection: Option<&'static str>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if connection.is_some() && name == header::CONNECTION {
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

    fn parse(raw: &str) -> Result<Option<RequestHead>, HeadError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_request(&mut buf, 8192)
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
        assert_eq!(parse(&big).unwrap_err(), HeadError::TooLarge);
        let complete_but_big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(parse(&complete_but_big).unwrap_err(), HeadError::TooLarge);
        let many: String = (0..120).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw), Err(HeadError::Malformed(_))),
                "{raw:?} was accepted"
            );
        }
        let same = parse("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(same.framing, Framing::Length(3));
        let chunked = parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(chunked.framing, Framing::Chunked);
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
            !parse("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn expect_continue_is_taken_by_the_edge() {
        let head = parse("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
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
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\nconnection: close\r\ndate: "
        ));
        assert!(text.ends_with(" GMT\r\n\r\n"));
    }
}
