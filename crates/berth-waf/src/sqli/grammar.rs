//! The SQL a value makes where an application puts it: a small recursive-descent reading of
//! the token classes ([`T`]) as the rest of a `WHERE` expression, in the context the value
//! lands in: right after the string it closed (`'...'`, `"..."`), or where a number or a
//! group is expected. A value is an injection when that reading is valid SQL (every token
//! where the grammar allows it; a value may stop anywhere, as a cut payload does) and has an
//! effect on the query: a condition joined with `or`/`and`, a comparison, a `union`, a
//! stacked statement, a clause (`order by`, `having`, `limit`, `into`), a subquery, a SQL
//! call, or a comment that cuts the rest of the query off.
//!
//! Prose fails the grammar early: after a closed string it goes on with a word (`O'Brien`,
//! `rock 'n' roll`), and where a number is expected it starts with words or puts words side by
//! side (`size 10 or 12`, `1-2 days`). Nothing here names a payload: only the grammar and the
//! effect decide, so a rewritten payload (other spacing, comments, case, operators) is read the
//! same way. This module knows tokens only; it never sees bytes.

use super::{F, K, O, T};

/// The reading ran into a token the grammar does not allow there.
struct Bad;

/// How far a parse got: the value ended (a fragment, valid so far) or the construct is done.
#[derive(PartialEq, Eq)]
enum Step {
    Done,
    End,
}

type R = Result<Step, Bad>;

/// Effects found while reading.
pub(crate) const LOGIC_LITERAL: u32 = 1;
pub(crate) const LOGIC_STRONG: u32 = 1 << 1;
pub(crate) const CMP: u32 = 1 << 2;
pub(crate) const ARITH: u32 = 1 << 3;
pub(crate) const UNION: u32 = 1 << 4;
pub(crate) const STACKED: u32 = 1 << 5;
pub(crate) const CLAUSE: u32 = 1 << 6;
pub(crate) const SUBQUERY: u32 = 1 << 7;
pub(crate) const SQL_CALL: u32 = 1 << 8;
pub(crate) const COMMENT: u32 = 1 << 9;
pub(crate) const CASE: u32 = 1 << 10;
/// The value ends inside a string it opened (the application's own quote closes it).
pub(crate) const OPEN_STRING: u32 = 1 << 11;
/// Statement keywords after `;` but nothing after them to judge.
pub(crate) const SEMI: u32 = 1 << 12;
/// `union` (or `union all`) where the value ends: the rest of a UNION cut off.
pub(crate) const CUT_UNION: u32 = 1 << 13;
/// An operator where the value ends (`x'|`, `x'%`): the start of a concatenation.
pub(crate) const DANGLING_OP: u32 = 1 << 14;
/// The value is a statement of its own, with what only SQL writes in it.
pub(crate) const STATEMENT: u32 = 1 << 15;
/// `procedure analyse`, `into outfile|dumpfile`: clauses only MySQL has.
pub(crate) const MYSQL_CLAUSE: u32 = 1 << 16;
/// A PostgreSQL cast (`::int`) or a JSON operator (`->>`, `@>`, `?|`, `#>`).
pub(crate) const CAST_OR_JSON: u32 = 1 << 17;

/// How much an operand says: a bare name (prose has those), a literal, or SQL machinery.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Weight {
    Name,
    Literal,
    Sql,
}

struct P<'a> {
    t: &'a [T],
    i: usize,
    fx: u32,
    /// The strongest operand or operator seen since the last logic operator.
    seg: Weight,
    /// Whether a logic operator is waiting for its right side to be weighed.
    in_logic: bool,
    /// The weight of the operand just read (with its prefixes and groups).
    last: Weight,
    /// The strongest weight inside the group being read.
    grp: Weight,
    /// The value closed a string: its reading starts after the string.
    breakout: bool,
    /// The weight of the value's first operand (where a number is expected).
    first: Weight,
    depth: u8,
}

impl<'a> P<'a> {
    fn peek(&self) -> Option<T> {
        self.t.get(self.i).copied()
    }

    fn at(&self, k: usize) -> Option<T> {
        self.t.get(self.i + k).copied()
    }

    fn weigh(&mut self, w: Weight) {
        self.seg = self.seg.max(w);
        self.last = self.last.max(w);
        self.grp = self.grp.max(w);
    }

    /// A group's or a call's inside, weighed by what it holds: `(4 pack)` says no more than
    /// its words, `(1=1)` or `(select 1)` is SQL.
    fn weighed_group(&mut self) -> R {
        let saved = self.grp;
        self.grp = Weight::Name;
        let r = self.group();
        let inner = self.grp;
        self.grp = saved.max(inner);
        self.last = inner;
        r
    }

    /// Closes the segment of a logic operator: its right side decides its weight.
    fn close_logic(&mut self) {
        if self.in_logic {
            self.fx |= match self.seg {
                Weight::Sql => LOGIC_STRONG,
                Weight::Literal => LOGIC_LITERAL,
                Weight::Name => 0,
            };
            self.in_logic = false;
        }
    }

