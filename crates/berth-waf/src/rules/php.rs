//! PHP injection: opening tags, superglobals, calls of functions that run code, variable
//! functions and callable expressions, serialized objects, stream wrappers, `php.ini`
//! directives, and uploads PHP would run.

use super::{is_word, Rules};

/// PHP functions that run code, commands, files or decoders: a call to one of them is an
/// injection attempt.
pub(super) const PHP_FUNCTIONS: &[&str] = &[
    "system",
    "exec",
    "shell_exec",
    "passthru",
    "popen",
    "proc_open",
    "pcntl_exec",
    "eval",
    "assert",
    "create_function",
    "call_user_func",
    "call_user_func_array",
    "preg_replace",
    "base64_decode",
    "gzinflate",
    "gzuncompress",
    "gzdecode",
    "str_rot13",
    "convert_uudecode",
    "file_get_contents",
    "file_put_contents",
    "fopen",
    "fwrite",
    "fputs",
    "fsockopen",
    "pfsockopen",
    "readfile",
    "include",
    "include_once",
    "require",
    "require_once",
    "unserialize",
    "phpinfo",
    "print_r",
    "var_dump",
    "var_export",
    "get_defined_vars",
    "get_defined_functions",
    "move_uploaded_file",
    "highlight_file",
    "show_source",
    "array_map",
    "array_filter",
    "array_walk",
    "usort",
    "uasort",
    "uksort",
    "ob_start",
    "putenv",
    "ini_set",
    "ini_get",
    "ini_restore",
    "dl",
    "symlink",
    "link",
    "chmod",
    "unlink",
    "rmdir",
    "mkdir",
    "copy",
    "rename",
    "file",
    "filegroup",
    "fileowner",
    "fileperms",
    "glob",
    "scandir",
    "opendir",
    "readdir",
    "posix_getpwuid",
    "posix_uname",
    "getenv",
    "get_current_user",
    "getcwd",
    "php_uname",
    "phpversion",
    "escapeshellcmd",
    "escapeshellarg",
    "curl_exec",
    "curl_init",
    "parse_str",
    "extract",
    "mb_ereg_replace",
    "register_shutdown_function",
    "register_tick_function",
    "set_error_handler",
    "set_exception_handler",
    "iterator_apply",
    "forward_static_call",
    "func_get_args",
    "constant",
    "define",
    "md5",
    "sha1",
    "crc32",
    "strrev",
    "str_replace",
    "substr",
    "implode",
    "explode",
    "serialize",
    "printf",
    "sprintf",
    "vsprintf",
    "echo",
    "print",
    "die",
    "is_array",
    "is_file",
    "is_dir",
    "is_readable",
    "is_writable",
    "file_exists",
    "array_merge",
    "count",
    "chr",
    "ord",
    "hex2bin",
    "bin2hex",
    "urldecode",
    "rawurldecode",
    "strtolower",
    "strtoupper",
    "trim",
    "fread",
    "fgets",
    "fclose",
    "hash",
    "uniqid",
    "mt_rand",
    "rand",
    "session_start",
    "header",
    "setcookie",
    "mail",
    "audiofile",
    "simplexml_load_string",
    "json_decode",
    "preg_match",
    "preg_split",
    "stream_get_contents",
    "bzdecompress",
    "zlib_decode",
    "unpack",
    "pack",
    "intval",
    "strval",
    "floatval",
    "strip_tags",
    "htmlspecialchars",
    "stripslashes",
    "addslashes",
    "settype",
    "gettype",
    "filter_var",
    "array_map",
    "assert_options",
];

/// PHP words that are also English: they count only when called with code-looking arguments.
const PHP_WEAK: &[&str] = &[
    "system",
    "exec",
    "eval",
    "assert",
    "include",
    "require",
    "file",
    "copy",
    "rename",
    "link",
    "print",
    "echo",
    "die",
    "define",
    "constant",
    "count",
    "header",
    "mail",
    "hash",
    "extract",
    "trim",
    "glob",
    "chr",
    "ord",
    "rand",
    "md5",
    "sha1",
    "substr",
    "printf",
    "explode",
    "crc32",
    "serialize",
    "implode",
    "mkdir",
    "rmdir",
    "chmod",
    "dl",
    "popen",
    "fopen",
    "fread",
    "fgets",
    "fclose",
    "sprintf",
    "readfile",
    "audiofile",
    "pack",
    "unpack",
];

