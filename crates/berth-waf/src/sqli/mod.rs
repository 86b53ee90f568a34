//! SQL injection: a small SQL tokenizer (the libinjection idea) run in the three quote
//! contexts a value can land in (none, inside `'...'`, inside `"..."`), and a handful of
//! token patterns that real injections need and prose does not produce.
//!
//! The tokenizer folds a value into classes: string, number, keyword (with a sub-kind),
//! logic operator (`and`/`or`/`xor`/`&&`/`||`), function (a word directly followed by `(`),
//! bareword, operator, `(`, `)`, `,`, `;`, comment, variable (`@x`, `@@x`). The patterns look at
//! those classes only, never at the corpus they were tested on.

mod grammar;

/// Token classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum T {
    Str {
        closed: bool,
    },
    Num,
    Kw(K),
    Logic,
    Func(F),
    Word,
    Op(O),
    LParen,
    RParen,
    Comma,
    Semi,
    Comment,
    Var,
    /// A backtick-quoted identifier.
    Ident,
}

/// Keyword kinds that the patterns tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum K {
    Union,
    Except,
    Select,
    From,
    Insert,
    Into,
    Values,
    Update,
    Set,
    Delete,
    Drop,
    Create,
    Alter,
    Truncate,
    Exec,
    Declare,
    Where,
    Group,
    Order,
    By,
    Having,
    Limit,
    Waitfor,
    Delay,
    Outfile,
    Table,
    Case,
    When,
    Then,
    /// `end` (of a `case`).
    End,
    Null,
    Bool,
    All,
    As,
    /// `sounds`, `not`, `in`, `between`, `mod`, `div`: comparison-ish keywords.
    Cmp,
    /// `is` (`x is null`, `1 is not 2`): a comparison whose operands decide whether it is SQL.
    Is,
    /// `not`.
    Not,
    /// `in`.
    In,
    /// `between`.
    Between,
    /// `asc`, `desc`.
    Sort,
    /// `like`, `rlike`, `regexp`, `glob`, `similar`: pattern comparisons.
    Like,
    Procedure,
    Other,
}

/// Function kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum F {
    /// Only SQL has it (`sleep`, `benchmark`, `pg_sleep`, `load_file`, `extractvalue`...).
    Strong,
    /// Common in SQL and in prose or other languages (`char`, `concat`, `if`, `count`...).
    Sql,
    Other,
}

/// Operator kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum O {
    Cmp,
    /// `*`: `select *`, `count(*)`.
    Star,
    Arith,
    Cast,
    Json,
    /// `!`: MySQL's `not`.
    Bang,
    Other,
}

const MAX_TOKENS: usize = 48;

fn keyword(w: &[u8]) -> Option<T> {
    let k = match w {
        b"union" => K::Union,
        b"except" | b"intersect" | b"minus" => K::Except,
        b"select" => K::Select,
        b"from" => K::From,
        b"insert" => K::Insert,
        b"into" => K::Into,
        b"values" => K::Values,
        b"update" => K::Update,
        b"set" => K::Set,
        b"delete" => K::Delete,
        b"drop" => K::Drop,
        b"create" => K::Create,
        b"alter" => K::Alter,
        b"truncate" => K::Truncate,
        b"exec" | b"execute" => K::Exec,
        b"declare" => K::Declare,
        b"where" => K::Where,
        b"group" => K::Group,
        b"order" => K::Order,
        b"by" => K::By,
        b"having" => K::Having,
        b"limit" | b"offset" => K::Limit,
        b"waitfor" => K::Waitfor,
        b"delay" => K::Delay,
        b"outfile" | b"dumpfile" => K::Outfile,
        b"table" | b"database" | b"schema" | b"view" | b"function" | b"trigger" | b"index" => {
            K::Table
        }
        b"case" => K::Case,
        b"when" => K::When,
        b"then" | b"else" => K::Then,
        b"end" => K::End,
        b"null" => K::Null,
        b"true" | b"false" => K::Bool,
        b"all" | b"distinct" => K::All,
        b"as" => K::As,
        b"like" | b"ilike" | b"rlike" | b"regexp" | b"glob" | b"similar" => K::Like,
        b"is" => K::Is,
        b"not" => K::Not,
        b"in" => K::In,
        b"between" => K::Between,
        b"asc" | b"desc" => K::Sort,
        b"sounds" | b"mod" | b"div" | b"escape" | b"collate" => K::Cmp,
        b"procedure" | b"analyse" | b"analyze" => K::Procedure,
        b"and" | b"or" | b"xor" => return Some(T::Logic),
        b"shutdown" | b"grant" | b"revoke" | b"rename" | b"handler" | b"load" | b"replace"
        | b"merge" | b"call" | b"join" | b"on" | b"using" | b"top" | b"char" | b"varchar"
        | b"nvarchar" | b"int" | b"integer" | b"bigint" | b"text" => K::Other,
        _ => return None,
    };
    Some(T::Kw(k))
}

fn function_kind(w: &[u8]) -> F {
    const STRONG: &[&[u8]] = &[
        b"sleep",
        b"benchmark",
        b"pg_sleep",
        b"load_file",
        b"extractvalue",
        b"updatexml",
        b"group_concat",
        b"concat_ws",
        b"db_name",
        b"schema_name",
        b"user_name",
        b"current_user",
        b"session_user",
        b"system_user",
        b"database",
        b"version",
        b"make_set",
        b"elt",
        b"json_extract",
        b"json_keys",
        b"xmltype",
        b"utl_inaddr",
        b"lo_import",
        b"lo_export",
        b"lo_get",
        b"pg_read_file",
        b"sys_eval",
        b"sys_exec",
        b"openrowset",
        b"opendatasource",
        b"waitfor",
        b"unistr",
        b"string_to_array",
        b"randomblob",
        b"sqlite_version",
        b"current_database",
        b"current_schema",
        // The session and catalog functions of MySQL, MSSQL, PostgreSQL and Oracle that no
        // other language names so.
        b"find_in_set",
        b"export_set",
        b"last_insert_id",
        b"found_rows",
        b"row_count",
        b"connection_id",
        b"master_pos_wait",
        b"inet_aton",
        b"inet_ntoa",
        b"uuid_short",
        b"suser_name",
        b"suser_sname",
        b"is_member",
        b"has_perms_by_name",
        b"object_id",
        b"object_name",
        b"col_name",
        b"col_length",
        b"db_id",
        b"quotename",
        b"string_agg",
        b"array_agg",
        b"sys_context",
        b"nvl2",
        b"load_extension",
        b"is_srvrolemember",
        b"has_dbaccess",
        b"fn_xe_file_target_read_file",
        b"fn_trace_gettable",
        b"fn_get_audit_file",
        b"openquery",
        b"current_setting",
        b"pg_ls_dir",
        b"pg_read_binary_file",
        b"pg_stat_file",
        b"dblink",
        b"query_to_xml",
        b"lo_from_bytea",
        b"name_const",
        b"geometrycollection",
        b"polygon",
        b"multipoint",
        b"exp",
        b"floor",
        b"rand",
        b"procedure",
    ];
    const SQL: &[&[u8]] = &[
        b"char",
        b"chr",
        b"concat",
        b"ascii",
        b"substring",
        b"substr",
        b"mid",
        b"ord",
        b"hex",
        b"unhex",
        b"user",
        b"if",
        b"ifnull",
        b"isnull",
        b"nullif",
        b"coalesce",
        b"cast",
        b"convert",
        b"count",
        b"length",
        b"len",
        b"md5",
        b"sha1",
        b"lower",
        b"upper",
        b"trim",
        b"replace",
        b"reverse",
        b"left",
        b"right",
        b"instr",
        b"locate",
        b"position",
        b"overlay",
        b"div",
        b"mod",
        b"abs",
        b"min",
        b"max",
        b"sum",
        b"avg",
        b"schema",
        b"exec",
        b"execute",
        b"iif",
        b"row",
        b"values",
        b"exists",
        b"in",
        b"like",
        b"select",
        b"dual",
    ];
    // The naming conventions of database system functions and packages, so an unlisted one
    // of the family reads as SQL too: PostgreSQL's `pg_*` and `lo_*`, MSSQL's `xp_*`, `sp_*`,
    // `fn_*` and `sys.*`/`master.*`/`dbo.*` objects, Oracle's `dbms_*`/`utl_*`/`ctxsys.*`
    // packages, SQLite's `sqlite_*`, MySQL's `sys_*` UDFs and `json_*` functions.
    const PREFIXES: &[&[u8]] = &[
        b"pg_", b"lo_", b"xp_", b"sp_", b"fn_", b"sys.", b"master.", b"dbo.", b"dbms_", b"utl_",
        b"ctxsys.", b"sqlite_", b"sys_", b"json_",
    ];
    if STRONG.contains(&w)
        || PREFIXES
            .iter()
            .any(|p| w.len() > p.len() && w.starts_with(p))
    {
        F::Strong
    } else if SQL.contains(&w) {
        F::Sql
    } else {
        F::Other
    }
}

/// Keywords MySQL separates from a number written right before them (`1union`, `1e0or`).
fn glued_keyword(w: &[u8]) -> bool {
    matches!(
        w,
        b"union"
            | b"select"
            | b"from"
            | b"and"
            | b"or"
            | b"xor"
            | b"having"
            | b"limit"
            | b"order"
            | b"group"
            | b"into"
            | b"like"
            | b"rlike"
            | b"regexp"
            | b"div"
            | b"where"
            | b"between"
            | b"is"
            | b"not"
    )
}

