//! `[waf]`: the web application firewall's modes per rule group, the body size it reads, and
//! its `[[waf.exclude]]` and `[[waf.override]]` tables, read key by key with diagnostics at the
//! value.

use std::collections::BTreeMap;

use super::{Value, Walker};
use crate::types::{WafExclusion, WafOverride, WafSpec, WAF_GROUPS, WAF_MODES};
use crate::units::list;

const WAF_KEYS: &[&str] = &[
    "mode", "sqli", "xss", "lfi", "rce", "php", "max_body", "oversize", "exclude", "override",
];
const EXCLUDE_KEYS: &[&str] = &["path", "groups", "targets"];
const OVERRIDE_KEYS: &[&str] = &["path", "group", "mode"];
const TARGET_KINDS: &[&str] = &[
    "path",
    "query",
    "query-name",
    "header",
    "cookie",
    "cookie-name",
    "body",
];

impl Walker<'_> {
    fn waf_mode(&mut self, value: &Value<'_>, path: &str) -> Option<String> {
        let text = self.string(value, path, r#"mode = "block""#)?;
        if WAF_MODES.contains(&text.value.as_str()) {
            Some(text.value)
        } else {
            self.problems.push(
                text.span,
                format!("unknown WAF mode \"{}\" for `{path}`", text.value),
                Some(format!("the modes are {}", list(WAF_MODES))),
            );
            None
        }
    }

    fn waf_group(&mut self, value: &Value<'_>, path: &str) -> Option<String> {
        let text = self.string(value, path, r#"group = "sqli""#)?;
        if WAF_GROUPS.contains(&text.value.as_str()) {
            Some(text.value)
        } else {
            self.problems.push(
                text.span,
                format!("unknown WAF rule group \"{}\" in `{path}`", text.value),
                Some(format!("the groups are {}", list(WAF_GROUPS))),
            );
            None
        }
    }

    fn waf_path(&mut self, value: &Value<'_>, path: &str) -> Option<String> {
        let text = self.string(value, path, r#"path = "/admin/editor""#)?;
        if text.value.starts_with('/') {
            Some(text.value)
        } else {
            self.problems.push(
                text.span,
                format!("`{path}` must start with `/`"),
                Some(format!(r#"write path = "/{}""#, text.value)),
            );
            None
        }
    }

    pub(super) fn waf(&mut self, value: &Value<'_>) -> Option<WafSpec> {
        let table = self.table(value, "waf", r#"[waf] mode = "block""#)?;
        let mut waf = WafSpec::default();
        let mut modes = BTreeMap::new();
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "mode" => {
                    if let Some(mode) = self.waf_mode(value, "waf.mode") {
                        for group in WAF_GROUPS {
                            modes
                                .entry(group.to_string())
                                .or_insert_with(|| mode.clone());
                        }
                        waf.default_mode = mode;
                    }
                }
                group @ ("sqli" | "xss" | "lfi" | "rce" | "php") => {
                    if let Some(mode) = self.waf_mode(value, &format!("waf.{group}")) {
                        modes.insert(group.to_string(), mode);
                    }
                }
                "max_body" => {
                    if let Some(size) = self.size(value, "waf.max_body", r#"max_body = "64K""#) {
                        if size > 16 << 20 {
                            self.problems.push(
                                value.span(),
                                "`waf.max_body` is at most 16M",
                                Some("the WAF reads that much of a body, buffered".into()),
                            );
                        } else {
                            waf.max_body = size;
                        }
                    }
                }
                "oversize" => {
                    if let Some(text) =
                        self.string(value, "waf.oversize", r#"oversize = "continue""#)
                    {
                        match text.value.as_str() {
                            "continue" => waf.oversize = crate::types::WafOversize::Continue,
                            "block" => waf.oversize = crate::types::WafOversize::Block,
                            other => self.problems.push(
                                text.span,
                                format!("unknown `waf.oversize` \"{other}\""),
                                Some(
                                    "\"continue\" (inspect the first `max_body` bytes, pass the rest; the default) or \"block\" (refuse the request)"
                                        .into(),
                                ),
                            ),
                        }
                    }
                }
                "exclude" => waf.exclusions = self.waf_exclusions(value),
                "override" => waf.overrides = self.waf_overrides(value),
                other => self.unknown_key(key, other, WAF_KEYS, "[waf]"),
            }
        }
        // Groups set one by one win over `mode`, whatever their order in the file.
        for group in WAF_GROUPS {
            modes
                .entry(group.to_string())
                .or_insert_with(|| waf.default_mode.clone());
        }
        waf.modes = modes;
        Some(waf)
    }

    fn waf_exclusions(&mut self, value: &Value<'_>) -> Vec<WafExclusion> {
        let example = r#"[[waf.exclude]] path = "/admin/editor" groups = ["xss"]"#;
        let Some(items) = self.array(value, "waf.exclude", example) else {
            return Vec::new();
        };
        let mut exclusions = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let label = format!("waf.exclude[{}]", index + 1);
            let Some(table) = self.table(item, &label, "[[waf.exclude]]") else {
                continue;
            };
            let mut exclusion = WafExclusion::default();
            let mut has_path = false;
            for (key, value) in table.iter() {
                match key.get_ref().as_ref() {
                    "path" => {
                        if let Some(path) = self.waf_path(value, &format!("{label}.path")) {
                            exclusion.path = path;
                            has_path = true;
                        }
                    }
                    "groups" => {
                        let Some(groups) =
                            self.array(value, &format!("{label}.groups"), r#"groups = ["xss"]"#)
                        else {
                            continue;
                        };
                        for group in groups {
                            if let Some(group) = self.waf_group(group, &format!("{label}.groups")) {
                                exclusion.groups.push(group);
                            }
                        }
                    }
                    "targets" => {
                        let example = r#"targets = ["body:form:content", "cookie:*"]"#;
                        let Some(targets) = self.array(value, &format!("{label}.targets"), example)
                        else {
                            continue;
                        };
                        for target in targets {
                            let Some(text) =
                                self.string(target, &format!("{label}.targets"), example)
                            else {
                                continue;
                            };
                            let kind = text.value.split(':').next().unwrap_or("");
                            if TARGET_KINDS.contains(&kind) {
                                exclusion.targets.push(text.value);
                            } else {
                                self.problems.push(
                                    text.span,
                                    format!("unknown WAF target \"{}\"", text.value),
                                    Some(format!(
                                        "a target is one of {}, then optionally `:NAME`",
                                        list(TARGET_KINDS)
                                    )),
                                );
                            }
                        }
                    }
                    other => self.unknown_key(key, other, EXCLUDE_KEYS, "[[waf.exclude]]"),
                }
            }
            if !has_path && !table.iter().any(|(k, _)| k.get_ref() == "path") {
                self.problems.push(
                    item.span(),
                    format!("{label} has no `path`"),
                    Some(example.into()),
                );
                continue;
            }
            if has_path {
                exclusions.push(exclusion);
            }
        }
        exclusions
    }

    fn waf_overrides(&mut self, value: &Value<'_>) -> Vec<WafOverride> {
        let example = r#"[[waf.override]] path = "/api" group = "sqli" mode = "count""#;
        let Some(items) = self.array(value, "waf.override", example) else {
            return Vec::new();
        };
        let mut overrides = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let label = format!("waf.override[{}]", index + 1);
            let Some(table) = self.table(item, &label, "[[waf.override]]") else {
                continue;
            };
            let (mut path, mut group, mut mode) = (None, None, None);
            for (key, value) in table.iter() {
                match key.get_ref().as_ref() {
                    "path" => path = self.waf_path(value, &format!("{label}.path")),
                    "group" => group = self.waf_group(value, &format!("{label}.group")),
                    "mode" => mode = self.waf_mode(value, &format!("{label}.mode")),
                    other => self.unknown_key(key, other, OVERRIDE_KEYS, "[[waf.override]]"),
                }
            }
            for name in ["path", "group", "mode"] {
                if !table.iter().any(|(k, _)| k.get_ref() == name) {
                    self.problems.push(
                        item.span(),
                        format!("{label} has no `{name}`"),
                        Some(example.into()),
                    );
                }
            }
            if let (Some(path), Some(group), Some(mode)) = (path, group, mode) {
                overrides.push(WafOverride { path, group, mode });
            }
        }
        overrides
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::types::{WafOversize, WafSpec};

    fn parse(toml: &str) -> Result<crate::Spec, crate::Diagnostics> {
        let service = "[service.web]\nrun = \"app\"\nport = 8000\n";
        crate::parse(
            Path::new("/tmp/berth.toml"),
            &format!("{service}{toml}"),
            None,
        )
    }

    #[test]
    fn no_table_is_every_group_blocking_and_a_table_sets_each_part() {
        assert_eq!(parse("").unwrap().edge.waf, WafSpec::default());
        let waf = parse(
            r#"
[waf]
mode = "count"
sqli = "block"
max_body = "8K"
oversize = "block"
[[waf.exclude]]
path = "/admin/editor"
groups = ["xss"]
targets = ["body:form:content"]
[[waf.override]]
path = "/api"
group = "rce"
mode = "off"
"#,
        )
        .unwrap()
        .edge
        .waf;
        assert_eq!(waf.modes["sqli"], "block");
        assert_eq!(waf.modes["xss"], "count");
        assert_eq!(waf.max_body, 8 * 1024);
        assert_eq!(waf.oversize, WafOversize::Block);
        assert_eq!(waf.exclusions[0].path, "/admin/editor");
        assert_eq!(waf.exclusions[0].targets, ["body:form:content"]);
        assert_eq!(waf.overrides[0].mode, "off");
    }

    #[test]
    fn waf_mistakes_point_at_the_value() {
        let error = parse(
            r#"
[waf]
mode = "deny"
max_body = "64M"
oversize = "drop"
[[waf.exclude]]
groups = ["sql"]
targets = ["bodyy"]
"#,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "berth.toml:6:8: error: unknown WAF mode \"deny\" for `waf.mode`",
            "`waf.max_body` is at most 16M",
            "berth.toml:8:12: error: unknown `waf.oversize` \"drop\"",
            "unknown WAF rule group \"sql\"",
            "unknown WAF target \"bodyy\"",
            "waf.exclude[1] has no `path`",
        ] {
            assert!(error.contains(expected), "{expected}:\n{error}");
        }
    }
}
