//! Good specs parse to the expected effective values, with the defaults of `docs/berth-toml.md`
//! applied and environment overrides merged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_spec::{
    AccessorySpec, Balance, EdgeSpec, Engine, HealthSpec, PortSpec, ReplicaCount, RouteSpec, Spec,
    StickySpec, VolumeSpec,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .canonicalize()
        .unwrap()
}

fn load(name: &str, environment: Option<&str>) -> Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    berth_spec::load(&path, environment).unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

#[test]
fn full_spec_parses_to_the_written_values() {
    let spec = load("full.toml", None);
    let folder = fixtures();
    assert_eq!(spec.path, folder.join("full.toml"));
    assert_eq!(spec.environment, "default");
    assert_eq!(spec.stack.name, "hello");
    assert_eq!(spec.stack.keep_releases, 3);
    assert_eq!(
        spec.edge.listen,
        vec![addr("127.0.0.1:8080"), addr("0.0.0.0:443")]
    );
    assert_eq!(spec.edge.admin, addr("127.0.0.1:9191"));
    assert_eq!(spec.edge.max_body, 10 << 20);
    assert_eq!(spec.edge.max_header, 32 << 10);
    assert_eq!(spec.edge.connect_timeout, Duration::from_secs(2));
    assert_eq!(spec.edge.header_timeout, Duration::from_secs(5));
    assert_eq!(spec.edge.idle_timeout, Duration::from_secs(120));
    assert_eq!(spec.edge.request_timeout, Duration::from_secs(90));
    assert!(!spec.edge.access_log);
    assert_eq!(spec.env, env(&[("APP_NAME", "hello"), ("DEBUG", "1")]));
    assert_eq!(spec.environments, strings(&["production", "staging"]));

    let web = &spec.services["web"];
    assert_eq!(web.name, "web");
    assert_eq!(web.run, "python3 app.py");
    assert_eq!(
        web.build.as_deref(),
        Some("pip install -r requirements.txt")
    );
    assert_eq!(web.source, folder.join("app"));
    assert_eq!(web.port, PortSpec::Auto);
    assert_eq!(web.replicas, ReplicaCount { min: 2, max: 4 });
    assert_eq!(web.stop_timeout, Duration::from_secs(15));
    assert_eq!(
        web.env,
        env(&[("APP_NAME", "hello"), ("APP_VERSION", "1"), ("DEBUG", "1")])
    );
    assert_eq!(web.uses, strings(&["db", "cache"]));
    assert_eq!(web.volumes, strings(&["uploads"]));
    assert_eq!(
        web.health,
        Some(HealthSpec {
            path: "/health".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            healthy_threshold: 3,
            unhealthy_threshold: 4,
            grace_period: Duration::from_secs(90),
        })
    );
    assert_eq!(web.memory, Some(256 * 1024 * 1024));
    assert_eq!(web.cpu, Some(0.5));
    assert_eq!(web.balance, Balance::RoundRobin);
    assert_eq!(web.deregistration_delay, Duration::ZERO);
    assert_eq!(
        web.sticky,
        Some(StickySpec {
            cookie: "PrestaShopSession".into(),
            duration: Duration::from_secs(2 * 3600),
        })
    );

    let api = &spec.services["api"];
    assert_eq!(api.run, "./api --port $PORT");
    assert_eq!(api.build, None);
    assert_eq!(api.source, folder.parent().unwrap().join("api"));
    assert_eq!(api.port, PortSpec::Fixed(9000));
    assert_eq!(api.replicas, ReplicaCount { min: 2, max: 2 });
    assert_eq!(
        api.health,
        Some(HealthSpec {
            path: "/ready".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            grace_period: Duration::from_secs(60),
        })
    );
    assert_eq!(api.balance, Balance::LeastOutstanding);
    assert_eq!(api.deregistration_delay, Duration::from_secs(45));
    assert_eq!(
        api.sticky,
        Some(StickySpec {
            cookie: "api_session".into(),
            duration: Duration::from_secs(86400),
        })
    );

    let worker = &spec.services["worker"];
    assert_eq!(worker.port, PortSpec::None);
    assert_eq!(worker.source, folder);
    assert_eq!(worker.replicas, ReplicaCount { min: 1, max: 1 });
    assert_eq!(worker.stop_timeout, Duration::from_secs(10));
    assert_eq!(worker.depends_on, strings(&["cache", "db"]));
    assert_eq!(worker.dependencies(), vec!["db", "cache"]);
    assert!(spec.services["web"].depends_on.is_empty());
    assert_eq!(worker.volumes, strings(&["uploads", "user-media"]));
    assert_eq!(worker.memory, Some(1 << 30));
    assert_eq!(worker.cpu, Some(2.0));
    assert_eq!(worker.health, None);
    assert_eq!(worker.balance, Balance::LeastOutstanding);
    assert_eq!(worker.deregistration_delay, Duration::from_secs(30));
    assert_eq!(worker.sticky, None);

    assert_eq!(
        spec.accessories["db"],
        AccessorySpec {
            name: "db".into(),
            engine: Engine::Postgres,
            database: "hello_db".into(),
            user: "hello_user".into(),
            port: Some(54321),
            env: "DATABASE_URL".into(),
        }
    );
    assert_eq!(
        spec.accessories["cache"],
        AccessorySpec {
            name: "cache".into(),
            engine: Engine::Redis,
            database: "cache".into(),
            user: "cache".into(),
            port: None,
            env: "REDIS_URL".into(),
        }
    );
    assert_eq!(spec.accessories["reports"].engine, Engine::Mysql);
    assert_eq!(spec.accessories["reports"].env, "REPORTS_URL");

    assert_eq!(
        spec.volumes["uploads"],
        VolumeSpec {
            name: "uploads".into(),
            env: "UPLOADS_PATH".into()
        }
    );
    assert_eq!(spec.volumes["user-media"].env, "USER_MEDIA_DIR");

    assert_eq!(
        spec.routes,
        vec![
            RouteSpec {
                host: Some("shop.example.com".into()),
                path: "/".into(),
                service: "web".into(),
                headers: Default::default(),
                compress: None,
            },
            RouteSpec {
                host: None,
                path: "/api".into(),
                service: "api".into(),
                headers: Default::default(),
                compress: None,
            },
            RouteSpec {
                host: Some("*.example.com".into()),
                path: "/".into(),
                service: "web".into(),
                headers: Default::default(),
                compress: None,
            },
        ]
    );
}