/// Tokenizes `s` (already canonical and lower-cased) as SQL, starting inside a string
/// delimited by `quote` when given. At most [`MAX_TOKENS`] tokens.
pub(crate) fn tokenize(s: &[u8], quote: Option<u8>, out: &mut Vec<T>) {
    out.clear();
    let mut i = 0;
    let n = s.len();
    if let Some(q) = quote {
        // The value continues a string the application opened.
        match memchr::memchr(q, s) {
            Some(p) => {
                out.push(T::Str { closed: true });
                i = p + 1;
            }
            None => {
                out.push(T::Str { closed: false });
                return;
            }
        }
    }
    while i < n && out.len() < MAX_TOKENS {
        let c = s[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0 => i += 1,
            b'\'' | b'"' | b'`' => {
                let mut j = i + 1;
                let mut closed = false;
                while j < n {
                    if s[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if s[j] == c {
                        // A doubled quote is an escaped quote in SQL.
                        if j + 1 < n && s[j + 1] == c {
                            j += 2;
                            continue;
                        }
                        closed = true;
                        break;
                    }
                    j += 1;
                }
                out.push(if c == b'`' {
                    T::Ident
                } else {
                    T::Str { closed }
                });
                i = j.saturating_add(1);
                // `` `users`.`id` ``, `` `db`.users ``: a qualified name is one identifier.
                if c == b'`' && closed && s.get(i) == Some(&b'.') {
                    if s.get(i + 1) == Some(&b'`') {
                        i += 1;
                        out.pop();
                        continue;
                    }
                    let mut k = i + 1;
                    while k < n && (s[k].is_ascii_alphanumeric() || s[k] == b'_' || s[k] == b'$') {
                        k += 1;
                    }
                    if k > i + 1 {
                        i = k;
                    }
                }
            }
            b'0'..=b'9' | b'.' if c != b'.' || s.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let mut j = i;
                if c == b'0' && i + 1 < n && (s[i + 1] == b'x' || s[i + 1] == b'b') {
                    j += 2;
                    while j < n && s[j].is_ascii_hexdigit() {
                        j += 1;
                    }
                } else {
                    while j < n && (s[j].is_ascii_digit() || s[j] == b'.') {
                        j += 1;
                    }
                    if j < n
                        && s[j] == b'e'
                        && j + 1 < n
                        && (s[j + 1].is_ascii_digit() || s[j + 1] == b'-' || s[j + 1] == b'+')
                    {
                        j += 2;
                        while j < n && s[j].is_ascii_digit() {
                            j += 1;
                        }
                    }
                }
                if j < n && (s[j].is_ascii_alphabetic() || s[j] == b'_') {
                    // `5pm`, `3rd`, `1e`: a word, not a number. But MySQL reads `1e0union`,
                    // `.1union`, `1.and` as a number and a keyword: a way to write no blank.
                    let mut k = j;
                    while k < n && (s[k].is_ascii_alphanumeric() || s[k] == b'_' || s[k] >= 0x80) {
                        k += 1;
                    }
                    if glued_keyword(&s[j..k]) {
                        out.push(T::Num);
                        i = j;
                        continue;
                    }
                    out.push(T::Word);
                    j = k;
                } else {
                    out.push(T::Num);
                }
                i = j;
            }
            b'a'..=b'z' | b'_' | b'$' | 0x80..=0xff => {
                let mut j = i;
                while j < n
                    && (s[j].is_ascii_alphanumeric()
                        || s[j] == b'_'
                        || s[j] == b'$'
                        || s[j] >= 0x80)
                {
                    j += 1;
                }
                // `schema.table` stays one word.
                while j + 1 < n
                    && s[j] == b'.'
                    && (s[j + 1].is_ascii_alphabetic() || s[j + 1] == b'_')
                {
                    j += 1;
                    while j < n && (s[j].is_ascii_alphanumeric() || s[j] == b'_' || s[j] == b'$') {
                        j += 1;
                    }
                }
                let w = &s[i..j];
                // A string literal's introducer or prefix (`n'x'`, `x'41'`, `_utf8'a'`,
                // `e'\n'`, Oracle's `q'[x]'`): part of the string.
                if j < n
                    && matches!(s[j], b'\'' | b'"')
                    && matches!(
                        w,
                        b"n" | b"x"
                            | b"b"
                            | b"e"
                            | b"q"
                            | b"nq"
                            | b"_utf8"
                            | b"_utf8mb4"
                            | b"_latin1"
                            | b"_binary"
                    )
                {
                    i = j;
                    continue;
                }
                // A function is a word followed by `(`, maybe after blanks or comments.
                let mut k = j;
                loop {
                    while k < n && s[k].is_ascii_whitespace() {
                        k += 1;
                    }
                    if k + 1 < n && s[k] == b'/' && s[k + 1] == b'*' {
                        match crate::find(&s[k + 2..], b"*/") {
                            Some(p) => k = k + 2 + p + 2,
                            None => break,
                        }
                        continue;
                    }
                    // The end of a `/*!sleep*/(5)` comment: MySQL ran the word inside.
                    if k + 1 < n && s[k] == b'*' && s[k + 1] == b'/' {
                        k += 2;
                        continue;
                    }
                    break;
                }
                // `exec(@sql)` is MSSQL's dynamic statement, not a function call: it stays the
                // keyword so the statement patterns see it.
                // `or(1)=1`, `union(select`: operators and clauses before a group stay keywords.
                // `select(1)from(t)`, `or(1)like(1)`: with groups for blanks, `select` is never a
                // call, and `like` is the operator when an operand comes before it (SQLite's
                // `like(x,y)` call starts an operand).
                let operator_like = w == b"like"
                    && matches!(
                        out.last(),
                        Some(T::Num | T::Str { .. } | T::RParen | T::Word | T::Ident | T::Var)
                    );
                if k < n
                    && s[k] == b'('
                    && !operator_like
                    && !matches!(
                        w,
                        b"values"
                            | b"select"
                            | b"exec"
                            | b"execute"
                            | b"in"
                            | b"and"
                            | b"or"
                            | b"xor"
                            | b"not"
                            | b"union"
                            | b"rlike"
                            | b"regexp"
                            | b"where"
                            | b"having"
                            | b"when"
                            | b"then"
                            | b"else"
                            | b"from"
                    )
                {
                    out.push(T::Func(function_kind(w)));
                } else if let Some(t) = keyword(w) {
                    out.push(t);
                } else {
                    out.push(T::Word);
                }
                i = j;
            }
            b'@' => {
                let mut j = i + 1;
                if j < n && s[j] == b'@' {
                    j += 1;
                }
                let start = j;
                while j < n && (s[j].is_ascii_alphanumeric() || s[j] == b'_' || s[j] == b'.') {
                    j += 1;
                }
                if j > start {
                    out.push(T::Var);
                } else {
                    // `<@` / `@>` / `@?` style operators.
                    out.push(T::Op(O::Json));
                }
                i = j.max(i + 1);
            }
            b'(' => {
                out.push(T::LParen);
                i += 1;
            }
            b')' => {
                out.push(T::RParen);
                i += 1;
            }
            b',' => {
                out.push(T::Comma);
                i += 1;
            }
            b';' => {
                out.push(T::Semi);
                i += 1;
            }
            b'#' => {
                // PostgreSQL's `#>`, `#>>`, `#-` JSON operators; `#--` is a MySQL comment.
                if i + 1 < n
                    && (s[i + 1] == b'>' || s[i + 1] == b'-' && s.get(i + 2) != Some(&b'-'))
                {
                    out.push(T::Op(O::Json));
                    i += if i + 2 < n && s[i + 2] == b'>' { 3 } else { 2 };
                } else {
                    // MySQL's `#` comment runs to the end of the line (`#x\nunion`: a blank).
                    out.push(T::Comment);
                    i = match memchr::memchr(b'\n', &s[i..]) {
                        Some(p) => i + p + 1,
                        None => n,
                    };
                }
            }
            b'-' if i + 1 < n && s[i + 1] == b'-' => {
                out.push(T::Comment);
                i = match memchr::memchr(b'\n', &s[i..]) {
                    Some(p) => i + p + 1,
                    None => n,
                };
            }
            b'-' if i + 1 < n && s[i + 1] == b'>' => {
                out.push(T::Op(O::Json));
                i += if i + 2 < n && s[i + 2] == b'>' { 3 } else { 2 };
            }
            b'/' if i + 1 < n && s[i + 1] == b'*' => {
                if i + 2 < n && s[i + 2] == b'!' {
                    // MySQL runs the inside of `/*! ... */`: skip only the marker and version.
                    let mut j = i + 3;
                    while j < n && s[j].is_ascii_digit() {
                        j += 1;
                    }
                    out.push(T::Comment);
                    i = j;
                } else {
                    out.push(T::Comment);
                    i = match crate::find(&s[i + 2..], b"*/") {
                        Some(p) => i + 2 + p + 2,
                        None => n,
                    };
                }
            }
            b'*' if i + 1 < n && s[i + 1] == b'/' => {
                // The end of a `/*!` comment.
                i += 2;
            }
            // MySQL's assignment `@a:=1`.
            b':' if i + 1 < n && s[i + 1] == b'=' => {
                out.push(T::Op(O::Cmp));
                i += 2;
            }
            // PostgreSQL's pattern matches: `~*`, `!~`, `!~*`, `~~`, `!~~`, `~~*`.
            b'~' | b'!' if i + 1 < n && (s[i + 1] == b'~' || c == b'~' && s[i + 1] == b'*') => {
                let mut j = i + 2;
                while j < n && j < i + 4 && matches!(s[j], b'~' | b'*') {
                    j += 1;
                }
                out.push(T::Op(O::Cmp));
                i = j;
            }
            b':' if i + 1 < n && s[i + 1] == b':' => {
                out.push(T::Op(O::Cast));
                i += 2;
            }
            b'&' | b'|' if i + 1 < n && s[i + 1] == c => {
                out.push(T::Logic);
                i += 2;
            }
            b'<' | b'>' | b'=' | b'!' => {
                let mut j = i + 1;
                while j < n && j < i + 3 && matches!(s[j], b'<' | b'>' | b'=' | b'@' | b'!') {
                    j += 1;
                }
                let op = &s[i..j];
                let kind = if op == b"<@" || op == b"@>" {
                    O::Json
                } else if op == b"!" {
                    O::Bang
                } else {
                    O::Cmp
                };
                out.push(T::Op(kind));
                i = j;
            }
            // A question mark that ends the value (blanks aside) asks a question: PostgreSQL's
            // `?` operator needs its right side (`true or false?`).
            b'?' if s[i + 1..]
                .iter()
                .all(|c| c.is_ascii_whitespace() || *c == b'?') =>
            {
                i = n;
            }
            b'?' => {
                out.push(T::Op(O::Json));
                i += if i + 1 < n && matches!(s[i + 1], b'|' | b'&') {
                    2
                } else {
                    1
                };
            }
            b'*' => {
                out.push(T::Op(O::Star));
                i += 1;
            }
            b'+' | b'-' | b'/' | b'%' | b'^' | b'&' | b'|' | b'~' => {
                out.push(T::Op(O::Arith));
                i += 1;
            }
            _ => {
                out.push(T::Op(O::Other));
                i += 1;
            }
        }
    }
}

/// Whether a token can be an operand of a comparison.
fn value(t: T) -> bool {
    matches!(
        t,
        T::Num
            | T::Str { .. }
            | T::Word
            | T::Ident
            | T::Var
            | T::Kw(K::Null | K::Bool)
            | T::Func(_)
    )
}

/// Statements that change an object and name it right after the keyword (`drop table`).
fn needs_object(t: T) -> bool {
    matches!(
        t,
        T::Kw(K::Drop | K::Create | K::Alter | K::Truncate | K::Update | K::Delete | K::Insert)
    )
}

fn is_stmt(t: T) -> bool {
    grammar::statement_start(t) || matches!(t, T::Kw(K::Sort | K::Other))
}

