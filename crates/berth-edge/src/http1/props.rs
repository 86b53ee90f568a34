//! Property tests of the HTTP/1 codec that need its crate-private half: the body [`Decoder`]'s
//! decoded bytes ([`Step::Data`]) and the chunk encoder ([`chunk_size_line`], [`LAST_CHUNK`]).
//! Included from `http1/mod.rs` as `#[cfg(test)] mod props;`. The head-level properties, the
//! differential tests and the generators live in `crates/berth-edge/tests/` (the generators,
//! `tests/support/gen.rs`, are shared by path).
//!
//! - chunked bodies in every valid spelling, fed in slices of 1 byte up to whole, decode to
//!   exactly the bytes sent and stop at the body's end, leaving what follows in the buffer;
//!   a decoder that is done stays done and takes nothing more;
//! - mutated chunked bodies never panic, never loop, and never yield more than they were given;
//! - `chunk_size_line` is read back as the size it encodes;
//! - the round trip: a request the edge accepts, written again as the edge forwards it
//!   (`write_request_head` with the parsed framing, the decoded body re-chunked with
//!   `chunk_size_line`/`LAST_CHUNK` frame by frame, or as it is for a length), re-parses to the
//!   same method, target, headers (less the framing ones), framing and body bytes.

use bytes::BytesMut;
use hyper::header::{self, HeaderMap};
use hyper::Version;
use proptest::prelude::*;

use super::body::ChunkState;
use super::head::{self, Framing};
use super::{chunk_size_line, Decoder, Step, LAST_CHUNK};

#[path = "../../tests/support/gen.rs"]
mod gen;

const MAX_HEAD: usize = 16 * 1024;
/// Decoder calls allowed per body: more is a decoder that does not make progress.
const MAX_STEPS: usize = 1 << 20;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// How a body read ended, and what it decoded to (frame by frame).
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Done(Vec<Vec<u8>>),
    Incomplete(Vec<Vec<u8>>),
    Refused(&'static str),
}

/// Decodes `input` with a decoder of `framing`, handing it `feed` bytes at a time; `buf` ends
/// with what the decoder left (all the input after the body, when it is done).
fn decode(framing: Framing, input: &[u8], feed: usize) -> (Read, BytesMut) {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut given = 0;
    let mut taken = 0u64;
    let mut steps = 0;
    loop {
        let take = feed.max(1).min(input.len() - given);
        buf.extend_from_slice(&input[given..given + take]);
        given += take;
        loop {
            steps += 1;
            assert!(steps < MAX_STEPS, "the decoder loops on {}", show(input));
            match decoder.decode(&mut buf) {
                Ok(Step::Data(data)) => {
                    assert!(!data.is_empty(), "an empty data frame");
                    taken += data.len() as u64;
                    assert!(taken <= input.len() as u64, "more data than input");
                    frames.push(data.to_vec());
                }
                Ok(Step::Done) => {
                    assert!(decoder.is_done());
                    buf.extend_from_slice(&input[given..]);
                    return (Read::Done(frames), buf);
                }
                Ok(Step::NeedMore) => break,
                Err(why) => return (Read::Refused(why), buf),
            }
        }
        if given == input.len() {
            return (Read::Incomplete(frames), buf);
        }
    }
}

fn after_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 1..20),
    ]
}

