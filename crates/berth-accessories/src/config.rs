//! The public description of an accessory ([`AccessoryConfig`]), what a live one looks like
//! ([`RunningAccessory`]) and the connection URLs handed to services.

use std::fmt;
use std::path::PathBuf;

use berth_spec::Engine;

/// What Berth needs to know to run one accessory of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessoryConfig {
    /// The accessory's name in `berth.toml` (used in messages).
    pub name: String,
    pub engine: Engine,
    /// The database created for the services (postgres, mysql; unused for redis).
    pub database: String,
    /// The user created for the services (postgres, mysql; unused for redis).
    pub user: String,
    /// A fixed TCP port on 127.0.0.1; `None`: a free loopback port is chosen on first start,
    /// persisted in the accessory folder and reused afterwards.
    pub port: Option<u16>,
    /// The accessory's own folder (created when missing); see the crate docs for its layout.
    pub dir: PathBuf,
}

/// A live accessory server.
///
/// `Debug` hides the password carried by `url`.
#[derive(Clone, PartialEq, Eq)]
pub struct RunningAccessory {
    /// The server's main process.
    pub pid: u32,
    /// The TCP port it listens on, on 127.0.0.1.
    pub port: u16,
    /// The connection URL, password included: treat it as a secret.
    pub url: String,
}

impl fmt::Debug for RunningAccessory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningAccessory")
            .field("pid", &self.pid)
            .field("port", &self.port)
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// The URL services use to reach an accessory on 127.0.0.1.
pub(crate) fn connection_url(
    engine: Engine,
    user: &str,
    password: &str,
    port: u16,
    database: &str,
) -> String {
    let (user, password, database) = (encode(user), encode(password), encode(database));
    match engine {
        Engine::Postgres => format!("postgres://{user}:{password}@127.0.0.1:{port}/{database}"),
        Engine::Mysql => format!("mysql://{user}:{password}@127.0.0.1:{port}/{database}"),
        Engine::Redis => format!("redis://:{password}@127.0.0.1:{port}/0"),
    }
}

/// The engine's human name, for messages.
pub(crate) fn engine_label(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "PostgreSQL",
        Engine::Mysql => "MariaDB",
        Engine::Redis => "Redis",
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for the userinfo and path
/// parts of a URL.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `scheme://user:secret@host/...` with the secret replaced by `***`.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_per_engine() {
        assert_eq!(
            connection_url(Engine::Postgres, "app", "pw", 5432, "shop"),
            "postgres://app:pw@127.0.0.1:5432/shop"
        );
        assert_eq!(
            connection_url(Engine::Mysql, "app", "pw", 3306, "shop"),
            "mysql://app:pw@127.0.0.1:3306/shop"
        );
        assert_eq!(
            connection_url(Engine::Redis, "ignored", "pw", 6379, "ignored"),
            "redis://:pw@127.0.0.1:6379/0"
        );
    }

    #[test]
    fn url_parts_are_percent_encoded() {
        assert_eq!(
            connection_url(Engine::Postgres, "a b", "p@ss:", 1, "my-db_1.x"),
            "postgres://a%20b:p%40ss%3A@127.0.0.1:1/my-db_1.x"
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let running = RunningAccessory {
            pid: 7,
            port: 5432,
            url: connection_url(Engine::Postgres, "app", "s3cretS3cret", 5432, "shop"),
        };
        let shown = format!("{running:?}");
        assert!(!shown.contains("s3cretS3cret"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@127.0.0.1:5432/shop"),
            "{shown}"
        );
        let redis = RunningAccessory {
            pid: 7,
            port: 6379,
            url: connection_url(Engine::Redis, "", "s3cretS3cret", 6379, ""),
        };
        let shown = format!("{redis:?}");
        assert!(shown.contains("redis://:***@127.0.0.1:6379/0"), "{shown}");
    }
}