/// The patterns, in order; each returns its rule id. `breakout` is set when the first token
/// is the string the value closed (a quote context).
fn patterns(t: &[T], breakout: bool) -> Option<&'static str> {
    // Inline comments (`DROP/**/TABLE`) separate tokens like blanks; only their presence counts.
    let mut buf = [T::Comma; MAX_TOKENS];
    let mut m = 0;
    let mut inline_comment = false;
    for (k, &x) in t.iter().enumerate() {
        if x == T::Comment && k + 1 < t.len() && !(breakout && k == 1) {
            inline_comment = true;
            continue;
        }
        buf[m] = x;
        m += 1;
    }
    let t = &buf[..m];
    let n = t.len();
    let has = |p: &dyn Fn(T) -> bool| t.iter().any(|&x| p(x));
    let comment = inline_comment || has(&|x| x == T::Comment);

    for i in 0..n {
        let a = t[i];
        let b = t.get(i + 1).copied();
        let c = t.get(i + 2).copied();
        match (a, b) {
            // VALUES ('a', 1, ...
            (T::Kw(K::Values), Some(T::LParen))
                if matches!(c, Some(T::Str { .. } | T::Num | T::Kw(K::Null)))
                    && matches!(t.get(i + 3), Some(T::Comma)) =>
            {
                return Some("sqli-statement")
            }
            // An assignment list: `x = 'a', 0x1a`, `col = 'v', (5)`
            (T::Word | T::Ident, Some(T::Op(O::Cmp)))
                if matches!(c, Some(T::Str { closed: true }))
                    && matches!(t.get(i + 3), Some(T::Comma))
                    && matches!(t.get(i + 4), Some(T::Num | T::LParen | T::Kw(K::Null))) =>
            {
                return Some("sqli-statement")
            }
            // SQL functions glued by arithmetic or `||`: `char(65)+char(66)`, `chr(1)||chr(2)`
            (T::RParen, Some(T::Op(O::Arith) | T::Logic))
                if matches!(c, Some(T::Func(F::Sql | F::Strong)))
                    && t[..i]
                        .iter()
                        .any(|&x| matches!(x, T::Func(F::Sql | F::Strong))) =>
            {
                return Some("sqli-function")
            }
            // EXCEPT / INTERSECT SELECT|VALUES(...) with SQL after it
            (T::Kw(K::Except), Some(T::Kw(K::Select | K::Values) | T::Func(_)))
                if c.is_some_and(|x| !matches!(x, T::Word)) =>
            {
                return Some("sqli-union")
            }
            // `x AS "alias" FROM`, `` ` AS `alias` FROM ``
            (T::Kw(K::As), Some(T::Str { closed: true } | T::Ident))
                if c == Some(T::Kw(K::From)) =>
            {
                return Some("sqli-select")
            }
            // `if(2=`, `ascii(x)>1`: a SQL function around a comparison
            (T::Func(F::Sql), Some(T::LParen))
                if c.is_some_and(value) && matches!(t.get(i + 3), Some(T::Op(O::Cmp))) =>
            {
                return Some("sqli-function")
            }
            // `unhex('61')='a'`, `ord('x')>1`: a SQL function's result compared with a literal,
            // after a logic operator.
            (T::Func(F::Sql), Some(T::LParen))
                if i > 0
                    && t[i - 1] == T::Logic
                    && matches!(c, Some(T::Num | T::Str { closed: true }))
                    && t.get(i + 3) == Some(&T::RParen)
                    && matches!(t.get(i + 4), Some(T::Op(O::Cmp) | T::Kw(K::Like)))
                    && matches!(t.get(i + 5), Some(T::Num | T::Str { .. })) =>
            {
                return Some("sqli-function")
            }
            // UNION [ALL|DISTINCT] SELECT
            (T::Kw(K::Union), Some(T::Kw(K::Select) | T::Func(_))) => return Some("sqli-union"),
            (T::Kw(K::Union), Some(T::Kw(K::All)))
                if matches!(c, Some(T::Kw(K::Select) | T::Func(_) | T::LParen)) =>
            {
                return Some("sqli-union")
            }
            (T::Kw(K::Union), Some(T::LParen))
                if matches!(c, Some(T::Kw(K::Select) | T::Func(_))) =>
            {
                return Some("sqli-union")
            }
            // MySQL 8's `TABLE t` statement as a union's second half: `1 union table users`
            // (after a value, with the table's name and nothing else: not `union table lamp`
            // in a sentence).
            (T::Kw(K::Union), Some(T::Kw(K::Table)))
                if i > 0
                    && matches!(t[i - 1], T::Num | T::Str { closed: true } | T::RParen)
                    && matches!(c, Some(T::Word | T::Ident))
                    && t.get(i + 3)
                        .is_none_or(|&x| matches!(x, T::Comment | T::Semi)) =>
            {
                return Some("sqli-union")
            }
            // Functions only SQL has; not a number with its unit in brackets (`sleep (5
            // hours)`): SQL never puts a word after a number there.
            (T::Func(F::Strong), _)
                if !(b == Some(T::LParen)
                    && c == Some(T::Num)
                    && t.get(i + 3) == Some(&T::Word)) =>
            {
                return Some("sqli-function")
            }
            // A SQL function called with no arguments as another call's argument:
            // `concat(0x3a,user())`, `lower(user())`.
            (T::Func(F::Sql), Some(T::LParen))
                if c == Some(T::RParen)
                    && i > 0
                    && matches!(t[i - 1], T::Comma | T::LParen)
                    && t[..i]
                        .iter()
                        .any(|&x| matches!(x, T::Func(F::Sql | F::Strong))) =>
            {
                return Some("sqli-function")
            }
            // WAITFOR DELAY / TIME '...' (`waitfor it...` is a sentence)
            (T::Kw(K::Waitfor), Some(T::Kw(K::Delay) | T::Str { .. })) => {
                return Some("sqli-time-delay")
            }
            (T::Kw(K::Waitfor), Some(T::Word)) if matches!(c, Some(T::Str { .. })) => {
                return Some("sqli-time-delay")
            }
            // INTO OUTFILE / DUMPFILE
            (T::Kw(K::Into), Some(T::Kw(K::Outfile))) => return Some("sqli-outfile"),
            // INSERT INTO x ... VALUES|SELECT
            (T::Kw(K::Insert), Some(T::Kw(K::Into)))
                if t[i..]
                    .iter()
                    .any(|&x| matches!(x, T::Kw(K::Values | K::Select) | T::Func(F::Sql))) =>
            {
                return Some("sqli-statement")
            }
            (T::Kw(K::Insert) | T::Kw(K::Other), Some(T::Kw(K::Into)) | Some(T::Func(_)))
                if i > 0 && t[i - 1] == T::Semi =>
            {
                return Some("sqli-stacked")
            }
            // DELETE FROM x WHERE|;|--  ; UPDATE x SET
            (T::Kw(K::Delete), Some(T::Kw(K::From)))
                if t[i..]
                    .iter()
                    .any(|&x| matches!(x, T::Kw(K::Where) | T::Semi | T::Comment)) =>
            {
                return Some("sqli-statement")
            }
            (T::Kw(K::Update), Some(T::Word)) if c == Some(T::Kw(K::Set)) && n > i + 4 => {
                return Some("sqli-statement")
            }
            // DROP|CREATE|ALTER|TRUNCATE TABLE ...
            (T::Kw(K::Drop | K::Create | K::Alter | K::Truncate), Some(T::Kw(K::Table)))
                if c.is_some_and(|x| matches!(x, T::Word | T::Func(_))) =>
            {
                return Some("sqli-statement")
            }
            (T::Kw(K::Alter), Some(T::Kw(K::Table))) => return Some("sqli-statement"),
            // CREATE TEMP|TEMPORARY|UNLOGGED TABLE x
            (T::Kw(K::Create), Some(T::Word))
                if c == Some(T::Kw(K::Table))
                    && (matches!(t.get(i + 3), Some(T::Func(_)))
                        || t.get(i + 3) == Some(&T::Word) && t.get(i + 4) == Some(&T::LParen)) =>
            {
                return Some("sqli-statement")
            }
            // `drop x;` inside a value (`'; drop users;`), not as its first words: a value that
            // starts `drop shipping; union jack` is a list.
            (T::Kw(K::Drop | K::Truncate), Some(T::Word | T::Ident))
                if comment || c == Some(T::Semi) && i > 0 =>
            {
                return Some("sqli-statement")
            }
            // SELECT list FROM / SELECT f(
            (
                T::Kw(K::Select),
                Some(T::Func(F::Strong | F::Sql) | T::Var | T::Num | T::Op(O::Star)),
            ) => return Some("sqli-select"),
            (T::Kw(K::Select), Some(T::Word | T::Ident | T::Str { .. }))
                if matches!(c, Some(T::Kw(K::From) | T::Comma)) =>
            {
                return Some("sqli-select")
            }
            (T::Kw(K::Select), Some(_)) if comment => return Some("sqli-select"),
            // MSSQL's `select top 1 name from`: the row limit comes before the select list.
            (T::Kw(K::Select), Some(T::Kw(K::Other)))
                if c == Some(T::Num)
                    && matches!(t.get(i + 3), Some(T::Word | T::Ident | T::Op(O::Star)))
                    && match t.get(i + 4) {
                        Some(T::Comma) => true,
                        Some(T::Kw(K::From)) => {
                            matches!(t.get(i + 5), Some(T::Word | T::Ident))
                                && !matches!(t.get(i + 6), Some(T::Word))
                        }
                        _ => false,
                    } =>
            {
                return Some("sqli-select")
            }
            // ; followed by a statement
            // (`; drop-down is broken`: a hyphenated word; statements that change objects
            // need an object after them, not a minus.)
            (T::Semi, Some(x))
                if is_stmt(x)
                    && c.is_some_and(|y| {
                        !(matches!(y, T::Word) || y == T::Op(O::Arith) && needs_object(x))
                            || y == T::Word
                                && matches!(
                                    x,
                                    T::Kw(
                                        K::Drop
                                            | K::Truncate
                                            | K::Declare
                                            | K::Exec
                                            | K::Waitfor
                                            | K::Select
                                    )
                                )
                    }) =>
            {
                return Some("sqli-stacked")
            }
            // EXEC ( @ / DECLARE @x
            (T::Kw(K::Exec) | T::Func(F::Sql), Some(T::LParen)) if matches!(c, Some(T::Var)) => {
                return Some("sqli-statement")
            }
            // `exec(@` cut short: a bare `@` (read as an operator) opens the variable's name.
            (T::Kw(K::Exec), Some(T::LParen)) if c == Some(T::Op(O::Json)) => {
                return Some("sqli-statement")
            }
            (T::Kw(K::Exec | K::Declare), Some(T::Var)) => return Some("sqli-statement"),
            // `set @a = ...` (a session variable assigned, as stacked or leading statement).
            (T::Kw(K::Set), Some(T::Var))
                if c == Some(T::Op(O::Cmp)) && (i == 0 || t[i - 1] == T::Semi) =>
            {
                return Some("sqli-statement")
            }
            (T::Kw(K::Declare), Some(T::Comment)) => return Some("sqli-statement"),
            // GROUP BY ... HAVING / ORDER BY n / ORDER BY f(
            (T::Kw(K::Having), Some(x))
                if value(x)
                    && c.is_some_and(|y| {
                        matches!(
                            y,
                            T::Op(O::Cmp)
                                | T::Kw(K::Cmp | K::Is | K::Like | K::Not | K::In | K::Between)
                        )
                    }) =>
            {
                return Some("sqli-clause")
            }
            (T::Kw(K::Having), Some(T::Func(_))) => return Some("sqli-clause"),
            (T::Kw(K::Order | K::Group), Some(T::Kw(K::By)))
                if matches!(c, Some(T::Func(_) | T::Num))
                    && (t.get(i + 3).is_none_or(|&x| {
                        matches!(x, T::Comment | T::Comma | T::Semi | T::LParen)
                    }) || t.get(i + 3) == Some(&T::Kw(K::Sort))
                        && t.get(i + 4)
                            .is_none_or(|&x| matches!(x, T::Comment | T::Comma | T::Semi))) =>
            {
                return Some("sqli-clause")
            }
            (T::Kw(K::Order | K::Group), Some(T::Kw(K::By))) if comment || breakout => {
                return Some("sqli-clause")
            }
            // `case when x=1`, not `case when it rains`: words side by side are prose.
            (T::Kw(K::Case), Some(T::Kw(K::When)))
                if !(c == Some(T::Word) && t.get(i + 3) == Some(&T::Word)) =>
            {
                return Some("sqli-clause")
            }
            // `1 limit 1,1`, `' limit 0,1 into @a`: MySQL's offset and count after a value.
            (T::Kw(K::Limit), Some(T::Num))
                if i > 0
                    && matches!(t[i - 1], T::Num | T::Str { .. } | T::RParen)
                    && c == Some(T::Comma)
                    && t.get(i + 3) == Some(&T::Num)
                    && t.get(i + 4).is_none_or(|&x| {
                        matches!(x, T::Comment | T::Semi | T::Kw(K::Into | K::Procedure))
                    }) =>
            {
                return Some("sqli-clause")
            }
            (T::Kw(K::Procedure), Some(T::Kw(K::Procedure) | T::LParen | T::Func(_))) => {
                return Some("sqli-clause")
            }
            // Postgres casts `::int`.
            (T::Op(O::Cast), Some(T::Word | T::Kw(K::Other)))
                if i > 0
                    && matches!(
                        t[i - 1],
                        T::Str { .. } | T::Word | T::Num | T::RParen | T::Kw(K::Other)
                    ) =>
            {
                return Some("sqli-cast")
            }
            // JSON operators on strings: '{...}'::jsonb @> '...'
            // (A name after the operator ends the operand: `'best' or 'worst'? you decide`
            // goes on with words.)
            (T::Str { .. }, Some(T::Op(O::Json)))
                if c.is_some_and(|x| match x {
                    T::Str { .. } | T::Num => true,
                    T::Kw(K::Other) | T::Word => t.get(i + 3) != Some(&T::Word),
                    _ => false,
                }) =>
            {
                return Some("sqli-json-operator")
            }
            (T::Word, Some(T::Op(O::Json)))
                if i > 0
                    && t[i - 1] == T::Op(O::Cast)
                    && c.is_some_and(|x| matches!(x, T::Str { .. } | T::Num)) =>
            {
                return Some("sqli-json-operator")
            }
            _ => {}
        }
        // Tautologies after a logic operator: `or 1=1`, `and 'a'<'b'`, `xor 99>`.
        if a == T::Logic {
            let before_ok = i == 0
                || matches!(
                    t[i - 1],
                    T::Str { .. }
                        | T::Num
                        | T::RParen
                        | T::Word
                        | T::Kw(K::Null | K::Bool)
                        | T::Var
                );
            if before_ok {
                if let Some(x) = b {
                    if value(x)
                        && matches!(
                            c,
                            Some(
                                T::Op(O::Cmp)
                                    | T::Kw(K::Cmp | K::Is | K::Like | K::Not | K::In | K::Between)
                            )
                        )
                    {
                        // `x or y = z`: prose rarely compares; SQL does. But a name compared
                        // outside a string must be a whole comparison: `buy 2 or more = 10%
                        // off` goes on with words after its right side.
                        let whole = || {
                            let mut k = i + 3;
                            if t.get(k) == Some(&T::Kw(K::Not)) {
                                k += 1;
                            }
                            value(t.get(k).copied().unwrap_or(T::Comma))
                                && t.get(k + 1).is_none_or(|&y| {
                                    matches!(
                                        y,
                                        T::Comment | T::Semi | T::Logic | T::RParen | T::Op(O::Cmp)
                                    )
                                })
                        };
                        if !matches!(x, T::Word)
                            || breakout
                            || (i == 0 || t[i - 1] != T::Word) && whole()
                        {
                            return Some("sqli-tautology");
                        }
                    }
                    if matches!(x, T::Num | T::Str { .. } | T::Kw(K::Bool))
                        && (c.is_none() || matches!(c, Some(T::Comment | T::Semi)))
                        // After the closed string, not after words that follow it (`5'6" and
                        // a size 10 or 12`).
                        && (breakout && !t[1..i].contains(&T::Word)
                            || i == 0
                            // `'a' or 'b'--`, but not `size 'M' or 'L'` (a quoted word in
                            // a sentence) nor `"large" or "x-large"` (a choice): the comment
                            // or `;` shows a query is being cut.
                            || matches!(t[i - 1], T::Str { closed: true })
                                && (i < 2 || t[i - 2] != T::Word)
                                && c.is_some()
                            // `1 and true`: a number, then a boolean, and nothing else.
                            || (i == 1 && t[0] == T::Num && x == T::Kw(K::Bool)))
                    {
                        return Some("sqli-tautology");
                    }
                    if matches!(x, T::Kw(K::Bool | K::Null) | T::Func(_)) && (breakout || i == 0) {
                        return Some("sqli-tautology");
                    }
                    // A value that starts with a logic operator and a quoted literal compared or
                    // glued to more code (`and '5'x=y`, `or 'a'<'b`): a condition appended to a
                    // query. Prose that starts with `and` follows a quote with words.
                    if i == 0
                        && matches!(x, T::Str { closed: true })
                        && t[2..]
                            .iter()
                            .any(|&y| matches!(y, T::Op(O::Cmp) | T::Kw(K::Like)))
                    {
                        return Some("sqli-tautology");
                    }
                }
            }
        }
        // `1 is not 2`, `'a' is not null`, `null is null`: literals compared with `is [not]`,
        // which only a condition written into a query does (prose compares words).
        if matches!(
            a,
            T::Num | T::Str { closed: true } | T::Kw(K::Null | K::Bool)
        ) && b == Some(T::Kw(K::Is))
        {
            let mut j = i + 2;
            if t.get(j) == Some(&T::Kw(K::Not)) {
                j += 1;
            }
            let prev = if i > 0 { Some(t[i - 1]) } else { None };
            if matches!(
                t.get(j),
                Some(T::Num | T::Str { closed: true } | T::Kw(K::Null | K::Bool))
            ) && (breakout || matches!(prev, None | Some(T::Logic | T::LParen | T::Comma)))
                && matches!(
                    t.get(j + 1),
                    None | Some(T::Comment | T::Semi | T::RParen | T::Logic)
                )
            {
                return Some("sqli-tautology");
            }
        }
        // `or 5-`, `xor 2*3`, `' and 1-1 --`: a logic operator followed by arithmetic on
        // numbers and nothing else, at the start of the value or right after the string it
        // closed (prose goes on with a word: `and 5-star reviews`).
        if a == T::Logic
            && b == Some(T::Num)
            && matches!(c, Some(T::Op(O::Arith | O::Star)))
            && (i == 0 || breakout && i <= 2)
        {
            let tail_ok = |x: Option<&T>| matches!(x, None | Some(T::Comment | T::Semi));
            match t.get(i + 3) {
                Some(T::Num) if tail_ok(t.get(i + 4)) => return Some("sqli-tautology"),
                x if tail_ok(x) => return Some("sqli-tautology"),
                _ => {}
            }
        }
        // `1 and 1^0`, `1 and 1&1`, `1 and !0`, `1 and not 0`: after the number the value
        // replaced, a logic operator and a computed literal, whole, and nothing else (`2 or
        // 3+` and `1 and 1/2 inch` are not whole or go on with words).
        if i == 1 && !breakout && t[0] == T::Num && a == T::Logic {
            let tail_ok = |x: Option<&T>| matches!(x, None | Some(T::Comment | T::Semi));
            let computed = match (b, c) {
                (Some(T::Num), Some(T::Op(O::Arith | O::Star))) => {
                    t.get(i + 3) == Some(&T::Num) && tail_ok(t.get(i + 4))
                }
                (Some(T::Op(O::Bang) | T::Kw(K::Not)), Some(T::Num)) => tail_ok(t.get(i + 3)),
                _ => false,
            };
            if computed {
                return Some("sqli-tautology");
            }
        }
        // `1=1`, `'a'='a'`, `1 sounds like 1`, `'a' not like 'b'`: a literal compared with a
        // literal.
        let op_len = match (b, c) {
            (Some(T::Op(O::Cmp) | T::Kw(K::Like)), _) => 1,
            (Some(T::Kw(K::Not | K::Cmp)), Some(T::Kw(K::Like))) => 2,
            _ => 0,
        };
        if op_len > 0
            && matches!(a, T::Num | T::Str { closed: true })
            && matches!(t.get(i + 1 + op_len), Some(T::Num | T::Str { .. }))
        {
            let prev = if i > 0 { Some(t[i - 1]) } else { None };
            let end = i + 2 + op_len;
            if breakout
                || matches!(
                    prev,
                    None | Some(T::Logic | T::LParen | T::Comma | T::Kw(_))
                ) && (end == n
                    || matches!(
                        t.get(end),
                        Some(T::Comment | T::Semi | T::RParen | T::Logic | T::Op(O::Cmp))
                    ))
            {
                return Some("sqli-tautology");
            }
        }
        // `1 between 0 and 2`, `'a' not in ('a','b')`: a literal tested against literals, at the
        // value's start, after a logic operator or a string the value closed.
        if matches!(a, T::Num | T::Str { closed: true })
            && (breakout || i == 0 || matches!(t[i - 1], T::Logic | T::LParen))
        {
            let mut j = i + 1;
            if t.get(j) == Some(&T::Kw(K::Not)) {
                j += 1;
            }
            let lit = |x: Option<&T>| matches!(x, Some(T::Num | T::Str { closed: true }));
            let tail = |k: usize| {
                t.get(k)
                    .is_none_or(|&x| matches!(x, T::Comment | T::Semi | T::RParen | T::Logic))
            };
            match t.get(j) {
                Some(T::Kw(K::Between))
                    if lit(t.get(j + 1))
                        && t.get(j + 2) == Some(&T::Logic)
                        && lit(t.get(j + 3))
                        && tail(j + 4) =>
                {
                    return Some("sqli-tautology")
                }
                Some(T::Kw(K::In)) if t.get(j + 1) == Some(&T::LParen) => {
                    let mut k = j + 2;
                    while lit(t.get(k)) {
                        k += 1;
                        if t.get(k) == Some(&T::Comma) {
                            k += 1;
                        }
                    }
                    if k > j + 2 && t.get(k) == Some(&T::RParen) && tail(k + 1) {
                        return Some("sqli-tautology");
                    }
                }
                _ => {}
            }
        }
    }
    // A whole value that is one backtick-quoted identifier (`` `users` ``): MySQL's quoting of
    // a name, used to probe whether a value lands in an identifier (`ORDER BY`, a column list)
    // and to write keywords without blanks. Text quotes code inside sentences, not alone.
    if !breakout && n == 1 && t[0] == T::Ident {
        return Some("sqli-identifier");
    }
    // A whole value that is a column list of quoted strings and numbers or nulls (`'', '', 13`,
    // `'a', null, 7`): the padding of a UNION's select list.
    if !breakout
        && n >= 5
        && matches!(t[0], T::Str { closed: true })
        && t.iter().enumerate().all(|(k, &x)| {
            if k % 2 == 0 {
                matches!(x, T::Num | T::Str { closed: true } | T::Kw(K::Null))
            } else {
                x == T::Comma
            }
        })
        && t.iter().any(|&x| matches!(x, T::Num | T::Kw(K::Null)))
    {
        return Some("sqli-union");
    }
    // A value that starts by closing a parenthesis (`) or (1=1`, `) like (`) breaks out of
    // the expression it was put into the way a quote breaks out of a string: the same
    // continuations decide.
    // Also after the number or word the group held: `1)) or ((1`, `x) union select`.
    let closed_at = if breakout || t.first() == Some(&T::RParen) {
        Some(0)
    } else if n >= 3 && matches!(t[0], T::Num | T::Word) && t[1] == T::RParen {
        Some(1)
    } else {
        None
    };
    // Outside a string, prose closes groups too (`2) or so`): SQL must follow, not just words.
    let closed_at = closed_at.filter(|&k| {
        n >= k + 2
            && (breakout
                || t[k + 2..]
                    .iter()
                    .any(|x| !matches!(x, T::Word | T::Str { closed: false })))
    });
    if let Some(k) = closed_at {
        // The value closed the string (or group) it was put into; what follows decides.
        let next = t[k + 1];
        let rest = &t[k + 2..];
        let sqlish = |x: &T| !matches!(x, T::Word | T::Str { closed: false });
        match next {
            T::Logic
                if rest.first().is_some_and(|&x| {
                    matches!(
                        x,
                        T::Func(_) | T::LParen | T::Kw(K::Bool | K::Null) | T::Op(O::Arith)
                    )
                }) || (rest.first().is_some_and(|&x| value(x))
                    && rest.get(1).is_none_or(|&y| {
                        matches!(
                            y,
                            T::Op(_)
                                | T::Comment
                                | T::Semi
                                | T::Logic
                                | T::RParen
                                | T::Kw(K::Cmp | K::Is | K::Like | K::Not | K::In | K::Between)
                        )
                    })) =>
            {
                return Some("sqli-breakout")
            }
            T::Comment | T::Semi => return Some("sqli-breakout"),
            T::RParen
                if rest.iter().any(|x| {
                    matches!(x, T::Kw(_) | T::Logic | T::Comment | T::Semi | T::Func(_))
                }) =>
            {
                return Some("sqli-breakout")
            }
            // `' union select`, `" union all select`, `') union (select`
            T::Kw(K::Union)
                if matches!(
                    rest.first(),
                    Some(T::Kw(K::Select) | T::Func(_) | T::LParen)
                ) || (rest.first() == Some(&T::Kw(K::All))
                    && matches!(rest.get(1), Some(T::Kw(K::Select) | T::Func(_) | T::LParen))) =>
            {
                return Some("sqli-breakout")
            }
            // `' select 1`, `" select * from`, `' select @@version`: a select list, not prose
            // (A quoted word after `select` is a select list when the list or the statement
            // goes on, not when words follow: `"select" vs "premium"`.)
            T::Kw(K::Select)
                if matches!(
                    rest.first(),
                    Some(
                        T::Num | T::Func(_) | T::Var | T::Op(O::Star) | T::Kw(K::Null) | T::LParen
                    )
                ) || rest.first() == Some(&T::Str { closed: true })
                    && rest.get(1).is_none_or(|&x| {
                        matches!(
                            x,
                            T::Comma
                                | T::Comment
                                | T::Semi
                                | T::Kw(K::From | K::As | K::Into | K::Union)
                        )
                    })
                    || rest.contains(&T::Kw(K::From)) =>
            {
                return Some("sqli-breakout")
            }
            T::Kw(K::Waitfor | K::Into | K::Order | K::Group | K::Having | K::Procedure)
                if rest.iter().any(sqlish) =>
            {
                return Some("sqli-breakout")
            }
            T::Kw(K::Cmp | K::Is | K::Like | K::Not | K::In | K::Between)
                if rest.iter().any(sqlish) =>
            {
                return Some("sqli-breakout")
            }
            T::Op(O::Cmp | O::Arith | O::Star)
                if rest.iter().any(|x| {
                    matches!(x, T::Comment | T::Logic | T::Semi | T::Func(_) | T::Kw(_))
                }) || matches!(rest.first(), Some(T::Str { closed: true })) =>
            {
                return Some("sqli-breakout")
            }
            T::Func(_) => return Some("sqli-breakout"),
            // `', 2, 1`, `'', '', 7`: the closed string was one item of a value list (an
            // INSERT's VALUES, a function's arguments) and more items follow.
            T::Comma
                if rest.len() >= 3
                    && rest.iter().enumerate().all(|(k, &x)| {
                        if k % 2 == 0 {
                            matches!(x, T::Num | T::Str { .. } | T::Kw(K::Null))
                        } else {
                            x == T::Comma
                        }
                    }) =>
            {
                return Some("sqli-breakout")
            }
            _ => {}
        }
        if matches!(next, T::Op(O::Arith)) && matches!(rest.first(), Some(T::Func(_))) {
            return Some("sqli-breakout");
        }
    }
    None
}

