//! `metrics = { path = "/metrics" }` on a service: where each replica exposes its own metrics in
//! the Prometheus text format, for the daemon's collector to scrape (stored as `app:NAME`).

use super::{Value, Walker};
use crate::types::AppMetricsSpec;

const METRICS_KEYS: &[&str] = &["path"];
const EXAMPLE: &str = r#"metrics = { path = "/metrics" }"#;

impl Walker<'_> {
    pub(super) fn app_metrics(
        &mut self,
        service: &str,
        value: &Value<'_>,
    ) -> Option<AppMetricsSpec> {
        let label = format!("`service.{service}.metrics`");
        let table = self.table(value, &format!("service.{service}.metrics"), EXAMPLE)?;
        let mut path = None;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "path" => {
                    let where_ = format!("service.{service}.metrics.path");
                    let text = self.string(value, &where_, r#"path = "/metrics""#)?;
                    if !text.value.starts_with('/')
                        || text
                            .value
                            .chars()
                            .any(|c| c.is_whitespace() || c.is_control())
                    {
                        self.problems.push(
                            text.span,
                            format!("`{where_}` must be a path starting with `/`, without spaces"),
                            Some(r#"e.g. path = "/metrics""#.into()),
                        );
                        return None;
                    }
                    path = Some(text.value);
                }
                other => self.unknown_key(key, other, METRICS_KEYS, &label),
            }
        }
        match path {
            Some(path) => Some(AppMetricsSpec { path }),
            None => {
                self.problems.push(
                    value.span(),
                    format!("{label} has no `path`"),
                    Some(format!(
                        "say where the replicas expose their metrics, e.g. {EXAMPLE}"
                    )),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::AppMetricsSpec;

    fn parse(toml: &str) -> Result<crate::Spec, String> {
        crate::parse(std::path::Path::new("/tmp/berth.toml"), toml, None).map_err(|d| d.to_string())
    }

    #[test]
    fn the_metrics_path_is_read() {
        let spec = parse(
            "[service.web]\nrun = \"x\"\nport = \"auto\"\nmetrics = { path = \"/metrics\" }\n",
        )
        .unwrap();
        assert_eq!(
            spec.services["web"].metrics,
            Some(AppMetricsSpec {
                path: "/metrics".into()
            })
        );
        let spec = parse("[service.web]\nrun = \"x\"\nport = \"auto\"\n").unwrap();
        assert_eq!(spec.services["web"].metrics, None);
    }

    #[test]
    fn mistakes_are_diagnostics_at_the_value() {
        let err = parse(
            "[service.web]\nrun = \"x\"\nport = \"auto\"\nmetrics = { path = \"metrics\" }\n",
        )
        .unwrap_err();
        assert!(err.contains("berth.toml:4:"), "{err}");
        assert!(err.contains("must be a path starting with `/`"), "{err}");
        let err =
            parse("[service.web]\nrun = \"x\"\nport = \"auto\"\nmetrics = { pth = \"/m\" }\n")
                .unwrap_err();
        assert!(err.contains("did you mean `path`"), "{err}");
        let err = parse("[service.web]\nrun = \"x\"\nport = \"auto\"\nmetrics = \"/metrics\"\n")
            .unwrap_err();
        assert!(err.contains("berth.toml:4:"), "{err}");
        // A worker has nothing to scrape.
        let err = parse("[service.worker]\nrun = \"x\"\nmetrics = { path = \"/metrics\" }\n")
            .unwrap_err();
        assert!(err.contains("has no port"), "{err}");
    }
}
