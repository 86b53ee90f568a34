//! SQL injection as the textbooks and tools write it, generated rather than collected: payload
//! bodies of sqlmap's families (boolean, error, time, stacked, UNION, inline) and classic
//! hand-written ones, for MySQL/MariaDB, PostgreSQL, MSSQL, Oracle and SQLite, each put behind
//! the boundaries that place it in a numeric, `'...'`, `"..."` or parenthesised context, and
//! rewritten by the evasions of sqlmap's tamper scripts. None of it comes from the CRS corpus:
//! it measures whether detection holds on SQL nobody tuned a rule for. Beside it, near-miss
//! benign values (names, prose, product searches) that must pass.
//!
//! `cargo test -p berth-waf --test sqli_textbook -- --nocapture` prints the rates.

#[path = "support/encode.rs"]
mod encode;
use berth_waf::{RequestParts, Waf, WafConfig};
use encode::escape;

/// Payload bodies, written after a boundary's prefix (`1'`, `1)`, ...).
const BODIES: &[&str] = &[
    // Boolean-based blind.
    "AND 4721=4721",
    "OR 4721=4721",
    "OR NOT 4721=4722",
    "AND 4721=4722",
    "AND ORD(MID((SELECT IFNULL(CAST(username AS NCHAR),0x20) FROM users ORDER BY id LIMIT 0,1),1,1))>64",
    "RLIKE (SELECT (CASE WHEN (4721=4721) THEN 0x61 ELSE 0x28 END))",
    "AND MAKE_SET(4721=4721,2381)",
    "AND ELT(4721=4721,2381)",
    "AND (SELECT 2381 FROM DUAL WHERE 4721=4721)",
    "AND (SELECT (CASE WHEN (4721=4721) THEN NULL ELSE CAST((CHR(88)||CHR(70)) AS NUMERIC) END)) IS NULL",
    "AND 4721=(SELECT (CASE WHEN (4721=4721) THEN 4721 ELSE (SELECT 2381 UNION SELECT 7788) END))",
    "AND IIF(4721=4721,1,1/0)=1",
    "AND (SELECT (CASE WHEN (4721=4721) THEN NULL ELSE CTXSYS.DRITHSX.SN(1,4721) END) FROM DUAL) IS NULL",
    "AND SUBSTRING((SELECT password FROM users LIMIT 1),1,1)='a'",
    "AND ASCII(SUBSTR((SELECT user FROM dual),1,1))>80",
    "AND LENGTH(database())>3",
    "AND EXISTS(SELECT * FROM users)",
    "AND 1 IN (SELECT 1)",
    "OR 'a'='a'",
    "OR 1=1",
    "OR true",
    "OR 2>1",
    "OR 'x' LIKE 'x'",
    "OR username IS NOT NULL",
    "OR 1 BETWEEN 0 AND 2",
    "AND @@version LIKE '5%'",
    "AND (SELECT COUNT(*) FROM users)>0",
    "AND user_name()='dbo'",
    "AND 1::int=1",
    "AND 3 DIV 1=3",
    "OR 0x41=0x41",
    "AND 1 REGEXP 1",
    // Error-based.
    "AND (SELECT 2381 FROM(SELECT COUNT(*),CONCAT(0x71766b7a71,(SELECT (ELT(2381=2381,1))),0x71626a7171,FLOOR(RAND(0)*2))x FROM INFORMATION_SCHEMA.PLUGINS GROUP BY x)a)",
    "AND EXTRACTVALUE(2381,CONCAT(0x5c,0x71766b7a71,(SELECT (ELT(2381=2381,1))),0x71626a7171))",
    "AND UPDATEXML(2381,CONCAT(0x2e,0x71,(SELECT user()),0x71),2381)",
    "AND EXP(~(SELECT * FROM (SELECT CONCAT(0x71,(SELECT (ELT(2381=2381,1))),0x71,0x78))x))",
    "AND GTID_SUBSET(CONCAT(0x71,(SELECT (ELT(2381=2381,1))),0x71),2381)",
    "AND 2381=CAST((CHR(113)||CHR(118))||(SELECT (CASE WHEN (2381=2381) THEN 1 ELSE 0 END))::text||(CHR(113)) AS NUMERIC)",
    "AND 2381 IN (SELECT (CHAR(113)+CHAR(118)+(SELECT (CASE WHEN (2381=2381) THEN CHAR(49) ELSE CHAR(48) END))+CHAR(113)))",
    "AND 2381=CONVERT(INT,(SELECT CHAR(113)+CHAR(118)+(SELECT (CASE WHEN (2381=2381) THEN CHAR(49) ELSE CHAR(48) END))))",
    "AND 2381=CTXSYS.DRITHSX.SN(2381,(CHR(113)||CHR(118)))",
    "AND 2381=UTL_INADDR.GET_HOST_ADDRESS(CHR(113)||CHR(118))",
    "AND 2381=(SELECT UPPER(XMLType(CHR(60)||CHR(58)||CHR(113)||CHR(62))) FROM DUAL)",
    "OR 1 GROUP BY CONCAT(0x71,(SELECT (CASE WHEN (1=1) THEN 1 ELSE 0 END)),0x71,FLOOR(RAND(0)*2)) HAVING MIN(0)",
    "AND CAST(version() AS int)=1",
    "AND 1=convert(int,@@version)",
    // Time-based blind.
    "AND SLEEP(5)",
    "OR SLEEP(5)",
    "AND (SELECT 2381 FROM (SELECT(SLEEP(5)))abcd)",
    "AND 2381=BENCHMARK(5000000,MD5(0x41414141))",
    "RLIKE SLEEP(5)",
    "AND 2381=(SELECT 2381 FROM PG_SLEEP(5))",
    "AND 2381=(SELECT COUNT(*) FROM GENERATE_SERIES(1,5000000))",
    "WAITFOR DELAY '0:0:5'",
    "AND 2381=(SELECT COUNT(*) FROM sysusers AS sys1,sysusers AS sys2,sysusers AS sys3)",
    "AND 2381=DBMS_PIPE.RECEIVE_MESSAGE(CHR(65)||CHR(66),5)",
    "AND 2381=LIKE(CHAR(65,66,67),UPPER(HEX(RANDOMBLOB(500000000/2))))",
    "AND IF(2381=2381,SLEEP(5),0)",
    "AND 2381=(SELECT 2381 FROM (SELECT(GET_LOCK('abc',5)))x)",
    "OR pg_sleep(5) IS NULL",
    "|| pg_sleep(5) ||",
    // Stacked queries.
    ";SELECT SLEEP(5)#",
    ";SELECT PG_SLEEP(5)--",
    ";WAITFOR DELAY '0:0:5'--",
    ";SELECT BENCHMARK(5000000,MD5(0x41))#",
    ";SELECT DBMS_PIPE.RECEIVE_MESSAGE(CHR(65),5) FROM DUAL--",
    ";DROP TABLE users--",
    ";INSERT INTO users (name) VALUES ('x')--",
    ";UPDATE users SET role='admin' WHERE id=1--",
    ";EXEC xp_cmdshell 'dir'--",
    ";DECLARE @q VARCHAR(99);SET @q='x';EXEC(@q)--",
    ";SHUTDOWN--",
    ";CREATE TABLE t(a int)--",
    // UNION and clauses.
    "UNION ALL SELECT NULL,NULL,NULL-- -",
    "UNION ALL SELECT NULL,CONCAT(0x71,0x41,0x71),NULL#",
    "UNION SELECT 1,2,3 FROM DUAL--",
    "UNION ALL SELECT NULL,NULL FROM DUAL--",
    "UNION SELECT username,password FROM users",
    "UNION SELECT @@version,2",
    "UNION SELECT table_name FROM information_schema.tables",
    "UNION DISTINCT SELECT 1",
    "ORDER BY 1-- -",
    "ORDER BY 10#",
    "GROUP BY 1,2,3 HAVING 1=1",
    "HAVING 1=1",
    "AND 1=1 INTO OUTFILE '/tmp/x'",
    "LIMIT 1 PROCEDURE ANALYSE(EXTRACTVALUE(1,CONCAT(0x3a,version())),1)",
    "AND 1=0 UNION SELECT 1",
];