/// Names only a database has: system catalogs, extended procedures, SQL-only types.
pub(crate) const SQL_ONLY_WORDS: &[&str] = &[
    "pg_sleep",
    "load_file",
    "group_concat",
    "concat_ws",
    "extractvalue",
    "updatexml",
    "pg_read_file",
    "lo_import",
    "sys_eval",
    "dbms_pipe.receive_message",
    "information_schema",
    "pg_catalog",
    "pg_shadow",
    "pg_user",
    "pg_database",
    "pg_namespace",
    "mysql.user",
    "mysql.db",
    "sysobjects",
    "syscolumns",
    "sysdatabases",
    "sysusers",
    "sys.objects",
    "sys.tables",
    "msysaccessobjects",
    "msysaccessstorage",
    "msysaccessxml",
    "msysaces",
    "msysfilters",
    "msysmodules",
    "msysmodules2",
    "pg_toast",
    "master..sysdatabases",
    "northwind..",
    "northwind.dbo",
    "msysobjects",
    "msysqueries",
    "msysrelationships",
    "sqlite_master",
    "sqlite_schema",
    "sqlite_temp_master",
    "all_tables",
    "all_tab_columns",
    "user_tables",
    "dba_users",
    "v$version",
    "tempdb",
    "msdb",
    "xp_cmdshell",
    "xp_dirtree",
    "xp_regread",
    "xp_fileexist",
    "sp_executesql",
    "sp_password",
    "sp_oacreate",
    "sp_makewebtask",
    "sp_addextendedproc",
    "utl_http",
    "utl_inaddr",
    "dbms_ldap",
    "dbms_pipe",
    "dbms_lock",
    "dbms_java",
    "dbms_utility",
    "dbms_export_extension",
    "ctxsys",
    "in boolean mode",
    "in natural language mode",
    "with query expansion",
    "dbms_xmlgen",
    "openrowset",
    "opendatasource",
    "msdasql",
    "sqloledb",
    "nvarchar",
    "varchar",
    "@@version",
    "current_user",
    "session_user",
    "system_user",
    "@@datadir",
    "@@hostname",
    "table_schema",
    "table_name",
    "column_name",
    "schema_name",
    // The catalogs of the other engines and the rest of each engine's own: DB2's `sysibm.` and
    // `syscat.`, Informix's `sysmaster:`, PostgreSQL's `pg_*` tables, MySQL's
    // `performance_schema`, MSSQL's logins and processes, Oracle's `all_*`/`dba_*`/`user_*`
    // views.
    "sysibm.",
    "syscat.",
    "sysmaster:",
    "pg_class",
    "pg_proc",
    "pg_attribute",
    "pg_tables",
    "pg_roles",
    "pg_authid",
    "pg_stat_activity",
    "performance_schema",
    "mysql.innodb_table_stats",
    "sys.databases",
    "sys.columns",
    "sys.sql_logins",
    "sys.server_principals",
    "syslogins",
    "sysprocesses",
    "all_users",
    "all_objects",
    "all_tab_cols",
    "dba_tables",
    "dba_tab_columns",
    "user_objects",
    "user_tab_columns",
    "sqlite_sequence",
    "sysaux",
    "sys.database_name",
    "sql_variant",
    "sql_longvarchar",
    "autonomous_transaction",
    // The naming conventions of the engines' own procedures and packages, as bare names
    // (calls are read by `function_kind`): MSSQL's extended and system procedures, Oracle's
    // packages. A prefix matches when letters follow it (`xp_regwrite`, `utl_file`).
    "xp_",
    "sp_",
    "utl_",
    "dbms_",
    "owa_",
];

