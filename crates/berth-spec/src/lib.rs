//! `berth.toml` → a typed, validated [`Spec`].
//!
//! This crate is the bottom of the workspace: it reads one file and does no other I/O. Every
//! problem found (syntax, unknown keys, types, semantic mistakes such as a route to an unknown
//! service) becomes a [`Diagnostic`] that points at `file:line:col` with a hint.
//!
//! The file is parsed with spans (`toml::de::DeTable`), walked key by key so that every problem
//! is collected rather than the first one (`walk`), checked as a whole (`check`), and turned into
//! the effective spec of the selected environment (`effective`).

pub mod alarm;
pub mod autoscale;
mod backup;
mod check;
pub mod compress;
mod effective;
pub mod metric_names;
mod raw;
mod report;
pub mod tls;
mod types;
mod units;
mod walk;

pub use autoscale::AutoscaleSpec;
pub use backup::{parse_schedule, BackupDestination, BackupSpec, RetentionSpec};
pub use compress::{Coding, CompressSpec};
pub use types::*;

use std::path::Path;

use sha2::{Digest, Sha256};
use toml::de::DeTable;

use report::Problems;

/// The hint given when the spec file cannot be read.
const MISSING_FILE_HINT: &str = "run berth in the folder holding berth.toml or pass -f FILE";

/// One problem in a spec, located in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: std::path::PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// All problems found in a spec. `Display` renders every one as `FILE:LINE:COL: error: message`
/// followed by the snippet and the hint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
    /// The text of the file the items point into, to show their source lines (`None`: only the
    /// message and hint are shown).
    pub source: Option<String>,
    /// How many characters of its line each item underlines, in the order of `items` (an item
    /// without an entry underlines one).
    pub widths: Vec<usize>,
}

impl From<Vec<Diagnostic>> for Diagnostics {
    /// Diagnostics shown without source snippets.
    fn from(items: Vec<Diagnostic>) -> Self {
        Diagnostics {
            items,
            source: None,
            widths: Vec::new(),
        }
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(item: Diagnostic) -> Self {
        Diagnostics::from(vec![item])
    }
}

impl Diagnostics {
    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no problem.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Reads and validates `path`, applying the overrides of `environment` (None or `"default"`: none).
pub fn load(path: &Path, environment: Option<&str>) -> Result<Spec, Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(source) => parse(path, &source, environment),
        Err(error) => {
            let hint = if error.kind() == std::io::ErrorKind::InvalidData {
                "save the file as UTF-8".to_string()
            } else {
                MISSING_FILE_HINT.to_string()
            };
            Err(Diagnostics::from(Diagnostic {
                file: path.to_path_buf(),
                line: 1,
                col: 1,
                message: format!("cannot read the spec: {error}"),
                hint: Some(hint),
            }))
        }
    }
}

/// Like [`load`], for text already read; `path` is used in messages and to resolve `source`.
pub fn parse(path: &Path, source: &str, environment: Option<&str>) -> Result<Spec, Diagnostics> {
    let mut problems = Problems::default();
    let (root, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        for error in syntax_errors {
            let span = error.span().unwrap_or(0..0);
            let (message, hint) = match error.message() {
                "duplicate key" => (
                    format!(
                        "duplicate key `{}`",
                        source.get(span.clone()).unwrap_or_default()
                    ),
                    Some("a key (or table) can be defined only once; remove one".to_string()),
                ),
                other => (format!("invalid TOML: {other}"), None),
            };
            problems.push(span, message, hint);
        }
        return Err(problems.into_diagnostics(path, source));
    }
    let raw = walk::walk(source, root.get_ref(), &mut problems);
    check::check(source, &raw, environment, &mut problems);
    tls::check_tls(&raw, &effective::spec_folder(path), &mut problems);
    if !problems.is_empty() {
        return Err(problems.into_diagnostics(path, source));
    }
    Ok(effective::build(&raw, path, environment))
}

