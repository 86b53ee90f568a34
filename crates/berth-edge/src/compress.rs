//! Response compression (the references' CloudFront `compress = true`): gzip, brotli and
//! zstd for compressible answers, negotiated from the client's `Accept-Encoding`.
//!
//! Two parts, apart: [`decide`] is a pure function of the request's method and headers, the
//! answer's status and headers, and the settings, tested without sockets; [`CompressBody`]
//! compresses a body as it streams. The proxy path calls [`compress_answer`], which uses both,
//! at one place. [`negotiate`] alone says which coding a client would get (for a cache key).
//!
//! Bounded: an encoder's window is capped (512 KiB for brotli and zstd, 32 KiB for gzip), at
//! most [`MAX_ENCODERS`] answers are compressed at once (the others pass as they are), and the
//! body adapter flushes at least every 256 KiB of input, holds at most that much output and
//! compresses at most that much input per poll (then yields). Knows nothing of routing,
//! replicas or the HTTP/1 writer.

use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use berth_spec::{Coding, CompressSpec};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use prometheus_client::metrics::counter::Counter;

use crate::errors::{EdgeError, ErrorKind, Side};

/// gzip level: zlib's default, the usual on-the-fly choice (nginx configurations use 5-6);
/// levels 4-6 give the same size on a 20 KiB page, 9 is 2-4 times slower for ≤ 7% less.
pub const GZIP_LEVEL: u32 = 6;
/// Brotli quality 4: on the `levels` test's 20 KiB pages 1.5-2.7 times smaller than gzip 6 at
/// two thirds of its speed (on bench/edge.sh's random catalogue JSON about the same size).
/// Quality 5 and up take 5-37 ms per 20 KiB answer in this brotli encoder with a window fit
/// to the answer (measured by the `levels` test).
pub const BROTLI_QUALITY: u32 = 4;
/// Brotli window (log2): 512 KiB, as ngx_brotli's default, instead of the format's 4 MiB.
pub const BROTLI_WINDOW_LOG: u32 = 19;
/// zstd level: its default; as fast as gzip 6 or faster and 1.3-2.5 times smaller on a 20 KiB
/// page (levels above gain 1-2% for half the speed).
pub const ZSTD_LEVEL: i32 = 3;
/// zstd window (log2): 512 KiB (level 3 would take 2 MiB on large answers).
pub const ZSTD_WINDOW_LOG: u32 = 19;
/// Answers compressed at once in this process, at most; more pass as they are. A live encoder
/// holds (measured by the `levels` test) brotli 2.7 MiB on a stream of unknown length, 0.8 MiB
/// on a 20 KiB answer; zstd 1.5 / 0.45 MiB; gzip 0.33 MiB: so compression's memory stays
/// under ~350 MiB however many clients ask, ~100 MiB for pages.
pub const MAX_ENCODERS: usize = 128;
/// Output gathered before it is handed on as a frame (unless the upstream pauses or ends).
const FRAME_TARGET: usize = 16 * 1024;
/// Input after which the encoder is flushed even while the upstream keeps sending: brotli
/// would otherwise hold up to a 1 MiB metablock of output before it lets any go.
const FLUSH_EVERY: u64 = 256 * 1024;
/// Input one poll of [`CompressBody`] compresses at most (plus one upstream frame) before it
/// hands on what output there is or, with none, yields to the runtime (wakes itself and
/// returns `Pending`): highly compressible input gives almost no output, and the edge runs
/// one single-threaded runtime per core, so without it one poll could compress tens of MiB
/// inline while every other connection of that worker waits.
const POLL_BUDGET: u64 = FLUSH_EVERY;

/// What to do with one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Compress with this coding (and vary on `Accept-Encoding`).
    Compress(Coding),
    /// Pass as it is. `vary`: the answer would have been compressed for another client, so
    /// caches must vary on `Accept-Encoding` all the same (nginx's `gzip_vary`).
    Pass { vary: bool, why: Skip },
}

/// Why an answer passes as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Compression is off for the edge or the route.
    Off,
    /// A `HEAD` request, or a status without a body (1xx, 204, 304).
    NoBody,
    /// Part of a representation (206, `Content-Range`).
    Range,
    /// A protocol switch (101, `Upgrade`).
    Upgrade,
    /// The answer is encoded already.
    Encoded,
    /// `Cache-Control: no-transform`.
    NoTransform,
    /// No `Content-Type`, a type not in the list, or a stream (`text/event-stream`).
    Type,
    /// A known length under the minimum or over the maximum.
    Size,
    /// The client accepts none of the offered codings.
    Client,
}

/// Decides what to do with an answer: a pure function of the request's method and headers,
/// the answer's status and headers, the edge's settings and the route's `compress` (None: as
/// the edge).
pub fn decide(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    answer: &HeaderMap,
    spec: &CompressSpec,
    route: Option<bool>,
) -> Decision {
    let pass = |why| Decision::Pass { vary: false, why };
    if !route.unwrap_or(spec.enabled) {
        return pass(Skip::Off);
    }
    // What the answer's headers say, read in one pass (this runs for every answer).
    let mut upgrade = false;
    let mut range = false;
    let mut encoded = false;
    let mut no_transform = false;
    let mut content_type = None;
    let mut content_length = None;
    for (name, value) in answer {
        if *name == header::CONTENT_TYPE {
            content_type.get_or_insert(value);
        } else if *name == header::CONTENT_LENGTH {
            content_length.get_or_insert(value);
        } else if *name == header::CONTENT_ENCODING {
            encoded |= !value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"identity");
        } else if *name == header::CACHE_CONTROL {
            no_transform |= value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|directive| directive.trim_ascii().eq_ignore_ascii_case(b"no-transform"));
        } else if *name == header::UPGRADE {
            upgrade = true;
        } else if *name == header::CONTENT_RANGE {
            range = true;
        }
    }
    if status == StatusCode::SWITCHING_PROTOCOLS || upgrade {
        return pass(Skip::Upgrade);
    }
    if crate::http1::head::has_no_body(status, method) {
        return pass(Skip::NoBody);
    }
    if status == StatusCode::PARTIAL_CONTENT || range {
        return pass(Skip::Range);
    }
    if encoded {
        return pass(Skip::Encoded);
    }
    if no_transform {
        return pass(Skip::NoTransform);
    }
    if !compressible_type(content_type, &spec.types) {
        return pass(Skip::Type);
    }
    let length = content_length
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|n| n < spec.min_size || n > CompressSpec::MAX_SIZE) {
        return pass(Skip::Size);
    }
    match negotiate(request, spec) {
        Some(coding) => Decision::Compress(coding),
        None => Decision::Pass {
            vary: true,
            why: Skip::Client,
        },
    }
}