/// A value of SQL punctuation only (`'-'`, `!@#$%^&*`, `((((()))))`, `~~~~~~~~`): what
/// fuzzers and manual probing send to see how the query breaks, never a word, a number or a
/// sentence. The equivalent of ModSecurity CRS's restricted-character anomaly (942430/942431):
/// a quoted operator (`'-'`, `"&"`), or at least six SQL metacharacters with no letter, digit or
/// non-ASCII character at all. A run of `*` alone (a masked password a form sends back) and a
/// run of dots, slashes or question marks are not counted.
fn symbol_probe(s: &[u8]) -> bool {
    const META: &[u8] = b"~!@#$%^&*()-+={}[]|:;\"'<>`";
    let t = s.trim_ascii();
    if t.len() > 256 {
        return false;
    }
    // `'-'`, `" & "`, `' -`, `'||`: a quote and an operator, the classic first probe for
    // string concatenation (closed or left open for the query's own quote).
    if t.len() >= 2 && matches!(t[0], b'\'' | b'"') {
        let inner = t[1..].strip_suffix(&t[..1]).unwrap_or(&t[1..]).trim_ascii();
        if (1..=2).contains(&inner.len()) && inner.iter().all(|c| b"-+*&^|%/".contains(c)) {
            return true;
        }
    }
    // `'`, `"`, `` ` ``, `')`, `'))`: a quote alone (and the groups it would close), the
    // first probe of whether a value lands in a string.
    if (1..=3).contains(&t.len())
        && matches!(t[0], b'\'' | b'"' | b'`')
        && t[1..].iter().all(|&c| c == b')')
    {
        return true;
    }
    let mut meta = 0;
    for &c in t {
        if c.is_ascii_alphanumeric() || c >= 0x80 {
            return false;
        }
        if META.contains(&c) {
            meta += 1;
        }
    }
    // Emoticons (`:-) :-)`, `;)`, `<3`) are how text writes feelings, not probes.
    const FACES: &[&[u8]] = &[b":)", b":-)", b";)", b";-)", b":(", b":-(", b"<3", b"^_^"];
    meta >= 6
        && !t.iter().all(|&c| c == b'*' || c == b' ')
        && !FACES.iter().any(|f| crate::find(t, f).is_some())
}

/// MongoDB's query operators where a value or a parameter name sets them (`user[$ne]=x`,
/// `{"$gt": ""}`, `$where`): a query written by the client (NoSQL injection). The operator must
/// stand alone or in `[...]`, quotes or a JSON object, not in prose prices (`$5`, `$gt50`).
fn nosql_operator(s: &[u8]) -> bool {
    const OPS: &[&[u8]] = &[
        b"ne",
        b"eq",
        b"gt",
        b"gte",
        b"lt",
        b"lte",
        b"in",
        b"nin",
        b"regex",
        b"where",
        b"exists",
        b"or",
        b"and",
        b"nor",
        b"not",
        b"expr",
        b"function",
        b"accumulator",
        b"elemmatch",
        b"type",
        b"size",
        b"all",
        b"mod",
        b"jsonschema",
    ];
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'$', &s[from..]) {
        let at = from + p;
        from = at + 1;
        let before = if at == 0 { None } else { Some(s[at - 1]) };
        if !matches!(
            before,
            None | Some(b'[' | b'"' | b'\'' | b'{' | b' ' | b',')
        ) {
            continue;
        }
        let word = s[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        if !OPS.contains(&&s[at + 1..at + 1 + word]) {
            continue;
        }
        let after = s.get(at + 1 + word).copied();
        let ok = match before {
            None => after.is_none() || matches!(after, Some(b':' | b']')),
            Some(b'[') => after == Some(b']'),
            Some(q @ (b'"' | b'\'')) => after == Some(q),
            _ => after == Some(b':'),
        };
        if ok {
            return true;
        }
    }
    false
}

