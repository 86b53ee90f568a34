//! `[backup]` and `secrets = [...]` read from a valid spec: written values and defaults.

use std::path::Path;
use std::time::Duration;

use berth_spec::{BackupDestination, RetentionSpec};

fn parse(source: &str) -> berth_spec::Spec {
    berth_spec::parse(Path::new("/srv/shop/berth.toml"), source, None)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn no_backup_table_means_defaults_and_no_schedule() {
    let spec = parse("[service.web]\nrun = \"x\"\n");
    assert!(!spec.backup.scheduled);
    assert_eq!(spec.backup.schedule, "0 3 * * *");
    assert_eq!(spec.backup.retention, RetentionSpec::DEFAULT);
    assert_eq!(spec.backup.destination, BackupDestination::Local(None));
    assert!(spec.services["web"].secrets.is_empty());
}

#[test]
fn written_values_are_kept() {
    let spec = parse(
        r#"
[service.web]
run = "x"
use = ["db"]
secrets = ["SECRET_KEY", "DB_PASSWORD"]

[accessory.db]
engine = "postgres"

[volume.uploads]

[backup]
schedule = "30 2 * * 1-5"
accessories = ["db"]
volumes = []
keep_daily = 3
max_age = "30d"
destination = "s3://backups/shop/prod"
endpoint = "http://127.0.0.1:9000"
region = "us-east-1"
"#,
    );
    assert_eq!(spec.services["web"].secrets, ["SECRET_KEY", "DB_PASSWORD"]);
    let b = &spec.backup;
    assert!(b.scheduled);
    assert_eq!(b.schedule, "30 2 * * 1-5");
    assert_eq!(b.accessories.as_deref(), Some(&["db".to_string()][..]));
    assert_eq!(b.volumes.as_deref(), Some(&[][..]));
    assert_eq!(
        b.retention,
        RetentionSpec {
            daily: 3,
            weekly: 0,
            monthly: 0,
            max_age: Some(Duration::from_secs(30 * 86400)),
        }
    );
    assert_eq!(
        b.destination,
        BackupDestination::S3 {
            bucket: "backups".into(),
            prefix: "shop/prod".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("us-east-1".into()),
        }
    );
}

#[test]
fn a_local_destination_is_a_folder() {
    let spec = parse("[backup]\ndestination = \"/var/backups/shop\"\n");
    assert_eq!(
        spec.backup.destination,
        BackupDestination::Local(Some("/var/backups/shop".into()))
    );
}