impl Spec {
    /// sha256 (hex) of the canonical form of this effective spec.
    pub fn hash(&self) -> String {
        // Every map in a Spec is a BTreeMap, so its JSON is canonical.
        let json = serde_json::to_vec(self).unwrap_or_else(|_| format!("{self:?}").into_bytes());
        hex::encode(Sha256::digest(&json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(source: &str) -> Spec {
        parse(Path::new("berth.toml"), source, None).unwrap_or_else(|errors| panic!("{errors}"))
    }

    fn messages(source: &str, environment: Option<&str>) -> Vec<String> {
        match parse(Path::new("berth.toml"), source, environment) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics
                .items
                .into_iter()
                .map(|item| format!("{}:{}: {}", item.line, item.col, item.message))
                .collect(),
        }
    }

    #[test]
    fn empty_file_is_an_empty_stack() {
        let spec = parse_ok("");
        assert!(spec.services.is_empty());
        assert_eq!(spec.stack.keep_releases, 5);
        assert_eq!(spec.edge, EdgeSpec::default());
        assert!(spec.path.is_absolute());
        assert!(spec.path.ends_with("berth.toml"));
    }

    #[test]
    fn dotted_keys_and_inline_tables_are_read() {
        let spec = parse_ok(
            "service.web.run = \"app\"\nservice.web.port = 8000\n\
             service.web.health = { path = \"/up\" }\n\
             route = [{ service = \"web\", path = \"/x\" }]\n",
        );
        assert_eq!(spec.services["web"].port, PortSpec::Fixed(8000));
        assert_eq!(spec.services["web"].health.as_ref().unwrap().path, "/up");
        assert_eq!(spec.routes[0].path, "/x");
    }

    #[test]
    fn source_is_resolved_against_the_spec_folder_without_existing() {
        let spec = parse(
            Path::new("/nonexistent-berth/app/berth.toml"),
            "[service.web]\nrun = \"x\"\nsource = \"../src/./web\"\n",
            None,
        )
        .unwrap();
        assert_eq!(spec.path, Path::new("/nonexistent-berth/app/berth.toml"));
        assert_eq!(
            spec.services["web"].source,
            Path::new("/nonexistent-berth/src/web")
        );
        assert_eq!(spec.stack.name, "app");
    }

    #[test]
    fn route_must_be_an_array_of_tables() {
        assert_eq!(
            messages("[route]\nservice = \"web\"\n", None),
            vec!["1:1: `route` must be an array of tables, found a table"]
        );
    }

    #[test]
    fn undeclared_environments_are_checked_too() {
        // The staging override is wrong even when production is selected.
        let source = "[service.web]\nrun = \"x\"\nmax = 2\n\n\
                      [environment.production]\n\
                      [environment.staging.service.web]\nmin = 3\n";
        assert_eq!(
            messages(source, Some("production")),
            vec!["7:1: `min` (3) is greater than `max` (2) for service `web` in environment `staging`"]
        );
    }

    #[test]
    fn diagnostics_come_in_file_order() {
        let source = "[service.zeta]\nrun = 1\n[service.alpha]\nrun = 2\n";
        assert_eq!(
            messages(source, Some("nope")),
            vec![
                "1:1: unknown environment `nope`",
                "2:7: `service.zeta.run` must be a string, found an integer",
                "4:7: `service.alpha.run` must be a string, found an integer",
            ]
        );
    }

    #[test]
    fn a_service_listed_twice_in_use_is_not_a_clash() {
        let source = "[service.web]\nrun = \"x\"\nuse = [\"db\", \"db\"]\n\
                      [accessory.db]\nengine = \"postgres\"\n";
        assert!(messages(source, None).is_empty());
    }

    #[test]
    fn unknown_key_inside_an_override_is_reported() {
        let source = "[service.web]\nrun = \"x\"\n\
                      [environment.production.service.web]\nreplicaz = 3\n";
        assert_eq!(
            messages(source, None),
            vec!["4:1: unknown key `replicaz` in [environment.production.service.web]"]
        );
    }

    #[test]
    fn crlf_files_are_located_correctly() {
        let source = "[service.web]\r\nrun = \"x\"\r\nport = \"atuo\"\r\n";
        let diagnostics = parse(Path::new("berth.toml"), source, None).unwrap_err();
        assert_eq!(
            (diagnostics.items[0].line, diagnostics.items[0].col),
            (3, 8)
        );
        assert!(diagnostics.to_string().contains("\n3 | port = \"atuo\"\n"));
    }
}
