//! Snapshot tests: each `snapshots/NAME.toml` is a bad spec; parsing it must fail and render
//! exactly `snapshots/NAME.txt`. Run with `BERTH_BLESS=1` to (re)write the expected files, then
//! review them.

use std::path::{Path, PathBuf};

fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// Parses `snapshots/NAME.toml` (as the user file `berth.toml`) and compares the rendered
/// diagnostics to `snapshots/NAME.txt`.
fn check(name: &str, environment: Option<&str>) {
    let input = snapshots().join(format!("{name}.toml"));
    let source = std::fs::read_to_string(&input).unwrap();
    let rendered = match berth_spec::parse(Path::new("berth.toml"), &source, environment) {
        Ok(spec) => panic!("{name}: expected diagnostics, parsed {spec:#?}"),
        Err(diagnostics) => diagnostics.to_string(),
    };
    let expected_path = snapshots().join(format!("{name}.txt"));
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(&expected_path, &rendered).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
        panic!(
            "{name}: no {}; run with BERTH_BLESS=1",
            expected_path.display()
        )
    });
    assert_eq!(
        rendered, expected,
        "\n{name}: rendered diagnostics differ\n--- got ---\n{rendered}\n--- expected ---\n{expected}"
    );
}

macro_rules! snapshot {
    ($name:ident) => {
        snapshot!($name, None);
    };
    ($name:ident, $environment:expr) => {
        #[test]
        fn $name() {
            check(stringify!($name), $environment);
        }
    };
}

snapshot!(unknown_key_did_you_mean);
snapshot!(cron_mistakes);
snapshot!(container_mistakes);
snapshot!(tls_mistakes);
snapshot!(tls_without_certificate);
snapshot!(unknown_key_lists_valid);
snapshot!(wrong_type);
snapshot!(bad_duration);
snapshot!(bad_size);
snapshot!(min_above_max);
snapshot!(replicas_with_min);
snapshot!(route_unknown_service);
snapshot!(route_to_worker);
snapshot!(duplicate_route);
snapshot!(health_without_port);
snapshot!(unknown_accessory);
snapshot!(unknown_dependency);
snapshot!(unknown_volume);
snapshot!(same_variable);
snapshot!(override_unknown_service);
snapshot!(unknown_environment, Some("prod"));
snapshot!(unknown_environment_none_declared, Some("staging"));
snapshot!(syntax_error);
snapshot!(missing_required);
snapshot!(names_and_addresses);
snapshot!(several_errors);
snapshot!(edge_limits);
snapshot!(balance_and_deregistration);
snapshot!(sticky_without_port);
snapshot!(bad_sticky);
snapshot!(override_not_allowed);

#[test]
fn missing_file_is_a_diagnostic() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("berth.toml");
    let diagnostics = berth_spec::load(&path, None).unwrap_err();
    let expected = format!(
        "{}:1:1: error: cannot read the spec: No such file or directory (os error 2)\n  = hint: run berth in the folder holding berth.toml or pass -f FILE\n",
        path.display()
    );
    assert_eq!(diagnostics.to_string(), expected);
    assert_eq!(diagnostics.items[0].file, path);
}

#[test]
fn file_is_named_as_given() {
    let source = "[service.web]\nrun = 1\n";
    let diagnostics =
        berth_spec::parse(Path::new("./deploy/../berth.toml"), source, None).unwrap_err();
    assert!(diagnostics
        .to_string()
        .starts_with("./deploy/../berth.toml:2:7: error: "));
    assert_eq!(diagnostics.items[0].line, 2);
    assert_eq!(diagnostics.items[0].col, 7);
}
snapshot!(deploy_mistakes);
snapshot!(canary_worker);
snapshot!(backup_mistakes);
snapshot!(backup_s3_options);
