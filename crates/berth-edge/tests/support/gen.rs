//! Generators (proptest strategies) of valid HTTP/1.1 requests and chunked bodies in all the
//! forms a recipient must read alike, with what they must decode to. Shared by the integration
//! tests and by `src/http1/props.rs` (which includes this file by path).

#![allow(dead_code)]

use proptest::prelude::*;

/// One chunk as sent: its data and how its size line and ending are spelled.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// Leading zeros before the hex size (the size has at most 15 digits in all).
    pub zeros: usize,
    pub upper_hex: bool,
    /// What follows the size on its line: blanks and extensions, e.g. ` ;a=b;c="d;e"`.
    pub ext: String,
    /// The size line's ending and the data's: `\r\n` or a bare `\n`.
    pub size_end: &'static str,
    pub data_end: &'static str,
}

/// A chunked body as sent: chunks, the last chunk, trailers, the final empty line.
#[derive(Debug, Clone)]
pub struct ChunkedBody {
    pub chunks: Vec<Chunk>,
    pub last_zeros: usize,
    pub last_ext: String,
    pub last_end: &'static str,
    pub trailers: Vec<(String, &'static str)>,
    pub final_end: &'static str,
}

impl ChunkedBody {
    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.chunks {
            let hex = if c.upper_hex {
                format!("{:X}", c.data.len())
            } else {
                format!("{:x}", c.data.len())
            };
            out.extend_from_slice("0".repeat(c.zeros.min(15 - hex.len())).as_bytes());
            out.extend_from_slice(hex.as_bytes());
            out.extend_from_slice(c.ext.as_bytes());
            out.extend_from_slice(c.size_end.as_bytes());
            out.extend_from_slice(&c.data);
            out.extend_from_slice(c.data_end.as_bytes());
        }
        out.extend_from_slice("0".repeat(1 + self.last_zeros.min(14)).as_bytes());
        out.extend_from_slice(self.last_ext.as_bytes());
        out.extend_from_slice(self.last_end.as_bytes());
        for (line, end) in &self.trailers {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(end.as_bytes());
        }
        out.extend_from_slice(self.final_end.as_bytes());
        out
    }

    /// What the body decodes to.
    pub fn content(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.data.clone()).collect()
    }
}

fn line_end() -> impl Strategy<Value = &'static str> {
    prop_oneof![4 => Just("\r\n"), 1 => Just("\n")]
}

/// Extensions after a chunk size: blanks (BWS) and `;name[=value]` items, quoted values with
/// `;` inside included.
pub fn extension() -> impl Strategy<Value = String> {
    let item = prop_oneof![
        Just(";a".to_string()),
        Just(";a=b".to_string()),
        Just(" ; name=\"quoted;value\"".to_string()),
        Just(";x=1;y".to_string()),
        "[a-z]{1,8}".prop_map(|n| format!(";{n}")),
        ("[a-z]{1,8}", "[a-zA-Z0-9]{0,8}").prop_map(|(n, v)| format!(";{n}={v}")),
    ];
    (
        prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("\t ")],
        prop::collection::vec(item, 0..3),
    )
        .prop_map(|(blank, items)| {
            if items.is_empty() {
                blank.to_string()
            } else {
                format!("{blank}{}", items.concat())
            }
        })
}

pub fn chunk() -> impl Strategy<Value = Chunk> {
    (
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 1..40),
            1 => prop::collection::vec(prop::sample::select(b"\r\n0;:".to_vec()), 1..10),
            1 => prop::collection::vec(any::<u8>(), 200..600),
        ],
        prop_oneof![4 => Just(0usize), 1 => 1..8usize],
        any::<bool>(),
        prop_oneof![3 => Just(String::new()), 1 => extension()],
        line_end(),
        line_end(),
    )
        .prop_map(|(data, zeros, upper_hex, ext, size_end, data_end)| Chunk {
            data,
            zeros,
            upper_hex,
            ext,
            size_end,
            data_end,
        })
}

pub fn trailer() -> impl Strategy<Value = (String, &'static str)> {
    (
        prop_oneof![
            Just("X-Trailer: 1".to_string()),
            Just("Checksum:abc".to_string()),
            Just("Empty:".to_string()),
            ("[A-Za-z][A-Za-z0-9-]{0,10}", "[ -~]{0,20}").prop_map(|(n, v)| format!("{n}: {v}")),
        ],
        line_end(),
    )
}

pub fn chunked_body() -> impl Strategy<Value = ChunkedBody> {
    (
        prop::collection::vec(chunk(), 0..6),
        prop_oneof![4 => Just(0usize), 1 => 1..5usize],
        prop_oneof![3 => Just(String::new()), 1 => extension()],
        line_end(),
        prop::collection::vec(trailer(), 0..3),
        line_end(),
    )
        .prop_map(
            |(chunks, last_zeros, last_ext, last_end, trailers, final_end)| ChunkedBody {
                chunks,
                last_zeros,
                last_ext,
                last_end,
                trailers,
                final_end,
            },
        )
}

/// How a generated request frames its body.
#[derive(Debug, Clone)]
pub enum BodySpec {
    None,
    /// `Content-Length`, spelled this way (e.g. `5`, `05`, `5, 5`, twice), and the body.
    Length(Vec<String>, Vec<u8>),
    Chunked(String, ChunkedBody),
}

