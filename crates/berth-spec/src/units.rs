//! Parsers for the small value languages of `berth.toml`: durations, sizes, listen addresses and
//! names, plus the "did you mean" suggestion used by every unknown-name message.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// What a duration looks like, for hints.
pub(crate) const DURATION_EXAMPLES: &str = r#"durations look like "500ms", "5s", "2m" or "1h30m""#;

/// What a size looks like, for hints.
pub(crate) const SIZE_EXAMPLES: &str =
    r#"sizes look like "256M", "1G", "512MiB", "64KB" or a plain number of bytes"#;

/// What a socket address looks like, for hints.
pub(crate) const ADDRESS_EXAMPLES: &str =
    r#"addresses look like "127.0.0.1:8080", "[::1]:8080" or ":443" (all interfaces)"#;

/// The rule for names, for hints.
pub(crate) const NAME_RULE: &str =
    "names are lower-case ASCII letters, digits and `-`, start with a letter, and have at most 32 characters";

/// The rule for cookie names, for hints.
pub(crate) const COOKIE_RULE: &str =
    "a cookie name is ASCII letters, digits and any of ! # $ % & ' * + - . ^ _ ` | ~ (no spaces, `=` or `;`)";

/// Parses a duration such as `"500ms"`, `"5s"`, `"2m"`, `"1h30m"` or `"1d"`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    humantime::parse_duration(text).ok()
}

/// Parses a size such as `"256M"`, `"1G"`, `"512MiB"`, `"64KB"` or `"1024"` into bytes.
///
/// Units are K, M, G and T, optionally followed by `B` or `iB`, in any case; all of them are
/// binary multiples (1M = 1048576). A fractional number (`"1.5G"`) is allowed with a unit.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number.replace('_', "");
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier);
    }
    let fractional: f64 = number.parse().ok()?;
    let bytes = (fractional * multiplier as f64).round();
    if multiplier == 1 || !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

/// Parses a listen address; `":443"` means `0.0.0.0:443`.
pub(crate) fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().ok()?;
        return Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    text.parse().ok()
}

/// Whether `name` is a valid cookie name: an HTTP token (RFC 6265, RFC 9110).
pub(crate) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Whether `name` is a valid service, accessory, volume or environment name.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    starts_with_letter
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The candidate closest to `typed`, if one is close enough to be a likely typo.
pub(crate) fn closest<'a>(typed: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let typed_lower = typed.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for &candidate in candidates {
        let distance = strsim::damerau_levenshtein(&typed_lower, candidate);
        let allowed = (candidate.chars().count() / 3).max(1);
        let is_prefix = typed_lower.chars().count() >= 3 && candidate.starts_with(&typed_lower);
        if (distance <= allowed || is_prefix) && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// `a, b and c` with each item in backticks; `none` when empty.
pub(crate) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("`{item}`")).collect();
    match quoted.as_slice() {
        [] => "none".to_string(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(
            parse_duration("7days"),
            Some(Duration::from_secs(7 * 86400))
        );
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("five seconds"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("64KB"), Some(64 << 10));
        assert_eq!(parse_size("64kb"), Some(64 << 10));
        assert_eq!(parse_size("2T"), Some(2 << 40));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("1024B"), Some(1024));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("12X"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("1.5"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(parse_size("-1M"), None);
    }

    #[test]
    fn socket_addrs() {
        assert_eq!(
            parse_socket_addr(":443"),
            Some("0.0.0.0:443".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("127.0.0.1:8080"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("[::1]:80"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_socket_addr("localhost:80"), None);
        assert_eq!(parse_socket_addr(":99999"), None);
    }

    #[test]
    fn cookie_names() {
        assert!(is_cookie_name("PrestaShopSession"));
        assert!(is_cookie_name("PrestaShop-2b3c4d"));
        assert!(is_cookie_name("__Host-session_id"));
        assert!(!is_cookie_name(""));
        assert!(!is_cookie_name("my session"));
        assert!(!is_cookie_name("a=b"));
        assert!(!is_cookie_name("a;b"));
        assert!(!is_cookie_name("café"));
    }

    #[test]
    fn names() {
        assert!(is_valid_name("web"));
        assert!(is_valid_name("web-2"));
        assert!(!is_valid_name("Web"));
        assert!(!is_valid_name("2web"));
        assert!(!is_valid_name("web_2"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(33)));
    }

    #[test]
    fn suggestions() {
        let keys = ["replicas", "run", "memory", "stop_timeout"];
        assert_eq!(closest("replica", &keys), Some("replicas"));
        assert_eq!(closest("stop-timeout", &keys), Some("stop_timeout"));
        assert_eq!(closest("mem", &keys), Some("memory"));
        assert_eq!(closest("colour", &keys), None);
        assert_eq!(list(&["a", "b", "c"]), "`a`, `b` and `c`");
        assert_eq!(list(&["a"]), "`a`");
    }
}