fn feed() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), 2..17usize, Just(usize::MAX)]
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn chunked_bodies_decode_to_the_bytes_sent_and_stop_at_their_end(
        body in gen::chunked_body(),
        after in after_body(),
        feed in feed(),
    ) {
        let wire = body.encode();
        let input = [&wire[..], &after].concat();
        let (read, rest) = decode(Framing::Chunked, &input, feed);
        let Read::Done(frames) = read else {
            return Err(TestCaseError::fail(format!("{read:?} on {}", show(&input))));
        };
        prop_assert_eq!(frames.concat(), body.content());
        prop_assert_eq!(&rest[..], &after[..], "the bytes after the body stay");
        // Done is done: nothing more is taken, whatever comes.
        let mut decoder = Decoder::new(Framing::Chunked);
        let mut whole = BytesMut::from(&input[..]);
        while decoder.decode(&mut whole).map_err(TestCaseError::fail)? != Step::Done {}
        prop_assert_eq!(&whole[..], &after[..]);
        prop_assert_eq!(&rest[..], &whole[..]);
        whole.extend_from_slice(b"5\r\nhello\r\n");
        let left = whole.clone();
        prop_assert_eq!(decoder.decode(&mut whole), Ok(Step::Done));
        prop_assert_eq!(whole, left);
    }

    #[test]
    fn length_bodies_decode_to_the_bytes_sent_and_stop_at_their_end(
        body in prop::collection::vec(any::<u8>(), 1..400),
        after in after_body(),
        feed in feed(),
    ) {
        let input = [&body[..], &after].concat();
        let (read, rest) = decode(Framing::Length(body.len() as u64), &input, feed);
        let Read::Done(frames) = read else {
            return Err(TestCaseError::fail(format!("{read:?}")));
        };
        prop_assert_eq!(frames.concat(), body);
        prop_assert_eq!(&rest[..], &after[..]);
    }

    #[test]
    fn mutated_chunked_bodies_never_panic_loop_or_overread(
        body in gen::chunked_body(),
        after in after_body(),
        mutations in prop::collection::vec(
            (any::<usize>(), 0..3u8, prop::sample::select(b"\r\n\0 \t;:=\"0159aAfFxX-+zg\x7f\x80".to_vec())),
            1..4,
        ),
        feed in feed(),
    ) {
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
        let (sliced, _) = decode(Framing::Chunked, &input, feed);
        let (whole, rest) = decode(Framing::Chunked, &input, usize::MAX);
        // Frames may be cut differently; what they add up to may not.
        let flat = |r: &Read| match r {
            Read::Done(f) => Read::Done(vec![f.concat()]),
            Read::Incomplete(f) => Read::Incomplete(vec![f.concat()]),
            Read::Refused(w) => Read::Refused(w),
        };
        prop_assert_eq!(flat(&sliced), flat(&whole), "on {}", show(&input));
        if let Read::Done(frames) = &whole {
            let data: usize = frames.iter().map(Vec::len).sum();
            prop_assert!(data + rest.len() <= input.len());
            prop_assert_eq!(&input[input.len() - rest.len()..], &rest[..]);
        }
    }

    #[test]
    fn chunk_size_lines_are_read_back_as_their_size(n in 1usize..(1 << 60)) {
        let line = chunk_size_line(n);
        let mut buf = BytesMut::from(&line[..]);
        let mut decoder = Decoder::new(Framing::Chunked);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(Step::NeedMore));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoder, Decoder::Chunked(ChunkState::Data(n as u64)));
    }

    /// What the edge forwards re-parses to exactly the message it accepted.
    #[test]
    fn what_the_edge_forwards_reparses_to_the_message_it_accepted(
        spec in gen::request(),
        feed in feed(),
    ) {
        let input = spec.encode();
        let mut buf = BytesMut::from(&input[..]);
        let accepted = match head::parse_request(&mut buf, MAX_HEAD) {
            Ok(Some(head)) => head,
            other => {
                return Err(TestCaseError::fail(format!(
                    "a valid request refused: {} ({:?})",
                    show(&input),
                    other.map(|_| ())
                )))
            }
        };
        let (read, rest) = decode(accepted.framing, &buf, feed);
        let Read::Done(frames) = read else {
            return Err(TestCaseError::fail(format!("body {read:?} in {}", show(&input))));
        };
        prop_assert!(rest.is_empty());
        prop_assert_eq!(frames.concat(), spec.content());
        if accepted.parts.version == Version::HTTP_10
            && !accepted.parts.headers.contains_key(header::HOST)
        {
            // Forwarded as HTTP/1.1 it needs a Host, which neither the codec nor proxy.rs adds
            // for an origin-form target (reported separately).
            return Ok(());
        }

        // Forwarded: the edge's head, the body as the proxy relays it frame by frame.
        let mut out = Vec::new();
        head::write_request_head(
            &mut out,
            &accepted.parts.method,
            &accepted.parts.uri,
            &accepted.parts.headers,
            accepted.framing,
        );
        match accepted.framing {
            Framing::Chunked => {
                for frame in &frames {
                    out.extend_from_slice(&chunk_size_line(frame.len()));
                    out.extend_from_slice(frame);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(LAST_CHUNK);
            }
            Framing::Length(_) | Framing::Empty => out.extend_from_slice(&frames.concat()),
        }
        out.extend_from_slice(b"GET /next HTTP/1.1\r\n");

        let mut buf = BytesMut::from(&out[..]);
        let again = match head::parse_request(&mut buf, MAX_HEAD) {
            Ok(Some(head)) => head,
            other => {
                return Err(TestCaseError::fail(format!(
                    "the edge accepted {} but refuses what it forwards, {} ({:?})",
                    show(&input),
                    show(&out),
                    other.map(|_| ())
                )))
            }
        };
        prop_assert_eq!(&again.parts.method, &accepted.parts.method);
        prop_assert_eq!(
            again.parts.uri.path_and_query().map(|p| p.as_str()),
            Some(accepted.parts.uri.path_and_query().map_or("/", |p| p.as_str()))
        );
        prop_assert_eq!(
            without_framing(&again.parts.headers),
            without_framing(&accepted.parts.headers)
        );
        let same_framing = again.framing == accepted.framing
            || (matches!(again.framing, Framing::Empty | Framing::Length(0))
                && matches!(accepted.framing, Framing::Empty | Framing::Length(0)));
        prop_assert!(same_framing, "{:?} forwarded as {:?}", accepted.framing, again.framing);
        let (read, rest) = decode(again.framing, &buf, usize::MAX);
        let Read::Done(again_frames) = read else {
            return Err(TestCaseError::fail(format!("forwarded body {read:?}: {}", show(&out))));
        };
        prop_assert_eq!(again_frames.concat(), spec.content());
        prop_assert_eq!(&rest[..], b"GET /next HTTP/1.1\r\n", "the forwarded message ends where it should");
    }
}

fn without_framing(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    headers
}
