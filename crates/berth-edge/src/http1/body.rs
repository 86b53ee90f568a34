//! Bodies: the [`Decoder`] of `Content-Length` and chunked bodies (both directions: a client's
//! request, a replica's answer), the chunk encoder, and a client's request body read straight
//! from its connection as the proxy forwards it. When a request body ends (or is dropped) the
//! read half and any bytes after the body go back to the connection, which reuses them for the
//! next request only if the body was read to its end.
//!
//! Chunked bodies are always decoded and encoded again, never passed through: chunk
//! extensions and trailers are dropped, and a chunk-size line that ends in a bare LF (which
//! nginx and HAProxy accept) reaches the replica re-framed with CRLF.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncRead;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::head::Framing;
use crate::errors::{EdgeError, ErrorKind};

/// Longest chunk-size line (with extensions) and trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

/// The line that starts a chunk of `len` bytes.
pub fn chunk_size_line(len: usize) -> Bytes {
    let mut line = Vec::with_capacity(18);
    let mut started = false;
    for shift in (0..16).rev() {
        let digit = (len >> (shift * 4)) & 0xf;
        if digit != 0 || started || shift == 0 {
            started = true;
            line.push(b"0123456789abcdef"[digit]);
        }
    }
    line.extend_from_slice(b"\r\n");
    Bytes::from(line)
}

/// The end of a chunked body (last chunk, no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Where the line at the start of `buf` ends: (length of the line without its ending, length
/// with it). A bare LF ends a line too; a CR anywhere else is not allowed.
fn line_end(buf: &[u8]) -> Result<Option<(usize, usize)>, &'static str> {
    let Some(lf) = buf.iter().position(|b| *b == b'\n') else {
        // A CR is allowed only right before the LF still to come: the buffer's last byte.
        if buf.len() > 1 && buf[..buf.len() - 1].contains(&b'\r') {
            return Err("the chunked body has a bare CR");
        }
        return Ok(None);
    };
    let (line, ending) = if lf > 0 && buf[lf - 1] == b'\r' {
        (lf - 1, 2)
    } else {
        (lf, 1)
    };
    if buf[..line].contains(&b'\r') {
        return Err("the chunked body has a bare CR");
    }
    Ok(Some((line, line + ending)))
}

/// What a decoder step found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    NeedMore,
    Done,
}

