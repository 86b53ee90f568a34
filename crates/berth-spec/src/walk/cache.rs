//! `[cache]`: the edge's response cache, its size caps and its `[[cache.rule]]` path patterns
//! with lifetimes (CloudFront's cache behaviours), read key by key with diagnostics at the value.

use std::time::Duration;

use super::{Value, Walker};
use crate::types::{CacheQuery, CacheRuleSpec, CacheSpec};
use crate::units::list;

const CACHE_KEYS: &[&str] = &["max_size", "max_object", "rule"];
const RULE_KEYS: &[&str] = &[
    "path",
    "default_ttl",
    "min_ttl",
    "max_ttl",
    "never",
    "query",
    "cookies",
    "authorization",
    "stale_if_error",
    "stale_while_revalidate",
];
/// Longest path pattern, and most `*` in one (the matcher backtracks over stars).
const MAX_PATTERN: usize = 256;
const MAX_STARS: usize = 4;
/// Longest lifetime CloudFront takes (a year is its default maximum; ten years its cap).
const MAX_TTL: Duration = Duration::from_secs(10 * 31_536_000);

impl Walker<'_> {
    pub(super) fn cache(&mut self, value: &Value<'_>) -> Option<CacheSpec> {
        let table = self.table(value, "cache", r#"[cache] max_size = "256M""#)?;
        let mut cache = CacheSpec::default();
        let mut rules = None;
        let mut object_written = false;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "max_size" => {
                    if let Some(size) = self.size(value, "cache.max_size", r#"max_size = "256M""#) {
                        cache.max_size = size;
                    }
                }
                "max_object" => {
                    if let Some(size) = self.size(value, "cache.max_object", r#"max_object = "8M""#)
                    {
                        cache.max_object = size;
                        object_written = true;
                    }
                }
                "rule" => rules = Some(self.cache_rules(value)),
                other => self.unknown_key(key, other, CACHE_KEYS, "[cache]"),
            }
        }
        if !object_written {
            // A small cache takes smaller objects rather than an error.
            cache.max_object = cache.max_object.min(cache.max_size / 2).max(1);
        }
        if cache.max_object.saturating_mul(2) > cache.max_size {
            self.problems.push(
                value.span(),
                format!(
                    "`cache.max_object` ({}) is more than half of `cache.max_size` ({})",
                    cache.max_object, cache.max_size
                ),
                Some("raise `max_size` or lower `max_object`: one object may not take most of the cache".into()),
            );
        }
        if let Some(rules) = rules {
            cache.rules = rules;
        }
        Some(cache)
    }

    fn cache_rules(&mut self, value: &Value<'_>) -> Vec<CacheRuleSpec> {
        let example = r#"[[cache.rule]] path = "/img/*" default_ttl = "1d""#;
        let Some(items) = self.array(value, "cache.rule", example) else {
            return Vec::new();
        };
        let mut rules = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let label = format!("cache.rule[{}]", index + 1);
            let Some(table) = self.table(item, &label, "[[cache.rule]]") else {
                continue;
            };
            let mut rule = CacheRuleSpec::default();
            let (mut path, mut never) = (None, false);
            let (mut default_ttl, mut min_ttl, mut max_ttl) = (None, None, None);
            for (key, value) in table.iter() {
                let name = key.get_ref().as_ref();
                let at = format!("{label}.{name}");
                match name {
                    "path" => path = self.cache_pattern(value, &at),
                    "default_ttl" => default_ttl = self.ttl(value, &at, r#"default_ttl = "1d""#),
                    "min_ttl" => min_ttl = self.ttl(value, &at, r#"min_ttl = "0s""#),
                    "max_ttl" => max_ttl = self.ttl(value, &at, r#"max_ttl = "365d""#),
                    "never" => never = self.boolean(value, &at, "never = true").unwrap_or(false),
                    "query" => {
                        if let Some(query) = self.cache_query(value, &at) {
                            rule.query = query;
                        }
                    }
                    "cookies" => {
                        rule.cookies = self.boolean(value, &at, "cookies = false").unwrap_or(false)
                    }
                    "authorization" => {
                        rule.authorization = self
                            .boolean(value, &at, "authorization = false")
                            .unwrap_or(false)
                    }
                    "stale_if_error" => {
                        if let Some(d) = self.ttl(value, &at, r#"stale_if_error = "10m""#) {
                            rule.stale_if_error = d;
                        }
                    }
                    "stale_while_revalidate" => {
                        if let Some(d) = self.ttl(value, &at, r#"stale_while_revalidate = "30s""#) {
                            rule.stale_while_revalidate = d;
                        }
                    }
                    other => self.unknown_key(key, other, RULE_KEYS, "[[cache.rule]]"),
                }
            }
            let Some(path) = path else {
                if !table.iter().any(|(k, _)| k.get_ref() == "path") {
                    self.problems.push(
                        item.span(),
                        format!("`{label}` has no `path`"),
                        Some(r#"say which paths it covers, e.g. path = "/img/*""#.into()),
                    );
                }
                continue;
            };
            rule.path = path;
            if never {
                rule.default_ttl = Duration::ZERO;
                rule.min_ttl = Duration::ZERO;
                rule.max_ttl = Duration::ZERO;
                rules.push(rule);
                continue;
            }
            if let Some(d) = min_ttl {
                rule.min_ttl = d;
            }
            if let Some(d) = max_ttl {
                rule.max_ttl = d;
            }
            // An unwritten default follows the bounds (CloudFront's legacy settings).
            rule.default_ttl = default_ttl.unwrap_or(rule.default_ttl);
            if rule.min_ttl > rule.max_ttl {
                self.problems.push(
                    item.span(),
                    format!("`{label}.min_ttl` is longer than its `max_ttl`"),
                    Some("min_ttl <= default_ttl <= max_ttl".into()),
                );
            } else if default_ttl.is_some()
                && (rule.default_ttl < rule.min_ttl || rule.default_ttl > rule.max_ttl)
            {
                self.problems.push(
                    item.span(),
                    format!("`{label}.default_ttl` is outside `min_ttl`..`max_ttl`"),
                    Some("min_ttl <= default_ttl <= max_ttl".into()),
                );
            } else {
                rule.default_ttl = rule.default_ttl.clamp(rule.min_ttl, rule.max_ttl);
            }
            rules.push(rule);
        }
        rules
    }

    fn ttl(&mut self, value: &Value<'_>, path: &str, example: &str) -> Option<Duration> {
        let duration = self.duration(value, path, example)?;
        if duration > MAX_TTL {
            self.problems.push(
                value.span(),
                format!("`{path}` is longer than ten years"),
                Some(format!("e.g. {example}")),
            );
            return None;
        }
        Some(duration)
    }

    fn cache_pattern(&mut self, value: &Value<'_>, path: &str) -> Option<String> {
        let text = self.string(value, path, r#"path = "/img/*""#)?;
        let pattern = &text.value;
        let problem = if !(pattern.starts_with('/') || pattern.starts_with('*')) {
            Some("must start with `/` or `*`".to_string())
        } else if pattern.len() > MAX_PATTERN {
            Some(format!("is longer than {MAX_PATTERN} characters"))
        } else if pattern.matches('*').count() > MAX_STARS {
            Some(format!("has more than {MAX_STARS} `*`"))
        } else if pattern
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
        {
            Some("holds a space, a control character or `#`".to_string())
        } else if pattern.contains('=') {
            Some("holds a query string: patterns match paths only (see `query`)".to_string())
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.problems.push(
                    text.span,
                    format!("the cache pattern `{pattern}` of `{path}` {problem}"),
                    Some(
                        r#"a pattern is a path where `*` matches any characters and `?` one, e.g. "/img/*" or "*.css""#
                            .into(),
                    ),
                );
                None
            }
            None => Some(text.value),
        }
    }

    fn cache_query(&mut self, value: &Value<'_>, path: &str) -> Option<CacheQuery> {
        const WORDS: &[&str] = &["all", "none"];
        let hint = r#"query = "all" (the default), "none", or the parameters to keep, e.g. query = ["page", "sort"]"#;
        if let toml::de::DeValue::Array(items) = value.get_ref() {
            let mut names = Vec::new();
            for item in items {
                let name = self.string(item, path, r#"query = ["page"]"#)?;
                if name.value.is_empty()
                    || name
                        .value
                        .chars()
                        .any(|c| matches!(c, '&' | '=' | '#' | ';') || c.is_whitespace())
                {
                    self.problems.push(
                        name.span,
                        format!("\"{}\" in `{path}` is not a parameter name", name.value),
                        Some(hint.into()),
                    );
                    return None;
                }
                names.push(name.value);
            }
            names.sort();
            names.dedup();
            return Some(CacheQuery::Only(names));
        }
        let text = self.string(value, path, r#"query = "all""#)?;
        match text.value.as_str() {
            "all" => Some(CacheQuery::All),
            "none" => Some(CacheQuery::None),
            other => {
                self.problems.push(
                    text.span,
                    format!(
                        "unknown `{path}` \"{other}\" (the words are {})",
                        list(WORDS)
                    ),
                    Some(hint.into()),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{CacheQuery, CacheRuleSpec};

    fn parse(toml: &str) -> Result<crate::Spec, String> {
        crate::parse(std::path::Path::new("/tmp/berth.toml"), toml, None).map_err(|d| d.to_string())
    }

    #[test]
    fn no_cache_table_means_no_cache() {
        assert_eq!(parse("").unwrap().edge.cache, None);
    }

    #[test]
    fn an_empty_cache_table_takes_the_references_rules() {
        let cache = parse("[cache]\n").unwrap().edge.cache.unwrap();
        assert_eq!(cache.max_size, 256 << 20);
        assert_eq!(cache.max_object, 8 << 20);
        assert_eq!(cache.rules, CacheRuleSpec::reference_rules());
        let img = cache.rules.iter().find(|r| r.path == "/img/*").unwrap();
        assert_eq!(img.default_ttl, Duration::from_secs(86_400));
        assert_eq!(img.max_ttl, Duration::from_secs(31_536_000));
        assert_eq!(img.query, CacheQuery::None);
        let admin = cache.rules.iter().find(|r| r.path == "/admin*").unwrap();
        assert!(admin.max_ttl.is_zero());
    }

    #[test]
    fn rules_are_read() {
        let spec = parse(
            r#"
[cache]
max_size = "64M"
max_object = "1M"

[[cache.rule]]
path = "/account*"
never = true

[[cache.rule]]
path = "*.css"
default_ttl = "1h"
max_ttl = "2h"
query = ["v", "lang"]
cookies = true
authorization = true
stale_if_error = "1m"
stale_while_revalidate = "5s"
"#,
        )
        .unwrap();
        let cache = spec.edge.cache.unwrap();
        assert_eq!(cache.max_size, 64 << 20);
        assert_eq!(cache.max_object, 1 << 20);
        assert_eq!(cache.rules.len(), 2);
        assert!(cache.rules[0].max_ttl.is_zero());
        let css = &cache.rules[1];
        assert_eq!(css.default_ttl, Duration::from_secs(3600));
        assert_eq!(css.max_ttl, Duration::from_secs(7200));
        assert_eq!(css.query, CacheQuery::Only(vec!["lang".into(), "v".into()]));
        assert!(css.cookies && css.authorization);
        assert_eq!(css.stale_if_error, Duration::from_secs(60));
        assert_eq!(css.stale_while_revalidate, Duration::from_secs(5));
    }

    #[test]
    fn mistakes_are_diagnostics_at_the_value() {
        let err = parse("[cache]\n[[cache.rule]]\npath = \"img/*\"\n").unwrap_err();
        assert!(err.contains("berth.toml:3:"), "{err}");
        assert!(err.contains("must start with `/` or `*`"), "{err}");
        let err = parse("[cache]\n[[cache.rule]]\npath = \"/img/*\"\ndefault_ttl = \"soon\"\n")
            .unwrap_err();
        assert!(err.contains("berth.toml:4:"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
        let err =
            parse("[cache]\n[[cache.rule]]\npath = \"/x\"\nmin_ttl = \"2h\"\nmax_ttl = \"1h\"\n")
                .unwrap_err();
        assert!(err.contains("longer than its `max_ttl`"), "{err}");
        let err = parse("[cache]\n[[cache.rule]]\npath = \"/x\"\nquery = \"some\"\n").unwrap_err();
        assert!(
            err.contains("berth.toml:4:") && err.contains("\"none\""),
            "{err}"
        );
        let err = parse("[cache]\n[[cache.rule]]\npath = \"/*a*b*c*d*e\"\n").unwrap_err();
        assert!(err.contains("more than 4 `*`"), "{err}");
        let err = parse("[cache]\n[[cache.rule]]\npth = \"/x\"\n").unwrap_err();
        assert!(err.contains("did you mean `path`"), "{err}");
        assert!(err.contains("has no `path`"), "{err}");
        let err = parse("[cache]\nmax_size = \"1M\"\nmax_object = \"1M\"\n").unwrap_err();
        assert!(err.contains("more than half"), "{err}");
        // Unwritten, max_object follows a small max_size.
        let small = parse("[cache]\nmax_size = \"2M\"\n")
            .unwrap()
            .edge
            .cache
            .unwrap();
        assert_eq!(small.max_object, 1 << 20);
        let err =
            parse("[cache]\n[[cache.rule]]\npath = \"/x\"\nmax_ttl = \"20years\"\n").unwrap_err();
        assert!(err.contains("ten years"), "{err}");
    }
}
