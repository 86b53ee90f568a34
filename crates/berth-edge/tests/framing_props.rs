//! Property and fuzz tests of the edge's HTTP/1 request codec (issue 10), through its public
//! API (`berth_edge::http1::head`, and the body decoder as `support/edge.rs` reaches it):
//! - random and mutated request heads never panic or hang, and any head accepted frames its
//!   body by the RFC 9112 6.3 rules, names at most one Host (exactly one on HTTP/1.1), takes
//!   exactly its own bytes off the buffer, and reads the same whether it arrives whole or in
//!   pieces;
//! - chunked bodies in every valid spelling (chunk splits, leading zeros, upper-case hex,
//!   extensions, trailers, bare-LF line ends), fed in slices of 1 byte up to whole, end exactly
//!   where they end (the bytes after them stay in the buffer), as the reference reads them;
//!   mutated ones never hang and are read as the reference reads them; length bodies likewise;
//! - round trip of heads: what the edge accepted, written again with `write_request_head` and
//!   the parsed `Framing`, re-parses to the same method, target, headers and framing (the
//!   decoded bodies' round trip, which needs the crate-private chunk encoder, is in
//!   `src/http1/props.rs`).
//!
//! Each property runs a bounded number of cases (see `CASES`) under a watchdog thread, so a hang
//! fails the test instead of stalling `cargo test`.

#[path = "support/edge.rs"]
mod edge;
#[path = "support/gen.rs"]
mod gen;
#[path = "support/reference.rs"]
mod reference;
#[path = "support/run.rs"]
mod run;

use berth_edge::http1::head::{self, Framing, RequestHead};
use bytes::BytesMut;
use edge::BodyEnd;
use hyper::header::{self, HeaderMap};
use hyper::Version;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use run::check;

/// Cases per property: enough to reach every generator branch many times, little enough that
/// the whole file runs in a few seconds in a debug build.
const CASES: u32 = 2048;
const MAX_HEAD: usize = 16 * 1024;

fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

// ---- Heads ----------------------------------------------------------------------------------