#[test]
fn minimal_spec_gets_the_defaults() {
    let spec = load("minimal.toml", None);
    let folder = fixtures();
    assert_eq!(spec.stack.name, "fixtures");
    assert_eq!(spec.stack.keep_releases, 5);
    assert_eq!(spec.edge.listen, vec![addr("127.0.0.1:8080")]);
    assert_eq!(spec.edge.admin, addr("127.0.0.1:9090"));
    // The edge's limits and timeouts default to those of the references' ALB.
    assert_eq!(spec.edge.max_body, 64 * 1024 * 1024);
    assert_eq!(spec.edge.max_header, 64 * 1024);
    assert_eq!(spec.edge.connect_timeout, Duration::from_secs(5));
    assert_eq!(spec.edge.header_timeout, Duration::from_secs(10));
    assert_eq!(spec.edge.idle_timeout, Duration::from_secs(60));
    assert_eq!(spec.edge.request_timeout, Duration::from_secs(60));
    assert!(spec.edge.access_log);
    assert_eq!(spec.edge, EdgeSpec::default());
    assert!(spec.env.is_empty());
    assert!(spec.environments.is_empty());

    let web = &spec.services["web"];
    assert_eq!(web.source, folder);
    assert_eq!(web.replicas, ReplicaCount { min: 1, max: 1 });
    assert_eq!(web.stop_timeout, Duration::from_secs(10));
    assert_eq!(web.memory, None);
    assert_eq!(web.cpu, None);
    assert_eq!(web.balance, Balance::LeastOutstanding);
    assert_eq!(web.deregistration_delay, Duration::from_secs(30));
    assert_eq!(web.sticky, None);
    assert_eq!(
        web.health,
        Some(HealthSpec {
            path: "/health".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            grace_period: Duration::from_secs(60),
        })
    );
    assert_eq!(
        spec.accessories["db"],
        AccessorySpec {
            name: "db".into(),
            engine: Engine::Mysql,
            database: "db".into(),
            user: "db".into(),
            port: None,
            env: "DATABASE_URL".into(),
        }
    );
    assert_eq!(spec.accessories["cache"].env, "REDIS_URL");
    assert_eq!(spec.volumes["uploads"].env, "UPLOADS_DIR");
    assert_eq!(
        spec.routes,
        vec![RouteSpec {
            host: None,
            path: "/".into(),
            service: "web".into(),
            headers: Default::default(),
            compress: None,
        }]
    );
}

#[test]
fn default_environment_means_no_overrides() {
    assert_eq!(load("full.toml", Some("default")), load("full.toml", None));
}

#[test]
fn production_overrides_are_merged() {
    let spec = load("full.toml", Some("production"));
    assert_eq!(spec.environment, "production");
    assert_eq!(
        spec.env,
        env(&[("APP_NAME", "hello"), ("DEBUG", "0"), ("SENTRY", "on")])
    );
    let web = &spec.services["web"];
    assert_eq!(web.replicas, ReplicaCount { min: 2, max: 8 });
    assert_eq!(web.memory, Some(512 * 1024 * 1024));
    assert_eq!(web.cpu, Some(1.0));
    assert_eq!(
        web.env,
        env(&[
            ("APP_NAME", "hello"),
            ("APP_VERSION", "2"),
            ("DEBUG", "0"),
            ("SENTRY", "on"),
            ("WORKERS", "4"),
        ])
    );
    assert_eq!(
        spec.services["api"].replicas,
        ReplicaCount { min: 3, max: 3 }
    );
    // balance, deregistration_delay and sticky are not overridable: production keeps them.
    assert_eq!(web.balance, Balance::RoundRobin);
    assert_eq!(web.deregistration_delay, Duration::ZERO);
    assert_eq!(web.sticky.as_ref().unwrap().cookie, "PrestaShopSession");
    assert_eq!(spec.edge, load("full.toml", None).edge);
    let worker = &spec.services["worker"];
    assert_eq!(worker.replicas, ReplicaCount { min: 1, max: 1 });
    assert_eq!(worker.memory, Some(1 << 30));
    assert_eq!(worker.env["DEBUG"], "0");
}