/// Decodes a body's framing out of a buffer, taking off exactly the body's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    Chunked(ChunkState),
    /// Everything until the peer closes (an answer without length or chunking).
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// At a chunk-size line.
    Size,
    /// In chunk data, this many bytes left.
    Data(u64),
    /// After chunk data, expecting CRLF.
    DataEnd,
    /// After the last chunk, in the trailer section; bytes of it seen so far.
    Trailers(usize),
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(ChunkState::Size),
        }
    }

    pub fn until_close() -> Self {
        Decoder::UntilClose
    }

    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    pub fn is_until_close(&self) -> bool {
        *self == Decoder::UntilClose
    }

    /// Body bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// The next step over `buf`. An error says why the body is malformed; the caller knows
    /// whose body it is.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, &'static str> {
        loop {
            match self {
                Decoder::Done => return Ok(Step::Done),
                Decoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Decoder::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = (*left).min(buf.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        *self = Decoder::Done;
                    }
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                Decoder::Chunked(state) => match *state {
                    ChunkState::Size => {
                        let Some((line_len, taken)) = line_end(buf)? else {
                            if buf.len() > MAX_CHUNK_LINE {
                                return Err("the chunked body has a chunk-size line too long");
                            }
                            return Ok(Step::NeedMore);
                        };
                        if line_len > MAX_CHUNK_LINE {
                            return Err("the chunked body has a chunk-size line too long");
                        }
                        let size = chunk_size(&buf[..line_len])?;
                        buf.advance(taken);
                        *state = if size == 0 {
                            ChunkState::Trailers(0)
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    ChunkState::Data(left) => {
                        if buf.is_empty() {
                            return Ok(Step::NeedMore);
                        }
                        let n = left.min(buf.len() as u64) as usize;
                        *state = if left == n as u64 {
                            ChunkState::DataEnd
                        } else {
                            ChunkState::Data(left - n as u64)
                        };
                        return Ok(Step::Data(buf.split_to(n).freeze()));
                    }
                    ChunkState::DataEnd => {
                        match buf.first() {
                            None => return Ok(Step::NeedMore),
                            Some(b'\n') => buf.advance(1),
                            Some(b'\r') if buf.len() < 2 => return Ok(Step::NeedMore),
                            Some(b'\r') if buf[1] == b'\n' => buf.advance(2),
                            Some(_) => {
                                return Err("the chunked body has chunk data not followed by CRLF")
                            }
                        }
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailers(seen) => {
                        // Trailer fields are dropped (they are not forwarded); the section
                        // ends at an empty line.
                        let Some((line_len, taken)) = line_end(buf)? else {
                            if seen + buf.len() > MAX_TRAILERS {
                                return Err("the chunked body has trailers too large");
                            }
                            return Ok(Step::NeedMore);
                        };
                        if line_len > 0 && !is_field_line(&buf[..line_len]) {
                            return Err("the chunked body has a malformed trailer");
                        }
                        buf.advance(taken);
                        if line_len == 0 {
                            *self = Decoder::Done;
                        } else {
                            *state = ChunkState::Trailers(seen + taken);
                            if seen + taken > MAX_TRAILERS {
                                return Err("the chunked body has trailers too large");
                            }
                        }
                    }
                },
            }
        }
    }
}

/// The size of a chunk-size line (`1a`, `1a;name=value`, `1a ; name="v"`): hex digits, then
/// only whitespace and extensions, which are dropped.
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    const MALFORMED: &str = "the chunked body has a malformed chunk size";
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 || digits > 15 {
        return Err(MALFORMED);
    }
    let rest = &line[digits..];
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let rest_ok = match rest.iter().position(|b| *b == b';') {
        None => rest.iter().all(blank),
        Some(at) => {
            rest[..at].iter().all(blank)
                && rest[at..]
                    .iter()
                    .all(|b| *b == b'\t' || (b' '..=b'~').contains(b))
        }
    };
    if !rest_ok {
        return Err(MALFORMED);
    }
    Ok(line[..digits].iter().fold(0u64, |n, d| {
        n * 16 + (*d as char).to_digit(16).unwrap_or(0) as u64
    }))
}

/// Whether a trailer line is `name: value`: a token, then a value without control characters
/// (RFC 9110 5.5; tabs allowed).
fn is_field_line(line: &[u8]) -> bool {
    match line.iter().position(|b| *b == b':') {
        Some(colon) if colon > 0 => {
            line[..colon]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
                && line[colon + 1..]
                    .iter()
                    .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
        }
        _ => false,
    }
}

/// The connection's read side while a body is being read from it.
pub struct BodyReader<R> {
    pub io: R,
    /// Bytes read but not yet decoded; after the body ends, the start of the next request.
    pub buf: BytesMut,
    decoder: Decoder,
    idle_timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<R> BodyReader<R> {
    pub fn new(io: R, buf: BytesMut, framing: Framing, idle_timeout: Duration) -> Self {
        Self {
            io,
            buf,
            decoder: Decoder::new(framing),
            idle_timeout,
            timer: None,
        }
    }

    /// Whether the whole body was read (the connection can carry another request).
    pub fn is_complete(&self) -> bool {
        self.decoder.is_done()
    }
}

/// Where a body's reader goes back to when the body ends or is dropped.
pub type ReaderHome<R> = oneshot::Sender<BodyReader<R>>;

/// A request body as the proxy sees it.
pub struct RequestBody<R> {
    reader: Option<BodyReader<R>>,
    home: Option<ReaderHome<R>>,
    size: SizeHint,
}

impl<R> RequestBody<R> {
    pub fn empty() -> Self {
        Self {
            reader: None,
            home: None,
            size: SizeHint::with_exact(0),
        }
    }

    pub fn streaming(reader: BodyReader<R>, framing: Framing, home: ReaderHome<R>) -> Self {
        let size = match framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Chunked => SizeHint::default(),
        };
        Self {
            reader: Some(reader),
            home: Some(home),
            size,
        }
    }

    fn send_home(&mut self) {
        if let (Some(reader), Some(home)) = (self.reader.take(), self.home.take()) {
            let _ = home.send(reader);
        }
    }
}

impl<R> Drop for RequestBody<R> {
    fn drop(&mut self) {
        self.send_home();
    }
}