    /// One operand with its prefix operators and postfix casts.
    fn operand(&mut self) -> R {
        if self.depth > 24 {
            return Err(Bad);
        }
        self.last = Weight::Name;
        // Unary operators: `-1`, `~x`, `!x`, `not x`; the operand weighs (`or not` is prose).
        while let Some(T::Op(O::Arith | O::Bang) | T::Kw(K::Not)) = self.peek() {
            self.i += 1;
        }
        let Some(x) = self.peek() else {
            return Ok(Step::End);
        };
        // `1='1' or-- -`: a comment where the operand goes cuts the query there.
        if x == T::Comment {
            self.fx |= COMMENT;
            self.i = self.t.len();
            return Ok(Step::End);
        }
        self.i += 1;
        match x {
            T::Str { closed } => {
                if !closed {
                    self.fx |= OPEN_STRING;
                }
                self.weigh(Weight::Literal);
            }
            T::Num | T::Kw(K::Null | K::Bool) => self.weigh(Weight::Literal),
            T::Var => self.weigh(Weight::Sql),
            T::Word | T::Ident => self.weigh(Weight::Name),
            // A type inside a call: `convert(int, x)`, `cast(x as char)`.
            T::Kw(K::Other) if self.depth > 0 => self.weigh(Weight::Name),
            T::Func(kind) => {
                let sql = kind != F::Other;
                if sql {
                    self.fx |= SQL_CALL;
                    self.weigh(Weight::Sql);
                }
                match self.peek() {
                    Some(T::LParen) => {
                        self.i += 1;
                        let r = self.weighed_group()?;
                        if sql {
                            self.last = Weight::Sql;
                        }
                        if r == Step::End {
                            return Ok(Step::End);
                        }
                    }
                    None => return Ok(Step::End),
                    // A comment between the name and `(` was skipped by the tokenizer.
                    _ => return Err(Bad),
                }
            }
            T::LParen => {
                if self.weighed_group()? == Step::End {
                    return Ok(Step::End);
                }
            }
            T::Kw(K::Case) => {
                // `case when x=1 then ...`; `case when it rains` compares nothing.
                self.weigh(Weight::Literal);
                let mut nest = 1;
                let mut parens = 0u32;
                while let Some(y) = self.peek() {
                    // A `)` the case did not open ends the group around it: no `end`.
                    if y == T::RParen && parens == 0 {
                        return Err(Bad);
                    }
                    self.i += 1;
                    match y {
                        T::LParen => parens += 1,
                        T::RParen => parens -= 1,
                        T::Op(O::Cmp) | T::Kw(K::Is | K::Like | K::In | K::Between) => {
                            self.fx |= CASE;
                            self.weigh(Weight::Sql);
                        }
                        T::Kw(K::Case) => nest += 1,
                        T::Kw(K::End) => {
                            nest -= 1;
                            if nest == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if nest > 0 {
                    return Ok(Step::End);
                }
            }
            _ => return Err(Bad),
        }
        // Postfix: `::int`, `::varchar(10)`. A name with a cast stays a name to the judge
        // (`std::string` is C++ in a review); a literal or a call with one is SQL.
        let base = self.last;
        while self.peek() == Some(T::Op(O::Cast)) {
            self.i += 1;
            self.fx |= CAST_OR_JSON;
            match self.peek() {
                Some(T::Word | T::Kw(K::Other)) => {
                    self.i += 1;
                    if base > Weight::Name {
                        self.weigh(Weight::Sql);
                    }
                }
                Some(T::Func(_)) => {
                    self.i += 1;
                    if self.peek() == Some(T::LParen) {
                        self.i += 1;
                        if self.group()? == Step::End {
                            return Ok(Step::End);
                        }
                    }
                }
                None => return Ok(Step::End),
                _ => return Err(Bad),
            }
        }
        Ok(Step::Done)
    }

    /// The inside of a group or of a call's arguments, after its `(`, through its `)`: a
    /// subquery, or a list of expressions (a call's arguments may hold SQL's keyword forms:
    /// `cast(x as int)`, `substring(x from 1 for 1)`, `convert(x using utf8)`; those are
    /// skipped, not read).
    fn group(&mut self) -> R {
        self.depth += 1;
        let r = self.group_inner();
        self.depth -= 1;
        r
    }

    fn group_inner(&mut self) -> R {
        if self.peek() == Some(T::Kw(K::Select)) {
            self.fx |= SUBQUERY;
            self.i += 1;
            if self.select_body()? == Step::End {
                return Ok(Step::End);
            }
            // `(select 1 union select 2)`
            while self.peek() == Some(T::Kw(K::Union)) {
                self.i += 1;
                if self.peek() == Some(T::Kw(K::All)) {
                    self.i += 1;
                }
                if self.peek() != Some(T::Kw(K::Select)) {
                    return if self.peek().is_none() {
                        Ok(Step::End)
                    } else {
                        Err(Bad)
                    };
                }
                self.i += 1;
                if self.select_body()? == Step::End {
                    return Ok(Step::End);
                }
            }
            return match self.peek() {
                Some(T::RParen) => {
                    self.i += 1;
                    Ok(Step::Done)
                }
                None => Ok(Step::End),
                _ => Err(Bad),
            };
        }
        if self.peek() == Some(T::RParen) {
            self.i += 1;
            return Ok(Step::Done);
        }
        if self.peek() == Some(T::Op(O::Star)) && self.at(1) == Some(T::RParen) {
            self.i += 2;
            return Ok(Step::Done);
        }
        if self.peek() == Some(T::Kw(K::All)) {
            self.i += 1;
        }
        loop {
            // Inside a group, what the grammar does not know is skipped, not judged: the
            // group's own tokens decide little, its place in the value decides.
            match self.expr() {
                Ok(Step::End) => return Ok(Step::End),
                Ok(Step::Done) => {}
                Err(Bad) => {}
            }
            match self.peek() {
                Some(T::Comma) => self.i += 1,
                Some(T::RParen) => {
                    self.i += 1;
                    return Ok(Step::Done);
                }
                None => return Ok(Step::End),
                // `cast(x as int)`, `convert(x using utf8)`, `substring(x from 1 for 1)`,
                // `extract(year from d)`, `trim(leading 'x' from y)`, `x order by y`:
                // keyword forms inside a call. Skip to the group's end.
                Some(_) => {
                    let mut nest = 0u32;
                    while let Some(y) = self.peek() {
                        self.i += 1;
                        match y {
                            T::LParen => nest += 1,
                            T::RParen if nest == 0 => return Ok(Step::Done),
                            T::RParen => nest -= 1,
                            T::Kw(K::Select) => {
                                self.fx |= SUBQUERY;
                                self.weigh(Weight::Sql);
                            }
                            _ => {}
                        }
                    }
                    return Ok(Step::End);
                }
            }
        }
    }

    /// An expression: operands joined by binary operators.
    fn expr(&mut self) -> R {
        if self.operand()? == Step::End {
            return Ok(Step::End);
        }
        loop {
            match self.binary()? {
                Some(Step::End) => return Ok(Step::End),
                Some(Step::Done) => {}
                None => return Ok(Step::Done),
            }
        }
    }

    /// A binary operator and its right side, if the next token is one.
    fn binary(&mut self) -> Result<Option<Step>, Bad> {
        let Some(x) = self.peek() else {
            return Ok(None);
        };
        let step = match x {
            T::Logic => {
                self.close_logic();
                self.i += 1;
                self.in_logic = true;
                self.seg = Weight::Name;
                self.operand()?
            }
            T::Op(O::Cmp | O::Json) => {
                // Names compared with names are prose too (`price < $50 and quality >
                // expected`); a literal compared with a literal is a tautology.
                self.i += 1;
                self.fx |= CMP;
                if x == T::Op(O::Json) {
                    self.fx |= CAST_OR_JSON;
                }
                let left = self.last;
                let r = self.operand()?;
                let right = self.last;
                self.weigh(match (left, right) {
                    (Weight::Literal, Weight::Literal) => Weight::Sql,
                    _ => left.max(right),
                });
                r
            }
            T::Op(O::Arith | O::Star) => {
                self.i += 1;
                self.fx |= ARITH;
                if self.peek().is_none() {
                    self.fx |= DANGLING_OP;
                }
                self.operand()?
            }
            T::Kw(K::Cmp) => {
                // `sounds like`, `mod`, `div`, `collate x`, `escape '!'`.
                self.i += 1;
                if self.peek() == Some(T::Kw(K::Like)) {
                    self.i += 1;
                    self.fx |= CMP;
                    self.weigh(Weight::Sql);
                }
                self.operand()?
            }
            T::Kw(K::Like) => {
                self.i += 1;
                self.fx |= CMP;
                self.weigh(Weight::Sql);
                self.operand()?
            }
            T::Kw(K::Is) => {
                self.i += 1;
                if self.peek() == Some(T::Kw(K::Not)) {
                    self.i += 1;
                }
                self.fx |= CMP;
                self.weigh(Weight::Sql);
                match self.peek() {
                    Some(T::Kw(K::Null | K::Bool)) => {
                        self.i += 1;
                        Step::Done
                    }
                    // `is distinct from x`
                    Some(T::Kw(K::All)) if self.at(1) == Some(T::Kw(K::From)) => {
                        self.i += 2;
                        self.operand()?
                    }
                    None => Step::End,
                    _ => return Err(Bad),
                }
            }
            T::Kw(K::Not) => {
                // `not like`, `not in`, `not between`, `not regexp`.
                if !matches!(self.at(1), Some(T::Kw(K::Like | K::In | K::Between))) {
                    return if self.at(1).is_none() {
                        self.i += 1;
                        Ok(Some(Step::End))
                    } else {
                        Err(Bad)
                    };
                }
                self.i += 1;
                return self.binary();
            }
            T::Kw(K::In) => {
                self.i += 1;
                self.fx |= CMP;
                self.weigh(Weight::Sql);
                match self.peek() {
                    Some(T::LParen) => {
                        self.i += 1;
                        self.group()?
                    }
                    None => Step::End,
                    _ => return Err(Bad),
                }
            }
            T::Kw(K::Between) => {
                self.i += 1;
                self.fx |= CMP;
                self.weigh(Weight::Sql);
                if self.operand()? == Step::End {
                    return Ok(Some(Step::End));
                }
                match self.peek() {
                    Some(T::Logic) => {
                        self.i += 1;
                        self.operand()?
                    }
                    None => Step::End,
                    _ => return Err(Bad),
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(step))
    }

    /// A select list and what may follow it, after `select`, up to a `)` that closes an
    /// enclosing group (not consumed), a `;`, or the end.
    fn select_body(&mut self) -> R {
        self.weigh(Weight::Sql);
        // `select distinct`, `select top 1`
        if self.peek() == Some(T::Kw(K::All)) {
            self.i += 1;
        }
        if self.peek() == Some(T::Kw(K::Other)) && self.at(1) == Some(T::Num) {
            self.i += 2;
        }
        // The select list must read as one: `select your size` is prose.
        match (self.peek(), self.at(1)) {
            (None, _) => return Ok(Step::End),
            (Some(T::Word), Some(T::Word | T::Num | T::Str { .. })) => return Err(Bad),
            (
                Some(
                    T::Num
                    | T::Str { .. }
                    | T::Kw(K::Null | K::Bool | K::Case | K::Not)
                    | T::Var
                    | T::Ident
                    | T::Word
                    | T::Func(_)
                    | T::LParen
                    | T::Op(O::Star | O::Arith),
                ),
                _,
            ) => {}
            _ => return Err(Bad),
        }
        let mut nest = 0u32;
        while let Some(y) = self.peek() {
            match y {
                T::RParen if nest == 0 => return Ok(Step::Done),
                T::Semi | T::Comment if nest == 0 => return Ok(Step::Done),
                T::RParen => nest -= 1,
                T::LParen => nest += 1,
                T::Kw(K::Select) => self.fx |= SUBQUERY,
                T::Func(F::Sql | F::Strong) => self.fx |= SQL_CALL,
                _ => {}
            }
            self.i += 1;
        }
        Ok(Step::End)
    }

    /// A statement after `;`.
    fn statement(&mut self, semi: bool) -> R {
        let Some(x) = self.peek() else {
            return Ok(Step::End);
        };
        self.i += 1;
        let next = self.peek();
        let ok = match x {
            // Without `;`, quoted prose names buttons and editions (`the "select all" box`):
            // the select list must start with what only SQL selects.
            T::Kw(K::Select)
                if !semi
                    && !matches!(
                        next,
                        Some(
                            T::Num
                                | T::Func(F::Sql | F::Strong)
                                | T::Var
                                | T::Op(O::Star)
                                | T::Kw(K::Null)
                                | T::LParen
                        )
                    ) =>
            {
                return Err(Bad)
            }
            T::Kw(K::Select) => {
                let r = self.select_body()?;
                self.fx |= STACKED;
                return Ok(r);
            }
            T::Kw(K::Drop | K::Create | K::Alter | K::Truncate) if semi => {
                matches!(next, Some(T::Kw(K::Table | K::Other) | T::Word | T::Ident))
            }
            T::Kw(K::Drop | K::Create | K::Alter | K::Truncate) => {
                matches!(next, Some(T::Kw(K::Table)))
            }
            T::Kw(K::Insert) => matches!(next, Some(T::Kw(K::Into))),
            T::Kw(K::Delete) => matches!(next, Some(T::Kw(K::From))),
            T::Kw(K::Update) => {
                matches!(next, Some(T::Word | T::Ident)) && self.at(1) == Some(T::Kw(K::Set))
            }
            T::Kw(K::Exec) => matches!(next, Some(T::Word | T::Var | T::LParen | T::Func(_))),
            T::Func(_) if semi => {
                // `exec(@q)`, `sleep(5)` as a statement: the call itself.
                self.i -= 1;
                let r = self.operand()?;
                if self.fx & SQL_CALL != 0 {
                    self.fx |= STACKED;
                }
                return Ok(r);
            }
            T::Kw(K::Declare) => matches!(next, Some(T::Var)),
            T::Kw(K::Waitfor) => matches!(next, Some(T::Kw(K::Delay) | T::Word)),
            T::Kw(K::Set) => matches!(next, Some(T::Var)),
            T::Kw(K::Other) if semi && matches!(next, None | Some(T::Comment | T::Semi)) => true,
            // `1;desc users`, `1;load data ...`, `';grant all ...`: after a number or a closed
            // string only (`great; call me` is a sentence).
            T::Kw(K::Other | K::Sort) if semi && (self.breakout || self.first > Weight::Name) => {
                matches!(next, Some(T::Word | T::Kw(K::All | K::Table)))
            }
            _ => return Err(Bad),
        };
        if !ok {
            return Err(Bad);
        }
        self.fx |= STACKED;
        // The rest of the statement is not read: the keyword pair decided.
        self.i = self.t.len();
        Ok(Step::End)
    }

    /// What may follow a complete operand at the top level, through the end of the value.
    fn tail(&mut self) -> Result<(), Bad> {
        loop {
            match self.binary()? {
                Some(Step::End) => return Ok(()),
                Some(Step::Done) => continue,
                None => {}
            }
            self.close_logic();
            let Some(x) = self.peek() else {
                return Ok(());
            };
            self.i += 1;
            match x {
                T::Comment => {
                    self.fx |= COMMENT;
                    return Ok(());
                }
                // Closing a group the application opened.
                T::RParen => {}
                // The next item of a list the application opened (`VALUES ('x', 1, 2)`).
                T::Comma => {
                    if self.expr()? == Step::End {
                        return Ok(());
                    }
                }
                T::Semi => {
                    self.fx |= SEMI;
                    match self.peek() {
                        None | Some(T::Comment) => {
                            self.fx |= COMMENT;
                            return Ok(());
                        }
                        _ => {
                            if self.statement(true)? == Step::End {
                                return Ok(());
                            }
                        }
                    }
                }
                // MSSQL runs statements written one after the other without `;`:
                // `' waitfor delay '0:0:5'--`, `' exec xp_cmdshell 'x'--`.
                T::Kw(
                    K::Select
                    | K::Insert
                    | K::Update
                    | K::Delete
                    | K::Drop
                    | K::Create
                    | K::Alter
                    | K::Truncate
                    | K::Exec
                    | K::Declare
                    | K::Waitfor,
                ) if self.breakout => {
                    self.i -= 1;
                    if self.statement(false)? == Step::End {
                        return Ok(());
                    }
                }
                T::Kw(K::Union | K::Except) => {
                    if matches!(self.peek(), Some(T::Kw(K::All))) {
                        self.i += 1;
                    }
                    let paren = self.peek() == Some(T::LParen);
                    if paren {
                        self.i += 1;
                    }
                    match self.peek() {
                        Some(T::Kw(K::Select)) => {
                            self.i += 1;
                            self.fx |= UNION;
                            if self.select_body()? == Step::End {
                                return Ok(());
                            }
                        }
                        // `union values (1)`, `union select(1)` read as calls.
                        Some(T::Kw(K::Values)) if !paren && self.at(1) == Some(T::LParen) => {
                            self.fx |= UNION;
                            self.i += 2;
                            if self.group()? == Step::End {
                                return Ok(());
                            }
                        }
                        Some(T::Func(F::Sql)) if !paren => {
                            self.fx |= UNION;
                            if self.operand()? == Step::End {
                                return Ok(());
                            }
                        }
                        None | Some(T::Comment) if !paren => {
                            self.fx |= CUT_UNION;
                            return Ok(());
                        }
                        None => return Ok(()),
                        _ => return Err(Bad),
                    }
                }
                T::Kw(K::Order | K::Group) => {
                    if self.peek() != Some(T::Kw(K::By)) {
                        return if self.peek().is_none() {
                            Ok(())
                        } else {
                            Err(Bad)
                        };
                    }
                    self.i += 1;
                    self.fx |= CLAUSE;
                    loop {
                        if self.expr()? == Step::End {
                            return Ok(());
                        }
                        if self.peek() == Some(T::Kw(K::Sort)) {
                            self.i += 1;
                        }
                        if self.peek() != Some(T::Comma) {
                            break;
                        }
                        self.i += 1;
                    }
                }
                T::Kw(K::Having) => {
                    self.fx |= CLAUSE;
                    if self.expr()? == Step::End {
                        return Ok(());
                    }
                }
                T::Kw(K::Limit) => {
                    self.fx |= CLAUSE;
                    match self.peek() {
                        Some(T::Num) => self.i += 1,
                        None => return Ok(()),
                        _ => return Err(Bad),
                    }
                    if matches!(self.peek(), Some(T::Comma | T::Kw(K::Limit))) {
                        self.i += 1;
                        match self.peek() {
                            Some(T::Num) => self.i += 1,
                            None => return Ok(()),
                            _ => return Err(Bad),
                        }
                    }
                }
                T::Kw(K::Procedure) => {
                    // `procedure analyse(`; not `procedure manual`.
                    self.fx |= CLAUSE;
                    if matches!(self.peek(), Some(T::Kw(K::Procedure) | T::Func(_))) {
                        self.fx |= MYSQL_CLAUSE;
                    }
                    if matches!(self.peek(), Some(T::Kw(K::Procedure))) {
                        self.i += 1;
                    }
                    if self.operand()? == Step::End {
                        return Ok(());
                    }
                }
                T::Kw(K::Into) => {
                    self.fx |= CLAUSE;
                    match self.peek() {
                        Some(T::Kw(K::Outfile)) => {
                            self.fx |= MYSQL_CLAUSE;
                            self.i += 1;
                            if self.operand()? == Step::End {
                                return Ok(());
                            }
                        }
                        Some(T::Var) => self.i += 1,
                        None => return Ok(()),
                        _ => return Err(Bad),
                    }
                }
                _ => return Err(Bad),
            }
        }
    }
}

/// A keyword that begins a statement of its own.
pub(super) fn statement_start(x: T) -> bool {
    matches!(
        x,
        T::Kw(
            K::Select
                | K::Insert
                | K::Update
                | K::Delete
                | K::Drop
                | K::Create
                | K::Alter
                | K::Truncate
                | K::Exec
                | K::Declare
                | K::Waitfor
        )
    )
}

/// A value that is a statement (`DELETE FROM users;--`, `SELECT * FROM t`, `exec (@x`,
/// `declare @b`): prose starts sentences with the same verbs (`Delete from cart`, `select all
/// that apply`), so the statement must show what only SQL writes: a `;` or a comment after
/// it, a variable, a backtick name, a SQL call, `*` as a select list, a value list, a
/// comparison under `where`/`having`.
fn statement_value(t: &[T]) -> bool {
    let first = t[0];
    let next = t.get(1).copied();
    let head = match first {
        T::Kw(K::Select) => match next {
            Some(T::Word) => !matches!(t.get(2), Some(T::Word | T::Num | T::Str { .. })),
            Some(x) => matches!(
                x,
                T::Num
                    | T::Str { .. }
                    | T::Kw(K::Null | K::All | K::Other | K::Case)
                    | T::Var
                    | T::Ident
                    | T::Func(_)
                    | T::LParen
                    | T::Op(O::Star)
            ),
            None => false,
        },
        T::Kw(K::Insert) => next == Some(T::Kw(K::Into)),
        T::Kw(K::Update) => {
            matches!(next, Some(T::Word | T::Ident)) && t.get(2) == Some(&T::Kw(K::Set))
        }
        T::Kw(K::Delete) => next == Some(T::Kw(K::From)),
        T::Kw(K::Drop | K::Create | K::Alter | K::Truncate) => {
            matches!(next, Some(T::Kw(K::Table | K::Other) | T::Word | T::Ident))
        }
        // `exec xp_cmdshell 'dir'`, `exec sp_x @a`, `exec (@q)`; not `Exec chair (@home)`.
        T::Kw(K::Exec) => match next {
            Some(T::Var | T::LParen | T::Func(F::Strong)) => true,
            Some(T::Word) => matches!(
                t.get(2),
                None | Some(T::Str { .. } | T::Var | T::Comma | T::Semi | T::Comment)
            ),
            _ => false,
        },
        T::Kw(K::Declare) => matches!(next, Some(T::Var)),
        T::Kw(K::Waitfor) => matches!(next, Some(T::Kw(K::Delay) | T::Word)),
        _ => false,
    };
    if !head {
        return false;
    }
    let mut where_seen = false;
    for (k, &x) in t.iter().enumerate().skip(1) {
        match x {
            // `;` ends a statement: a comment or another statement follows it (`drop
            // shipping; union jack flag` goes on as a sentence; prose may end with `;`).
            T::Semi
                if t.get(k + 1)
                    .is_some_and(|&y| y == T::Comment || statement_start(y)) =>
            {
                return true
            }
            T::Var | T::Ident | T::Func(F::Sql | F::Strong) => return true,
            T::Comment if k + 1 == t.len() => return true,
            T::Op(O::Star) if k == 1 && first == T::Kw(K::Select) => return true,
            T::Kw(K::Values) if t.get(k + 1) == Some(&T::LParen) => return true,
            T::Kw(K::Where | K::Having) => where_seen = true,
            T::Op(O::Cmp) if where_seen => return true,
            _ => {}
        }
    }
    false
}

/// Inline comments (`/**/`, `/*!...*/`, `#x\n`) separate tokens like blanks: dropped, except
/// one that ends the value. Returns the tokens kept and whether any comment was dropped.
fn without_inline_comments(t: &[T], buf: &mut [T; super::MAX_TOKENS]) -> usize {
    // (A comment between two tokens is what the caller checks before calling this.)
    let mut m = 0;
    for (k, &x) in t.iter().enumerate() {
        if x == T::Comment && k + 1 < t.len() {
            continue;
        }
        buf[m] = x;
        m += 1;
    }
    m
}

/// Reads `t` (tokens of a value tokenized after the quote it closed, when `breakout`) as the
/// rest of a query; returns the effects when the reading is valid SQL, `None` when it is not.
pub(crate) fn effects(t: &[T], breakout: bool) -> Option<(u32, bool)> {
    let mut buf = [T::Comma; super::MAX_TOKENS];
    let inline_comment = t.len() > 1 && t[..t.len() - 1].contains(&T::Comment);
    let t = if inline_comment {
        let m = without_inline_comments(t, &mut buf);
        &buf[..m]
    } else {
        t
    };
    let mut p = P {
        t,
        i: 0,
        fx: 0,
        seg: Weight::Name,
        in_logic: false,
        last: Weight::Name,
        grp: Weight::Name,
        breakout,
        first: Weight::Name,
        depth: 0,
    };
    let mut lead = false;
    if breakout {
        // The string the value closed is the operand; the rest continues the expression.
        p.i = 1;
    } else if t.first() == Some(&T::RParen) {
        // The value closes a group the application opened: the same as a closed string.
    } else if matches!(
        t.first(),
        Some(
            T::Logic
                | T::Op(O::Cmp | O::Json)
                | T::Kw(
                    K::In
                        | K::Between
                        | K::Like
                        | K::Is
                        | K::Not
                        | K::Union
                        | K::Except
                        | K::Having
                        | K::Procedure
                )
                | T::Semi
        )
    ) {
        // The value continues an expression the application wrote (`... where a = 1 <value>`,
        // a filter or sort parameter appended as it is): it starts with the operator.
        lead = true;
    } else if t.first().is_some_and(|&x| statement_start(x)) {
        // `SELECT/**/password/**/FROM/**/t`: comments as blanks are SQL's alone.
        return (statement_value(t) || inline_comment && t.len() >= 3)
            .then_some((STATEMENT, false));
    } else {
        // Where a number (or any operand: `name='x' or 1=1` as a filter) is expected.
        match p.operand() {
            Ok(Step::Done) => p.first = p.last,
            // `(convert(int,(select ...` cut off: what it holds so far decides.
            Ok(Step::End) => {
                p.close_logic();
                return Some((p.fx, p.last > Weight::Name));
            }
            Err(Bad) => return None,
        }
    }
    let complete = p.tail().is_ok();
    p.close_logic();
    if !complete {
        // A valid beginning followed by what SQL does not allow (`' or 1=1 and more text`,
        // a cut or padded payload): only what the beginning proves on its own counts, a
        // condition that compares literals or calls SQL, a union, a statement, a subquery.
        // Prose starts with a word: after one, only a complete reading counts.
        let proven = p.fx & (LOGIC_STRONG | UNION | STACKED | SUBQUERY | CASE);
        let started = breakout || lead || p.first > Weight::Name;
        return (proven != 0 && started).then_some((proven, p.first > Weight::Name));
    }
    Some((p.fx, p.first > Weight::Name))
}

/// The verdict on a value's reading in one context: the rule id when it is an injection.
/// `symbolic_logic`: the value writes `&&` or `||`, which text does not (`1 && 1`).
pub(crate) fn judge(t: &[T], breakout: bool, symbolic_logic: bool) -> Option<&'static str> {
    let (fx, first_literal) = effects(t, breakout)?;
    if fx & UNION != 0 {
        return Some("sqli-union");
    }
    if fx & STACKED != 0 {
        return Some("sqli-stacked");
    }
    if fx & STATEMENT != 0 {
        return Some("sqli-statement");
    }
    if breakout {
        // After a closed string, any condition, comparison, clause, call, subquery or comment
        // is SQL written by the client. Arithmetic alone counts when it re-opens a string for
        // the application's own quote (`' + '`, `'||'`) or ends the value (`x'|`, `x'%`), and
        // so does a `union` cut off at the value's end.
        let strong = LOGIC_LITERAL
            | LOGIC_STRONG
            | CMP
            | CLAUSE
            | SUBQUERY
            | SQL_CALL
            | COMMENT
            | CASE
            | SEMI
            | CUT_UNION
            | DANGLING_OP;
        if fx & strong != 0 || fx & ARITH != 0 && fx & OPEN_STRING != 0 {
            return Some("sqli-breakout");
        }
        return None;
    }
    // Where a number is expected, prose can read as names joined by `and`/`or` (`null and
    // void`) or literals (`10 or 12`): a condition must compare, call or query something, or
    // cut the query off with a comment; a `union` cut off at the end counts after a number,
    // and so do literals joined with `&&`/`||`.
    if fx & (LOGIC_STRONG | SUBQUERY | CASE) != 0
        || fx & LOGIC_LITERAL != 0 && fx & COMMENT != 0
        || fx & CLAUSE != 0 && fx & (COMMENT | SQL_CALL | SUBQUERY) != 0
        || fx & CUT_UNION != 0 && first_literal
        || fx & LOGIC_LITERAL != 0 && first_literal && symbolic_logic
        || fx & MYSQL_CLAUSE != 0
        || fx & CAST_OR_JSON != 0 && first_literal
    {
        return Some("sqli-tautology");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge_value(s: &str) -> Option<&'static str> {
        let l = s.to_ascii_lowercase();
        let mut t = Vec::new();
        super::super::tokenize(l.as_bytes(), None, &mut t);
        if let Some(r) = judge(&t, false, l.contains("&&") || l.contains("||")) {
            return Some(r);
        }
        for q in [b'\'', b'"'] {
            super::super::tokenize(l.as_bytes(), Some(q), &mut t);
            if t.first() == Some(&T::Str { closed: true }) {
                if let Some(r) = judge(&t, true, false) {
                    return Some(r);
                }
            }
        }
        None
    }

    #[test]
    fn a_closed_string_followed_by_sql_is_read_as_sql() {
        for a in [
            "x' or (select 1)--",
            "x' || (select user from dual) || '",
            "x' and ascii(substring(user,1,1))>64 and 'a'='a",
            "x') or ('a'='a",
            "x\" rlike (select (case when (1=1) then 1 else 0 end)) and \"a\"=\"a",
            "x' + (select top 1 name from t) + '",
            "x' union values (1)--",
            "x' div 0 or 'a",
            "x' is not null or 'a'='b",
            "x' not between 1 and 2--",
            "x' in (select 1)--",
            "x' order by 3, 2--",
            "x' having 1=1--",
            "x' limit 1, 1--",
            "x' into outfile '/tmp/a'--",
            "x' or 1::int=1--",
        ] {
            assert!(judge_value(a).is_some(), "missed: {a}");
        }
    }

    #[test]
    fn the_tokenizer_reads_what_databases_read() {
        for a in [
            "x' or x'41'=x'41'--",
            "x' or n'a'=n'a'--",
            "x' or 'a' ~* 'a",
            "x' or 'a' !~ 'b",
            "1 and @a:=1 or 1=1",
            "x'/*!or*/1=1--",
            "1#x\nor#x\n1=1",
            "x' waitfor delay '0:0:5'--",
            "x' exec master..xp_cmdshell 'dir'--",
            "1 or(1)=(1)",
        ] {
            assert!(judge_value(a).is_some(), "missed: {a}");
        }
        for b in [
            "x'mas tree",
            "n'djamena",
            "it's ~5 items",
            "e'tude in c",
            "5 #1 hits",
            "x' select your size",
            "the \"select all\" box",
        ] {
            assert_eq!(judge_value(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn prose_after_an_apostrophe_is_not_sql() {
        for b in [
            "O'Brien or Smith",
            "rock 'n' roll or jazz",
            "Parents' and kids' toys",
            "5' 11\" tall",
            "6' or 7' ladder",
            "it's 'fine' - really",
            "Guns N' Roses and more",
            "the Smiths' and Joneses' house",
            "I'm 6'2\" and it fits",
            "id'is notes",
            "5' or 6' tall",
            "rock' and roll band",
        ] {
            assert_eq!(judge_value(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn a_value_that_continues_an_expression_or_is_a_statement() {
        for a in [
            "or '{\"b\":2}'::jsonb <@ '{\"a\":1}'::jsonb",
            "and (select 1)=1",
            "in (select * from users",
            "except values (1,2)",
            ";insert into t (a) values",
            "procedure analyse (",
            "delete from users;--",
            "drop sampletable;--",
            "select/**/password/**/from/**/members",
            "select * from movies",
            "declare @b",
            "(convert(int,(select char(113)+char(118)",
            "'[1,2,3]'::json ->> 2='3'",
            "case when 1=1 then 1 else 0 end",
        ] {
            assert!(judge_value(a).is_some(), "missed: {a}");
        }
        for b in [
            "or best offer",
            "and 7 oranges",
            "in (stock) now",
            "delete from cart",
            "select all that apply",
            "drop shipping; union jack flag",
            "drop-shipped from the uk; arrived in 3 days",
            "delete from wishlist;",
            "or not",
            "procedure manual",
            "update your address",
            "case when it rains",
            "2+2=4",
            "std::string and std::vector",
            "fe80::1",
            "order by date",
        ] {
            assert_eq!(judge_value(b), None, "false positive: {b}");
        }
    }

    #[test]
    fn where_a_number_is_expected_a_condition_must_do_something() {
        for a in [
            "1 and (select 1 from dual)=1",
            "1 or exists(select 1)",
            "1) or (select 1)=1 and (1",
            "-1 or 1 between 0 and 2",
            "1 or 1--",
            "1 order by 1 desc, sleep(1)--",
            "1 union (select 1)",
            "1e0union select 1",
            ".1union select 1",
            "1;select 1",
            "1 && 1",
            "1 || 'a'",
            "1 and (select 1) and more text",
            "x' or 1=1 and then some words",
        ] {
            assert!(judge_value(a).is_some(), "missed: {a}");
        }
        for b in [
            "10 or 12",
            "null and void",
            "1-2 days",
            "2-3 business days or less",
            "Price < $50 and quality > expected",
            "100% cotton or wool",
            "1 in 10 chance",
            "Size 12 and up",
            "true or false quiz",
            "1st or 2nd",
            "5 (pack) or 10 (pack)",
            "Salt && Pepper",
            "1 or 2",
            "Tom and char(ming) = 5 stars",
            "2 or 3 pack = 10 socks",
        ] {
            assert_eq!(judge_value(b), None, "false positive: {b}");
        }
    }
}
