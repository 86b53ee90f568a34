//! Path traversal and local file inclusion: `..` as a path segment after decoding, sensitive
//! files, `file://`; in the request path also hidden files, logs and backups.

use super::{is_word, Rules};
use crate::lexicon::{Family, Hit};

/// Files and folders an application never names in a parameter unless it is being attacked.
pub(crate) const SENSITIVE_FILES: &[&str] = &[
    "etc/passwd",
    "web-inf/web.xml",
    "web-inf/classes/",
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

impl Rules {
    /// Path traversal and file inclusion in a value. `s` is canonical, lower-cased.
    /// `hits`: the lexicon's matches in `s`, when the caller has them.
    pub(crate) fn lfi(
        &self,
        s: &[u8],
        hits: Option<&[Hit]>,
        tmp: &mut Vec<u8>,
    ) -> Option<&'static str> {
        // A UNC path (`\\\\host\\share`): Windows opens it over SMB.
        if s.starts_with(b"\\\\") && s.get(2).is_some_and(|c| c.is_ascii_alphanumeric()) {
            return Some("lfi-unc-path");
        }
        // Fold `\` to `/` and the `0x2e`/`0x2f`/`0x5c` spellings some parsers accept.
        if memchr::memchr(b'\\', s).is_none() && crate::find(s, b"0x").is_none() {
            return match hits {
                Some(h) => self.lfi_folded(s, h),
                None => {
                    let mut h = Vec::new();
                    self.lexicon.scan(s, &mut h);
                    self.lfi_folded(s, &h)
                }
            };
        }
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
        let t = std::mem::take(tmp);
        let mut h = Vec::new();
        self.lexicon.scan(&t, &mut h);
        let r = self.lfi_folded(&t, &h);
        *tmp = t;
        r
    }

    fn lfi_folded(&self, t: &[u8], hits: &[Hit]) -> Option<&'static str> {
        let f = crate::find;
        if traversal(t) {
            return Some("lfi-traversal");
        }
        if f(t, b"file://").is_some() || f(t, b"file:/").is_some_and(|p| p == 0) {
            return Some("lfi-file-scheme");
        }
        for m in hits.iter().filter(|h| h.family == Family::File) {
            let before = m.start.checked_sub(1).map(|i| t[i]);
            let after = t.get(m.end).copied();
            let pat = m.pattern.as_bytes();
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
        if let Some(r) = self.lfi(path, None, tmp) {
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
            || crate::find(path, b"/proc/").is_some()
        {
            return Some("lfi-sensitive-file");
        }
        None
    }
}

/// `../`, `..\` (folded), `/..` at the end, `..;/`: a `..` that stands as a path segment.
fn traversal(t: &[u8]) -> bool {
    if t == b".." {
        return true;
    }
    // Filter bypasses that become `../` once a naive filter strips `../` once.
    if crate::find(t, b"....//").is_some() || crate::find(t, b"..././").is_some() {
        return true;
    }
    let mut from = 0;
    while let Some(p) = crate::find(&t[from..], b"..") {
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

#[cfg(test)]
mod tests {
    use super::super::Rules;

    fn l(s: &str) -> Vec<u8> {
        s.to_ascii_lowercase().into_bytes()
    }

    #[test]
    fn lfi() {
        let r = Rules::new();
        let mut t = Vec::new();
        for a in [
            "....//....//secret.txt",
            "\\\\attacker\\share\\x",
            "../../../etc/passwd",
            "..\\..\\boot.ini",
            "0x2e0x2e/0x2e0x2e/x",
            "/etc/shadow",
            "file:///etc/hosts",
            ".ssh/id_rsa",
            "/var/www/.env",
            "..;/admin",
            "WEB-INF/web.xml",
            "/app/WEB-INF/classes/db.properties",
        ] {
            assert!(r.lfi(&l(a), None, &mut t).is_some(), "missed: {a}");
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
            "web inf xml guide",
        ] {
            assert_eq!(r.lfi(&l(b), None, &mut t), None, "false positive: {b}");
        }
        assert!(r.lfi_path(b"/.git/config", &mut t).is_some());
        assert!(r.lfi_path(b"/wp-content/debug.log", &mut t).is_some());
        assert_eq!(r.lfi_path(b"/.well-known/acme-challenge/x", &mut t), None);
        assert_eq!(r.lfi_path(b"/static/app.min.js", &mut t), None);
    }
}