impl<R: AsyncRead + Unpin> Body for RequestBody<R> {
    type Data = Bytes;
    type Error = EdgeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
        let this = &mut *self;
        let Some(reader) = this.reader.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match reader.decoder.decode(&mut reader.buf) {
                Ok(Step::Data(data)) => {
                    reader.timer = None;
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => {
                    this.send_home();
                    return Poll::Ready(None);
                }
                Err(why) => {
                    this.send_home();
                    return Poll::Ready(Some(Err(EdgeError::bad_request(why))));
                }
                Ok(Step::NeedMore) => {}
            }
            if reader.buf.capacity() - reader.buf.len() < READ_SIZE / 2 {
                reader.buf.reserve(READ_SIZE);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut reader.io), cx, &mut reader.buf) {
                Poll::Ready(Ok(0)) => {
                    this.send_home();
                    return Poll::Ready(Some(Err(EdgeError::new(ErrorKind::ClientClosed)
                        .context("the client closed the connection before the body ended"))));
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => {
                    this.send_home();
                    return Poll::Ready(Some(Err(EdgeError::new(ErrorKind::ClientClosed)
                        .context(format!("reading the request body: {e}")))));
                }
                Poll::Pending => {
                    let timeout = reader.idle_timeout;
                    let timer = reader
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    ready!(timer.as_mut().poll(cx));
                    this.send_home();
                    return Poll::Ready(Some(Err(EdgeError::new(ErrorKind::ClientTimeout))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reader.as_ref().is_none_or(|r| r.decoder.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, input: &[u8]) -> (Result<Vec<u8>, String>, BytesMut) {
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Fed one byte at a time: every state must cope with a split anywhere.
        for &b in input {
            buf.extend_from_slice(&[b]);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Step::Data(d)) => out.extend_from_slice(&d),
                    Ok(Step::NeedMore) => break,
                    Ok(Step::Done) => return (Ok(out), buf),
                    Err(e) => return (Err(e.to_string()), buf),
                }
            }
        }
        (Err("incomplete".into()), buf)
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let mut decoder = Decoder::new(Framing::Length(5));
        let mut buf = BytesMut::from(&b"helloGET /"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Step::Data(Bytes::from_static(b"hello"))
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), Step::Done);
        assert_eq!(&buf[..], b"GET /");
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let (body, rest) = decode_all(
            Framing::Chunked,
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT",
        );
        assert_eq!(body.unwrap(), b"hello world");
        assert!(rest.is_empty(), "the decoder must stop at the body's end");
        let (body, _) = decode_all(Framing::Chunked, b"A\r\n0123456789\r\n0\r\n\r\n");
        assert_eq!(body.unwrap(), b"0123456789");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"z\r\n"[..],
            b"5\r\nhelloXX",
            b"5 x\r\nhello\r\n",
            b"10000000000000000\r\n",
            b"-1\r\n",
        ] {
            let (body, _) = decode_all(Framing::Chunked, bad);
            assert!(body.is_err(), "{:?} decoded", String::from_utf8_lossy(bad));
        }
        let long_line = [b"1;".as_slice(), &[b'a'; 5000]].concat();
        assert!(decode_all(Framing::Chunked, &long_line).0.is_err());
    }

    #[test]
    fn bare_lf_line_endings_are_read_like_crlf() {
        let (body, rest) = decode_all(
            Framing::Chunked,
            b"5\nhello\n6;x=1\n world\r\n0\nX-T: 1\n\nNEXT",
        );
        assert_eq!(body.unwrap(), b"hello world");
        assert!(rest.is_empty());
        for bad in [
            &b"5\rhello\r\n"[..],
            b"5\r\nhello\rX",
            b"5;a\rb\r\nhello\r\n",
        ] {
            let (body, _) = decode_all(Framing::Chunked, bad);
            assert!(body.is_err(), "{:?} decoded", String::from_utf8_lossy(bad));
        }
        let (body, _) = decode_all(Framing::Chunked, b"0\r\nnot a field\r\n\r\n");
        assert!(body.is_err(), "a trailer that is not a field");
    }

    #[test]
    fn chunk_size_lines_are_hex() {
        assert_eq!(&chunk_size_line(0)[..], b"0\r\n");
        assert_eq!(&chunk_size_line(10)[..], b"a\r\n");
        assert_eq!(&chunk_size_line(0x1f00)[..], b"1f00\r\n");
    }
}
