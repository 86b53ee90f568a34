//! A client's request body, read straight from its connection as the proxy forwards it: a
//! `Content-Length` or chunked decoder over the connection's read half. When the body ends (or
//! is dropped) the read half and any bytes after the body go back to the connection, which
//! reuses them for the next request only if the body was read to its end.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::head::Framing;

/// Longest chunk-size line (with extensions) and trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

/// Why a request body could not be read to its end.
#[derive(Debug)]
pub enum BodyError {
    Closed,
    TimedOut,
    Malformed(&'static str),
    Io(std::io::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Closed => {
                write!(f, "the client closed the connection before the body ended")
            }
            BodyError::TimedOut => {
                write!(f, "the client sent no body bytes within the idle timeout")
            }
            BodyError::Malformed(why) => write!(f, "{why}"),
            BodyError::Io(e) => write!(f, "reading the request body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

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

    /// The next step over `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, BodyError> {
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
                        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                            if buf.len() > MAX_CHUNK_LINE {
                                return Err(BodyError::Malformed(
                                    "the chunked body has a chunk-size line too long",
                                ));
                            }
                            return Ok(Step::NeedMore);
                        };
                        let line = &buf[..end];
                        let digits = line
                            .iter()
                            .position(|b| !b.is_ascii_hexdigit())
                            .unwrap_or(line.len());
                        if digits == 0 || digits > 15 {
                            return Err(BodyError::Malformed(
                                "the chunked body has a malformed chunk size",
                            ));
                        }
                        // Only extensions (`;name=value`) may follow the size.
                        let rest = &line[digits..];
                        let rest_ok = rest.iter().all(|b| *b == b' ' || *b == b'\t')
                            || rest.iter().position(|b| *b == b';').is_some_and(|p| {
                                rest[..p].iter().all(|b| *b == b' ' || *b == b'\t')
                            });
                        if !rest_ok {
                            return Err(BodyError::Malformed(
                                "the chunked body has a malformed chunk size",
                            ));
                        }
                        let size = std::str::from_utf8(&line[..digits])
                            .ok()
                            .and_then(|s| u64::from_str_radix(s, 16).ok())
                            .ok_or(BodyError::Malformed(
                                "the chunked body has a malformed chunk size",
                            ))?;
                        buf.advance(end + 2);
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
                        if buf.len() < 2 {
                            return Ok(Step::NeedMore);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(BodyError::Malformed(
                                "the chunked body has chunk data not followed by CRLF",
                            ));
                        }
                        buf.advance(2);
                        *state = ChunkState::Size;
                    }
                    ChunkState::Trailers(seen) => {
                        // Trailer fields are dropped (they are not forwarded); the section
                        // ends at an empty line.
                        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                            if seen + buf.len() > MAX_TRAILERS {
                                return Err(BodyError::Malformed(
                                    "the chunked body has trailers too large",
                                ));
                            }
                            return Ok(Step::NeedMore);
                        };
                        buf.advance(end + 2);
                        if end == 0 {
                            *self = Decoder::Done;
                        } else {
                            *state = ChunkState::Trailers(seen + end + 2);
                            if seen + end + 2 > MAX_TRAILERS {
                                return Err(BodyError::Malformed(
                                    "the chunked body has trailers too large",
                                ));
                            }
                        }
                    }
                },
            }
        }
    }
}

/// The connection's read side while a body is being read from it.
pub struct BodyReader {
    pub io: OwnedReadHalf,
    /// Bytes read but not yet decoded; after the body ends, the start of the next request.
    pub buf: BytesMut,
    decoder: Decoder,
    idle_timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl BodyReader {
    pub fn new(io: OwnedReadHalf, buf: BytesMut, framing: Framing, idle_timeout: Duration) -> Self {
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
pub type ReaderHome = oneshot::Sender<BodyReader>;

/// A request body as the proxy sees it.
pub struct RequestBody {
    reader: Option<BodyReader>,
    home: Option<ReaderHome>,
    size: SizeHint,
}

impl RequestBody {
    pub fn empty() -> Self {
        Self {
            reader: None,
            home: None,
            size: SizeHint::with_exact(0),
        }
    }

    pub fn streaming(reader: BodyReader, framing: Framing, home: ReaderHome) -> Self {
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

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.send_home();
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
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
                Err(e) => {
                    this.send_home();
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Step::NeedMore) => {}
            }
            if reader.buf.capacity() - reader.buf.len() < READ_SIZE / 2 {
                reader.buf.reserve(READ_SIZE);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut reader.io), cx, &mut reader.buf) {
                Poll::Ready(Ok(0)) => {
                    this.send_home();
                    return Poll::Ready(Some(Err(BodyError::Closed)));
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => {
                    this.send_home();
                    return Poll::Ready(Some(Err(BodyError::Io(e))));
                }
                Poll::Pending => {
                    let timeout = reader.idle_timeout;
                    let timer = reader
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    ready!(timer.as_mut().poll(cx));
                    this.send_home();
                    return Poll::Ready(Some(Err(BodyError::TimedOut)));
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
}