/// What RFC 9112 6.3 makes of these headers, written without the edge's code; `None` where the
/// message must be refused.
fn framing_by_the_rules(headers: &HeaderMap, version: Version) -> Option<Framing> {
    let codings: Vec<_> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !codings.is_empty() {
        let chunked = codings.len() == 1
            && std::str::from_utf8(codings[0].as_bytes())
                .is_ok_and(|v| v.trim_matches([' ', '\t']).eq_ignore_ascii_case("chunked"));
        return (chunked && lengths.is_empty() && version == Version::HTTP_11)
            .then_some(Framing::Chunked);
    }
    let mut length = None;
    for value in lengths {
        for item in value.to_str().ok()?.split(',') {
            let item = item.trim_matches([' ', '\t']);
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u64 = item.parse().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    Some(length.map_or(Framing::Empty, Framing::Length))
}

/// Lines a mutation may insert: framing and Host headers in their tricky forms.
const INSERTS: &[&str] = &[
    "Content-Length: 7\r\n",
    "Content-Length: 0\r\n",
    "Content-Length: 5, 5\r\n",
    "Content-Length: 5, 6\r\n",
    "Content-Length: 05\r\n",
    "Content-Length: 99999999999999999999\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: gzip, chunked\r\n",
    "Transfer-Encoding: identity\r\n",
    "Transfer-Encoding : chunked\r\n",
    "Transfer-Encoding:\tchunked\r\n",
    "Host: y\r\n",
    "Host: a b\r\n",
    " folded\r\n",
    "\r\n",
    "\n",
    "\r",
    "\0",
    ",",
    ":",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    InsertLine(usize, usize),
    Delete(usize),
    DuplicateLine(usize),
    SwapCrLf(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (
            any::<usize>(),
            prop::sample::select(b"\r\n\0 \t:,;0x".to_vec())
        )
            .prop_map(|(a, b)| Mutation::Insert(a, b)),
        (any::<usize>(), 0..INSERTS.len()).prop_map(|(a, i)| Mutation::InsertLine(a, i)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::SwapCrLf),
    ]
}

/// Line starts (after each LF) in `input`.
fn line_starts(input: &[u8]) -> Vec<usize> {
    std::iter::once(0)
        .chain(
            input
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|&i| i < input.len())
        .collect()
}

fn mutate(input: &mut Vec<u8>, m: &Mutation) {
    let n = input.len();
    if n == 0 {
        return;
    }
    match *m {
        Mutation::Flip(at, b) => input[at % n] = b,
        Mutation::Insert(at, b) => input.insert(at % (n + 1), b),
        Mutation::InsertLine(at, i) => {
            let starts = line_starts(input);
            let at = starts[at % starts.len()];
            input.splice(at..at, INSERTS[i].bytes());
        }
        Mutation::Delete(at) => {
            input.remove(at % n);
        }
        Mutation::DuplicateLine(at) => {
            let starts = line_starts(input);
            let start = starts[at % starts.len()];
            let end = input[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(n, |p| start + p + 1);
            let line = input[start..end].to_vec();
            input.splice(end..end, line);
        }
        Mutation::SwapCrLf(at) => {
            let at = at % n;
            input[at] = match input[at] {
                b'\r' => b'\n',
                b'\n' => b'\r',
                _ => return,
            };
        }
    }
}

/// The checks every accepted head must pass; `input` is what was parsed.
fn check_accepted(input: &[u8], head: &RequestHead, rest: &BytesMut) -> Result<(), TestCaseError> {
    let consumed = input.len() - rest.len();
    prop_assert_eq!(
        &rest[..],
        &input[consumed..],
        "the buffer keeps what follows the head"
    );
    let taken = &input[..consumed];
    prop_assert!(
        taken.ends_with(b"\n\n") || taken.ends_with(b"\n\r\n"),
        "a head ends at an empty line: took {}",
        show(taken)
    );
    let version = head.parts.version;
    prop_assert_eq!(
        Some(head.framing),
        framing_by_the_rules(&head.parts.headers, version),
        "the framing of {} is not RFC 9112's",
        show(input)
    );
    let hosts = head.parts.headers.get_all(header::HOST).iter().count();
    prop_assert!(hosts <= 1, "two Hosts accepted in {}", show(input));
    if version == Version::HTTP_11 {
        prop_assert_eq!(hosts, 1, "HTTP/1.1 without Host accepted: {}", show(input));
    }
    Ok(())
}

/// Parses `input` whole, then in pieces: a prefix of an accepted head is never refused nor
/// accepted, and the head read from exactly its own bytes is the same.
fn parse_checked(input: &[u8]) -> Result<Option<RequestHead>, TestCaseError> {
    let mut buf = BytesMut::from(input);
    let head = match head::parse_request(&mut buf, MAX_HEAD) {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => return Ok(None),
    };
    check_accepted(input, &head, &buf)?;
    let consumed = input.len() - buf.len();
    // Prefixes: every one for short heads, a spread of them for long ones.
    let step = (consumed / 64).max(1);
    for len in (0..consumed).step_by(step).chain([consumed - 1]) {
        let mut prefix = BytesMut::from(&input[..len]);
        match head::parse_request(&mut prefix, MAX_HEAD) {
            Ok(None) => {}
            other => prop_assert!(
                false,
                "the first {len} bytes of {} (accepted whole) gave {:?}",
                show(input),
                other.map(|h| h.map(|h| h.framing))
            ),
        }
    }
    let mut exact = BytesMut::from(&input[..consumed]);
    let again = head::parse_request(&mut exact, MAX_HEAD);
    match again {
        Ok(Some(again)) => {
            prop_assert!(exact.is_empty());
            prop_assert_eq!(again.framing, head.framing);
            prop_assert_eq!(&again.parts.method, &head.parts.method);
            prop_assert_eq!(&again.parts.uri, &head.parts.uri);
            prop_assert_eq!(&again.parts.headers, &head.parts.headers);
        }
        other => prop_assert!(false, "the head alone: {:?}", other.map(|_| ())),
    }
    Ok(Some(head))
}

#[test]
fn valid_requests_are_accepted_with_their_framing() {
    check(CASES, gen::request(), |spec| {
        let input = spec.encode();
        let head = parse_checked(&input)?;
        let Some(head) = head else {
            return Err(TestCaseError::fail(format!(
                "a valid request was refused: {}",
                show(&input)
            )));
        };
        let expected = match &spec.body {
            gen::BodySpec::None => Framing::Empty,
            gen::BodySpec::Length(_, body) => Framing::Length(body.len() as u64),
            gen::BodySpec::Chunked(..) => Framing::Chunked,
        };
        prop_assert_eq!(head.framing, expected);
        prop_assert_eq!(head.parts.method.as_str(), spec.method.as_str());
        // The body, read by the edge's decoder, ends where the request ends.
        let mut buf = BytesMut::from(&input[..]);
        head::parse_request(&mut buf, MAX_HEAD).unwrap().unwrap();
        let body_len = buf.len();
        buf.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        prop_assert_eq!(
            edge::read_body(head.framing, &mut buf, usize::MAX),
            BodyEnd::Done(body_len)
        );
        prop_assert_eq!(&buf[..], b"GET /next HTTP/1.1\r\n");
        Ok(())
    });
}

#[test]
fn mutated_heads_never_panic_and_what_is_accepted_frames_by_the_rules() {
    let strategy = (gen::request(), prop::collection::vec(mutation(), 1..5));
    check(CASES * 4, strategy, |(spec, mutations)| {
        let mut input = spec.encode();
        for m in &mutations {
            mutate(&mut input, m);
        }
        parse_checked(&input)?;
        Ok(())
    });
}

#[test]
fn random_bytes_never_panic() {
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        // Mostly printable, with the separators that matter.
        prop::collection::vec(
            prop::sample::select(
                b"GET /HTP1.0\r\n:Hostx ,;Content-LengthTransfer-Encodingchunked5\t\0".to_vec()
            ),
            0..300
        ),
    ];
    check(CASES * 2, strategy, |input| {
        parse_checked(&input)?;
        let with_line = [&b"GET / HTTP/1.1\r\n"[..], &input].concat();
        parse_checked(&with_line)?;
        Ok(())
    });
}

// ---- Bodies ---------------------------------------------------------------------------------

/// Bytes that follow a body: the next request, or anything.
fn after_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 1..20),
    ]
}

