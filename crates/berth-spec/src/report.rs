//! Problems found while reading a spec, and how [`Diagnostics`] are rendered: a
//! `FILE:LINE:COL: error: message` line, then the offending source line with its span underlined
//! and the hint. The rendering is plain ASCII with no colour, so it is stable in tests and logs.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use crate::{Diagnostic, Diagnostics};

/// One problem, located by byte span in the source text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub span: Range<usize>,
    pub message: String,
    pub hint: Option<String>,
}

/// The problems collected so far.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    items: Vec<Problem>,
}

impl Problems {
    /// Records a problem at `span`.
    pub fn push(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        self.items.push(Problem {
            span,
            message: message.into(),
            hint,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Turns the problems into diagnostics for `file`, in the order they appear in `source`.
    pub fn into_diagnostics(self, file: &Path, source: &str) -> Diagnostics {
        let mut problems = self.items;
        problems.sort_by_key(|problem| problem.span.start);
        let mut items = Vec::with_capacity(problems.len());
        let mut widths = Vec::with_capacity(problems.len());
        for problem in problems {
            let location = Location::of(source, problem.span.start);
            let line_end = location.line_start + line_at(source, location.line_start).len();
            let end = problem.span.end.clamp(location.offset, line_end);
            let width = source
                .get(location.offset..end)
                .map_or(0, |text| text.chars().count());
            items.push(Diagnostic {
                file: file.to_path_buf(),
                line: location.line,
                col: location.col,
                message: problem.message,
                hint: problem.hint,
            });
            widths.push(width.max(1));
        }
        Diagnostics {
            items,
            source: Some(source.to_string()),
            widths,
        }
    }
}

/// A byte offset resolved to a 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Location {
    offset: usize,
    line: usize,
    col: usize,
    line_start: usize,
}

impl Location {
    fn of(source: &str, offset: usize) -> Location {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        // A problem at the very end of a file that ends with a newline belongs to the last line.
        if offset == source.len() && offset > 0 && source.ends_with('\n') {
            offset -= 1;
            if source[..offset].ends_with('\r') {
                offset -= 1;
            }
        }
        let before = &source[..offset];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Location {
            offset,
            line: before.matches('\n').count() + 1,
            col: source[line_start..offset].chars().count() + 1,
            line_start,
        }
    }
}

/// The text of the line starting at byte `line_start`, without its line ending.
fn line_at(source: &str, line_start: usize) -> &str {
    let rest = &source[line_start..];
    let line = rest.split('\n').next().unwrap_or("");
    line.strip_suffix('\r').unwrap_or(line)
}

/// The text of 1-based line `line`, if the source has it.
fn nth_line(source: &str, line: usize) -> Option<&str> {
    let line = source.split('\n').nth(line.checked_sub(1)?)?;
    Some(line.strip_suffix('\r').unwrap_or(line))
}

/// Tabs are shown as four spaces so that the underline lines up.
fn expand_tabs(text: &str) -> String {
    text.replace('\t', "    ")
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, item) in self.items.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{item}")?;
            let line_number = item.line.to_string();
            let gutter = " ".repeat(line_number.len());
            let snippet_line = self
                .source
                .as_deref()
                .and_then(|source| nth_line(source, item.line));
            if let Some(text) = snippet_line {
                let before: String = text.chars().take(item.col.saturating_sub(1)).collect();
                let width = self.widths.get(index).copied().unwrap_or(1).max(1);
                writeln!(f, "{gutter} |")?;
                writeln!(f, "{line_number} | {}", expand_tabs(text).trim_end())?;
                writeln!(
                    f,
                    "{gutter} | {}{}",
                    " ".repeat(expand_tabs(&before).chars().count()),
                    "^".repeat(width)
                )?;
            }
            if let Some(hint) = &item.hint {
                writeln!(f, "{gutter} = hint: {hint}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}
impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_in_characters() {
        let source = "a = 1\nbé = \"x\"\n";
        assert_eq!(Location::of(source, 0).line, 1);
        let location = Location::of(source, source.find('=').unwrap());
        assert_eq!((location.line, location.col), (1, 3));
        let location = Location::of(source, source.find('"').unwrap());
        assert_eq!((location.line, location.col), (2, 6));
        let end = Location::of(source, source.len());
        assert_eq!(end.line, 2);
    }

    #[test]
    fn renders_header_snippet_and_hint() {
        let source = "[service.web]\nreplica = 2\n";
        let mut problems = Problems::default();
        let start = source.find("replica").unwrap();
        problems.push(
            start..start + 7,
            "unknown key `replica`",
            Some("did you mean `replicas`?".into()),
        );
        let diagnostics = problems.into_diagnostics(Path::new("berth.toml"), source);
        assert_eq!(
            diagnostics.to_string(),
            "berth.toml:2:1: error: unknown key `replica`\n  |\n2 | replica = 2\n  | ^^^^^^^\n  = hint: did you mean `replicas`?\n"
        );
    }

    #[test]
    fn renders_without_source() {
        let diagnostics = Diagnostics::from(vec![Diagnostic {
            file: "x.toml".into(),
            line: 1,
            col: 1,
            message: "cannot read".into(),
            hint: Some("pass -f FILE".into()),
        }]);
        assert_eq!(
            diagnostics.to_string(),
            "x.toml:1:1: error: cannot read\n  = hint: pass -f FILE\n"
        );
    }
}
