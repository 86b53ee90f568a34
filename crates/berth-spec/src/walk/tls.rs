//! `[[certificate]]`, `[acme]` and the TLS keys of `[edge]`, read key by key; the types and the
//! file checks are in `crate::tls`.

use super::{Value, Walker};
use crate::raw::Located;
use crate::tls::{RawAcme, RawCertificate, LETS_ENCRYPT};

const CERTIFICATE_KEYS: &[&str] = &["hosts", "cert", "key", "acme", "local"];
const ACME_KEYS: &[&str] = &["directory", "email", "ca"];

/// Whether `host` is a DNS name a certificate can name (`*.` only as the first label).
fn valid_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Walker<'_> {
    pub(super) fn certificates(&mut self, value: &Value<'_>) -> Vec<RawCertificate> {
        let Some(items) = self.array(
            value,
            "certificate",
            r#"[[certificate]] hosts = ["shop.example.com"] acme = true"#,
        ) else {
            return Vec::new();
        };
        let mut certificates = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let label = format!("certificate[{}]", index + 1);
            let path = |key: &str| format!("{label}.{key}");
            let Some(table) = self.table(item, &label, "[[certificate]]") else {
                continue;
            };
            let mut certificate = RawCertificate {
                hosts: Vec::new(),
                cert: None,
                key: None,
                acme: false,
                local: false,
            };
            for (key, value) in table.iter() {
                match key.get_ref().as_ref() {
                    "hosts" => {
                        let example = r#"hosts = ["shop.example.com", "www.shop.example.com"]"#;
                        let Some(hosts) = self.array(value, &path("hosts"), example) else {
                            continue;
                        };
                        for host in hosts {
                            let Some(host) = self.string(host, &path("hosts"), example) else {
                                continue;
                            };
                            if valid_host(&host.value) {
                                certificate.hosts.push(Located {
                                    value: host.value.to_ascii_lowercase(),
                                    span: host.span,
                                });
                            } else {
                                self.problems.push(
                                    host.span,
                                    format!("invalid host name \"{}\" in `{}`", host.value, path("hosts")),
                                    Some(r#"a DNS name like "shop.example.com", or "*.example.com" for its subdomains"#.into()),
                                );
                            }
                        }
                    }
                    "cert" => {
                        certificate.cert =
                            self.string(value, &path("cert"), r#"cert = "tls/shop.pem""#)
                    }
                    "key" => {
                        certificate.key =
                            self.string(value, &path("key"), r#"key = "tls/shop.key""#)
                    }
                    "acme" => {
                        certificate.acme = self
                            .boolean(value, &path("acme"), "acme = true")
                            .unwrap_or(false)
                    }
                    "local" => {
                        certificate.local = self
                            .boolean(value, &path("local"), "local = true")
                            .unwrap_or(false)
                    }
                    other => self.unknown_key(key, other, CERTIFICATE_KEYS, "[[certificate]]"),
                }
            }
            let files = certificate.cert.is_some() || certificate.key.is_some();
            let sources = [files, certificate.acme, certificate.local]
                .iter()
                .filter(|s| **s)
                .count();
            if sources != 1 {
                self.problems.push(
                    item.span(),
                    if sources == 0 {
                        format!("{label} says nowhere its certificate comes from")
                    } else {
                        format!("{label} names more than one source")
                    },
                    Some(
                        "give exactly one of: cert and key files, acme = true, or local = true"
                            .into(),
                    ),
                );
            } else if files && (certificate.cert.is_none() || certificate.key.is_none()) {
                self.problems.push(
                    item.span(),
                    format!("{label} needs both `cert` and `key`"),
                    Some(r#"cert = "tls/shop.pem" and key = "tls/shop.key" (PEM files)"#.into()),
                );
            }
            if certificate.hosts.is_empty() && !table.iter().any(|(k, _)| k.get_ref() == "hosts") {
                self.problems.push(
                    item.span(),
                    format!("{label} has no `hosts`"),
                    Some(r#"hosts = ["shop.example.com"]"#.into()),
                );
            }
            if certificate.acme {
                for host in certificate
                    .hosts
                    .iter()
                    .filter(|h| h.value.starts_with("*."))
                {
                    self.problems.push(
                        host.span.clone(),
                        format!("ACME cannot issue \"{}\" here", host.value),
                        Some("wildcard names need the DNS-01 challenge, which Berth does not do; name each host, or use cert/key files".into()),
                    );
                }
            }
            certificates.push(certificate);
        }
        certificates
    }

    pub(super) fn acme(&mut self, value: &Value<'_>) -> RawAcme {
        let mut acme = RawAcme::default();
        let Some(table) = self.table(value, "acme", "[acme]") else {
            return acme;
        };
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "directory" => {
                    let text = self.string(
                        value,
                        "acme.directory",
                        &format!(r#"directory = "{LETS_ENCRYPT}""#),
                    );
                    if let Some(text) = text {
                        if text.value.starts_with("https://") {
                            acme.directory = Some(text.value);
                        } else {
                            self.problems.push(
                                text.span,
                                "`acme.directory` must be an https:// URL",
                                Some(format!("Let's Encrypt's is \"{LETS_ENCRYPT}\"")),
                            );
                        }
                    }
                }
                "email" => {
                    acme.email = self
                        .string(value, "acme.email", r#"email = "ops@example.com""#)
                        .map(|e| e.value)
                }
                "ca" => acme.ca = self.string(value, "acme.ca", r#"ca = "tls/acme-root.pem""#),
                other => self.unknown_key(key, other, ACME_KEYS, "[acme]"),
            }
        }
        acme
    }
}
