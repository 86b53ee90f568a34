//! Percent-encoding for the test sets' values: what a client puts in a query string or form.

/// `s` with every byte but ASCII letters, digits, `-`, `_` and `.` percent-encoded.
pub fn escape(s: &str) -> String {
    let mut o = String::new();
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => o.push(b as char),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}
