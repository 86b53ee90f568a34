//! Normalisation before matching: percent-decoding (repeated, bounded), `+` as space in form
//! data, HTML entities, NUL bytes, overlong UTF-8 and backslash path forms, look-alike quotes.
//!
//! Every function here writes into a caller-owned buffer, so one request costs a few
//! allocations at most, and most benign values (no `%`, no `&`) are never copied.

/// How many rounds of percent-decoding a value gets (double and triple encoding are common
/// evasions; more rounds than that buy nothing but work).
pub const MAX_DECODE_ROUNDS: usize = 3;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `input` once into `out` (cleared first); `plus` turns `+` into a space (form
/// data). `%uXXXX` (IIS) is decoded as well, to UTF-8. Returns whether anything changed.
pub fn percent_decode_into(input: &[u8], plus: bool, out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(input.len());
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if i + 2 < input.len() {
                if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                    out.push(h << 4 | l);
                    i += 3;
                    changed = true;
                    continue;
                }
            }
            if i + 5 < input.len() && (input[i + 1] | 0x20) == b'u' {
                let mut v: u32 = 0;
                let mut ok = true;
                for &c in &input[i + 2..i + 6] {
                    match hex(c) {
                        Some(d) => v = v << 4 | d as u32,
                        None => ok = false,
                    }
                }
                if ok {
                    let ch = char::from_u32(v).unwrap_or('\u{fffd}');
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                    changed = true;
                    continue;
                }
            }
            out.push(b);
        } else if plus && b == b'+' {
            out.push(b' ');
            changed = true;
        } else {
            out.push(b);
        }
        i += 1;
    }
    changed
}

/// Whether `s` holds a `%XX` or `%uXXXX` escape.
pub fn has_percent_escape(s: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'%', &s[from..]) {
        let i = from + p;
        if i + 2 < s.len() && hex(s[i + 1]).is_some() && hex(s[i + 2]).is_some() {
            return true;
        }
        if i + 5 < s.len()
            && (s[i + 1] | 0x20) == b'u'
            && s[i + 2..i + 6].iter().all(|&c| hex(c).is_some())
        {
            return true;
        }
        from = i + 1;
    }
    false
}

/// Decodes `%` escapes repeatedly (up to [`MAX_DECODE_ROUNDS`] in all) while any remain, in
/// place in `buf`, using `tmp` as scratch.
pub fn decode_repeated(buf: &mut Vec<u8>, tmp: &mut Vec<u8>, rounds: usize) {
    for _ in 0..rounds {
        if !has_percent_escape(buf) {
            return;
        }
        percent_decode_into(buf, false, tmp);
        std::mem::swap(buf, tmp);
    }
}

/// The canonical form every detector sees: percent-decoded until stable (bounded), vertical tab
/// and form feed read as blanks, NUL bytes and other C0 controls but tab/CR/LF removed, overlong UTF-8 forms of `/`, `\` and `.`
/// folded, and look-alike Unicode quotes and full-width ASCII folded to ASCII.
pub fn canonical(input: &[u8], out: &mut Vec<u8>, tmp: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(input);
    decode_repeated(out, tmp, MAX_DECODE_ROUNDS);
    if !out
        .iter()
        .any(|&b| b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r' || b >= 0x80)
    {
        return;
    }
    tmp.clear();
    let s = &out[..];
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        // Vertical tab and form feed are blanks to SQL parsers and browsers (`union\x0bselect`,
        // `<svg\x0conload=`): removing them would glue the words together.
        if b == 0x0b || b == 0x0c {
            tmp.push(b' ');
            i += 1;
            continue;
        }
        if b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r' {
            i += 1;
            continue;
        }
        if b < 0x80 {
            tmp.push(b);
            i += 1;
            continue;
        }
        // Overlong two-byte forms of ASCII: C0 xx / C1 xx.
        if (b == 0xc0 || b == 0xc1) && i + 1 < s.len() && s[i + 1] & 0xc0 == 0x80 {
            tmp.push(((b & 0x1f) << 6) | (s[i + 1] & 0x3f));
            i += 2;
            continue;
        }
        // Overlong three-byte forms: E0 80..9F xx.
        if b == 0xe0 && i + 2 < s.len() && s[i + 1] & 0xe0 == 0x80 && s[i + 2] & 0xc0 == 0x80 {
            let v = ((s[i + 1] as u32 & 0x3f) << 6) | (s[i + 2] as u32 & 0x3f);
            if v < 0x80 {
                tmp.push(v as u8);
                i += 3;
                continue;
            }
        }
        let len = match b {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 1,
        };
        // A lone 0xA0 (Latin-1's no-break space, not part of a UTF-8 character) is a blank to
        // MySQL and to Latin-1 pages (`1%a0union%a0select`), as U+00A0 is.
        if b == 0xa0 {
            tmp.push(b' ');
            i += 1;
            continue;
        }
        if len == 1 || i + len > s.len() {
            tmp.push(b);
            i += 1;
            continue;
        }
        let ch = std::str::from_utf8(&s[i..i + len])
            .ok()
            .and_then(|x| x.chars().next());
        match ch.map(fold_char) {
            Some(Some(a)) => tmp.push(a),
            _ => tmp.extend_from_slice(&s[i..i + len]),
        }
        i += len;
    }
    std::mem::swap(out, tmp);
}

