//! Response compression at the edge (`[edge] compress*` and a route's `compress`): what the
//! references get from CloudFront's `compress = true`. Only the settings live here; the edge
//! decides per answer and compresses. Knows nothing of HTTP headers or encoders.

use serde::{Deserialize, Serialize};

/// A content coding the edge can compress with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coding {
    /// Brotli (`br`).
    Br,
    /// Zstandard (`zstd`).
    Zstd,
    /// gzip (`gzip`).
    Gzip,
}

impl Coding {
    /// Every coding, in the edge's default order of preference.
    pub const ALL: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The token of `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The coding a token names (as written in `compress_algorithms`).
    pub fn from_token(token: &str) -> Option<Coding> {
        Coding::ALL.into_iter().find(|c| c.token() == token)
    }
}

/// `[edge] compress`, `compress_min_size`, `compress_types`, `compress_algorithms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompressSpec {
    /// `compress`: on for every route unless the route says `compress = false`.
    pub enabled: bool,
    /// `compress_min_size`: an answer whose length is known and below this passes as it is
    /// (CloudFront: 1,000 bytes). An answer of unknown length (chunked) is compressed.
    pub min_size: u64,
    /// `compress_types`: the media types compressed, `type/subtype` or `type/*`.
    pub types: Vec<String>,
    /// `compress_algorithms`: the codings offered, the edge's preferred first (the client's
    /// q-values come before this order).
    pub algorithms: Vec<Coding>,
}

impl CompressSpec {
    /// CloudFront's minimum.
    pub const DEFAULT_MIN_SIZE: u64 = 1_000;
    /// An answer whose length is known and above this passes as it is (CloudFront's maximum:
    /// 10,000,000 bytes); such files are better compressed ahead of time.
    pub const MAX_SIZE: u64 = 10_000_000;

    /// The media types compressed by default: text, and the structured and font formats that
    /// are not compressed already (CloudFront's list, less the obsolete names). Images other
    /// than SVG and icons, video, audio, archives, WOFF/WOFF2 are compressed already.
    pub fn default_types() -> Vec<String> {
        [
            "text/*",
            "application/json",
            "application/ld+json",
            "application/manifest+json",
            "application/geo+json",
            "application/problem+json",
            "application/vnd.api+json",
            "application/x-ndjson",
            "application/javascript",
            "application/x-javascript",
            "application/ecmascript",
            "application/xml",
            "application/xhtml+xml",
            "application/rss+xml",
            "application/atom+xml",
            "application/graphql-response+json",
            "application/wasm",
            "application/vnd.ms-fontobject",
            "application/x-font-ttf",
            "application/x-font-opentype",
            "font/ttf",
            "font/otf",
            "font/eot",
            "image/svg+xml",
            "image/x-icon",
            "image/vnd.microsoft.icon",
            "image/bmp",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect()
    }
}

impl Default for CompressSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            min_size: Self::DEFAULT_MIN_SIZE,
            types: Self::default_types(),
            algorithms: Coding::ALL.to_vec(),
        }
    }
}
