//! Resource limits for a replica: cgroup v1 or v2 where the machine allows, else rlimits.
//!
//! The shim calls [`apply_to_self`] before starting the application, so the application (and
//! everything it forks) inherits the control group. What could not be applied is said, never
//! hidden: the text lands in `berth ps`.

use std::fs;
use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CPU_PERIOD_US: u64 = 100_000;

/// What [`apply_to_self`] managed to do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AppliedLimits {
    pub memory: Option<String>,
    pub cpu: Option<String>,
    /// Address-space limit the application must set on itself (the memory fallback).
    pub rlimit_as: Option<u64>,
}

impl AppliedLimits {
    /// `memory 256 MiB (cgroup v1); cpu 0.5 (cgroup v1)`, or `none` when nothing was asked.
    pub fn describe(&self) -> String {
        let parts: Vec<&str> = [self.memory.as_deref(), self.cpu.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// Which cgroup hierarchy the machine offers for a controller.
#[derive(Debug, Clone, PartialEq)]
enum Hierarchy {
    V1(PathBuf),
    V2(PathBuf),
}

fn hierarchy(controller: &str) -> Option<Hierarchy> {
    let v1 = Path::new(CGROUP_ROOT).join(controller);
    if v1.join("cgroup.procs").exists() {
        return Some(Hierarchy::V1(v1));
    }
    let root = Path::new(CGROUP_ROOT);
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    controllers
        .split_whitespace()
        .any(|c| c == controller)
        .then(|| Hierarchy::V2(root.to_path_buf()))
}

/// Puts the calling process in the control group `name` with the given limits.
pub fn apply_to_self(name: &str, memory: Option<u64>, cpu: Option<f64>) -> AppliedLimits {
    let pid = std::process::id();
    let mut applied = AppliedLimits::default();
    if let Some(bytes) = memory {
        let mib = bytes / (1024 * 1024);
        applied.memory = Some(match hierarchy("memory") {
            Some(Hierarchy::V1(root)) => {
                match join(
                    &root.join(name),
                    pid,
                    &[("memory.limit_in_bytes", bytes.to_string())],
                ) {
                    Ok(()) => format!("memory {mib} MiB (cgroup v1)"),
                    Err(e) => memory_fallback(&mut applied.rlimit_as, bytes, &e),
                }
            }
            Some(Hierarchy::V2(root)) => {
                match join_v2(
                    &root,
                    name,
                    pid,
                    "memory",
                    &[("memory.max", bytes.to_string())],
                ) {
                    Ok(()) => format!("memory {mib} MiB (cgroup v2)"),
                    Err(e) => memory_fallback(&mut applied.rlimit_as, bytes, &e),
                }
            }
            None => memory_fallback(&mut applied.rlimit_as, bytes, "no memory cgroup controller"),
        });
    }
    if let Some(cores) = cpu {
        let quota = ((cores * CPU_PERIOD_US as f64).round() as u64).max(1000);
        applied.cpu = Some(match hierarchy("cpu") {
            Some(Hierarchy::V1(root)) => match join(
                &root.join(name),
                pid,
                &[
                    ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ],
            ) {
                Ok(()) => format!("cpu {cores} (cgroup v1)"),
                Err(e) => format!("cpu limit not applied: {e}"),
            },
            Some(Hierarchy::V2(root)) => {
                match join_v2(
                    &root,
                    name,
                    pid,
                    "cpu",
                    &[("cpu.max", format!("{quota} {CPU_PERIOD_US}"))],
                ) {
                    Ok(()) => format!("cpu {cores} (cgroup v2)"),
                    Err(e) => format!("cpu limit not applied: {e}"),
                }
            }
            None => "cpu limit not applied: no cpu cgroup controller".to_string(),
        });
    }
    applied
}

fn memory_fallback(rlimit_as: &mut Option<u64>, bytes: u64, why: &str) -> String {
    *rlimit_as = Some(bytes);
    format!(
        "memory {} MiB as address-space rlimit (no cgroup: {why})",
        bytes / (1024 * 1024)
    )
}

fn join(dir: &Path, pid: u32, settings: &[(&str, String)]) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (file, value) in settings {
        fs::write(dir.join(file), value).map_err(|e| format!("{file}: {e}"))?;
    }
    fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|e| format!("cgroup.procs: {e}"))
}

fn join_v2(
    root: &Path,
    name: &str,
    pid: u32,
    controller: &str,
    settings: &[(&str, String)],
) -> Result<(), String> {
    // Enable the controller on every ancestor so the leaf gets its files.
    let mut dir = root.to_path_buf();
    for part in Path::new(name).parent().into_iter().flat_map(|p| p.iter()) {
        let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"));
        dir.push(part);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"));
    join(&root.join(name), pid, settings)
}

/// Moves the calling process back to the root groups and removes its (now empty) groups.
pub fn release_self(name: &str) {
    let pid = std::process::id().to_string();
    for controller in ["memory", "cpu"] {
        let (root, leaf) = match hierarchy(controller) {
            Some(Hierarchy::V1(root)) => (root.clone(), root.join(name)),
            Some(Hierarchy::V2(root)) => (root.clone(), root.join(name)),
            None => continue,
        };
        if leaf.exists() {
            let _ = fs::write(root.join("cgroup.procs"), &pid);
            let _ = fs::remove_dir(&leaf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_nothing_as_none() {
        assert_eq!(AppliedLimits::default().describe(), "none");
    }

    #[test]
    fn fallback_sets_rlimit_and_says_why() {
        let mut r = None;
        let text = memory_fallback(&mut r, 256 * 1024 * 1024, "no memory cgroup controller");
        assert_eq!(r, Some(256 * 1024 * 1024));
        assert!(text.contains("256 MiB"), "{text}");
        assert!(text.contains("no memory cgroup controller"), "{text}");
    }
}