/// A request the edge must accept, as the client sends it.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: String,
    pub target: String,
    pub http10: bool,
    /// Header lines other than Host and framing, in order (names may repeat).
    pub headers: Vec<(String, String)>,
    pub host: Option<String>,
    /// Where the Host line goes among the headers.
    pub host_at: usize,
    pub body: BodySpec,
    /// Line endings of the head: CRLF, or now and then a bare LF.
    pub bare_lf: Vec<bool>,
}

impl RequestSpec {
    pub fn encode(&self) -> Vec<u8> {
        let mut lines: Vec<String> = Vec::new();
        lines.push(format!(
            "{} {} {}",
            self.method,
            self.target,
            if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" }
        ));
        let mut fields: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        if let Some(host) = &self.host {
            fields.insert(self.host_at.min(fields.len()), format!("Host: {host}"));
        }
        match &self.body {
            BodySpec::None => {}
            BodySpec::Length(spellings, _) => {
                for (i, s) in spellings.iter().enumerate() {
                    fields.insert((i * 2).min(fields.len()), format!("Content-Length: {s}"));
                }
            }
            BodySpec::Chunked(spelling, _) => {
                fields.push(format!("Transfer-Encoding:{spelling}"));
            }
        }
        lines.extend(fields);
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(line.as_bytes());
            let lf = self.bare_lf.get(i).copied().unwrap_or(false);
            out.extend_from_slice(if lf { b"\n" } else { b"\r\n" });
        }
        out.extend_from_slice(b"\r\n");
        match &self.body {
            BodySpec::None => {}
            BodySpec::Length(_, body) => out.extend_from_slice(body),
            BodySpec::Chunked(_, body) => out.extend_from_slice(&body.encode()),
        }
        out
    }

    /// The body's content.
    pub fn content(&self) -> Vec<u8> {
        match &self.body {
            BodySpec::None => Vec::new(),
            BodySpec::Length(_, body) => body.clone(),
            BodySpec::Chunked(_, body) => body.content(),
        }
    }
}

fn header() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("Accept".to_string()),
            Just("X-Dup".to_string()),
            Just("Cookie".to_string()),
            Just("user-agent".to_string()),
            Just("Connection".to_string()),
            "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,15}",
        ],
        prop_oneof![
            Just("1".to_string()),
            Just("a, b".to_string()),
            Just("keep-alive".to_string()),
            Just("caf\u{e9}".to_string()),
            Just(String::new()),
            "[!-~]([ -~\t]{0,30}[!-~])?",
        ],
    )
        .prop_filter("not a framing or Host header", |(n, _)| {
            !["host", "content-length", "transfer-encoding", "expect"]
                .contains(&n.to_ascii_lowercase().as_str())
        })
}

fn length_body() -> impl Strategy<Value = BodySpec> {
    (prop::collection::vec(any::<u8>(), 0..100), 0..5usize).prop_map(|(body, style)| {
        let n = body.len();
        let spellings = match style {
            0 => vec![format!("{n}")],
            1 => vec![format!("0{n}")],
            2 => vec![format!("{n}, {n}")],
            3 => vec![format!("{n}"), format!("{n}")],
            _ => vec![format!("\t{n} ")],
        };
        BodySpec::Length(spellings, body)
    })
}

/// Requests the edge must accept: HTTP/1.1 with one valid Host (HTTP/1.0 now and then, without
/// chunking), framed by nothing, a length (in its several valid spellings) or chunked.
pub fn request() -> impl Strategy<Value = RequestSpec> {
    let body = prop_oneof![
        1 => Just(BodySpec::None),
        2 => length_body(),
        3 => (
            prop_oneof![Just(" chunked"), Just("chunked"), Just("\tChunked "), Just(" CHUNKED")],
            chunked_body()
        )
            .prop_map(|(s, b)| BodySpec::Chunked(s.to_string(), b)),
    ];
    (
        prop_oneof![
            Just("GET"),
            Just("POST"),
            Just("PUT"),
            Just("PATCH"),
            Just("DELETE"),
            Just("HEAD"),
            Just("OPTIONS"),
            Just("PROPFIND"),
        ],
        prop_oneof![
            Just("/".to_string()),
            Just("/a/b?c=d&e".to_string()),
            Just("/caf%C3%A9".to_string()),
            "/[a-z0-9/._~-]{0,20}(\\?[a-z0-9=&]{0,10})?",
        ],
        prop_oneof![9 => Just(false), 1 => Just(true)],
        prop::collection::vec(header(), 0..6),
        prop_oneof![
            Just("x".to_string()),
            Just("shop.example:8080".to_string()),
            Just("[::1]:80".to_string()),
            Just(String::new()),
        ],
        0..8usize,
        body,
        prop::collection::vec(prop_oneof![9 => Just(false), 1 => Just(true)], 0..10),
    )
        .prop_map(
            |(method, target, http10, headers, host, host_at, body, bare_lf)| {
                let http10 = http10 && !matches!(body, BodySpec::Chunked(..));
                RequestSpec {
                    method: method.to_string(),
                    target,
                    http10,
                    headers,
                    host: if http10 && host.is_empty() {
                        None
                    } else {
                        Some(host)
                    },
                    host_at,
                    body,
                    bare_lf,
                }
            },
        )
}