/// Slice sizes to feed the decoder with: 1 byte, a few, or all at once.
fn feed() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), 2..17usize, Just(usize::MAX)]
}

#[test]
fn chunked_bodies_end_exactly_where_they_end_whatever_the_slices() {
    let strategy = (gen::chunked_body(), after_body(), feed());
    check(CASES, strategy, |(body, after, feed)| {
        let wire = body.encode();
        let input = [&wire[..], &after].concat();
        // The generator's bodies are valid by the reference too.
        prop_assert_eq!(
            reference::read_chunked(&input),
            Ok(Some((wire.len(), body.content()))),
            "the reference on {}",
            show(&input)
        );
        let mut buf = BytesMut::from(&input[..]);
        prop_assert_eq!(
            edge::read_body(Framing::Chunked, &mut buf, feed),
            BodyEnd::Done(wire.len()),
            "{}",
            show(&input)
        );
        prop_assert_eq!(&buf[..], &after[..], "the bytes after the body stay");
        // Cut anywhere before its end, the body is incomplete, never refused nor done.
        if !wire.is_empty() {
            let cut = (wire.len() * 7 / 13).min(wire.len() - 1);
            let mut buf = BytesMut::from(&wire[..cut]);
            prop_assert_eq!(
                edge::read_body(Framing::Chunked, &mut buf, feed),
                BodyEnd::Incomplete
            );
        }
        Ok(())
    });
}

/// Byte-level mutations of a chunked body.
fn body_mutation() -> impl Strategy<Value = (usize, u8, u8)> {
    (
        any::<usize>(),
        0..3u8,
        prop::sample::select(b"\r\n\0 \t;:=\"0159aAfFxX-+zg\x7f\x80".to_vec()),
    )
}

