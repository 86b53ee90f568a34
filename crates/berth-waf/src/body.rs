//! Request bodies: urlencoded, multipart/form-data (field values and file names, never file
//! contents), JSON (string values and keys, recursively) and XML (text and attribute values).
//! Anything else passes unread.

use crate::{Kind, Loc, Run};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Form,
    Multipart,
    Json,
    Xml,
}

/// The body kind of a `Content-Type` value.
pub(crate) fn kind(ct: &[u8]) -> Option<BodyKind> {
    let main = ct.split(|&c| c == b';').next().unwrap_or(b"").trim_ascii();
    let m = main.to_ascii_lowercase();
    match &m[..] {
        b"application/x-www-form-urlencoded" => Some(BodyKind::Form),
        b"multipart/form-data" => Some(BodyKind::Multipart),
        b"application/json" | b"text/json" | b"application/csp-report" => Some(BodyKind::Json),
        b"application/xml" | b"text/xml" => Some(BodyKind::Xml),
        _ if m.ends_with(b"+json") => Some(BodyKind::Json),
        _ if m.ends_with(b"+xml") => Some(BodyKind::Xml),
        _ => None,
    }
}

fn param<'a>(ct: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    for part in ct.split(|&c| c == b';').skip(1) {
        let part = part.trim_ascii();
        if let Some(p) = memchr::memchr(b'=', part) {
            if part[..p].trim_ascii().eq_ignore_ascii_case(name) {
                let v = part[p + 1..].trim_ascii();
                return Some(
                    v.strip_prefix(b"\"")
                        .and_then(|v| v.strip_suffix(b"\""))
                        .unwrap_or(v),
                );
            }
        }
    }
    None
}

pub(crate) fn inspect(run: &mut Run<'_>, ct: &[u8], body: &[u8]) {
    match kind(ct) {
        Some(BodyKind::Form) => run.params(body, Loc::Form, Loc::FormName),
        Some(BodyKind::Multipart) => {
            if let Some(b) = param(ct, b"boundary") {
                multipart(run, b, body);
            }
        }
        Some(BodyKind::Json) => {
            // A body cut at the size limit does not parse; its strings are still scanned.
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(v) => {
                    let mut path = String::from("$");
                    json(run, &v, &mut path, 0);
                }
                Err(_) => json_strings(run, body),
            }
        }
        Some(BodyKind::Xml) => xml(run, body),
        None => {}
    }
}

const MAX_DEPTH: usize = 64;

fn json(run: &mut Run<'_>, v: &serde_json::Value, path: &mut String, depth: usize) {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::String(s) => run.value(s.as_bytes(), Loc::Json(path), Kind::Value),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                json(run, x, path, depth + 1);
                path.truncate(len);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                run.value(k.as_bytes(), Loc::JsonKey(path), Kind::Name);
                json(run, x, path, depth + 1);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The string literals of a JSON text that does not parse (cut, or not quite JSON), and the
/// unquoted text where a value goes (`{"id":1 or 1=1}`): what a lenient parser, or an
/// application that splices the text into a query, takes as the value.
fn json_strings(run: &mut Run<'_>, body: &[u8]) {
    let mut i = 0;
    let mut buf = Vec::new();
    let mut bare_start = 0;
    let bare = |run: &mut Run<'_>, b: &[u8]| {
        let b = b.trim_ascii();
        // Numbers and literals parse as JSON; only text that does not is a value to read.
        if !b.is_empty()
            && !matches!(b, b"true" | b"false" | b"null")
            && !b.iter().all(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
        {
            run.value(b, Loc::Json("$"), Kind::Value);
        }
    };
    while i < body.len() {
        match body[i] {
            b'"' => {
                bare(run, &body[bare_start..i]);
                let start = i + 1;
                let mut j = start;
                buf.clear();
                while j < body.len() && body[j] != b'"' {
                    if body[j] == b'\\' && j + 1 < body.len() {
                        j += 1;
                        buf.push(match body[j] {
                            b'n' => b'\n',
                            b't' => b'\t',
                            c => c,
                        });
                    } else {
                        buf.push(body[j]);
                    }
                    j += 1;
                }
                run.value(&buf, Loc::Json("$"), Kind::Value);
                i = (j + 1).min(body.len());
                bare_start = i;
            }
            b',' | b':' | b'{' | b'}' | b'[' | b']' => {
                bare(run, &body[bare_start..i]);
                i += 1;
                bare_start = i;
            }
            _ => i += 1,
        }
    }
    bare(run, &body[bare_start.min(body.len())..]);
}

/// Text between tags and attribute values, with entities decoded as an XML parser hands them to
/// the application (`probe="1 AS &quot;x&quot; FROM t"` is `1 AS "x" FROM t`).
fn xml(run: &mut Run<'_>, body: &[u8]) {
    let mut decoded = Vec::new();
    let mut value = |run: &mut Run<'_>, v: &[u8]| {
        if crate::decode::html_entities_into(v, &mut decoded) {
            run.value(&decoded, Loc::Xml, Kind::Value);
        } else {
            run.value(v, Loc::Xml, Kind::Value);
        }
    };
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'<' {
            let end = match memchr::memchr(b'>', &body[i..]) {
                Some(p) => i + p,
                None => body.len(),
            };
            let tag = &body[i + 1..end];
            if !tag.starts_with(b"?") && !tag.starts_with(b"!") {
                // Attribute values.
                let mut k = 0;
                while k < tag.len() {
                    if tag[k] == b'"' || tag[k] == b'\'' {
                        let q = tag[k];
                        let close = memchr::memchr(q, &tag[k + 1..])
                            .map(|p| k + 1 + p)
                            .unwrap_or(tag.len());
                        value(run, &tag[k + 1..close]);
                        k = close + 1;
                    } else {
                        k += 1;
                    }
                }
            } else if let Some(rest) = tag.strip_prefix(b"![CDATA[") {
                // CDATA is not entity-decoded.
                run.value(rest, Loc::Xml, Kind::Value);
            }
            i = end + 1;
        } else {
            let end = memchr::memchr(b'<', &body[i..])
                .map(|p| i + p)
                .unwrap_or(body.len());
            let text = body[i..end].trim_ascii();
            if !text.is_empty() {
                value(run, text);
            }
            i = end;
        }
    }
}

