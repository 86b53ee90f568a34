//! `[edge] compress_types` and `compress_algorithms` (response compression), read with
//! diagnostics at the value. `compress`, `compress_min_size` and a route's `compress` are
//! plain booleans and sizes read in `walk.rs`.

use super::{Value, Walker};
use crate::compress::Coding;
use crate::units::{closest, list};

const TYPES_EXAMPLE: &str = r#"compress_types = ["text/*", "application/json", "image/svg+xml"]"#;
const ALGORITHMS_EXAMPLE: &str = r#"compress_algorithms = ["br", "gzip"]"#;

/// Whether `text` is a media type range the edge can match: `type/subtype` or `type/*`, in
/// the characters of an HTTP token.
fn is_media_range(text: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match text.split_once('/') {
        Some((kind, "*")) => token(kind),
        Some((kind, subtype)) => token(kind) && token(subtype),
        None => false,
    }
}

impl Walker<'_> {
    /// `compress_types`: media types (lower case), none of them a stream or everything.
    pub(super) fn compress_types(&mut self, value: &Value<'_>) -> Option<Vec<String>> {
        const PATH: &str = "edge.compress_types";
        let items = self.array(value, PATH, TYPES_EXAMPLE)?;
        if items.is_empty() {
            self.problems.push(
                value.span(),
                "`edge.compress_types` is empty",
                Some("to switch compression off write compress = false".into()),
            );
            return None;
        }
        let mut types = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = self.string(item, PATH, TYPES_EXAMPLE) else {
                ok = false;
                continue;
            };
            let media = text.value.trim().to_ascii_lowercase();
            let problem = if media == "*/*" || media == "*" {
                Some((
                    format!("`{PATH}` cannot name every type (\"{}\")", text.value),
                    "images, video, archives and fonts like WOFF2 are compressed already; list the text types, e.g. \"text/*\"".to_string(),
                ))
            } else if media.contains(';') {
                Some((
                    format!("\"{}\" in `{PATH}` has parameters", text.value),
                    format!(
                        "the edge matches the type alone: write \"{}\"",
                        media.split(';').next().unwrap_or("").trim()
                    ),
                ))
            } else if media == "text/event-stream" {
                Some((
                    "`text/event-stream` is never compressed".to_string(),
                    "server-sent events must reach the client as they are sent; remove it from the list".to_string(),
                ))
            } else if !is_media_range(&media) {
                Some((
                    format!("invalid media type \"{}\" in `{PATH}`", text.value),
                    format!("write type/subtype or type/*, e.g. {TYPES_EXAMPLE}"),
                ))
            } else {
                None
            };
            match problem {
                Some((message, hint)) => {
                    ok = false;
                    self.problems.push(text.span, message, Some(hint));
                }
                // A type named twice is harmless.
                None if types.contains(&media) => {}
                None => types.push(media),
            }
        }
        ok.then_some(types)
    }

    /// `compress_algorithms`: `br`, `zstd`, `gzip`, each once, at least one.
    pub(super) fn compress_algorithms(&mut self, value: &Value<'_>) -> Option<Vec<Coding>> {
        const PATH: &str = "edge.compress_algorithms";
        let items = self.array(value, PATH, ALGORITHMS_EXAMPLE)?;
        if items.is_empty() {
            self.problems.push(
                value.span(),
                "`edge.compress_algorithms` is empty",
                Some("to switch compression off write compress = false".into()),
            );
            return None;
        }
        let tokens: Vec<&str> = Coding::ALL.iter().map(|c| c.token()).collect();
        let mut codings = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = self.string(item, PATH, ALGORITHMS_EXAMPLE) else {
                ok = false;
                continue;
            };
            match Coding::from_token(&text.value) {
                Some(coding) if codings.contains(&coding) => {
                    ok = false;
                    self.problems.push(
                        text.span,
                        format!("`{}` is named twice in `{PATH}`", text.value),
                        Some("name each algorithm once, the preferred first".into()),
                    );
                }
                Some(coding) => codings.push(coding),
                None => {
                    ok = false;
                    let hint = match (text.value.as_str(), closest(&text.value, &tokens)) {
                        ("deflate", _) => "deflate is not offered (every client that takes it takes gzip); the algorithms are \"br\", \"zstd\" and \"gzip\"".to_string(),
                        ("brotli", _) => "write \"br\" (the name HTTP gives brotli)".to_string(),
                        ("zstandard", _) => "write \"zstd\"".to_string(),
                        (_, Some(suggestion)) => format!("did you mean \"{suggestion}\"?"),
                        (_, None) => format!("the algorithms are {}", list(&tokens)),
                    };
                    self.problems.push(
                        text.span,
                        format!(
                            "unknown compression algorithm \"{}\" in `{PATH}`",
                            text.value
                        ),
                        Some(hint),
                    );
                }
            }
        }
        ok.then_some(codings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<crate::Spec, String> {
        crate::parse(
            std::path::Path::new("/tmp/berth.toml"),
            &format!("{toml}\n[service.web]\nrun = \"app\"\nport = 8000\n"),
            None,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn media_ranges_are_type_slash_subtype_or_star() {
        for good in [
            "text/*",
            "application/json",
            "image/svg+xml",
            "application/vnd.api+json",
        ] {
            assert!(is_media_range(good), "{good}");
        }
        for bad in [
            "text",
            "/json",
            "text/",
            "*/json",
            "text/ html",
            "a/b/c",
            "tëxt/plain",
        ] {
            assert!(!is_media_range(bad), "{bad}");
        }
    }

    #[test]
    fn compression_is_on_by_default_and_read_from_edge_and_routes() {
        let spec = parse("").unwrap();
        assert_eq!(spec.edge.compress, crate::CompressSpec::default());
        assert!(spec.edge.compress.enabled);
        assert_eq!(spec.edge.compress.min_size, 1_000);

        let spec = parse(
            "[edge]\ncompress = true\ncompress_min_size = \"2K\"\n\
             compress_types = [\"TEXT/HTML\", \"application/json\"]\n\
             compress_algorithms = [\"gzip\", \"br\"]\n\
             [[route]]\npath = \"/admin\"\nservice = \"web\"\ncompress = false\n\
             [[route]]\npath = \"/\"\nservice = \"web\"\n",
        )
        .unwrap();
        let c = &spec.edge.compress;
        assert_eq!(c.min_size, 2048);
        assert_eq!(c.types, ["text/html", "application/json"]);
        assert_eq!(c.algorithms, [Coding::Gzip, Coding::Br]);
        assert_eq!(spec.routes[0].compress, Some(false));
        assert_eq!(spec.routes[1].compress, None);

        let spec = parse("[edge]\ncompress = false\n").unwrap();
        assert!(!spec.edge.compress.enabled);
    }

    #[test]
    fn compression_mistakes_are_diagnostics_at_the_value_with_a_hint() {
        for (bad, expected) in [
            ("[edge]\ncompress = \"yes\"", "berth.toml:2:12"),
            ("[edge]\ncompress = \"false\"", "without quotes"),
            ("[edge]\ncompress_min_size = \"lots\"", "invalid size"),
            ("[edge]\ncompress_types = []", "compress = false"),
            (
                "[edge]\ncompress_types = \"text/html\"",
                "edge.compress_types",
            ),
            ("[edge]\ncompress_types = [\"*/*\"]", "compressed already"),
            (
                "[edge]\ncompress_types = [\"text/html; charset=utf-8\"]",
                "write \"text/html\"",
            ),
            (
                "[edge]\ncompress_types = [\"text/event-stream\"]",
                "never compressed",
            ),
            ("[edge]\ncompress_types = [\"json\"]", "berth.toml:2:19"),
            ("[edge]\ncompress_algorithms = [\"brotli\"]", "write \"br\""),
            (
                "[edge]\ncompress_algorithms = [\"deflate\"]",
                "deflate is not offered",
            ),
            (
                "[edge]\ncompress_algorithms = [\"gzip\", \"gzip\"]",
                "named twice",
            ),
            (
                "[edge]\ncompress_algorithms = [\"gzp\"]",
                "did you mean \"gzip\"",
            ),
            ("[edge]\ncompress_algorithms = []", "is empty"),
            ("[edge]\ncompres = true", "did you mean `compress`"),
            (
                "[[route]]\npath = \"/\"\nservice = \"web\"\ncompress = 0",
                "route[1].compress",
            ),
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains(expected), "{bad}: {error}");
            assert!(
                error.contains("berth.toml:"),
                "{bad}: no location in {error}"
            );
        }
    }
}