/// `xor` as a word between two operands (`1 xor 1`, `'a'xor'b`, `x' xor(sleep(5))xor'`): the
/// word is an operator in SQL and in code, never in the text a shop receives, so any literal,
/// call or group on its right makes it a condition.
fn xor_condition(s: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = crate::find(&s[from..], b"xor") {
        let at = from + p;
        from = at + 3;
        let word = |c: &u8| c.is_ascii_alphabetic() || *c == b'_';
        if at > 0 && word(&s[at - 1]) {
            continue;
        }
        let before = s[..at].trim_ascii_end().last();
        let after = s[at + 3..].trim_ascii_start().first();
        if before.is_some_and(|c| c.is_ascii_digit() || matches!(c, b'\'' | b'"' | b')'))
            && after.is_some_and(|c| c.is_ascii_digit() || matches!(c, b'\'' | b'"' | b'(' | b'@'))
        {
            return true;
        }
    }
    false
}

/// MySQL reads `1.e(`, `1.e.tables`, `1.e)` as a number followed by code: a known way to
/// glue keywords to numbers past filters.
fn number_evasion(s: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = crate::find(&s[from..], b".e") {
        let at = from + p;
        from = at + 2;
        let digit_before = at > 0 && s[at - 1].is_ascii_digit();
        let start_ok = {
            let mut k = at;
            while k > 0 && s[k - 1].is_ascii_digit() {
                k -= 1;
            }
            k == 0 || !(s[k - 1].is_ascii_alphanumeric() || s[k - 1] == b'.' || s[k - 1] == b'_')
        };
        let after = s.get(at + 2).copied();
        let code_after = match after {
            Some(b'(') | Some(b')') => true,
            Some(b'.') => s.get(at + 3).is_some_and(|c| c.is_ascii_alphabetic()),
            _ => false,
        };
        if digit_before && start_ok && code_after {
            return true;
        }
    }
    false
}

/// A whole value that is a number probing how the server parses numbers: one past (or at) the
/// 32- and 64-bit integer limits, where ids wrap around or overflow (`4294967296`,
/// `-2147483649`), and the doubles near the smallest normal one that hung the Java and PHP number
/// parsers (`2.2250738585072011e-308`), or an exponent past the double range (`1e309`).
fn boundary_number(s: &[u8]) -> bool {
    let t = s.trim_ascii();
    let t = t
        .strip_prefix(b"-")
        .or_else(|| t.strip_prefix(b"+"))
        .unwrap_or(t);
    if t.len() < 5 || !t[0].is_ascii_digit() {
        return false;
    }
    // The neighbourhoods of the smallest normal double (2.2250738585072014e-308, whose parsing
    // hung PHP and Java) and of the largest (1.7976931348623157e308).
    if t.starts_with(b"2.2250738585072")
        || t.starts_with(b"1.797693134862315")
        || t.starts_with(b"0.0000000000000000000")
    {
        return t
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'-' | b'+'));
    }
    if let Some(exp) = t.strip_prefix(b"1e").or_else(|| t.strip_prefix(b"1.0e")) {
        return exp.len() == 3 && exp.iter().all(u8::is_ascii_digit) && exp > &b"308"[..];
    }
    const LIMITS: &[&[u8]] = &[
        b"2147483647",
        b"2147483648",
        b"2147483649",
        b"4294967295",
        b"4294967296",
        b"4294967297",
        b"9223372036854775807",
        b"9223372036854775808",
        b"18446744073709551615",
        b"18446744073709551616",
    ];
    LIMITS.contains(&t)
}

/// SQL's string or identifier quote, comment or `=` written as a C/JavaScript escape (`\x27`,
/// `\x60`, `\x23`, `\x3d`, `\u0027`): the way to slip a quote past a filter into an application that unescapes
/// its input (PHP's `stripcslashes`, a JSON or JavaScript layer). The double quote's escape
/// (`\x22`) is left out: HTML copied out of JavaScript strings is full of it
/// (`<a href=\x22https://...`).
fn escaped_quote(s: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'\\', &s[from..]) {
        let at = from + p;
        from = at + 1;
        let rest = &s[at + 1..];
        let hex = if let Some(h) = rest.strip_prefix(b"x") {
            h.get(..2)
        } else if let Some(h) = rest.strip_prefix(b"u00") {
            h.get(..2)
        } else {
            None
        };
        if matches!(hex, Some(b"27" | b"60" | b"23" | b"3d")) {
            return true;
        }
    }
    false
}

/// A number, what ends its expression or statement (`)`, `;`, or nothing) and a comment that
/// cuts the rest of the query off, and nothing else (`1--`, `1;--`, `1)-- -`, `7));#`): the
/// probe for where a numeric value lands, as `admin'--` is for a string. Text goes on with
/// words or numbers after a dash (`5 -- 10`, `1) -- unpack`).
fn terminated_number(s: &[u8]) -> bool {
    let t = s.trim_ascii();
    let digits = t.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return false;
    }
    let rest = &t[digits..];
    let ends = rest
        .iter()
        .take_while(|&&c| matches!(c, b';' | b')' | b' ' | b'\t'))
        .count();
    let tail = &rest[ends..];
    let Some(after) = tail
        .strip_prefix(b"--")
        .or_else(|| tail.strip_prefix(b"#"))
        .or_else(|| tail.strip_prefix(b"/*"))
    else {
        return false;
    };
    after
        .iter()
        .all(|&c| matches!(c, b' ' | b'\t' | b'-' | b'+' | b'*' | b'/' | b'#'))
}

