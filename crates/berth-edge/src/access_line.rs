//! One access-log line, written as JSON by hand: it is made for every request, and building it
//! through `serde_json` and `format!` was a measurable share of the edge's CPU on small answers.
//! The fields and their order are those `berth logs edge` shows.

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one line says.
pub struct AccessLine<'a> {
    pub at: SystemTime,
    pub client: IpAddr,
    pub host: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
    pub service: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub release: Option<&'a str>,
    pub request_id: &'a str,
}

impl AccessLine<'_> {
    /// Appends the line, with its newline, to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        time::append(out, self.at);
        out.extend_from_slice(b"\",\"client\":\"");
        let mut ip = [0u8; 64];
        let ip = ip_text(self.client, &mut ip);
        out.extend_from_slice(ip);
        out.extend_from_slice(b"\",\"host\":");
        string(out, self.host);
        out.extend_from_slice(b",\"method\":");
        string(out, self.method);
        out.extend_from_slice(b",\"path\":");
        string(out, self.path);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.extend_from_slice(b",\"bytes\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.bytes).as_bytes());
        out.extend_from_slice(b",\"duration_ms\":");
        let micros = self.duration.as_micros();
        out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
        let fraction = (micros % 1000) as u32;
        if fraction > 0 {
            // Three decimals, trailing zeros dropped (as a float would print).
            let digits = [
                b'0' + (fraction / 100) as u8,
                b'0' + (fraction / 10 % 10) as u8,
                b'0' + (fraction % 10) as u8,
            ];
            let keep = if fraction.is_multiple_of(100) {
                1
            } else if fraction.is_multiple_of(10) {
                2
            } else {
                3
            };
            out.push(b'.');
            out.extend_from_slice(&digits[..keep]);
        } else {
            out.extend_from_slice(b".0");
        }
        for (name, value) in [
            (&b",\"service\":"[..], self.service),
            (b",\"upstream\":", self.upstream),
            (b",\"release\":", self.release),
        ] {
            out.extend_from_slice(name);
            match value {
                Some(v) => string(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b",\"request_id\":");
        string(out, self.request_id);
        out.extend_from_slice(b"}\n");
    }
}

/// An IP address as text, without allocating. IPv4 by hand (the formatting machinery was a
/// thousand instructions a line); IPv6 through `Display`, which also picks its shortest form.
fn ip_text(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(octet).as_bytes();
                buf[len..len + digits.len()].copy_from_slice(digits);
                len += digits.len();
            }
            &buf[..len]
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            let len = cursor.position() as usize;
            &buf[..len]
        }
    }
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    // Eight bytes at a time while there is nothing to escape (most of a line), then byte by
    // byte from the first word that has something.
    let clean = clean_prefix(bytes);
    out.extend_from_slice(&bytes[..clean]);
    escape_into(out, &bytes[clean..]);
    out.push(b'"');
}

/// How many leading bytes of `bytes`, in whole words of eight, need no escaping.
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether a byte of `word` equals `byte` (the classic "has a zero byte" test on the XOR).
    let has = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGH != 0
    };
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let word = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
        // A byte under 0x20 (control characters; bytes of 0x80 and up never count).
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0;
        if control || has(word, b'"') || has(word, b'\\') || has(word, 0x7f) {
            break;
        }
        clean += 8;
    }
    clean
}

/// Appends `bytes` with quotes, backslashes and control characters escaped.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// RFC 3339 UTC time with milliseconds; the part up to the seconds is formatted once a second
/// per thread.
mod time {
    use super::*;

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }

    pub fn append(out: &mut Vec<u8>, at: SystemTime) {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        CACHED.with(|cached| {
            let mut cached = cached.borrow_mut();
            if cached.0 != secs {
                let whole = UNIX_EPOCH + Duration::from_secs(secs);
                // "2026-11-23T22:32:52Z" without its "Z".
                let text = humantime::format_rfc3339_seconds(whole).to_string();
                *cached = (secs, text.trim_end_matches('Z').to_string());
            }
            out.extend_from_slice(cached.1.as_bytes());
        });
        let millis = since.subsec_millis();
        out.push(b'.');
        out.push(b'0' + (millis / 100) as u8);
        out.push(b'0' + (millis / 10 % 10) as u8);
        out.push(b'0' + (millis % 10) as u8);
        out.push(b'Z');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Addresses read as `Display` writes them.
        #[test]
        fn addresses_are_written_as_display_writes_them(bits in any::<u128>(), v4 in any::<u32>()) {
            for ip in [
                IpAddr::V4(std::net::Ipv4Addr::from(v4)),
                IpAddr::V6(std::net::Ipv6Addr::from(bits)),
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v4))),
            ] {
                let mut buf = [0u8; 64];
                let expected = ip.to_string();
                prop_assert_eq!(ip_text(ip, &mut buf), expected.as_bytes());
            }
        }

        /// The word-at-a-time scan escapes exactly what the byte loop alone does.
        #[test]
        fn strings_escape_as_the_byte_loop_does(value in "(\\PC|[\"\\\\\x00-\x1f\x7f]){0,40}") {
            let mut fast = Vec::new();
            string(&mut fast, &value);
            let mut slow = vec![b'"'];
            escape_into(&mut slow, value.as_bytes());
            slow.push(b'"');
            prop_assert_eq!(&fast, &slow);
            let parsed: String = serde_json::from_slice(&fast).expect("valid JSON");
            prop_assert_eq!(parsed, value);
        }
    }

    #[test]
    fn a_line_is_json_with_every_field() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let line = AccessLine {
            at,
            client: "127.0.0.1".parse().unwrap(),
            host: "shop.example",
            method: "GET",
            path: "/a?q=\"x\"\\\u{1}",
            status: 200,
            bytes: 1234,
            duration: Duration::from_micros(2_340),
            service: Some("web"),
            upstream: None,
            release: Some("r1"),
            request_id: "abc",
        };
        let mut out = Vec::new();
        line.write(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["time"],
            humantime::format_rfc3339_millis(at).to_string().as_str()
        );
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["path"], "/a?q=\"x\"\\\u{1}");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 1234);
        assert_eq!(v["duration_ms"], 2.34);
        assert_eq!(v["service"], "web");
        assert!(v["upstream"].is_null());
        assert_eq!(v["release"], "r1");
        assert_eq!(v["request_id"], "abc");
    }

    #[test]
    fn durations_print_like_floats() {
        for (micros, text) in [
            (0, "0.0"),
            (1_000, "1.0"),
            (1_500, "1.5"),
            (12_345, "12.345"),
            (7, "0.007"),
        ] {
            let line = AccessLine {
                at: UNIX_EPOCH,
                client: "::1".parse().unwrap(),
                host: "",
                method: "GET",
                path: "/",
                status: 200,
                bytes: 0,
                duration: Duration::from_micros(micros),
                service: None,
                upstream: None,
                release: None,
                request_id: "",
            };
            let mut out = Vec::new();
            line.write(&mut out);
            let text_in = String::from_utf8(out).unwrap();
            assert!(
                text_in.contains(&format!("\"duration_ms\":{text},")),
                "{micros}: {text_in}"
            );
        }
    }
}