#[test]
fn staging_overrides_only_what_it_names() {
    let spec = load("full.toml", Some("staging"));
    let default = load("full.toml", None);
    assert_eq!(spec.env, default.env);
    assert_eq!(
        spec.services["worker"].replicas,
        ReplicaCount { min: 0, max: 2 }
    );
    assert_eq!(spec.services["web"], default.services["web"]);
}

#[test]
fn hash_is_stable_and_tracks_the_effective_spec() {
    let first = load("full.toml", None);
    let again = load("full.toml", None);
    let production = load("full.toml", Some("production"));
    assert_eq!(first.hash(), again.hash());
    assert_eq!(first.hash().len(), 64);
    assert!(first.hash().chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(first.hash(), production.hash());
}

#[test]
fn hash_tracks_the_edge_and_target_group_keys() {
    let hash = |source: &str| {
        berth_spec::parse(Path::new("berth.toml"), source, None)
            .unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
            .hash()
    };
    let base = "[service.web]\nrun = \"x\"\nport = \"auto\"\n";
    let variants = [
        base.to_string(),
        format!("{base}balance = \"round_robin\"\n"),
        format!("{base}deregistration_delay = \"5s\"\n"),
        format!("{base}sticky = {{ cookie = \"s\" }}\n"),
        format!("{base}[edge]\nmax_body = \"1M\"\n"),
        format!("{base}[edge]\naccess_log = false\n"),
    ];
    let hashes: std::collections::BTreeSet<String> =
        variants.iter().map(|source| hash(source)).collect();
    assert_eq!(hashes.len(), variants.len());
    // Writing a default explicitly changes nothing.
    assert_eq!(
        hash(base),
        hash(&format!(
            "{base}balance = \"least_outstanding\"\nderegistration_delay = \"30s\"\n\
             [edge]\nmax_body = \"64M\"\nidle_timeout = \"60s\"\naccess_log = true\n"
        ))
    );
}

#[test]
fn specs_serialized_before_the_edge_keys_still_read() {
    let spec = load("full.toml", None);
    let mut json = serde_json::to_value(&spec).unwrap();
    for key in [
        "max_body",
        "max_header",
        "connect_timeout",
        "header_timeout",
        "idle_timeout",
        "request_timeout",
        "access_log",
    ] {
        json["edge"].as_object_mut().unwrap().remove(key);
    }
    for service in json["services"].as_object_mut().unwrap().values_mut() {
        let service = service.as_object_mut().unwrap();
        for key in ["balance", "deregistration_delay", "sticky"] {
            service.remove(key);
        }
    }
    let back: Spec = serde_json::from_value(json).unwrap();
    assert_eq!(back.edge.listen, spec.edge.listen);
    assert_eq!(back.edge.max_body, EdgeSpec::DEFAULT_MAX_BODY);
    assert!(back.edge.access_log);
    let web = &back.services["web"];
    assert_eq!(web.balance, Balance::LeastOutstanding);
    assert_eq!(web.deregistration_delay, Duration::from_secs(30));
    assert_eq!(web.sticky, None);
}

#[test]
fn spec_round_trips_through_json() {
    let spec = load("full.toml", Some("production"));
    let json = serde_json::to_string(&spec).unwrap();
    let back: Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    assert_eq!(back.hash(), spec.hash());
}

#[test]
fn the_hello_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello/berth.toml");
    let spec = berth_spec::load(&path, Some("production"))
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    assert_eq!(spec.stack.name, "hello");
    assert_eq!(
        spec.services["web"].replicas,
        ReplicaCount { min: 3, max: 3 }
    );
    assert_eq!(spec.volumes["uploads"].env, "UPLOADS_DIR");
}

#[test]
fn canary_analysis_keys_parse_to_their_values_and_default_to_rollback() {
    let source = r#"
[service.web]
run = "python3 app.py"
port = "auto"

[service.web.deploy.analysis]
min_route_requests = 30
significance = 0.05
min_effect = 0.5
max_wait = "30s"
inconclusive = "pause"
"#;
    let spec = berth_spec::parse(Path::new("berth.toml"), source, None)
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let a = &spec.services["web"].deploy.analysis;
    assert_eq!(a.min_route_requests, 30);
    assert_eq!(a.significance, 0.05);
    assert_eq!(a.min_effect, 0.5);
    assert_eq!(a.max_wait, std::time::Duration::from_secs(30));
    assert_eq!(a.inconclusive, berth_spec::Inconclusive::Pause);
    let defaults = berth_spec::AnalysisSpec::default();
    assert_eq!(defaults.inconclusive, berth_spec::Inconclusive::Rollback);
    assert_eq!(defaults.min_route_requests, 20);
    assert_eq!(defaults.max_wait, std::time::Duration::from_secs(300));
}