/// A small multipart/form-data reader: each part's `name` and `filename`, and the values of
/// parts that are not files. Lines may end in CRLF or LF.
fn multipart(run: &mut Run<'_>, boundary: &[u8], body: &[u8]) {
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);
    let starts: Vec<usize> = finder.find_iter(body).collect();
    for (n, &s) in starts.iter().enumerate() {
        let mut p = s + delim.len();
        if body[p..].starts_with(b"--") {
            break;
        }
        // Skip the rest of the delimiter line.
        match memchr::memchr(b'\n', &body[p..]) {
            Some(q) => p += q + 1,
            None => break,
        }
        let end = starts.get(n + 1).copied().unwrap_or(body.len());
        let part = &body[p..end.max(p)];
        // Headers end at the first empty line.
        let (head, content) = match crate::find(part, b"\r\n\r\n") {
            Some(q) => (&part[..q], &part[q + 4..]),
            None => match crate::find(part, b"\n\n") {
                Some(q) => (&part[..q], &part[q + 2..]),
                None => (part, &b""[..]),
            },
        };
        let content = content
            .strip_suffix(b"\r\n")
            .or_else(|| content.strip_suffix(b"\n"))
            .unwrap_or(content);
        let mut name: &[u8] = b"";
        let mut filename: Option<&[u8]> = None;
        for line in head.split(|&c| c == b'\n') {
            let line = line.trim_ascii();
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            if !line[..colon].eq_ignore_ascii_case(b"content-disposition") {
                continue;
            }
            let v = &line[colon + 1..];
            name = disposition_param(v, b"name").unwrap_or(b"");
            filename = disposition_param(v, b"filename");
        }
        run.value(name, Loc::Multipart(name), Kind::Name);
        match filename {
            Some(f) => run.value(f, Loc::MultipartFilename(name), Kind::Filename),
            None => run.value(content, Loc::Multipart(name), Kind::Value),
        }
    }
}

fn disposition_param<'a>(v: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut i = 0;
    while i < v.len() {
        let rest = &v[i..];
        let item_end = rest.iter().position(|&c| c == b';').unwrap_or(rest.len());
        let item = rest[..item_end].trim_ascii();
        if let Some(eq) = memchr::memchr(b'=', item) {
            if item[..eq].trim_ascii().eq_ignore_ascii_case(key) {
                let val = item[eq + 1..].trim_ascii();
                if val.starts_with(b"\"") {
                    // Quoted: up to the closing quote, which may lie past a `;`.
                    let q = &v[i + (item.as_ptr() as usize - rest.as_ptr() as usize) + eq + 1..];
                    let q = q.trim_ascii_start();
                    let close = memchr::memchr(b'"', &q[1..])
                        .map(|p| p + 1)
                        .unwrap_or(q.len());
                    return Some(&q[1..close]);
                }
                return Some(val);
            }
        }
        i += item_end + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            kind(b"application/x-www-form-urlencoded; charset=utf-8"),
            Some(BodyKind::Form)
        );
        assert_eq!(
            kind(b"Multipart/Form-Data; boundary=x"),
            Some(BodyKind::Multipart)
        );
        assert_eq!(kind(b"application/vnd.api+json"), Some(BodyKind::Json));
        assert_eq!(kind(b"image/png"), None);
        assert_eq!(
            param(b"multipart/form-data; boundary=\"abc\"", b"boundary"),
            Some(&b"abc"[..])
        );
    }

    fn json_blocked(body: &str) -> bool {
        let waf = crate::Waf::new(crate::WafConfig::default()).unwrap();
        waf.inspect(&crate::RequestParts {
            method: b"POST",
            path: b"/api",
            query: None,
            headers: &[],
            body: Some(crate::Body {
                content_type: b"application/json",
                bytes: body.as_bytes(),
            }),
        })
        .is_blocked()
    }

    #[test]
    fn unquoted_values_of_json_that_does_not_parse_are_read() {
        assert!(json_blocked(r#"{"id":1 or 1=1}"#));
        assert!(json_blocked(r#"{"id":1 UNION SELECT 1}"#));
        assert!(json_blocked(r#"[1, 2 union select password from users]"#));
        assert!(json_blocked(r#"{"q":"x' or '1'='1", "n": 1"#), "cut body");
        assert!(!json_blocked(
            r#"{"id":1, "ok": true, "n": -1.5e3, "x": null,}"#
        ));
        assert!(!json_blocked(r#"{"note": "Buy 2 or more", "qty": 2 "#));
        assert!(!json_blocked(r#"{size: M, colour: navy blue}"#));
    }

    #[test]
    fn disposition() {
        let v = b" form-data; name=\"file\"; filename=\"a;b.php\"";
        assert_eq!(disposition_param(v, b"name"), Some(&b"file"[..]));
        assert_eq!(disposition_param(v, b"filename"), Some(&b"a;b.php"[..]));
    }
}