#[test]
fn mutated_chunked_bodies_never_hang_and_are_read_as_the_reference_reads_them() {
    let strategy = (
        gen::chunked_body(),
        after_body(),
        prop::collection::vec(body_mutation(), 1..4),
        feed(),
    );
    check(CASES * 2, strategy, |(body, after, mutations, feed)| {
        let mut input = [body.encode(), after].concat();
        for &(at, kind, byte) in &mutations {
            let n = input.len();
            match kind {
                0 if n > 0 => input[at % n] = byte,
                1 => input.insert(at % (n + 1), byte),
                _ if n > 0 => {
                    input.remove(at % n);
                }
                _ => {}
            }
        }
        let mut whole = BytesMut::from(&input[..]);
        let edge_whole = edge::read_body(Framing::Chunked, &mut whole, usize::MAX);
        let mut sliced = BytesMut::from(&input[..]);
        let edge_sliced = edge::read_body(Framing::Chunked, &mut sliced, feed);
        {
            prop_assert_eq!(
                &edge_whole,
                &edge_sliced,
                "slices change the reading of {}",
                show(&input)
            );
        }
        if let BodyEnd::Done(n) = edge_whole {
            prop_assert_eq!(&whole[..], &input[n..]);
        }
        let reference = reference::read_chunked(&input);
        match (&reference, &edge_whole) {
            (Ok(Some((n, _))), BodyEnd::Done(m)) if n == m => {}
            (Ok(None), BodyEnd::Incomplete) => {}
            (Err(_), BodyEnd::Refused(_)) => {}
            _ => prop_assert!(
                false,
                "the edge read {:?} and the reference {:?} from {}",
                edge_whole,
                reference,
                show(&input)
            ),
        }
        Ok(())
    });
}

/// Whether `input` ends in an unfinished line with a bare CR before its last byte, itself a CR:
/// the case of `a_bare_cr_is_refused_however_the_bytes_arrive`.
fn awaits_after_a_bare_cr(input: &[u8]) -> bool {
    let last_line = match input.iter().rposition(|&b| b == b'\n') {
        Some(lf) => &input[lf + 1..],
        None => input,
    };
    last_line.len() >= 2
        && last_line.last() == Some(&b'\r')
        && last_line[..last_line.len() - 1].contains(&b'\r')
}

/// A bare CR (one not followed by LF) makes a chunked body invalid whatever comes after it: the
/// decoder refuses it as soon as it is not the last byte that arrived, however the client's
/// writes were cut. (Found here: it once waited when a CR also ended what had arrived.)
#[test]
fn a_bare_cr_is_refused_however_the_bytes_arrive() {
    for input in [
        &b"5\r\0\r"[..],
        b"5;a\rb\r",
        b"5\r\r",
        b"0\r\n\r\0\r",
        b"0\r\nX: 1\r\r",
    ] {
        assert!(awaits_after_a_bare_cr(input));
        assert!(reference::read_chunked(input).is_err());
        let one_by_one = edge::read_body(Framing::Chunked, &mut BytesMut::from(input), 1);
        assert!(
            matches!(one_by_one, BodyEnd::Refused(_)),
            "{}: {one_by_one:?} byte by byte",
            show(input)
        );
        let whole = edge::read_body(Framing::Chunked, &mut BytesMut::from(input), usize::MAX);
        assert!(
            matches!(whole, BodyEnd::Refused(_)),
            "{}: refused byte by byte, {whole:?} when read at once",
            show(input)
        );
    }
}

#[test]
fn length_bodies_end_at_their_length_whatever_the_slices() {
    let strategy = (
        prop::collection::vec(any::<u8>(), 1..300),
        after_body(),
        feed(),
    );
    check(CASES, strategy, |(body, after, feed)| {
        let input = [&body[..], &after].concat();
        let framing = Framing::Length(body.len() as u64);
        let mut buf = BytesMut::from(&input[..]);
        prop_assert_eq!(
            edge::read_body(framing, &mut buf, feed),
            BodyEnd::Done(body.len())
        );
        prop_assert_eq!(&buf[..], &after[..]);
        let mut short = BytesMut::from(&body[..body.len() - 1]);
        prop_assert_eq!(
            edge::read_body(framing, &mut short, feed),
            BodyEnd::Incomplete
        );
        Ok(())
    });
}

