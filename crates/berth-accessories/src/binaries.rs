//! Finding the servers' programs: Debian's versioned PostgreSQL folders, `PATH` and the `sbin`
//! folders (or only the folders the caller names). A missing program is reported with the
//! Debian package that provides it.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Error};
use berth_spec::Engine;

use crate::config::engine_label;
use crate::process::TOOL_PATH;

/// Where Debian installs each PostgreSQL major version (`<root>/<version>/bin`).
const POSTGRES_VERSIONS_ROOT: &str = "/usr/lib/postgresql";

/// Where to look for programs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BinSearch {
    /// Only these folders, when set; else the system's usual places.
    pub only: Option<Vec<PathBuf>>,
}

impl BinSearch {
    /// The folders to search for `engine`'s programs, in order of preference. For PostgreSQL,
    /// the version that initialised the data folder (`pg_version`) comes first, then the newest.
    pub fn folders(&self, engine: Engine, pg_version: Option<&str>) -> Vec<PathBuf> {
        if let Some(only) = &self.only {
            return only.clone();
        }
        let mut folders = Vec::new();
        if engine == Engine::Postgres {
            folders.extend(postgres_version_folders(
                Path::new(POSTGRES_VERSIONS_ROOT),
                pg_version,
            ));
        }
        let path = std::env::var("PATH").unwrap_or_default();
        folders.extend(
            std::env::split_paths(&path)
                .chain(std::env::split_paths(TOOL_PATH))
                .filter(|p| p.is_absolute()),
        );
        let mut seen = HashSet::new();
        folders.retain(|f| seen.insert(f.clone()));
        folders
    }
}

/// `<root>/<version>/bin` for every installed version: `preferred` first, then newest first.
fn postgres_version_folders(root: &Path, preferred: Option<&str>) -> Vec<PathBuf> {
    let mut versions: Vec<(Vec<u32>, String)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((key, name))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    if let Some(preferred) = preferred {
        if let Some(i) = versions.iter().position(|(_, name)| name == preferred) {
            let chosen = versions.remove(i);
            versions.insert(0, chosen);
        }
    }
    versions
        .into_iter()
        .map(|(_, name)| root.join(name).join("bin"))
        .collect()
}

/// The first `folder/name` that is an executable file, trying each name in each folder.
pub(crate) fn find(folders: &[PathBuf], names: &[&str]) -> Option<PathBuf> {
    folders
        .iter()
        .flat_map(|folder| names.iter().map(move |name| folder.join(name)))
        .find(|path| is_executable(path))
}

/// The first folder holding every one of `names`.
pub(crate) fn find_folder_with_all(folders: &[PathBuf], names: &[&str]) -> Option<PathBuf> {
    folders
        .iter()
        .find(|folder| names.iter().all(|name| is_executable(&folder.join(name))))
        .cloned()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The Debian package that provides `engine`'s server.
pub(crate) fn debian_package(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "postgresql",
        Engine::Mysql => "mariadb-server",
        Engine::Redis => "redis-server",
    }
}

/// The error for an engine whose program `what` was not found in `folders`.
pub(crate) fn missing(engine: Engine, what: &str, folders: &[PathBuf]) -> Error {
    let package = debian_package(engine);
    let searched: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
    anyhow!(
        "{} is not installed: {what} not found (searched {}). \
         Install the Debian package `{package}`: apt-get install {package}",
        engine_label(engine),
        if searched.is_empty() {
            "nowhere".to_string()
        } else {
            searched.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn touch_exe(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn postgres_versions_prefer_the_data_folder_version_then_the_newest() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "13", "15", "not-a-version"] {
            fs::create_dir_all(root.path().join(v).join("bin")).unwrap();
        }
        let names = |pref| -> Vec<String> {
            postgres_version_folders(root.path(), pref)
                .iter()
                .map(|p| {
                    p.parent()
                        .unwrap()
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        assert_eq!(names(None), ["15", "13", "9.6"]);
        assert_eq!(names(Some("13")), ["13", "15", "9.6"]);
        assert_eq!(names(Some("11")), ["15", "13", "9.6"]);
    }

    #[test]
    fn programs_are_found_by_any_of_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        touch_exe(&b.join("mysqld"));
        fs::create_dir_all(&a).unwrap();
        fs::write(a.join("mariadbd"), "not executable").unwrap();
        let folders = vec![a.clone(), b.clone()];
        assert_eq!(
            find(&folders, &["mariadbd", "mysqld"]),
            Some(b.join("mysqld"))
        );
        assert_eq!(find(&folders, &["redis-server"]), None);

        touch_exe(&a.join("psql"));
        touch_exe(&b.join("psql"));
        touch_exe(&b.join("initdb"));
        assert_eq!(find_folder_with_all(&folders, &["psql", "initdb"]), Some(b));
    }

    #[test]
    fn explicit_folders_replace_the_defaults() {
        let only = BinSearch {
            only: Some(vec![PathBuf::from("/opt/x")]),
        };
        assert_eq!(
            only.folders(Engine::Postgres, None),
            [PathBuf::from("/opt/x")]
        );
        let default = BinSearch::default().folders(Engine::Redis, None);
        assert!(default.contains(&PathBuf::from("/usr/sbin")));
    }

    #[test]
    fn missing_programs_name_the_debian_package() {
        let folders = [PathBuf::from("/nowhere")];
        for (engine, package) in [
            (Engine::Postgres, "postgresql"),
            (Engine::Mysql, "mariadb-server"),
            (Engine::Redis, "redis-server"),
        ] {
            let msg = missing(engine, "`x`", &folders).to_string();
            assert!(msg.contains(&format!("apt-get install {package}")), "{msg}");
            assert!(msg.contains("/nowhere"), "{msg}");
        }
    }
}