/// Whether a `Content-Type` is in `types` (`type/subtype` or `type/*`, lower case);
/// `text/event-stream` never is.
fn compressible_type(content_type: Option<&HeaderValue>, types: &[String]) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = media.split_once('/') else {
        return false;
    };
    if kind.eq_ignore_ascii_case("text") && subtype.eq_ignore_ascii_case("event-stream") {
        return false;
    }
    types.iter().any(|t| match t.split_once('/') {
        Some((k, "*")) => k.eq_ignore_ascii_case(kind),
        Some((k, s)) => k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype),
        None => false,
    })
}

/// The coding a client gets from this edge, by its `Accept-Encoding` (every field line of
/// it) and the settings; None: identity. RFC 9110 12.5.3: `q=0` refuses a coding, `*` stands
/// for codings not named, `x-gzip` is gzip; the highest q wins, ties go to the edge's order
/// (`compress_algorithms`, br > zstd > gzip by default). An identity named with a higher q
/// than every offered coding wins. No `Accept-Encoding` at all: identity (as CloudFront and
/// nginx do, though RFC 9110 would allow any coding).
///
/// Only the client's header and the settings count, not the answer: a cache can normalise
/// its key with this.
pub fn negotiate(request: &HeaderMap, spec: &CompressSpec) -> Option<Coding> {
    // q in thousandths; None: not named.
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut star = None;
    let mut identity = None;
    let mut any = false;
    for line in request.get_all(header::ACCEPT_ENCODING) {
        for item in line.as_bytes().split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let token = parts.next().unwrap_or_default().trim_ascii();
            if token.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for param in parts {
                let param = param.trim_ascii();
                if let Some(value) = param
                    .strip_prefix(b"q=")
                    .or_else(|| param.strip_prefix(b"Q="))
                {
                    q = parse_q(value.trim_ascii());
                }
            }
            // An unreadable q leaves the coding unnamed.
            let Some(q) = q else { continue };
            any = true;
            let slot = if token == b"*" {
                &mut star
            } else if token.eq_ignore_ascii_case(b"identity") {
                &mut identity
            } else if token.eq_ignore_ascii_case(b"x-gzip") {
                &mut named[index(Coding::Gzip)]
            } else {
                match Coding::ALL
                    .into_iter()
                    .find(|c| token.eq_ignore_ascii_case(c.token().as_bytes()))
                {
                    Some(coding) => &mut named[index(coding)],
                    None => continue,
                }
            };
            // Named twice: the higher q counts.
            *slot = Some(slot.map_or(q, |old: u16| old.max(q)));
        }
    }
    if !any {
        return None;
    }
    let mut best: Option<(Coding, u16)> = None;
    for &coding in &spec.algorithms {
        let q = named[index(coding)].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    let (coding, q) = best?;
    match identity.or(star) {
        Some(identity_q) if identity_q > q => None,
        _ => Some(coding),
    }
}

fn index(coding: Coding) -> usize {
    match coding {
        Coding::Br => 0,
        Coding::Zstd => 1,
        Coding::Gzip => 2,
    }
}