/// Boundaries: what closes the application's context before the body, and what follows it.
const BOUNDARIES: &[(&str, &str)] = &[
    ("1 ", ""),
    ("1 ", "-- -"),
    ("1' ", "-- -"),
    ("1' ", " AND 'xyz'='xyz"),
    ("1\" ", "#"),
    ("1) ", " AND (7=7"),
    ("1') ", " AND ('a'='a"),
    ("1')) ", "-- -"),
    ("x%' ", " AND '%'='"),
    ("-1 ", "/*"),
];

const KEYWORDS: &[&str] = &[
    "UNION", "SELECT", "AND", "OR", "FROM", "WHERE", "ALL", "ORDER", "GROUP", "BY", "HAVING",
    "SLEEP", "WAITFOR", "DELAY", "INSERT", "INTO", "DROP", "TABLE", "LIKE", "NULL", "CASE", "WHEN",
    "THEN", "ELSE", "END", "LIMIT", "EXEC", "DECLARE", "SET", "UPDATE",
];

fn replace_words(s: &str, f: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |w: &mut String, out: &mut String| {
        if !w.is_empty() {
            if KEYWORDS.contains(&w.to_ascii_uppercase().as_str()) {
                out.push_str(&f(w));
            } else {
                out.push_str(w);
            }
            w.clear();
        }
    };
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// sqlmap's tamper scripts (the ones that apply to a query string), as functions of the whole
/// payload. They return raw bytes to be percent-encoded, except where they percent-encode.
type Tamper = fn(&str) -> String;

fn tampers() -> Vec<(&'static str, Tamper)> {
    vec![
        ("none", |s| s.to_string()),
        ("space2comment", |s| s.replace(' ', "/**/")),
        ("randomcase", |s| {
            s.chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_lowercase()
                    } else {
                        c.to_ascii_uppercase()
                    }
                })
                .collect()
        }),
        ("symboliclogical", |s| {
            s.replace(" AND ", " && ").replace(" OR ", " || ")
        }),
        ("equaltolike", |s| s.replace('=', " LIKE ")),
        ("between", |s| s.replace('>', " NOT BETWEEN 0 AND ")),
        ("versionedkeywords", |s| {
            replace_words(s, |w| format!("/*!{w}*/"))
        }),
        ("halfversionedmorekeywords", |s| {
            replace_words(s, |w| format!("/*!0{w}"))
        }),
        ("modsecurityversioned", |s| format!("/*!30874{s}*/")),
        ("space2dash", |s| s.replace(' ', "--nVNaVoPYeva\n")),
        ("space2hash", |s| s.replace(' ', "#nVNaVoPYeva\n")),
        ("space2mysqlblank", |s| {
            let blanks = ["\t", "\n", "\x0c", "\r", "\x0b"];
            let mut k = 0;
            s.chars()
                .map(|c| {
                    if c == ' ' {
                        k += 1;
                        blanks[k % blanks.len()].to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        }),
        ("multiplespaces", |s| s.replace(' ', "    ")),
        ("apostrophemask", |s| s.replace('\'', "\u{ff07}")),
        ("apostrophenullencode", |s| s.replace('\'', "\0'")),
        ("greatest", |s| {
            s.replace("4721=4721", "GREATEST(4721,4720)=4721")
        }),
        ("ifnull2ifisnull", |s| s.replace("IFNULL(", "IF(ISNULL(")),
    ]
}

fn blocked(waf: &Waf, value: &str) -> bool {
    let q = format!("q={}", escape(value));
    waf.inspect(&RequestParts {
        method: b"GET",
        path: b"/search",
        query: Some(q.as_bytes()),
        headers: &[],
        body: None,
    })
    .is_blocked()
}

#[test]
fn textbook_injections_are_blocked_in_every_context_and_tamper() {
    let waf = Waf::new(WafConfig::default()).unwrap();
    let mut total = 0;
    let mut hit = 0;
    let mut misses = Vec::new();
    for (name, tamper) in tampers() {
        let (mut t, mut h) = (0, 0);
        for body in BODIES {
            for (pre, suf) in BOUNDARIES {
                let v = tamper(&format!("{pre}{body}{suf}"));
                t += 1;
                if blocked(&waf, &v) {
                    h += 1;
                } else {
                    misses.push(v);
                }
            }
        }
        eprintln!("  {name:<26} {h:>4}/{t}");
        total += t;
        hit += h;
    }
    eprintln!("textbook SQLi: {hit}/{total} blocked");
    for m in misses.iter().take(60) {
        eprintln!("  MISS {m:?}");
    }
    // Held at what the detector reaches (see docs/waf.md).
    assert!(hit * 1000 >= total * 998, "{hit}/{total}");
}

/// Values a shop receives that look like SQL to a careless eye.
const NEAR_MISS: &[&str] = &[
    "O'Brien",
    "O'Brien or Smith",
    "Rock 'n' roll",
    "rock 'n' roll or jazz",
    "It's a 10\" pizza, isn't it?",
    "5' 11\" tall",
    "6' or 7' ladder",
    "1-2 days",
    "2-3 business days or less",
    "10 or 12",
    "size 10 or 12",
    "Buy 1 get 1 free",
    "100% cotton",
    "1/2 price",
    "1 = one",
    "Tom and Jerry",
    "Salt & Pepper",
    "\"select\" button is greyed out",
    "I'd select this again; 5 stars",
    "The union of art and craft",
    "Drop me a line; I'll order again",
    "Order #1234 - where is it?",
    "Shipped from ('warehouse')",
    "it's 'fine' - really",
    "Size 'M' or 'L'",
    "Men's shoes (size 10) - black",
    "Ben & Jerry's - 'Cookie Dough'",
    "She said 'yes' and 'no'",
    "D'Angelo; O'Neil; McDonald's",
    "hello' world",
    "can't wait -- so excited",
    "don't -- really",
    "\"Quoted\" - with dash",
    "Lamp (2 pack) or (4 pack)",
    "4 x 2.5\" screws",
    "Mr. O'Reilly's \"Book\" (2nd ed.)",
    "9 to 5 - Dolly Parton",
    "Size 12 and up",
    "select all that apply",
    "insert coin",
    "update your address",
    "Where is my order?",
    "from 10 to 20",
    "between 5 and 10 items",
    "null and void",
    "true or false quiz",
    "1 in 10 chance",
    "top 10 sellers",
    "case when it rains",
    "5 stars - would buy again!",
    "Waited 5 days; then it arrived",
    "Sleep mask (2 pack)",
    "benchmark results: 5000 points",
    "user's guide",
    "the 'users' table is sturdy",
    "join us; sign up",
    "It was 50/50 - coin toss",
    "I'm 6'2\" and it fits",
    "A 'must have' (really)",
];

#[test]
fn near_miss_benign_values_pass() {
    let waf = Waf::new(WafConfig::default()).unwrap();
    let blocked: Vec<_> = NEAR_MISS.iter().filter(|v| blocked(&waf, v)).collect();
    assert!(blocked.is_empty(), "blocked: {blocked:?}");
}