pub(super) const PHP_MARKERS: &[&str] = &[
    "$_get",
    "$_post",
    "$_request",
    "$_cookie",
    "$_server",
    "$_files",
    "$_env",
    "$_session",
    "$globals",
    "$http_raw_post_data",
    "$http_",
    "allow_url_include",
    "allow_url_fopen",
    "auto_prepend_file",
    "auto_append_file",
    "disable_functions",
    "open_basedir",
    "safe_mode",
    "extension_dir",
    "session.referer_check",
    "session.save_path",
    "mbstring.regex_stack_limit",
    "unserialize_max_depth",
    "pcre.backtrack_limit",
    "error_log=",
    "include_path=",
    "display_errors=",
];

pub(super) const PHP_WRAPPERS: &[&str] = &[
    "php://",
    "phar://",
    "zip://",
    "zlib://",
    "glob://",
    "expect://",
    "data://",
    "rar://",
    "ogg://",
    "compress.zlib://",
    "compress.bzip2://",
    "ssh2.shell://",
    "ssh2.exec://",
    "ssh2.tunnel://",
    "ssh2.sftp://",
    "ssh2.scp://",
];

impl Rules {
    /// PHP injection. `s` is canonical, lower-cased.
    pub(crate) fn php(&self, s: &[u8]) -> Option<&'static str> {
        let f = crate::find;
        // Opening tags: `<?php`, `<?=`, `<?` + blank (not `<?xml`), `[php]`, `{php}`.
        let mut from = 0;
        while let Some(p) = f(&s[from..], b"<?") {
            let at = from + p + 2;
            from = at;
            let rest = &s[at..];
            if rest.is_empty()
                || rest.starts_with(b"php")
                || rest[0] == b'='
                || rest[0].is_ascii_whitespace()
            {
                // `<? xml`-free: a blank after `<?` then `xml` is still XML.
                let r = rest.trim_ascii_start();
                if !r.starts_with(b"xml") || rest.starts_with(b"php") || rest.is_empty() {
                    return Some("php-open-tag");
                }
                if r.starts_with(b"xml") && memchr::memchr(b';', r).is_some() {
                    return Some("php-open-tag");
                }
            }
            if rest.starts_with(b"xml") && !rest.starts_with(b"xml-") {
                let after = rest[3..].trim_ascii_start();
                if after.first().is_some_and(|&c| c == b':' || c == b'(') {
                    return Some("php-open-tag");
                }
            }
        }
        // Variable variables: `${'na'.'me'}`, `$ {$a}`, `${"x"}`.
        let mut from = 0;
        while let Some(p) = memchr::memchr(b'$', &s[from..]) {
            let at = from + p + 1;
            from = at;
            let r = s[at..].trim_ascii_start();
            if let Some(r) = r.strip_prefix(b"{") {
                if r.trim_ascii_start()
                    .first()
                    .is_some_and(|c| matches!(c, b'\'' | b'"' | b'$'))
                {
                    return Some("php-variable-or-directive");
                }
            }
        }
        if memchr::memchr2(b'[', b'{', s).is_some()
            && (f(s, b"[php]").is_some()
                || f(s, b"{php}").is_some()
                || f(s, b"[/php]").is_some()
                || f(s, b"{/php}").is_some())
        {
            return Some("php-open-tag");
        }
        let has_dollar = memchr::memchr(b'$', s).is_some();
        let has_eq = memchr::memchr(b'=', s).is_some();
        let has_paren = memchr::memchr(b'(', s).is_some();
        for m in self
            .php_markers
            .find_iter(if has_dollar || has_eq { s } else { &[] })
        {
            let pat = PHP_MARKERS[m.pattern().as_usize()].as_bytes();
            let before = m.start().checked_sub(1).map(|i| s[i]);
            if pat[0] == b'$' || before.is_none_or(|c| !is_word(c)) {
                let after = s.get(m.end()).copied();
                if pat[0] == b'$' || pat.ends_with(b"=") || after.is_none_or(|c| !is_word(c)) {
                    // Config directives count when set: `allow_url_include=1`.
                    if pat[0] == b'$'
                        || pat.ends_with(b"=")
                        || s[m.end()..].trim_ascii_start().first() == Some(&b'=')
                    {
                        return Some("php-variable-or-directive");
                    }
                }
            }
        }
        if php_directive(s) {
            return Some("php-variable-or-directive");
        }
        for m in self
            .php_wrappers
            .find_iter(if crate::find(s, b"://").is_some() {
                s
            } else {
                &[]
            })
        {
            let before = m.start().checked_sub(1).map(|i| s[i]);
            if before.is_none_or(|c| !is_word(c) && c != b'.') {
                return Some("php-wrapper");
            }
        }
        // Serialized objects: O:8:"stdClass":..., C:..., a:2:{...
        for (i, w) in s
            .windows(2)
            .enumerate()
            .skip(if memchr::memchr(b':', s).is_some() {
                0
            } else {
                s.len()
            })
        {
            if (w[0] == b'o' || w[0] == b'c') && w[1] == b':' && (i == 0 || !is_word(s[i - 1])) {
                let rest = &s[i + 2..];
                let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 && rest[digits..].starts_with(b":\"") {
                    return Some("php-serialized-object");
                }
            }
        }
        // Everything below is a call.
        if !has_paren {
            return None;
        }
        // Calls: name ( ... with comments or blanks in between.
        for m in self
            .php_functions
            .find_iter(if has_paren { s } else { &[] })
        {
            let before = m.start().checked_sub(1).map(|i| s[i]);
            let after_name = s.get(m.end()).copied();
            let name = PHP_FUNCTIONS[m.pattern().as_usize()].as_bytes();
            // Names with an underscore are PHP's alone; glued to other letters they still run
            // (`FOOcall_user_func()` calls a function named by the attacker's prefix trick).
            let glued_ok = name.contains(&b'_');
            if before.is_some_and(|c| {
                (is_word(c) && !glued_ok)
                    || c == b'-'
                    || c == b'.' && !s[..m.start()].ends_with(b"'.")
            }) || after_name.is_some_and(is_word)
            {
                continue;
            }
            let mut j = m.end();
            let mut gap = false;
            let mut commented = false;
            loop {
                while j < s.len() && s[j].is_ascii_whitespace() {
                    j += 1;
                    gap = true;
                }
                if s[j..].starts_with(b"/*") {
                    match f(&s[j + 2..], b"*/") {
                        Some(p) => {
                            j += p + 4;
                            gap = true;
                            commented = true;
                            continue;
                        }
                        None => break,
                    }
                }
                if s[j..].starts_with(b"#") || s[j..].starts_with(b"//") {
                    match memchr::memchr(b'\n', &s[j..]) {
                        Some(p) => {
                            j += p + 1;
                            gap = true;
                            commented = true;
                            continue;
                        }
                        None => break,
                    }
                }
                // `"system"(`, `(system)(`
                if j < s.len()
                    && matches!(s[j], b'"' | b'\'' | b')')
                    && before.is_some_and(|c| c == b'"' || c == b'\'' || c == b'(')
                {
                    j += 1;
                    continue;
                }
                break;
            }
            if s.get(j) != Some(&b'(') {
                continue;
            }
            let args = s[j + 1..].trim_ascii_start();
            let weak = PHP_WEAK.iter().any(|w| w.as_bytes() == name);
            let code_args = commented
                || args
                    .first()
                    .is_some_and(|&c| matches!(c, b'$' | b'"' | b'\'' | b')' | b'(' | b'_'))
                || args.iter().take(40).any(|&c| c == b'$' || c == b';');
            if !weak || code_args || (!gap && memchr::memchr(b')', args).is_some()) {
                // A plain English word with a gap before a parenthesis (`exec (`) needs more.
                if weak && gap && !code_args {
                    continue;
                }
                return Some("php-function-call");
            }
        }
        // Functions of PHP's extension families (`posix_getuid()`, `zlib_decode(`, `mb_ereg(`).
        if let Some(r) = php_family_call(s) {
            return Some(r);
        }
        // Variable functions: $a(...), ${...}(...), $a[..](...), $_[..]{..}(...).
        let mut from = 0;
        while let Some(p) = memchr::memchr(b'$', &s[from..]) {
            let at = from + p;
            from = at + 1;
            let mut j = at + 1;
            while j < s.len()
                && s[j] == b' '
                && s.get(j + 1).is_some_and(|&c| c == b' ' || c == b'{')
            {
                j += 1;
            }
            let start = j;
            if s.get(j) == Some(&b'{') {
                match memchr::memchr(b'}', &s[j..]) {
                    Some(q) => j += q + 1,
                    None => continue,
                }
            } else {
                while j < s.len() && is_word(s[j]) {
                    j += 1;
                }
                if j == start || s[start].is_ascii_digit() {
                    continue;
                }
            }
            // Subscripts, property arrows and comments between the name and the call.
            loop {
                let k = j;
                while j < s.len() && s[j].is_ascii_whitespace() {
                    j += 1;
                }
                match s.get(j) {
                    Some(b'[') | Some(b'{') => match matching(&s[j..]) {
                        Some(q) if q > 1 => j += q + 1,
                        _ => break,
                    },
                    Some(b'#') => match memchr::memchr(b'\n', &s[j..]) {
                        Some(q) => j += q + 1,
                        None => break,
                    },
                    Some(b'/') if s.get(j + 1) == Some(&b'*') => match f(&s[j + 2..], b"*/") {
                        Some(q) => j += q + 4,
                        None => break,
                    },
                    Some(b'/') if s.get(j + 1) == Some(&b'/') => {
                        match memchr::memchr(b'\n', &s[j..]) {
                            Some(q) => j += q + 1,
                            None => break,
                        }
                    }
                    Some(b'-') if s.get(j + 1) == Some(&b'>') => {
                        j += 2;
                        if s.get(j) == Some(&b'$') {
                            j += 1;
                        }
                        while j < s.len() && is_word(s[j]) {
                            j += 1;
                        }
                    }
                    _ => {}
                }
                if j == k {
                    break;
                }
            }
            if s.get(j) == Some(&b'(') {
                return Some("php-variable-function");
            }
        }
        // Callable expressions: `(system)(ls)`, `("sys"."tem")('id')`, `[system][0](ls)`,
        // `(/* x */system)(ls)`: a call on a bracketed expression that spells a PHP function.
        if let Some(r) = self.php_callable_expression(s) {
            return Some(r);
        }
        None
    }

    fn php_callable_expression(&self, s: &[u8]) -> Option<&'static str> {
        let mut letters = Vec::new();
        let mut next = 0;
        while let Some(p) = memchr::memchr(b'(', &s[next..]) {
            let paren = next + p;
            next = paren + 1;
            // What is called: a bracketed expression, or a string literal (`"\x73ystem"(ls)`,
            // `"sys"."tem" ('id')`).
            let mut i = paren;
            while i > 0 && s[i - 1].is_ascii_whitespace() {
                i -= 1;
            }
            let Some(i) = i.checked_sub(1) else {
                continue;
            };
            match s[i] {
                b')' | b']' | b'}' => {}
                q @ (b'"' | b'\'') => {
                    // A quoted word before a parenthesis is prose (`the "system" (2020)`)
                    // unless glued to it, escaped or concatenated.
                    let lo = i.saturating_sub(80);
                    let open = s[lo..i].iter().rposition(|&c| c == q).map(|o| lo + o);
                    let lit = open.map_or(&s[..0], |o| &s[o..=i]);
                    let concatenated =
                        open.is_some_and(|o| s[..o].trim_ascii_end().last() == Some(&b'.'));
                    if !(i + 1 == paren || concatenated || crate::find(lit, b"\\x").is_some()) {
                        continue;
                    }
                }
                _ => continue,
            }
            // The letters of what comes before, `\xNN` escapes decoded, separators dropped.
            let from = i.saturating_sub(80);
            let before = &s[from..=i];
            letters.clear();
            let mut q = 0;
            while q < before.len() {
                if before[q] == b'\\' && before.get(q + 1) == Some(&b'x') && q + 3 < before.len() {
                    if let Ok(v) = u8::from_str_radix(
                        std::str::from_utf8(&before[q + 2..q + 4]).unwrap_or("zz"),
                        16,
                    ) {
                        letters.push(v.to_ascii_lowercase());
                        q += 4;
                        continue;
                    }
                }
                if before[q].is_ascii_alphabetic() || before[q] == b'_' {
                    letters.push(before[q]);
                }
                q += 1;
            }
            for f in [
                &b"system"[..],
                b"passthru",
                b"shell_exec",
                b"exec",
                b"popen",
                b"proc_open",
                b"eval",
                b"assert",
                b"phpinfo",
                b"pcntl_exec",
                b"create_function",
                b"call_user_func",
                b"base64_decode",
                b"file_put_contents",
                b"include",
                b"require",
            ] {
                if crate::find(&letters, f).is_some() {
                    return Some("php-function-call");
                }
            }
        }
        None
    }

    /// A file name that would be run by PHP (`x.php`, `x.phtml`, `x.php5.`, `x.phar`) or that
    /// names a PHP session file.
    pub(crate) fn php_filename(name: &[u8]) -> Option<&'static str> {
        let n = name.trim_ascii();
        let n = {
            let mut e = n.len();
            while e > 0 && (n[e - 1] == b'.' || n[e - 1] == b' ') {
                e -= 1;
            }
            &n[..e]
        };
        let base = n.rsplit(|&c| c == b'/' || c == b'\\').next().unwrap_or(n);
        if let Some(dot) = base.iter().rposition(|&c| c == b'.') {
            let ext = base[dot + 1..].trim_ascii();
            if matches!(
                ext,
                b"php"
                    | b"phtml"
                    | b"pht"
                    | b"phps"
                    | b"phar"
                    | b"phpt"
                    | b"php3"
                    | b"php4"
                    | b"php5"
                    | b"php7"
                    | b"php8"
                    | b"inc"
                    | b"shtml"
            ) {
                return Some("php-file-upload");
            }
        }
        if base.starts_with(b"sess_")
            && base.len() > 20
            && base[5..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b',')
        {
            return Some("php-session-file");
        }
        None
    }
}