/// A qvalue (`0`, `0.5`, `1`, `1.000`) in thousandths; None when malformed.
fn parse_q(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if whole.len() != 1 || fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match whole[0] {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Adds `Accept-Encoding` to the answer's `Vary` unless it is there already (or `Vary: *`).
pub fn add_vary(answer: &mut HeaderMap) {
    let covered = answer.get_all(header::VARY).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|name| {
            let name = name.trim_ascii();
            name == b"*" || name.eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    if covered {
        return;
    }
    match answer.get(header::VARY).map(|v| v.as_bytes()) {
        // One line already: extend it, so that clients reading only the first line see both.
        Some(existing) if answer.get_all(header::VARY).iter().count() == 1 => {
            let mut merged = existing.to_vec();
            merged.extend_from_slice(b", Accept-Encoding");
            if let Ok(value) = HeaderValue::from_bytes(&merged) {
                answer.insert(header::VARY, value);
                return;
            }
            answer.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        _ => {
            answer.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
    }
}

/// The head of an answer about to be compressed with `coding`, as nginx does it: the coding
/// named, no length (it goes out chunked), no `Accept-Ranges` (ranges of the compressed
/// bytes are not offered), a strong `ETag` made weak (the bytes differ from the replica's),
/// and `Vary: Accept-Encoding`.
pub fn compressed_head(answer: &mut HeaderMap, coding: Coding) {
    answer.remove(header::CONTENT_ENCODING);
    answer.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    answer.remove(header::CONTENT_LENGTH);
    answer.remove(header::ACCEPT_RANGES);
    if let Some(etag) = answer.get(header::ETAG) {
        if etag.as_bytes().first() == Some(&b'"') {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&weak) {
                answer.insert(header::ETAG, value);
            }
        }
    }
    add_vary(answer);
}

/// Answers compressed and bytes into and out of the encoders, by coding (in the order of
/// [`Coding::ALL`]), for the edge's metrics.
#[derive(Clone, Default)]
pub struct CompressCounters {
    answers: [Counter; 3],
    input: [Counter; 3],
    output: [Counter; 3],
    /// Answers that passed as they are because [`MAX_ENCODERS`] were busy.
    pub busy: Counter,
}

impl CompressCounters {
    /// Counters by coding, in the order of [`Coding::ALL`].
    pub fn new(
        answers: [Counter; 3],
        input: [Counter; 3],
        output: [Counter; 3],
        busy: Counter,
    ) -> Self {
        Self {
            answers,
            input,
            output,
            busy,
        }
    }

    /// Counters of one coding: (answers, bytes in, bytes out).
    pub fn of(&self, coding: Coding) -> (&Counter, &Counter, &Counter) {
        let i = index(coding);
        (&self.answers[i], &self.input[i], &self.output[i])
    }
}

/// Applies [`decide`] to an answer: its head is rewritten and its body wrapped when it is
/// compressed; otherwise it is handed back as it is (with `Vary` when another client would
/// have got it compressed). The proxy path's one call.
pub fn compress_answer<B>(
    method: &Method,
    request: &HeaderMap,
    answer: hyper::Response<B>,
    spec: &CompressSpec,
    route: Option<bool>,
    counters: &CompressCounters,
) -> Result<hyper::Response<CompressBody<B>>, hyper::Response<B>>
where
    B: Body<Data = Bytes, Error = EdgeError>,
{
    let decision = decide(
        method,
        request,
        answer.status(),
        answer.headers(),
        spec,
        route,
    );
    let coding = match decision {
        Decision::Compress(coding) => coding,
        Decision::Pass { vary, .. } => {
            let mut answer = answer;
            if vary {
                add_vary(answer.headers_mut());
            }
            return Err(answer);
        }
    };
    let Some(slot) = EncoderSlot::take() else {
        counters.busy.inc();
        let mut answer = answer;
        add_vary(answer.headers_mut());
        return Err(answer);
    };
    let length = answer
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (mut parts, body) = answer.into_parts();
    compressed_head(&mut parts.headers, coding);
    counters.of(coding).0.inc();
    let body = CompressBody::new(body, coding, length, Some(slot), Some(counters.clone()));
    Ok(hyper::Response::from_parts(parts, body))
}

/// Answers being compressed in this process now.
static ENCODERS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_ENCODERS`] places, given back on drop.
pub struct EncoderSlot(());

impl EncoderSlot {
    fn take() -> Option<Self> {
        ENCODERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_ENCODERS).then_some(n + 1)
            })
            .ok()
            .map(|_| EncoderSlot(()))
    }
}

impl Drop for EncoderSlot {
    fn drop(&mut self) {
        ENCODERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A streaming encoder writing into a buffer the body adapter drains.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// An encoder for `coding`; `length`, when known, lets brotli and zstd size their window
    /// to the answer (less memory for small answers).
    fn new(coding: Coding, length: Option<u64>) -> std::io::Result<Self> {
        // The smallest window that holds the whole answer, within the cap.
        let window = |cap: u32| match length {
            Some(n) => (64 - n.max(1).leading_zeros()).clamp(10, cap),
            None => cap,
        };
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Coding::Br => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: BROTLI_QUALITY as i32,
                    lgwin: window(BROTLI_WINDOW_LOG) as i32,
                    size_hint: length.map_or(0, |n| n as usize),
                    ..Default::default()
                };
                Encoder::Brotli(Box::new(brotli::CompressorWriter::with_params(
                    Vec::new(),
                    4096,
                    &params,
                )))
            }
            Coding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
                encoder.window_log(window(ZSTD_WINDOW_LOG))?;
                if let Some(n) = length {
                    encoder.set_pledged_src_size(Some(n))?;
                }
                encoder.include_checksum(false)?;
                Encoder::Zstd(encoder)
            }
        })
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Brotli(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// Pushes out everything written so far as decodable bytes (a sync flush).
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Brotli(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// The output so far, taken out of the encoder's buffer.
    fn take(&mut self) -> Vec<u8> {
        let buffer = match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Brotli(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        };
        std::mem::take(buffer)
    }

    fn pending(&mut self) -> usize {
        match self {
            Encoder::Gzip(e) => e.get_mut().len(),
            Encoder::Brotli(e) => e.get_mut().len(),
            Encoder::Zstd(e) => e.get_mut().len(),
        }
    }

    /// Ends the stream; the rest of the output.
    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Brotli(e) => Ok(e.into_inner()),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A body compressed as it streams. Output goes on in frames of about 16 KiB (the encoder
    /// is flushed at least every 256 KiB of input); when the inner body has nothing ready,
    /// what was written is flushed and sent (so a slow replica's
    /// bytes, server-sent events or a long poll still reach the client as they come); at the
    /// end the stream is finished. Trailers go on after the last data.
    pub struct CompressBody<B> {
        #[pin]
        inner: B,
        encoder: Option<Encoder>,
        coding: Coding,
        length: Option<u64>,
        // Input bytes written since the last flush.
        unflushed: u64,
        // The inner body has ended (its trailers, if any, wait here).
        ended: bool,
        trailers: Option<HeaderMap>,
        done: bool,
        counters: Option<CompressCounters>,
        slot: Option<EncoderSlot>,
    }
}

impl<B> CompressBody<B> {
    /// Compresses `inner` with `coding`; `length` is the answer's length when known.
    pub fn new(
        inner: B,
        coding: Coding,
        length: Option<u64>,
        slot: Option<EncoderSlot>,
        counters: Option<CompressCounters>,
    ) -> Self {
        Self {
            inner,
            encoder: None,
            coding,
            length,
            unflushed: 0,
            ended: false,
            trailers: None,
            done: false,
            counters,
            slot,
        }
    }
}

fn edge_error(e: std::io::Error) -> EdgeError {
    let mut error =
        EdgeError::new(ErrorKind::UpstreamProtocol).context(format!("compressing the answer: {e}"));
    error.side = Side::Edge;
    error
}

impl<B> Body for CompressBody<B>
where
    B: Body<Data = Bytes, Error = EdgeError>,
{
    type Data = Bytes;
    type Error = EdgeError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if *this.ended {
            // The data went out; the trailers (if any) and the end.
            *this.done = true;
            *this.slot = None;
            return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        if this.encoder.is_none() {
            // Made at the first poll, not before the answer's head goes out.
            *this.encoder = Some(Encoder::new(*this.coding, *this.length).map_err(edge_error)?);
        }
        let out = |bytes: Vec<u8>, counters: &Option<CompressCounters>, coding: Coding| {
            if let Some(c) = counters {
                c.of(coding).2.inc_by(bytes.len() as u64);
            }
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))))
        };
        // Input compressed in this poll.
        let mut consumed = 0u64;
        loop {
            let encoder = this.encoder.as_mut().expect("made above");
            if consumed >= POLL_BUDGET {
                // Enough work for one poll: what output there is, or a cooperative yield.
                if encoder.pending() > 0 {
                    let bytes = encoder.take();
                    return out(bytes, this.counters, *this.coding);
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        if let Some(c) = this.counters.as_ref() {
                            c.of(*this.coding).1.inc_by(data.len() as u64);
                        }
                        encoder.write(&data).map_err(edge_error)?;
                        consumed += data.len() as u64;
                        *this.unflushed += data.len() as u64;
                        if *this.unflushed >= FLUSH_EVERY {
                            encoder.flush().map_err(edge_error)?;
                            *this.unflushed = 0;
                        }
                        if encoder.pending() >= FRAME_TARGET {
                            let bytes = encoder.take();
                            return out(bytes, this.counters, *this.coding);
                        }
                    }
                    Err(frame) => {
                        // Trailers: the end of the data.
                        *this.trailers = frame.into_trailers().ok();
                        return finish(this.encoder, this.ended, this.counters, *this.coding);
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    *this.encoder = None;
                    *this.slot = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    return finish(this.encoder, this.ended, this.counters, *this.coding);
                }
                Poll::Pending => {
                    // Nothing more now: what was written goes out decodable.
                    if *this.unflushed > 0 {
                        encoder.flush().map_err(edge_error)?;
                        *this.unflushed = 0;
                    }
                    if encoder.pending() > 0 {
                        let bytes = encoder.take();
                        return out(bytes, this.counters, *this.coding);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Unknown: the answer goes out chunked.
        SizeHint::default()
    }
}

/// Finishes the stream: the encoder's last bytes (the trailers and the end follow).
fn finish(
    encoder: &mut Option<Encoder>,
    ended: &mut bool,
    counters: &Option<CompressCounters>,
    coding: Coding,
) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
    *ended = true;
    let Some(encoder) = encoder.take() else {
        return Poll::Ready(Some(Ok(Frame::data(Bytes::new()))));
    };
    let bytes = encoder.finish().map_err(edge_error)?;
    if let Some(c) = counters {
        c.of(coding).2.inc_by(bytes.len() as u64);
    }
    Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::io::Read;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn accepting(value: &str) -> HeaderMap {
        headers(&[("accept-encoding", value)])
    }

    #[test]
    fn negotiation_follows_q_values_then_the_edge_s_order() {
        let spec = CompressSpec::default();
        use Coding::*;
        for (accept, expected) in [
            ("gzip", Some(Gzip)),
            ("gzip, deflate, br", Some(Br)),
            ("gzip, deflate, br, zstd", Some(Br)),
            ("zstd, gzip", Some(Zstd)),
            ("br;q=0, gzip", Some(Gzip)),
            ("gzip;q=0.5, zstd;q=0.8", Some(Zstd)),
            ("gzip;q=1.0, br;q=0.999", Some(Gzip)),
            ("*", Some(Br)),
            ("*;q=0", None),
            ("*;q=0, gzip", Some(Gzip)),
            ("br;q=0, *", Some(Zstd)),
            ("identity", None),
            ("identity;q=0", None),
            ("identity;q=0, gzip", Some(Gzip)),
            ("gzip;q=0.5, identity", None),
            ("gzip;q=0.5, identity;q=0.4", Some(Gzip)),
            ("GZIP;Q=1.000", Some(Gzip)),
            (" x-gzip ", Some(Gzip)),
            ("gzip;q=2", None),
            ("gzip;q=0.0001", None),
            ("gzip;q=", None),
            ("gzip;q=0.5;q=0", None),
            ("deflate", None),
            ("compress, deflate", None),
            ("", None),
            (",,, ;q=1", None),
            ("gzip;q=0, gzip;q=1", Some(Gzip)),
        ] {
            assert_eq!(negotiate(&accepting(accept), &spec), expected, "{accept:?}");
        }
        // No header at all: identity.
        assert_eq!(negotiate(&HeaderMap::new(), &spec), None);
        // Several field lines are one list.
        let two = headers(&[("accept-encoding", "gzip"), ("accept-encoding", "br")]);
        assert_eq!(negotiate(&two, &spec), Some(Br));
        // The edge's order decides ties, and only offered codings are chosen.
        let gzip_first = CompressSpec {
            algorithms: vec![Gzip, Br],
            ..CompressSpec::default()
        };
        assert_eq!(
            negotiate(&accepting("br, gzip, zstd"), &gzip_first),
            Some(Gzip)
        );
        assert_eq!(negotiate(&accepting("zstd"), &gzip_first), None);
        assert_eq!(
            negotiate(&accepting("br;q=1, gzip;q=0.9"), &gzip_first),
            Some(Br)
        );
    }

    #[test]
    fn q_values_read_as_thousandths() {
        for (text, q) in [
            ("0", Some(0)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("0.5", Some(500)),
            ("0.123", Some(123)),
            ("1.001", None),
            ("2", None),
            ("0.1234", None),
            ("", None),
            (".5", None),
            ("0.x", None),
        ] {
            assert_eq!(parse_q(text.as_bytes()), q, "{text:?}");
        }
    }

    fn decide_with(
        method: Method,
        status: u16,
        answer: &[(&str, &str)],
        spec: &CompressSpec,
        route: Option<bool>,
    ) -> Decision {
        decide(
            &method,
            &accepting("gzip, br"),
            StatusCode::from_u16(status).unwrap(),
            &headers(answer),
            spec,
            route,
        )
    }

    #[test]
    fn each_rule_that_leaves_an_answer_alone() {
        let spec = CompressSpec::default();
        let html = [("content-type", "text/html; charset=utf-8")];
        let get =
            |status, answer: &[(&str, &str)]| decide_with(Method::GET, status, answer, &spec, None);
        let pass = |why| Decision::Pass { vary: false, why };
        assert_eq!(get(200, &html), Decision::Compress(Coding::Br));
        // Any status with a body: error pages too.
        assert_eq!(get(404, &html), Decision::Compress(Coding::Br));
        assert_eq!(
            decide_with(Method::HEAD, 200, &html, &spec, None),
            pass(Skip::NoBody)
        );
        assert_eq!(get(204, &html), pass(Skip::NoBody));
        assert_eq!(get(304, &html), pass(Skip::NoBody));
        assert_eq!(get(206, &html), pass(Skip::Range));
        let range = [html[0], ("content-range", "bytes 0-99/5000")];
        assert_eq!(get(200, &range), pass(Skip::Range));
        assert_eq!(get(101, &html), pass(Skip::Upgrade));
        assert_eq!(
            get(200, &[html[0], ("upgrade", "websocket")]),
            pass(Skip::Upgrade)
        );
        assert_eq!(
            get(200, &[html[0], ("content-encoding", "gzip")]),
            pass(Skip::Encoded)
        );
        assert_eq!(
            get(200, &[html[0], ("content-encoding", "br")]),
            pass(Skip::Encoded)
        );
        // `identity` is no encoding.
        assert_eq!(
            get(200, &[html[0], ("content-encoding", "identity")]),
            Decision::Compress(Coding::Br)
        );
        let no_transform = [
            html[0],
            ("cache-control", "public, No-Transform, max-age=60"),
        ];
        assert_eq!(get(200, &no_transform), pass(Skip::NoTransform));
        assert_eq!(get(200, &[]), pass(Skip::Type));
        assert_eq!(get(200, &[("content-type", "image/png")]), pass(Skip::Type));
        assert_eq!(
            get(200, &[("content-type", "application/zip")]),
            pass(Skip::Type)
        );
        assert_eq!(
            get(200, &[("content-type", "text/event-stream")]),
            pass(Skip::Type)
        );
        assert_eq!(get(200, &[("content-type", "garbage")]), pass(Skip::Type));
        for compressible in [
            "text/plain",
            "TEXT/CSS",
            "application/json",
            "application/javascript; charset=utf-8",
            "image/svg+xml",
        ] {
            assert_eq!(
                get(200, &[("content-type", compressible)]),
                Decision::Compress(Coding::Br),
                "{compressible}"
            );
        }
        // Known lengths: from the minimum to the maximum; unknown (chunked): compressed.
        let sized = |n: &str| get(200, &[html[0], ("content-length", n)]);
        assert_eq!(sized("999"), pass(Skip::Size));
        assert_eq!(sized("0"), pass(Skip::Size));
        assert_eq!(sized("1000"), Decision::Compress(Coding::Br));
        assert_eq!(sized("10000000"), Decision::Compress(Coding::Br));
        assert_eq!(sized("10000001"), pass(Skip::Size));
        // A client that takes none: the answer passes, but caches must vary.
        let plain = decide(
            &Method::GET,
            &HeaderMap::new(),
            StatusCode::OK,
            &headers(&html),
            &spec,
            None,
        );
        assert_eq!(
            plain,
            Decision::Pass {
                vary: true,
                why: Skip::Client
            }
        );
    }

    #[test]
    fn the_route_overrides_the_edge() {
        let html = [("content-type", "text/html")];
        let on = CompressSpec::default();
        let off = CompressSpec {
            enabled: false,
            ..CompressSpec::default()
        };
        let pass = Decision::Pass {
            vary: false,
            why: Skip::Off,
        };
        assert_eq!(decide_with(Method::GET, 200, &html, &off, None), pass);
        assert_eq!(decide_with(Method::GET, 200, &html, &on, Some(false)), pass);
        assert_eq!(
            decide_with(Method::GET, 200, &html, &off, Some(true)),
            Decision::Compress(Coding::Br)
        );
        // The type list and minimum come from the settings.
        let json_only = CompressSpec {
            types: vec!["application/json".into()],
            min_size: 10,
            ..CompressSpec::default()
        };
        assert_eq!(
            decide_with(Method::GET, 200, &html, &json_only, None),
            Decision::Pass {
                vary: false,
                why: Skip::Type
            }
        );
        let json = [
            ("content-type", "application/json"),
            ("content-length", "10"),
        ];
        assert_eq!(
            decide_with(Method::GET, 200, &json, &json_only, None),
            Decision::Compress(Coding::Br)
        );
    }

    #[test]
    fn a_compressed_head_names_the_coding_drops_the_length_and_weakens_the_etag() {
        let mut head = headers(&[
            ("content-type", "text/html"),
            ("content-length", "5000"),
            ("accept-ranges", "bytes"),
            ("etag", "\"abc\""),
        ]);
        compressed_head(&mut head, Coding::Gzip);
        assert_eq!(head["content-encoding"], "gzip");
        assert!(!head.contains_key("content-length"));
        assert!(!head.contains_key("accept-ranges"));
        assert_eq!(head["etag"], "W/\"abc\"");
        assert_eq!(head["vary"], "Accept-Encoding");

        let mut weak = headers(&[("etag", "W/\"abc\""), ("vary", "Origin")]);
        compressed_head(&mut weak, Coding::Br);
        assert_eq!(weak["etag"], "W/\"abc\"");
        assert_eq!(weak["vary"], "Origin, Accept-Encoding");

        for vary in ["accept-encoding", "Origin, Accept-Encoding", "*"] {
            let mut head = headers(&[("vary", vary)]);
            add_vary(&mut head);
            let all: Vec<_> = head.get_all("vary").iter().collect();
            assert_eq!(all, [vary], "{vary}");
        }
        let mut two = headers(&[("vary", "Origin"), ("vary", "Cookie")]);
        add_vary(&mut two);
        let all: Vec<_> = two.get_all("vary").iter().collect();
        assert_eq!(all, ["Origin", "Cookie", "Accept-Encoding"]);
    }

    /// A body of scripted frames; `None` in the script is a moment with nothing ready.
    struct Script {
        frames: VecDeque<Option<Frame<Bytes>>>,
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = EdgeError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
            match self.frames.pop_front() {
                Some(Some(frame)) => Poll::Ready(Some(Ok(frame))),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => Poll::Ready(None),
            }
        }
    }

    fn script(items: Vec<Option<&[u8]>>) -> Script {
        Script {
            frames: items
                .into_iter()
                .map(|i| i.map(|b| Frame::data(Bytes::copy_from_slice(b))))
                .collect(),
        }
    }

    fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Br => {
                brotli::Decompressor::new(bytes, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => out = zstd::stream::decode_all(bytes).unwrap(),
        }
        out
    }

    /// Polls `body` until it has nothing ready or ends: the data frames, and whether it ended.
    fn poll_ready<B: Body<Data = Bytes, Error = EdgeError> + Unpin>(
        body: &mut B,
    ) -> (Vec<Bytes>, bool, Option<HeaderMap>) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut frames = Vec::new();
        let mut trailers = None;
        loop {
            match Pin::new(&mut *body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => frames.push(data),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Poll::Ready(Some(Err(e))) => panic!("{e}"),
                Poll::Ready(None) => return (frames, true, trailers),
                Poll::Pending => return (frames, false, trailers),
            }
        }
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("<li id=\"item-{i}\">Item number {i}</li>\n").into_bytes())
            .collect()
    }

    #[test]
    fn each_coding_decodes_to_the_original_bytes() {
        let original = text(2_000);
        for coding in Coding::ALL {
            let chunks: Vec<Option<&[u8]>> = original.chunks(7_000).map(Some).collect();
            let mut body = CompressBody::new(
                script(chunks),
                coding,
                Some(original.len() as u64),
                None,
                None,
            );
            let (frames, ended, _) = poll_ready(&mut body);
            assert!(ended, "{coding:?}");
            assert!(body.is_end_stream());
            let compressed: Vec<u8> = frames.concat();
            assert!(
                compressed.len() * 5 < original.len(),
                "{coding:?}: {} of {}",
                compressed.len(),
                original.len()
            );
            assert_eq!(decode(coding, &compressed), original, "{coding:?}");
        }
    }

    #[test]
    fn what_came_is_flushed_when_the_upstream_pauses() {
        let first = text(30);
        let second = text(60);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for coding in Coding::ALL {
            let mut body = CompressBody::new(
                script(vec![Some(&first), None, Some(&second), None]),
                coding,
                None,
                None,
                None,
            );
            let mut next = || match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap(),
                other => panic!("{coding:?}: {:?}", other.map(|f| f.map(|f| f.is_ok()))),
            };
            // The replica paused after its first chunk: that chunk is decodable now.
            let at_pause = next();
            assert_eq!(decode_partial(coding, &at_pause), first, "{coding:?}");
            // Its second chunk likewise, then the end of the stream.
            let at_second_pause = next();
            let so_far = [at_pause.clone(), at_second_pause.clone()].concat();
            assert_eq!(
                decode_partial(coding, &so_far),
                [first.clone(), second.clone()].concat(),
                "{coding:?}"
            );
            let end = next();
            assert!(matches!(
                Pin::new(&mut body).poll_frame(&mut cx),
                Poll::Ready(None)
            ));
            let all = [so_far, end.to_vec()].concat();
            assert_eq!(
                decode(coding, &all),
                [first.clone(), second.clone()].concat()
            );
        }
    }

    /// What a stream decoder gives for the bytes so far (the stream is not finished).
    fn decode_partial(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        match coding {
            Coding::Gzip => {
                let mut d = flate2::write::GzDecoder::new(Vec::new());
                d.write_all(bytes).unwrap();
                d.flush().unwrap();
                d.get_ref().clone()
            }
            Coding::Br => {
                let mut d = brotli::DecompressorWriter::new(Vec::new(), 4096);
                d.write_all(bytes).unwrap();
                d.flush().unwrap();
                d.get_ref().clone()
            }
            Coding::Zstd => {
                let mut d = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
                d.write_all(bytes).unwrap();
                d.flush().unwrap();
                d.get_ref().clone()
            }
        }
    }

    #[test]
    fn a_large_answer_goes_out_in_frames_as_it_is_read() {
        // 4 MiB of poorly compressible bytes, all ready at once.
        let mut state = 0x2545_f491_u32;
        let original: Vec<u8> = (0..4 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect();
        for coding in Coding::ALL {
            let chunks: Vec<Option<&[u8]>> = original.chunks(64 * 1024).map(Some).collect();
            let mut body = CompressBody::new(script(chunks), coding, None, None, None);
            let (frames, ended, _) = poll_ready(&mut body);
            assert!(ended);
            let largest = frames.iter().map(Bytes::len).max().unwrap();
            eprintln!(
                "{coding:?}: {} frames, the largest {largest} bytes",
                frames.len()
            );
            // Never the whole answer at once: at most what the encoder may hold between
            // flushes and one upstream chunk.
            assert!(frames.len() >= 16, "{coding:?}: {} frames", frames.len());
            assert!(largest <= 320 * 1024, "{coding:?}: a frame of {largest}");
            assert_eq!(decode(coding, &frames.concat()), original, "{coding:?}");
        }
    }

    /// A body of `chunk`-sized copies of `data`, `total` bytes in all, always ready; it
    /// counts what was read.
    struct Flood {
        chunk: Bytes,
        left: usize,
        read: std::sync::Arc<AtomicUsize>,
    }

    impl Body for Flood {
        type Data = Bytes;
        type Error = EdgeError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, EdgeError>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            let n = self.chunk.len().min(self.left);
            self.left -= n;
            self.read.fetch_add(n, Ordering::Relaxed);
            Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
        }
    }

    #[test]
    fn one_poll_compresses_at_most_its_budget_of_compressible_input() {
        // 8 MiB of one repeated 16 KiB page (within gzip's window) in 64 KiB chunks, all
        // ready at once: almost no output.
        let page = Bytes::from(text(1_000)[..16 * 1024].repeat(4));
        let total = 8 << 20;
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for coding in Coding::ALL {
            let read = std::sync::Arc::new(AtomicUsize::new(0));
            let flood = Flood {
                chunk: page.clone(),
                left: total,
                read: read.clone(),
            };
            let mut body = CompressBody::new(flood, coding, None, None, None);
            let mut output = Vec::new();
            let mut polls = 0;
            loop {
                let before = read.load(Ordering::Relaxed);
                let poll = Pin::new(&mut body).poll_frame(&mut cx);
                let this_poll = read.load(Ordering::Relaxed) - before;
                // The budget and at most one upstream frame over it.
                assert!(
                    this_poll as u64 <= POLL_BUDGET + page.len() as u64,
                    "{coding:?}: one poll read {this_poll} bytes"
                );
                polls += 1;
                match poll {
                    Poll::Ready(Some(Ok(frame))) => {
                        output.extend_from_slice(&frame.into_data().unwrap())
                    }
                    Poll::Ready(Some(Err(e))) => panic!("{e}"),
                    Poll::Ready(None) => break,
                    Poll::Pending => {}
                }
            }
            assert_eq!(read.load(Ordering::Relaxed), total, "{coding:?}");
            assert!(
                polls >= total / (POLL_BUDGET as usize + page.len()),
                "{coding:?}: {polls} polls"
            );
            eprintln!("{coding:?}: {} bytes out in {polls} polls", output.len());
            assert!(
                output.len() * 8 < total,
                "{coding:?}: {} bytes out",
                output.len()
            );
            let decoded = decode(coding, &output);
            assert_eq!(decoded.len(), total, "{coding:?}");
            assert!(decoded.chunks(page.len()).all(|c| c == page), "{coding:?}");
        }
    }

    #[test]
    fn trailers_follow_the_compressed_data() {
        let data = text(100);
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("abc"));
        let inner = Script {
            frames: VecDeque::from([
                Some(Frame::data(Bytes::from(data.clone()))),
                Some(Frame::trailers(trailers.clone())),
            ]),
        };
        let mut body = CompressBody::new(inner, Coding::Gzip, None, None, None);
        let (frames, ended, got) = poll_ready(&mut body);
        assert!(ended);
        assert_eq!(got, Some(trailers));
        assert_eq!(decode(Coding::Gzip, &frames.concat()), data);
    }

    #[test]
    fn answers_are_compressed_through_one_call_with_bounded_encoders() {
        let spec = CompressSpec::default();
        let counters = CompressCounters::default();
        let request = accepting("gzip");
        let data = text(100);
        let answer = || {
            let mut r = hyper::Response::new(script(vec![Some(&data)]));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain"));
            r
        };
        let compressed = compress_answer(&Method::GET, &request, answer(), &spec, None, &counters)
            .unwrap_or_else(|_| panic!("not compressed"));
        assert_eq!(compressed.headers()["content-encoding"], "gzip");
        assert_eq!(compressed.headers()["vary"], "Accept-Encoding");
        let mut body = compressed.into_body();
        let (frames, _, _) = poll_ready(&mut body);
        let out: usize = frames.iter().map(Bytes::len).sum();
        assert_eq!(decode(Coding::Gzip, &frames.concat()), data);
        let (answers, input, output) = counters.of(Coding::Gzip);
        assert_eq!(
            (answers.get(), input.get(), output.get()),
            (1, data.len() as u64, out as u64)
        );

        // Every encoder busy: the answer passes as it is, still varying.
        let held: Vec<EncoderSlot> = std::iter::from_fn(EncoderSlot::take).collect();
        assert!(held.len() <= MAX_ENCODERS);
        let plain = compress_answer(&Method::GET, &request, answer(), &spec, None, &counters)
            .map(|_| ())
            .unwrap_err();
        assert!(!plain.headers().contains_key("content-encoding"));
        assert_eq!(plain.headers()["vary"], "Accept-Encoding");
        assert_eq!(counters.busy.get(), 1);
        drop(held);
        assert!(EncoderSlot::take().is_some());
    }

    /// How the levels were chosen: ratio and speed of each coding at several levels on a
    /// 20 KiB JSON catalogue and a 20 KiB HTML page, and the memory of live encoders. Run in
    /// release mode: `cargo test --release -p berth-edge --lib levels -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn levels() {
        let json: Vec<u8> = {
            let mut out = b"{\"items\":[".to_vec();
            let mut i = 0u64;
            while out.len() < 20_480 {
                out.extend_from_slice(
                    format!(
                        "{{\"id\":{},\"sku\":\"SKU-{:06}\",\"name\":\"Item {} {}\",\"price\":{}.{:02},\"stock\":{}}},",
                        1000 + i,
                        i.wrapping_mul(2_654_435_761) % 1_000_000,
                        ["Red", "Blue", "Oak", "Steel", "Wool"][(i % 5) as usize],
                        ["Shirt", "Table", "Lamp", "Chair", "Mug", "Bag"][(i % 6) as usize],
                        i * 37 % 300,
                        i * 13 % 100,
                        i * 7 % 500
                    )
                    .as_bytes(),
                );
                i += 1;
            }
            out.truncate(20_480);
            out
        };
        let html = text(700)[..20_480].to_vec();
        let time = |f: &mut dyn FnMut() -> usize| {
            let rounds = 300;
            let started = std::time::Instant::now();
            let mut size = 0;
            for _ in 0..rounds {
                size = f();
            }
            let per = started.elapsed().as_secs_f64() / rounds as f64;
            (size, per)
        };
        for (name, input) in [("json", &json), ("html", &html)] {
            for level in [1, 4, 5, 6, 9] {
                let (size, per) = time(&mut || {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                    e.write_all(input).unwrap();
                    e.finish().unwrap().len()
                });
                eprintln!(
                    "{name} gzip {level}: {size} bytes ({:.1}x), {:.0} us, {:.0} MB/s",
                    input.len() as f64 / size as f64,
                    per * 1e6,
                    input.len() as f64 / per / 1e6
                );
            }
            for (quality, lgwin, hint) in [
                (1, 15, true),
                (3, 15, true),
                (4, 15, true),
                (4, 19, false),
                (5, 15, true),
                (5, 15, false),
                (5, 19, false),
                (5, 22, false),
                (6, 15, true),
                (9, 15, true),
                (11, 15, true),
            ] {
                let (size, per) = time(&mut || {
                    let params = brotli::enc::BrotliEncoderParams {
                        quality,
                        lgwin,
                        size_hint: if hint { input.len() } else { 0 },
                        ..Default::default()
                    };
                    let mut e = brotli::CompressorWriter::with_params(Vec::new(), 4096, &params);
                    e.write_all(input).unwrap();
                    e.into_inner().len()
                });
                eprintln!(
                    "{name} br {quality} (window {lgwin}, size hint {hint}): {size} bytes ({:.1}x), {:.0} us, {:.0} MB/s",
                    input.len() as f64 / size as f64,
                    per * 1e6,
                    input.len() as f64 / per / 1e6
                );
            }
            for level in [1, 3, 6, 9] {
                let (size, per) = time(&mut || {
                    let mut e = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
                    e.set_pledged_src_size(Some(input.len() as u64)).unwrap();
                    e.include_checksum(false).unwrap();
                    e.write_all(input).unwrap();
                    e.finish().unwrap().len()
                });
                eprintln!(
                    "{name} zstd {level}: {size} bytes ({:.1}x), {:.0} us, {:.0} MB/s",
                    input.len() as f64 / size as f64,
                    per * 1e6,
                    input.len() as f64 / per / 1e6
                );
            }
        }
        // Memory: RSS growth with 100 live encoders of the coding named in BERTH_LEVELS_MEMORY
        // (one per run: memory freed by one coding's encoders would be reused by the next's),
        // each fed 1 MiB of text of unknown length (the largest windows).
        let rss = || {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            statm.split(' ').nth(1).unwrap().parse::<u64>().unwrap() * 4096
        };
        let big = text(30_000);
        let chosen = std::env::var("BERTH_LEVELS_MEMORY").unwrap_or_default();
        for coding in Coding::ALL.into_iter().filter(|c| c.token() == chosen) {
            // Unknown length, 1 MiB through the body adapter (its flushes included); then a
            // 20 KiB answer of known length.
            for (length, size) in [(None, 1 << 20), (Some(20_480), 20_480)] {
                let before = rss();
                let mut live = Vec::new();
                for _ in 0..100 {
                    // All of it, then a pause: the encoder stays alive, its data flushed.
                    let mut chunks: Vec<Option<&[u8]>> =
                        big[..size].chunks(64 * 1024).map(Some).collect();
                    chunks.extend([None, None]);
                    let mut body = CompressBody::new(script(chunks), coding, length, None, None);
                    let (_, ended, _) = poll_ready(&mut body);
                    assert!(!ended);
                    live.push(body);
                }
                let grown = rss().saturating_sub(before);
                eprintln!(
                    "{coding:?}, length {length:?}: {} KiB per live encoder",
                    grown / 100 / 1024
                );
                drop(live);
            }
        }
    }
}