/// MySQL's versioned comment, whose inside MySQL runs (`/*!50000union*/`, `/*!and*/`, `/*!*/`):
/// a version number or a SQL keyword right after `/*!`. Source banners (`/*! jQuery v3 */`)
/// start with a name.
fn versioned_comment(s: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = crate::find(&s[from..], b"/*!") {
        let at = from + p + 3;
        from = at;
        let digits = s[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 5 || digits == 6 {
            return true;
        }
        let rest = s[at + digits..].trim_ascii_start();
        if rest.starts_with(b"*/") {
            return true;
        }
        let w = rest
            .iter()
            .take_while(|c| c.is_ascii_alphabetic() || **c == b'_')
            .count();
        if w > 0 && matches!(keyword(&rest[..w]), Some(T::Kw(_) | T::Logic)) {
            return true;
        }
    }
    false
}

/// A comparison of an operand with itself (`a=a`, `x <> x`, `abc like abc`, `'1'='1'`): true
/// or false whatever the row, which is why an injected condition uses it. It must stand where
/// a condition does: at the value's start or after a quote, `(` or a logic operator, and end
/// the value or be followed by a comment, `)`, `;` or a logic operator.
fn self_comparison(s: &[u8]) -> bool {
    let operand =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'\'' | b'"' | b'`' | b'.');
    let mut i = 0;
    while i < s.len() {
        let (op_start, op_end) = match s[i] {
            b'=' | b'<' | b'>' | b'!' => {
                let mut j = i;
                while j < s.len() && j < i + 3 && matches!(s[j], b'=' | b'<' | b'>' | b'!') {
                    j += 1;
                }
                (i, j)
            }
            b'l' | b'r' if i > 0 && s[i - 1].is_ascii_whitespace() => {
                let w = if s[i..].starts_with(b"like ") {
                    4
                } else if s[i..].starts_with(b"rlike ") {
                    5
                } else if s[i..].starts_with(b"regexp ") {
                    6
                } else {
                    i += 1;
                    continue;
                };
                (i, i + w)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        i = op_end;
        let left_end = s[..op_start].trim_ascii_end().len();
        let left_start = left_end
            - s[..left_end]
                .iter()
                .rev()
                .take_while(|&&c| operand(c))
                .count();
        let right_start = op_end + (s[op_end..].len() - s[op_end..].trim_ascii_start().len());
        let right_end = right_start + s[right_start..].iter().take_while(|&&c| operand(c)).count();
        let (l, r) = (&s[left_start..left_end], &s[right_start..right_end]);
        if l.is_empty() || l != r || l.len() > 32 || keyword(l).is_some() {
            continue;
        }
        let before = s[..left_start].trim_ascii_end();
        let after = s[right_end..].trim_ascii_start();
        let starts_ok = before.is_empty()
            || before.ends_with(b"(")
            || before.ends_with(b" or")
            || before.ends_with(b" and")
            || before.ends_with(b"||")
            || before.ends_with(b"&&")
            || before == b"or"
            || before == b"and"
            || left_start > 0 && matches!(s[left_start - 1], b'\'' | b'"');
        let ends_ok = after.is_empty()
            || after.starts_with(b"--")
            || after.starts_with(b"#")
            || after.starts_with(b"/*")
            || after.starts_with(b")")
            || after.starts_with(b";")
            || after.starts_with(b"or ")
            || after.starts_with(b"and ");
        if starts_ok && ends_ok {
            return true;
        }
    }
    false
}

/// Whether the tokens hold an operand compared with an operand where a condition stands (the
/// shape [`self_comparison`] then checks on the bytes): a cheap filter, most values have none.
fn comparison_stands_alone(t: &[T]) -> bool {
    let operand = |x: Option<&T>| matches!(x, Some(T::Word | T::Num | T::Str { .. } | T::Ident));
    (1..t.len()).any(|k| {
        matches!(t[k], T::Op(O::Cmp) | T::Kw(K::Like))
            && operand(t.get(k - 1))
            && operand(t.get(k + 1))
            && (k == 1 || matches!(t[k - 2], T::Logic | T::LParen | T::Str { .. }))
            && t.get(k + 2)
                .is_none_or(|x| matches!(x, T::Comment | T::RParen | T::Semi | T::Logic))
    })
}

/// PostgreSQL's `COPY ... TO|FROM PROGRAM 'cmd'`, which runs a shell command on the database
/// server.
fn copy_program(s: &[u8]) -> bool {
    let Some(c) = crate::find(s, b"copy") else {
        return false;
    };
    let Some(p) = crate::find(&s[c..], b" program") else {
        return false;
    };
    let before = s[..c + p].trim_ascii_end();
    let after = s[c + p + 8..].trim_ascii_start();
    (before.ends_with(b" to") || before.ends_with(b" from"))
        && after
            .first()
            .is_some_and(|q| matches!(q, b'\'' | b'"' | b'$'))
}

/// A keyword cut in two by an inline comment: `sel/**/ect`, `un/*x*/ion`, `dr/**/op`. SQL itself
/// reads two words there; the split only exists to slip a keyword past a filter, and prose never
/// writes `/*` inside a word.
fn comment_split_keyword(s: &[u8]) -> bool {
    const KEYWORDS: &[&[u8]] = &[
        b"select",
        b"union",
        b"insert",
        b"update",
        b"delete",
        b"drop",
        b"truncate",
        b"alter",
        b"create",
        b"exec",
        b"execute",
        b"declare",
        b"where",
        b"from",
        b"having",
        b"order",
        b"group",
        b"waitfor",
        b"sleep",
        b"benchmark",
        b"and",
        b"or",
        b"into",
        b"values",
    ];
    let mut from = 0;
    while let Some(p) = crate::find(&s[from..], b"/*") {
        let open = from + p;
        let Some(q) = crate::find(&s[open + 2..], b"*/") else {
            return false;
        };
        let close = open + 2 + q + 2;
        from = close;
        let word = |c: &u8| c.is_ascii_alphabetic();
        let head = s[..open].iter().rev().take_while(|c| word(c)).count();
        let tail = s[close..].iter().take_while(|c| word(c)).count();
        if head == 0 || tail == 0 || head + tail > 12 {
            continue;
        }
        let mut joined = [0u8; 12];
        joined[..head].copy_from_slice(&s[open - head..open]);
        joined[head..head + tail].copy_from_slice(&s[close..close + tail]);
        if KEYWORDS.contains(&&joined[..head + tail]) {
            return true;
        }
    }
    false
}

pub(crate) struct SqliDetector;

impl SqliDetector {
    pub(crate) fn new() -> Self {
        SqliDetector
    }

    /// Names only a database has, in a value (`lower`: canonical, lower-cased).
    /// `hits`: the lexicon's matches in `lower`.
    pub(crate) fn detect_word(
        &self,
        lower: &[u8],
        hits: &[crate::lexicon::Hit],
    ) -> Option<&'static str> {
        for m in hits
            .iter()
            .filter(|h| h.family == crate::lexicon::Family::Sql)
        {
            let before = m.start.checked_sub(1).map(|i| lower[i]);
            let after = lower.get(m.end).copied();
            let ident = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_');
            // `northwind..orders`: a qualifier ends in a dot and the name follows.
            let qualifier = m.pattern.ends_with('.') || m.pattern.ends_with(':');
            // A family prefix (`xp_`, `utl_`): the name goes on with letters only.
            let prefix = m.pattern.ends_with('_');
            let family = prefix && {
                let rest = &lower[m.end..];
                let k = rest
                    .iter()
                    .take_while(|c| c.is_ascii_lowercase() || **c == b'_')
                    .count();
                k >= 3 && !ident(rest.get(k).copied())
            };
            if !ident(before) && (family || !prefix && (qualifier || !ident(after))) {
                return Some("sqli-system-object");
            }
        }
        if number_evasion(lower) {
            return Some("sqli-number-evasion");
        }
        if boundary_number(lower) {
            return Some("sqli-boundary-number");
        }
        if memchr::memchr(b'\\', lower).is_some() && escaped_quote(lower) {
            return Some("sqli-probe");
        }
        None
    }

    /// The grammar's reading of each path segment and what follows it, as a value put where
    /// a number or an operand goes (`lower`: the canonical, lower-cased path). At most eight
    /// segments, the last first.
    pub(crate) fn detect_segments(&self, lower: &[u8], toks: &mut Vec<T>) -> Option<&'static str> {
        let mut end = lower.len();
        for _ in 0..8 {
            let Some(p) = memchr::memrchr(b'/', &lower[..end]) else {
                break;
            };
            end = p;
            let seg = &lower[p + 1..];
            // `/**/` inside SQL is a comment, not a segment; plain segments say nothing.
            if seg.first() == Some(&b'*') || p > 0 && lower[p - 1] == b'*' {
                continue;
            }
            if seg
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"-_.~,".contains(&c))
            {
                continue;
            }
            tokenize(seg, None, toks);
            let symbolic = crate::find(seg, b"&&").is_some() || crate::find(seg, b"||").is_some();
            if let Some(r) = grammar::judge(toks, false, symbolic) {
                return Some(r);
            }
        }
        None
    }

    /// `lower` is the canonical, lower-cased value.
    pub(crate) fn detect(
        &self,
        lower: &[u8],
        hits: &[crate::lexicon::Hit],
        toks: &mut Vec<T>,
    ) -> Option<&'static str> {
        if lower.is_empty() {
            return None;
        }
        if let Some(r) = self.detect_word(lower, hits) {
            return Some(r);
        }
        if symbol_probe(lower) {
            return Some("sqli-probe");
        }
        if terminated_number(lower) {
            return Some("sqli-breakout");
        }

        if crate::lexicon::hint_bits(hits) & crate::lexicon::HINT_XOR != 0 && xor_condition(lower) {
            return Some("sqli-tautology");
        }
        if memchr::memchr(b'$', lower).is_some() && nosql_operator(lower) {
            return Some("sqli-nosql-operator");
        }
        // Both need a rare byte: `*` for a comment, a quote or `$` for PROGRAM's command.
        if memchr::memchr(b'*', lower).is_some() && comment_split_keyword(lower) {
            return Some("sqli-comment-obfuscation");
        }
        if memchr::memchr3(b'\'', b'"', b'$', lower).is_some() && copy_program(lower) {
            return Some("sqli-statement");
        }
        if memchr::memchr(b'!', lower).is_some() && versioned_comment(lower) {
            return Some("sqli-comment-obfuscation");
        }
        tokenize(lower, None, toks);
        // `100 > 50`, `5 < 10`: two numbers ordered, and nothing else, is how people write
        // prices and sizes. A probe tests equality (`1=1`) or joins its condition to the query
        // with a logic operator, a quote or a comment, which all read as more tokens.
        if toks.len() == 3
            && toks[0] == T::Num
            && toks[1] == T::Op(O::Cmp)
            && toks[2] == T::Num
            && memchr::memchr(b'=', lower).is_none()
        {
            return None;
        }
        // `&&`/`||` are code's logic operators, never prose's.
        let symbolic_logic = memchr::memchr2(b'&', b'|', lower).is_some()
            && (crate::find(lower, b"&&").is_some() || crate::find(lower, b"||").is_some());
        if let Some(r) =
            patterns(toks, false).or_else(|| grammar::judge(toks, false, symbolic_logic))
        {
            return Some(r);
        }
        if comparison_stands_alone(toks) && self_comparison(lower) {
            return Some("sqli-tautology");
        }
        for q in [b'\'', b'"', b'`'] {
            if memchr::memchr(q, lower).is_some() {
                tokenize(lower, Some(q), toks);
                if let Some(r) = patterns(toks, true) {
                    return Some(r);
                }
                if toks.first() == Some(&T::Str { closed: true }) {
                    if let Some(r) = grammar::judge(toks, true, symbolic_logic) {
                        return Some(r);
                    }
                }
            }
        }
        // `\x22 or 1=1`, `\u0027 union select`: punctuation written as C/JavaScript escapes,
        // read as the application that unescapes its input reads it (once: the unescaped value
        // is not unescaped again).
        if memchr::memchr(b'\\', lower).is_some() {
            let mut plain = Vec::new();
            if unescape_c(lower, &mut plain) {
                return self.detect(&plain, &[], toks);
            }
        }
        None
    }
}