/// A php.ini directive being set: `opcache.jit=...`, `mbstring.func_overload = 7`,
/// `memory_limit = 512M`.
fn php_directive(s: &[u8]) -> bool {
    const SECTIONS: &[&[u8]] = &[
        b"opcache.",
        b"mbstring.",
        b"session.",
        b"pcre.",
        b"zend.",
        b"xdebug.",
        b"apc.",
        b"mysqli.",
        b"pdo_mysql.",
        b"phar.",
        b"zlib.",
        b"assert.",
        b"date.",
        b"soap.",
        b"sqlite3.",
        b"openssl.",
    ];
    const DIRECTIVES: &[&[u8]] = &[
        b"memory_limit",
        b"max_execution_time",
        b"max_input_time",
        b"post_max_size",
        b"upload_max_filesize",
        b"upload_tmp_dir",
        b"short_open_tag",
        b"register_globals",
        b"magic_quotes_gpc",
        b"expose_php",
        b"log_errors",
        b"html_errors",
        b"enable_dl",
        b"user_ini.filename",
        b"sys_temp_dir",
        b"doc_root",
        b"user_dir",
        b"cgi.force_redirect",
    ];
    let Some(eq) = memchr::memchr(b'=', s) else {
        return false;
    };
    let key = s[..eq].trim_ascii();
    let start = key
        .iter()
        .rposition(|&c| !(is_word(c) || c == b'.'))
        .map_or(0, |p| p + 1);
    let key = &key[start..];
    SECTIONS
        .iter()
        .any(|p| key.starts_with(p) && key.len() > p.len())
        || DIRECTIVES.contains(&key)
}