// ---- Round trip of heads --------------------------------------------------------------------

/// The headers as the edge would forward them: all but the framing ones.
fn without_framing(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    headers
}

/// `Empty` and `Length(0)` are the same message; `write_request_head` writes `content-length: 0`
/// for a POST, PUT or PATCH without a body (servers may demand it).
fn same_framing(a: Framing, b: Framing) -> bool {
    let norm = |f| match f {
        Framing::Length(0) => Framing::Empty,
        f => f,
    };
    norm(a) == norm(b)
}

#[test]
fn what_the_edge_writes_reparses_to_the_head_it_accepted() {
    let strategy = (gen::request(), prop::collection::vec(mutation(), 0..3));
    check(CASES * 2, strategy, |(spec, mutations)| {
        let mut input = spec.encode();
        for m in &mutations {
            mutate(&mut input, m);
        }
        let mut buf = BytesMut::from(&input[..]);
        let Ok(Some(head)) = head::parse_request(&mut buf, MAX_HEAD) else {
            prop_assert!(!mutations.is_empty(), "a valid request was refused");
            return Ok(());
        };
        if !head.parts.headers.contains_key(header::HOST) {
            // HTTP/1.0 without Host: written as HTTP/1.1 it needs one, which the codec does not
            // add (nor, for an origin-form target, does proxy.rs: reported, not a codec matter).
            prop_assert_eq!(head.parts.version, Version::HTTP_10);
            return Ok(());
        }
        let mut out = Vec::new();
        head::write_request_head(
            &mut out,
            &head.parts.method,
            &head.parts.uri,
            &head.parts.headers,
            head.framing,
        );
        let framing_lines = out
            .split(|&b| b == b'\n')
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with(b"content-length:") || l.starts_with(b"transfer-encoding:")
            })
            .count();
        prop_assert!(
            framing_lines <= 1,
            "two framing lines written: {}",
            show(&out)
        );
        let mut written = BytesMut::from(&out[..]);
        let again = match head::parse_request(&mut written, MAX_HEAD) {
            Ok(Some(again)) => again,
            other => {
                return Err(TestCaseError::fail(format!(
                    "the edge accepted {} but refuses what it writes of it, {}: {:?}",
                    show(&input),
                    show(&out),
                    other.map(|_| ())
                )))
            }
        };
        prop_assert!(written.is_empty(), "the written head is read whole");
        prop_assert_eq!(&again.parts.method, &head.parts.method);
        prop_assert_eq!(
            again.parts.uri.path_and_query().map(|p| p.as_str()),
            Some(head.parts.uri.path_and_query().map_or("/", |p| p.as_str()))
        );
        prop_assert_eq!(again.parts.version, Version::HTTP_11);
        prop_assert_eq!(
            without_framing(&again.parts.headers),
            without_framing(&head.parts.headers),
            "headers of {} written as {}",
            show(&input),
            show(&out)
        );
        prop_assert!(
            same_framing(again.framing, head.framing),
            "framing {:?} written as {:?}: {}",
            head.framing,
            again.framing,
            show(&out)
        );
        Ok(())
    });
}

// ---- Answers from replicas ------------------------------------------------------------------

/// Header lines an answer may carry: framing in valid, doubtful and hostile forms.
const ANSWER_FIELDS: &[&str] = &[
    "Content-Length: 5",
    "Content-Length: 5, 5",
    "Content-Length: 5, 6",
    "Content-Length: 0",
    "Content-Length: x",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: gzip",
    "Transfer-Encoding: chunked, gzip",
    "Connection: close",
    "Connection: keep-alive",
    "X-A: 1",
];
const STATUSES: &[u16] = &[100, 101, 200, 200, 201, 204, 301, 304, 404, 500];

