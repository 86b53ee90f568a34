//! The edge's codec driven the way its connection loop drives it: `parse_request` on the
//! buffer, then the body `Decoder` of the head's framing until it is done, what is left being
//! the next request.
//!
//! The `Decoder` is `pub(crate)` in `berth_edge::http1`; from an integration test the one public
//! way to get one is the decoder of a replica's answer head (`head::parse_response`), which for
//! `content-length: n` and `transfer-encoding: chunked` is `Decoder::new(Framing::Length(n))` and
//! `Decoder::new(Framing::Chunked)`, the very decoders a request body gets. Only `decode` and
//! `is_done` are used (its `Step` cannot be named here either); the decoded bytes themselves are
//! checked in `src/http1/props.rs`. Once `Decoder` and `Step` are public this can use them.

#![allow(dead_code)]

use berth_edge::errors::ErrorKind;
use berth_edge::http1::head::{self, Framing, RequestHead};
use bytes::BytesMut;
use hyper::Method;

/// Large enough that no test stream reaches it (the edge's default is 8 KiB + 1 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
/// Decoder steps allowed per body: a decoder that makes no progress in this many is a hang.
const MAX_STEPS: usize = 1 << 22;

#[derive(Debug)]
pub enum EdgeVerdict {
    Incomplete,
    /// Refused while reading the head (with the kind the client's page would show) or the body.
    RefusedHead(ErrorKind),
    RefusedBody(&'static str),
    Accepted {
        head: Box<RequestHead>,
        head_len: usize,
        body_len: usize,
    },
}

impl EdgeVerdict {
    pub fn len(&self) -> Option<usize> {
        match self {
            EdgeVerdict::Accepted {
                head_len, body_len, ..
            } => Some(head_len + body_len),
            _ => None,
        }
    }
}

/// How a body read ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// The body ended after this many bytes of the buffer.
    Done(usize),
    Incomplete,
    Refused(&'static str),
}

/// Reads the body of `framing` off the front of `buf` with the edge's decoder, handing it the
/// bytes `feed` at a time (`usize::MAX`: all at once). What follows the body stays in `buf`.
pub fn read_body(framing: Framing, buf: &mut BytesMut, feed: usize) -> BodyEnd {
    let line = match framing {
        Framing::Empty | Framing::Length(0) => return BodyEnd::Done(0),
        Framing::Length(n) => format!("content-length: {n}"),
        Framing::Chunked => "transfer-encoding: chunked".to_string(),
    };
    let mut answer = BytesMut::from(format!("HTTP/1.1 200 OK\r\n{line}\r\n\r\n").as_bytes());
    // The edge's `Decoder` (unnameable here: `pub(crate)`), used through inference only.
    let mut decoder = head::parse_response(&mut answer, &Method::POST)
        .expect("a valid answer head")
        .expect("a complete answer head")
        .decoder;
    let total = buf.len();
    let mut pending = buf.split_off(0);
    let feed = feed.max(1);
    let mut steps = 0;
    loop {
        let take = feed.min(pending.len());
        buf.unsplit(pending.split_to(take));
        loop {
            steps += 1;
            assert!(steps < MAX_STEPS, "the decoder does not make progress");
            let before = buf.len();
            if let Err(why) = decoder.decode(buf) {
                buf.unsplit(pending);
                return BodyEnd::Refused(why);
            }
            if decoder.is_done() {
                let used = total - pending.len() - buf.len();
                buf.unsplit(pending);
                return BodyEnd::Done(used);
            }
            if buf.len() == before {
                break;
            }
        }
        if pending.is_empty() {
            return BodyEnd::Incomplete;
        }
    }
}

/// Reads one request (head and body) off the front of `input`, as the edge would.
pub fn read_request(input: &[u8]) -> EdgeVerdict {
    let mut buf = BytesMut::from(input);
    let head = match head::parse_request(&mut buf, MAX_HEAD) {
        Ok(None) => return EdgeVerdict::Incomplete,
        Err(e) => return EdgeVerdict::RefusedHead(e.kind),
        Ok(Some(head)) => head,
    };
    let head_len = input.len() - buf.len();
    match read_body(head.framing, &mut buf, usize::MAX) {
        BodyEnd::Done(body_len) => EdgeVerdict::Accepted {
            head: Box::new(head),
            head_len,
            body_len,
        },
        BodyEnd::Incomplete => EdgeVerdict::Incomplete,
        BodyEnd::Refused(why) => EdgeVerdict::RefusedBody(why),
    }
}

/// Reads every request in `input` in turn until one is not accepted.
pub fn read_stream(mut input: &[u8]) -> Vec<EdgeVerdict> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let verdict = read_request(input);
        let next = verdict.len();
        out.push(verdict);
        match next {
            Some(n) => input = &input[n..],
            None => break,
        }
    }
    out
}