/// The offset of the bracket closing the one `s` starts with.
fn matching(s: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in s.iter().enumerate().take(256) {
        match c {
            b'[' | b'{' | b'(' => depth += 1,
            b']' | b'}' | b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Calls of functions from PHP's extension families, named by their prefix.
fn php_family_call(s: &[u8]) -> Option<&'static str> {
    const FAMILIES: &[&[u8]] = &[
        b"posix_",
        b"pcntl_",
        b"proc_",
        b"shell_",
        b"zlib_",
        b"gz",
        b"bz",
        b"str_",
        b"array_",
        b"call_user_",
        b"func_get_",
        b"get_defined_",
        b"get_",
        b"ini_",
        b"assert_",
        b"file_",
        b"preg_",
        b"mb_",
        b"iconv_",
        b"stream_",
        b"ob_",
        b"openssl_",
        b"hash_",
        b"curl_",
        b"mysqli_",
        b"mysql_",
        b"session_",
        b"spl_",
        b"class_",
        b"method_",
        b"property_",
        b"set_",
        b"restore_",
        b"register_",
        b"highlight_",
        b"show_",
        b"php_",
        b"phpinfo",
        b"var_",
        b"debug_",
        b"error_",
        b"symlink",
        b"readlink",
        b"escapeshell",
    ];
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'(', &s[from..]) {
        let paren = from + p;
        from = paren + 1;
        let mut e = paren;
        while e > 0 && s[e - 1].is_ascii_whitespace() {
            e -= 1;
        }
        let mut b = e;
        while b > 0 && is_word(s[b - 1]) {
            b -= 1;
        }
        let name = &s[b..e];
        if name.len() < 5
            || !name.contains(&b'_')
                && !name.starts_with(b"gz")
                && !name.starts_with(b"bz")
                && name != b"phpinfo"
        {
            continue;
        }
        if FAMILIES
            .iter()
            .any(|f| name.starts_with(f) && name.len() > f.len())
        {
            return Some("php-function-call");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::Rules;

    fn l(s: &str) -> Vec<u8> {
        s.to_ascii_lowercase().into_bytes()
    }

    #[test]
    fn php() {
        let r = Rules::new();
        for a in [
            "<?php system('id'); ?>",
            "<?= 1 ?>",
            "$_GET['c']",
            "php://input",
            "O:8:\"stdClass\":0:{}",
            "eval($_POST['x'])",
            "base64_decode('aGk=')",
            "exec\t($x)",
            "$a(1)",
            "${@a}(10)",
            "(system)(ls);",
            "(\"system\")(\"whoami\")",
            "allow_url_include=1",
            "phar://x.zip/y",
        ] {
            assert!(r.php(&l(a)).is_some(), "missed: {a}");
        }
        for b in [
            "<?xml version=\"1.0\"?>",
            "<?xpacket begin=\"\"?>",
            "exec (",
            "eval",
            "systems()",
            "(foo)bar or foo(bar)",
            "A loaded ghost gun (unserialized) was recovered",
            "Price $5 (incl. tax)",
            "The system (v2) works",
            "Count (3) items",
            "Print (A4) pages",
        ] {
            assert_eq!(r.php(&l(b)), None, "false positive: {b}");
        }
        assert!(Rules::php_filename(b"shell.php").is_some());
        assert!(Rules::php_filename(b"photo.php  ").is_some());
        assert!(Rules::php_filename(b"a.php5...").is_some());
        assert_eq!(Rules::php_filename(b"safe.phpinfo"), None);
        assert_eq!(Rules::php_filename(b"photo.jpg"), None);
    }

    #[test]
    fn string_callables_and_variable_variables() {
        let r = Rules::new();
        for a in [
            "\"\\x70assthru\"('id');",
            "(string) 'pass'.'thru' ('id');",
            "${'GL'.'OBALS'}",
            "$ { $f }",
        ] {
            assert!(r.php(&l(a)).is_some(), "missed: {a}");
        }
        for b in [
            "the \"system\" (2020) album",
            "I said 'exec' (twice)",
            "${name} placeholder",
            "costs $ {5}",
            "price: $ 5 {each}",
        ] {
            assert_eq!(r.php(&l(b)), None, "false positive: {b}");
        }
    }
}