#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    http10: bool,
    fields: Vec<usize>,
    head_request: bool,
    chunked: gen::ChunkedBody,
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        prop::sample::select(STATUSES.to_vec()),
        prop::bool::weighted(0.2),
        prop::collection::vec(0..ANSWER_FIELDS.len(), 0..4),
        prop::bool::weighted(0.15),
        gen::chunked_body(),
    )
        .prop_map(|(status, http10, fields, head_request, chunked)| Answer {
            status,
            http10,
            fields,
            head_request,
            chunked,
        })
}

/// An answer's head is read by RFC 9112 6.3: no body for HEAD, 1xx, 204 and 304; else
/// Transfer-Encoding over Content-Length (and then the connection closes after it: the answer
/// may be an attempt to desync); a coding list not ending in chunked, or no framing at all,
/// reads until close; Content-Length values must agree and are written back as one.
#[test]
fn answers_are_framed_by_rfc_9112_and_doubtful_ones_close_the_connection() {
    check(CASES, answer(), |a| {
        let mut head = format!("HTTP/1.{} {} X\r\n", u8::from(!a.http10), a.status);
        for &f in &a.fields {
            head.push_str(ANSWER_FIELDS[f]);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let lines: Vec<&str> = a.fields.iter().map(|&f| ANSWER_FIELDS[f]).collect();
        let te: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("Transfer-Encoding: "))
            .collect();
        let cl: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("Content-Length: "))
            .collect();
        let method = if a.head_request {
            hyper::Method::HEAD
        } else {
            hyper::Method::GET
        };
        let mut buf = BytesMut::from(head.as_bytes());
        let parsed = head::parse_response(&mut buf, &method);
        let cl_values: Vec<&str> = cl.iter().flat_map(|v| v.split(", ")).collect();
        let cl_valid = cl_values.iter().all(|v| v.parse::<u64>().is_ok())
            && cl_values.windows(2).all(|w| w[0] == w[1]);
        let mut answer = match parsed {
            Ok(Some(answer)) => answer,
            Ok(None) => return Err(TestCaseError::fail("a whole head read as partial")),
            Err(why) => {
                // Refused only for a Content-Length that is not one number (and only when
                // Transfer-Encoding does not override it).
                prop_assert!(
                    te.is_empty() && !cl_valid,
                    "{} refused: {}",
                    show(head.as_bytes()),
                    why
                );
                return Ok(());
            }
        };
        prop_assert!(buf.is_empty());
        let no_body = a.head_request || a.status < 200 || a.status == 204 || a.status == 304;
        let headers = &answer.parts.headers;
        if !te.is_empty() && !cl.is_empty() {
            prop_assert!(!answer.reusable, "TE and CL: {}", show(head.as_bytes()));
            prop_assert!(!headers.contains_key(header::CONTENT_LENGTH));
        }
        if te.is_empty() && !cl.is_empty() {
            prop_assert_eq!(headers.get_all(header::CONTENT_LENGTH).iter().count(), 1);
            prop_assert_eq!(&headers[header::CONTENT_LENGTH], cl_values[0]);
        }
        if lines.contains(&"Connection: close")
            || (a.http10 && !lines.contains(&"Connection: keep-alive"))
        {
            prop_assert!(!answer.reusable);
        }
        let last_chunked = te
            .last()
            .is_some_and(|v| v.rsplit(", ").next() == Some("chunked"));
        // What the decoder then reads.
        let tail = b"HTTP/1.1 200 OK\r\n";
        if no_body {
            prop_assert!(answer.decoder.is_done());
        } else if !te.is_empty() && last_chunked {
            let wire = a.chunked.encode();
            let mut body = BytesMut::from(&[&wire[..], tail].concat()[..]);
            let mut steps = 0;
            while !answer.decoder.is_done() {
                steps += 1;
                prop_assert!(steps < 100_000, "the decoder does not end");
                let before = body.len();
                answer
                    .decoder
                    .decode(&mut body)
                    .map_err(TestCaseError::fail)?;
                prop_assert!(
                    answer.decoder.is_done() || body.len() < before || !body.is_empty(),
                    "stuck"
                );
            }
            prop_assert_eq!(&body[..], tail);
        } else if !te.is_empty() || cl.is_empty() {
            prop_assert!(answer.decoder.is_until_close());
            prop_assert!(!answer.reusable);
        } else {
            let n: u64 = cl_values[0].parse().unwrap();
            prop_assert_eq!(answer.decoder.remaining(), Some(n));
        }
        Ok(())
    });
}