/// Folds a non-ASCII character that browsers, databases or shells may treat as an ASCII one.
fn fold_char(c: char) -> Option<u8> {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' | '\u{00b4}' | '\u{02bc}'
        | '\u{2032}' => Some(b'\''),
        '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{2033}' => Some(b'"'),
        '\u{00a0}' | '\u{2000}'..='\u{200b}' | '\u{3000}' => Some(b' '),
        '\u{2215}' | '\u{2044}' => Some(b'/'),
        '\u{2216}' | '\u{29f5}' => Some(b'\\'),
        // Full-width ASCII (U+FF01..U+FF5E).
        '\u{ff01}'..='\u{ff5e}' => Some((c as u32 - 0xff01 + 0x21) as u8),
        _ => None,
    }
}

/// Decodes HTML character references (`&lt;`, `&#60;`, `&#x3c;`, with or without the `;`) into
/// `out`. Only the named entities that matter for markup are known.
pub fn html_entities_into(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if memchr::memchr(b'&', input).is_none() {
        out.extend_from_slice(input);
        return false;
    }
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'&' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        if rest.first() == Some(&b'#') {
            let (radix, start) = if rest.get(1).map(|c| c | 0x20) == Some(b'x') {
                (16, 2)
            } else {
                (10, 1)
            };
            let mut j = start;
            let mut v: u32 = 0;
            while j < rest.len() && j < start + 8 {
                let d = match (radix, rest[j]) {
                    (16, c) => hex(c).map(u32::from),
                    (_, c @ b'0'..=b'9') => Some((c - b'0') as u32),
                    _ => None,
                };
                match d {
                    Some(d) => v = v.saturating_mul(radix).saturating_add(d),
                    None => break,
                }
                j += 1;
            }
            if j > start {
                let ch = char::from_u32(v).unwrap_or('\u{fffd}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                if rest.get(j) == Some(&b';') {
                    j += 1;
                }
                i += 1 + j;
                changed = true;
                continue;
            }
        } else {
            const NAMED: &[(&[u8], u8)] = &[
                (b"lt", b'<'),
                (b"gt", b'>'),
                (b"quot", b'"'),
                (b"apos", b'\''),
                (b"amp", b'&'),
                (b"colon", b':'),
                (b"lpar", b'('),
                (b"rpar", b')'),
                (b"tab", b'\t'),
                (b"newline", b'\n'),
                (b"sol", b'/'),
                (b"bsol", b'\\'),
                (b"semi", b';'),
                (b"equals", b'='),
                (b"grave", b'`'),
                (b"lcub", b'{'),
                (b"rcub", b'}'),
                (b"nbsp", b' '),
            ];
            let mut hit = None;
            for (name, ch) in NAMED {
                if rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name) {
                    hit = Some((name.len(), *ch));
                    break;
                }
            }
            if let Some((n, ch)) = hit {
                out.push(ch);
                let mut j = n;
                if rest.get(j) == Some(&b';') {
                    j += 1;
                }
                i += 1 + j;
                changed = true;
                continue;
            }
        }
        out.push(b'&');
        i += 1;
    }
    changed
}

/// Lower-cases ASCII into `out`.
pub fn lower_into(input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(input.iter().map(|b| b.to_ascii_lowercase()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &[u8]) -> Vec<u8> {
        let (mut o, mut t) = (Vec::new(), Vec::new());
        canonical(s, &mut o, &mut t);
        o
    }

    #[test]
    fn percent_decoding_repeats_up_to_the_bound() {
        assert_eq!(canon(b"%252e%252e%252f"), b"../");
        assert_eq!(canon(b"%25252e"), b".");
        assert_eq!(canon(b"%2525252e"), b"%2e", "a fourth round is not done");
        assert_eq!(canon(b"100%"), b"100%");
        assert_eq!(canon(b"%zz"), b"%zz");
    }

    #[test]
    fn nul_overlong_and_lookalikes_fold() {
        assert_eq!(canon(b"a%00b"), b"ab");
        assert_eq!(canon(b"..%c0%af"), b"../");
        assert_eq!(canon("\u{2019} or 1=1".as_bytes()), b"' or 1=1");
        assert_eq!(canon("\u{ff1c}script\u{ff1e}".as_bytes()), b"<script>");
        assert_eq!(canon("caf\u{e9}".as_bytes()), "caf\u{e9}".as_bytes());
        assert_eq!(canon(b"%u003c"), b"<");
        assert_eq!(canon(b"1%a0union%a0select"), b"1 union select");
        assert_eq!(
            canon("\u{e0} la carte".as_bytes()),
            "\u{e0} la carte".as_bytes()
        );
    }

    #[test]
    fn html_entities() {
        let mut o = Vec::new();
        html_entities_into(
            b"&lt;a&#x20;href=&#106&#97;vascript&colon;x&gt; AT&T",
            &mut o,
        );
        assert_eq!(o, b"<a href=javascript:x> AT&T");
    }

    #[test]
    fn plus_is_space_only_in_form_data() {
        let mut o = Vec::new();
        percent_decode_into(b"a+b%2B", true, &mut o);
        assert_eq!(o, b"a b+");
        percent_decode_into(b"a+b", false, &mut o);
        assert_eq!(o, b"a+b");
    }
}