/// Undoes `\xHH` and `\u00HH` escapes of ASCII punctuation into `out`; whether any was found.
/// Letters and digits stay escaped (`\x41` is not a quote to anyone) and so does the backslash,
/// so the result holds no escape to undo again.
fn unescape_c(s: &[u8], out: &mut Vec<u8>) -> bool {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    out.clear();
    let mut found = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            let (skip, h) = match s.get(i + 1) {
                Some(b'x') => (4, s.get(i + 2..i + 4)),
                Some(b'u') if s.get(i + 2..i + 4) == Some(b"00") => (6, s.get(i + 4..i + 6)),
                _ => (0, None),
            };
            if let Some(&[a, b]) = h {
                if let (Some(a), Some(b)) = (hex(a), hex(b)) {
                    let c = a << 4 | b;
                    if c.is_ascii_punctuation() && c != b'\\' || c == b' ' {
                        out.push(c);
                        i += skip;
                        found = true;
                        continue;
                    }
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(s: &str) -> Option<&'static str> {
        let d = SqliDetector::new();
        let r = crate::rules::Rules::new();
        let l = s.to_ascii_lowercase();
        let mut h = Vec::new();
        r.lexicon.scan(l.as_bytes(), &mut h);
        d.detect(l.as_bytes(), &h, &mut Vec::new())
    }

    #[test]
    fn attacks() {
        for a in [
            "1234 OR 1=1",
            "-1839' or '1'='1",
            "-1839\" or \"1\"=\"2",
            "foo') UNION ALL select NULL --",
            "x' and sleep(12) --",
            "admin'--",
            "admin@example.com';",
            "1 union select 1,2,3",
            "'; DROP TABLE users; --",
            "1; INSERT INTO t (a) VALUES (1)",
            "SELECT * FROM users",
            "select load_file('/etc/passwd')",
            "' or true; foo",
            "'||true",
            "id'is not-id--",
            "1 and 1 in (select min(name) from sysobjects)",
            "password::int",
            "' waitfor delay '0:0:5'--",
            "order by if(1=1,1,sleep(1))",
            "' /*!50000or*/1='1",
            "0/**/union/*!50000select*/table_name",
            "SELECT/*x*/password/**/FROM/**/Members",
            "xor 99>",
            "' or 'x' <",
            "INFORMATION_SCHEMA",
            "1=1",
            "char(65)+char(66)",
            "42 like 42",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
    }

    #[test]
    fn benign_look_alikes() {
        for b in [
            "O'Brien",
            "Rock 'n' roll",
            "It's a 10\" pizza, isn't it?",
            "Tom's and Jerry's",
            "select your size from the menu",
            "Please select from the list",
            "Delete from cart",
            "I like you!",
            "and 7 oranges",
            "This or that",
            "Buy now or never!",
            "Size: 10 or 12",
            "Cats & dogs",
            "Black; white; red",
            "Just in case (abc)",
            "\"Best\" shoes \u{2013} 50% off",
            "2+2=4",
            "union station",
            "order by date",
            "having pain!",
            "update: shipped",
            "I sleep well",
            "fe80::1",
            "email: o'neil@example.com",
            "Dr. D'Angelo, 12 O'Connell St.",
            "'foo';'bar';'def'",
            "my--slugified-url",
            "I like 2 of them",
            "5 in 1 charger",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn keywords_split_by_comments() {
        for a in [
            "1 UN/**/ION SEL/**/ECT pass FROM users",
            "x'; TRUNC/*z*/ATE accounts",
            "5 wh/*!*/ere 1",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "size/*large*/box",
            "see docs/* and lib/*",
            "/* a comment */ plain text",
            "C-3PO/*droid*/R2",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn breakout_into_a_value_list() {
        for a in ["7', 8, 9", "a', 'b', 'c", "', null, null, 3"] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "Rock 'n' roll, 2, 1",
            "O'Neil, 3, 4",
            "it's 1, 2, 3",
            "size 'M', red",
            "the '90s, 80s, 70s",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn numbers_at_the_parsers_limits() {
        for a in [
            "4294967297",
            "-2147483649",
            "9223372036854775808",
            "2.2250738585072012e-308",
            "1e400",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "4294967",
            "42949672960",
            "1e30",
            "2.5",
            "order 2147483600",
            "+44 20 7946 0958",
            "10000",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn hyphenated_words_after_a_semicolon() {
        for b in [
            "The \"select\" button doesn't work; drop-down is broken",
            "great; create-a-card kit",
            "drop shipping; union jack flag",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
        for a in [
            "x; drop table t",
            "1;select -1",
            "'; truncate accounts --",
            "1; drop users;",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
    }

    #[test]
    fn niladic_calls_and_bare_booleans() {
        for a in [
            "lower(user())",
            "concat(0x7e,version())",
            "7 or true",
            "select session_user",
            "2 and unhex('41')='A'",
            "'x', null, 3",
            "'', '', '', 4",
            "x'; copy (select 1) to program 'uname'--",
            "1; create temporary table q(a text)",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "user() guide",
            "Buy 1 and true love follows",
            "true or false",
            "the current user",
            "count (users)",
            "lower(case) = best",
            "Tom and char(ming) = 5 stars",
            "'red', 'blue', 'green'",
            "'70s, '80s, 90s",
            "2, 3, 4",
            "copy to a program manager",
            "Copy the file to program folder 'docs'",
            "create custom table runner",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn literals_compared_with_is() {
        for a in [
            "1 is not 2",
            "'a' is not null",
            "x' or 1 is 1 --",
            "(null is null)",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "1 is not enough",
            "Size 10 is not 12 inches",
            "this is not null and void",
            "is 5 ok?",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn logic_then_arithmetic_on_numbers() {
        for a in ["xor 5-", "or 2*3", "\\\"1 or 1-", "' and 1-1 --"] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "and 5-star reviews",
            "pack of 1 or 2-3",
            "or 2-3 days",
            "red or 5-pack",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn dynamic_exec_of_a_variable() {
        for a in ["exec (@\n", "EXEC(@sql)", "x'; execute (@q)--"] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "exec (executive) summary",
            "exec @ 9am",
            "Exec chair (@home)",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn a_value_that_closes_a_parenthesis() {
        for a in [
            ") like (",
            ") or (1=1",
            "); drop table t --",
            ") union select 1",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            ") thanks",
            "(see above) or below",
            "a) red b) blue",
            ":) like it",
            ")",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn a_group_closed_after_its_value() {
        for a in ["1))/**/or/**/((1", "x) union select 1", "5); drop table t"] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "1) fast delivery 2) good quality",
            "a) red b) blue",
            "x) marks the spot",
            "2) or so",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn a_lone_backtick_identifier() {
        assert!(hit("`users`").is_some());
        for b in [
            "Ran `pip install` and it worked",
            "`Ctrl+Shift+T` works",
            "`a` and `b`",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn punctuation_probes() {
        for a in [
            "'-'",
            "\" & \"",
            "'^'",
            "!@#$%^&*",
            "((((()))))",
            "~~~~~~~~~",
            "-- ;; -- ;;",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "********",
            "......",
            "???!!",
            "----",
            ":-)",
            "\u{af}\\_(\u{30c4})_/\u{af}",
            "'a'",
            "''",
            "P@ss!w0rd#2024",
            "!!! great !!!",
            ":-) :-) :-)",
            ";) ;) ;) ;)",
            "<3 <3 <3",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn nosql_operators() {
        for a in [
            "[$ne]",
            "{\"$ne\": null}",
            "{\"username\": {\"$gt\": \"\"}}",
            "$where",
            "'$regex'",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "$5 off",
            "under $gt50",
            "price: $in stock",
            "costs $ne",
            "{\"price\": \"$15\"}",
            "$$$",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn select_top_and_a_leading_condition() {
        for a in ["select top 1 name from users", "and '5'x=y", "or 'a'<'b"] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "select top 10 gifts from our shop",
            "and 'The Cure' live",
            "select top 3",
            "or 'best offer' please",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn catalogs_named_with_their_schema() {
        for a in [
            "northwind..orders",
            "Northwind.dbo.Customers",
            "master..sysdatabases",
            "pg_toast",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in ["Northwind jacket", "north wind", "pg toast"] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn xor_between_operands() {
        for a in [
            "1 xor 1",
            "1'xor'1",
            "0'XOR(if(now()=sysdate(),sleep(15),0))XOR'Z",
            "dbms_lock.sleep(5)",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in ["XOR gate kit", "2 xor gates", "the xor-trick", "boxor 5"] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn dbms_specific_functions_and_variables() {
        for a in [
            "1 and load_extension('x')",
            "x' and is_srvrolemember('sysadmin')=1--",
            "1;select pg_ls_dir('.')",
            "match(t) against('x' in boolean mode)",
            "ctxsys.drithsx.sn(1,user)",
            "1; set @a=1",
            "set @q = 0x41",
            "' -",
            "'||",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "set @home office",
            "the current setting (low)",
            "in boolean logic mode",
            "'A",
            "'- a",
            "' 12",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn system_functions_by_their_family_prefix() {
        for a in [
            "1 and pg_read_binary_file('x') is null",
            "x' and utl_http.request('http://x')='a",
            "sys.fn_varbintohexstr(0x41)",
            "master.dbo.xp_regwrite('x')",
            "sqlite_source_id()",
            "dbms_xmlgen.getxml('select 1')",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "pg_13 rating",
            "json_data file",
            "sp_ guide (2nd ed.)",
            "lo_fi beats (vinyl)",
            "my sys.config notes",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn versioned_comments_and_self_comparisons() {
        for a in [
            "/*!50000*/",
            "1 /*!union*/ select 2",
            "x /*!*/ y",
            "/*!12345and*/",
            "a=a",
            "x <> x",
            "abc like abc",
            "' or pw=pw--",
            "1 and (id=id)",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "/*! jQuery v3.7.1 | (c) OpenJS Foundation */",
            "/*! normalize.css */",
            "so-so",
            "Bora Bora = paradise",
            "size=M, colour=M",
            "a=b",
            "x = x2",
            "2=2 for 1 deal on socks",
            "like like like",
            "50/50",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn lone_quotes_dangling_operators_and_cut_unions() {
        for a in [
            "'",
            "\"",
            "`",
            "')",
            "\"))",
            "x'%",
            "x'|",
            "x'^",
            "x' &",
            "1' union",
            "') union all",
            "1 union",
            "1;desc users",
            "x';grant all on t to u",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "12\"",
            "5'",
            "'a'",
            "O'",
            "5+",
            "4.5/5 -",
            "rock 'n' union",
            "the 'union' jack",
            "2 union jacks",
            "Great; call me",
            "nice; desc please",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn literal_tests_with_between_in_and_sounds_like() {
        for a in [
            "1 sounds like 1",
            "'a' not like 'b'",
            "1 not between 0 and 1",
            "' or 1 in (1)--",
            "' or 'a' in ('a')--",
            "1 order by 1 desc",
            "1 limit 1,1",
            "1 limit 0,1 into @a",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "sizes between 8 and 10",
            "5 in 1 charger",
            "2 in (pack)",
            "order by price desc",
            "limit 2,5 per customer",
            "he sounds like me",
            "between 1 and 2 days",
        ] {
            assert_eq!(hit(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn groups_for_blanks_keep_select_and_like_operators() {
        for a in [
            "(select(1)from(users))",
            "1 or(1)like(1)",
            "'or(1)like(1)-- -",
            "1 and 'a' ilike 'a'",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        // SQLite's `like(x,y)` call where an operand starts is still a call.
        let mut t = Vec::new();
        tokenize(b"and like(1,2)", None, &mut t);
        assert_eq!(t[1], T::Func(F::Sql));
    }

    #[test]
    fn shop_phrases_with_comparisons() {
        for b in [
            "Buy 2 or more = 10% off",
            "buy 3 or more = 15% off",
            "'Best' or 'worst'? You decide",
            "100 > 50",
            "5 < 10",
        ] {
            assert_eq!(hit(b), None, "blocked: {b}");
        }
        for a in [
            "1 or x = 1",
            "1 or id=id-- -",
            "1=1",
            "10 >= 5",
            "'a' ? 'b'",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
    }

    #[test]
    fn numbers_terminated_and_cut_catalogs_and_float_limits() {
        for a in [
            "1;--",
            "1)-- -",
            "7));#",
            "12 ; /*",
            "1 union table users",
            "1' union table `users`-- -",
            "sysibm.systables",
            "sysmaster:systables",
            "select * from pg_class",
            "performance_schema",
            "current_database()",
            "1.7976931348623157e+308",
            "2.2250738585072007e-308",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "1) -- unpack the box",
            "Step 1; -- done",
            "union table lamps, 2 pack",
            "Union table lamp",
            "all users welcome",
            "1.79 kg",
        ] {
            assert_eq!(hit(b), None, "blocked: {b}");
        }
    }

    #[test]
    fn questions_units_and_quoted_words_in_sentences() {
        for b in [
            "\"large\" or \"x-large\"?",
            "True or false?",
            "I'm 5'6\" and a size 10 or 12",
            "\"select\" vs \"premium\"",
            "Sleep (5 hours) was great on this mattress",
            "Waitfor it... amazing",
        ] {
            assert_eq!(hit(b), None, "blocked: {b}");
        }
        for a in [
            "' or true?",
            "'a' ? 'b'",
            "x' or 1=1 or 1",
            "\" select 'x' from users",
            "\" select 'a'",
            "sleep (5)",
            "benchmark(5000000,md5(1))",
            "1 waitfor time '12:00'",
            "' waitfor delay '0:0:5'--",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
    }

    #[test]
    fn computed_literals_after_a_number_and_qualified_backtick_names() {
        for a in [
            "1 and 1^0",
            "1 and 1&1",
            "1 or 2|1",
            "1 and !0",
            "1 and not 0-- -",
            "1 and `users`.`id`>0",
            "' union select `u`.`password` from `users` `u`-- -",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in ["2 or 3+", "1 and 1/2 inch", "1 or 2", "1 and not 2 days"] {
            assert_eq!(hit(b), None, "blocked: {b}");
        }
        let mut t = Vec::new();
        tokenize(b"`db`.`t`.x = 1", None, &mut t);
        assert_eq!(t, [T::Ident, T::Op(O::Cmp), T::Num]);
    }

    #[test]
    fn escaped_quotes_and_engine_only_functions() {
        for a in [
            "\\x27 or 1=1",
            "admin\\x27--",
            "\\u0027 union select 1",
            "x\\x3d\\x27",
            "\\x27",
            "find_in_set(",
            "1 and find_in_set('a',user())",
            "object_id('users')",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "C:\\xampp\\htdocs",
            "\\x41 is A",
            "path\\u00e9",
            "<a href=\\x22https://example.com\\x22>video</a>",
            "last insert id",
        ] {
            assert_eq!(hit(b), None, "blocked: {b}");
        }
    }

    #[test]
    fn procedure_and_package_names_by_their_family_prefix() {
        for a in [
            "xp_regwrite",
            "exec xp_servicecontrol 'start','schedule'",
            "sp_replwritetovarbin",
            "utl_file",
            "owa_util.cellsprint",
            "sysaux",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in [
            "_sp_id.1fff",
            "xp_",
            "sp_1",
            "mysp_values",
            "wasp_nest",
            "xp_2024",
        ] {
            assert_eq!(hit(b), None, "blocked: {b}");
        }
    }

    #[test]
    fn a_number_cut_off_by_a_comment() {
        for a in ["1--", "1 -- -", "1#", "10/*", "1;--", "2));#"] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        for b in ["5 -- 10", "1 -- great", "#1", "1", "1 - 2", "12 --> 13"] {
            assert_eq!(hit(b), None, "blocked: {b}");
        }
    }

    #[test]
    fn punctuation_written_as_escapes_is_read_unescaped() {
        for a in [
            "\\x22 or 1=1-- -",
            "x\\x22\\x20union\\x20select\\x201",
            "\\u0022 or \\u00221\\u0022=\\u00221",
        ] {
            assert!(hit(a).is_some(), "missed: {a}");
        }
        let mut o = Vec::new();
        assert!(unescape_c(b"a\\x27b\\x41\\x5c", &mut o));
        assert_eq!(o, b"a'b\\x41\\x5c");
        assert!(!unescape_c(b"c:\\xampp", &mut o));
    }
}