#[test]
fn random_answer_heads_never_panic() {
    let strategy = (
        prop::collection::vec(any::<u8>(), 0..200),
        prop::sample::select(vec![
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"HTTP/1.0 204 X\r\n",
            b"",
        ]),
    );
    check(CASES, strategy, |(bytes, start)| {
        let input = [start, &bytes[..]].concat();
        for method in [hyper::Method::GET, hyper::Method::HEAD] {
            let mut buf = BytesMut::from(&input[..]);
            if let Ok(Some(answer)) = head::parse_response(&mut buf, &method) {
                prop_assert!(buf.len() < input.len());
                prop_assert!(
                    !answer.parts.headers.contains_key(header::CONTENT_LENGTH)
                        || head::content_length(&answer.parts.headers).is_ok()
                );
            }
        }
        Ok(())
    });
}

// ---- The framing functions on their own -----------------------------------------------------

const LENGTH_ITEMS: &[&str] = &[
    "5",
    "05",
    " 5 ",
    "\t5",
    "6",
    "0",
    "",
    " ",
    "5 5",
    "+5",
    "-5",
    "0x5",
    "5.0",
    "18446744073709551615",
    "18446744073709551616",
    "0000000000000000005",
    "00000000000000000005",
];
const CODINGS: &[&str] = &[
    "chunked",
    "Chunked",
    " chunked ",
    "\tchunked",
    "gzip",
    "gzip, chunked",
    "chunked, chunked",
    "identity",
    "",
    "chunked,",
    "xchunked",
];

/// `content_length` and `request_framing` called directly on header maps no parser would
/// build (any spelling in any number of fields): they agree with the rules as written here.
/// Where the rules say refuse, so must they; a length of more than 19 digits is refused
/// by design (an overflow guard; the reference does the same).
#[test]
fn the_framing_functions_follow_the_rules_on_any_header_map() {
    let strategy = (
        prop::collection::vec(
            prop::collection::vec(prop::sample::select(LENGTH_ITEMS.to_vec()), 1..3),
            0..3,
        ),
        prop::collection::vec(prop::sample::select(CODINGS.to_vec()), 0..3),
        any::<bool>(),
    );
    check(CASES, strategy, |(lengths, codings, http10)| {
        let mut headers = HeaderMap::new();
        for items in &lengths {
            let value = hyper::header::HeaderValue::from_str(&items.join(",")).unwrap();
            headers.append(header::CONTENT_LENGTH, value);
        }
        for coding in &codings {
            let value = hyper::header::HeaderValue::from_str(coding).unwrap();
            headers.append(header::TRANSFER_ENCODING, value);
        }
        let version = if http10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let expected = framing_by_the_rules(&headers, version).filter(|f| {
            // The 19-digit cap.
            !matches!(f, Framing::Length(_))
                || lengths
                    .iter()
                    .flatten()
                    .all(|i| i.trim_matches([' ', '\t']).len() <= 19)
        });
        let got = head::request_framing(&headers, version);
        prop_assert_eq!(
            got.as_ref().ok().copied(),
            expected,
            "CL {:?}, TE {:?}, HTTP/1.{}: {:?}",
            lengths,
            codings,
            u8::from(!http10),
            got
        );
        if codings.is_empty() {
            let length = head::content_length(&headers);
            prop_assert_eq!(
                length.as_ref().ok().copied(),
                expected.map(|f| match f {
                    Framing::Length(n) => Some(n),
                    _ => None,
                })
            );
        }
        // A coding the edge does not implement is a 501, anything else refused a 400.
        if let Err(e) = got {
            let not_implemented =
                matches!(e.kind, berth_edge::errors::ErrorKind::NotImplemented(_));
            prop_assert_eq!(e.side, berth_edge::errors::Side::Client);
            if not_implemented {
                prop_assert!(codings.len() == 1 && !http10 && lengths.is_empty());
            }
        }
        Ok(())
    });
}
