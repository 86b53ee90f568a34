//! The replica board: the live view of every replica's status, published by the supervisor.
//!
//! The edge and the rollout engine read replica health here (and are woken on every change),
//! never by asking the daemon.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::{ReplicaKey, ReplicaStatus};

#[derive(Clone)]
pub struct ReplicaBoard {
    replicas: Arc<RwLock<BTreeMap<ReplicaKey, ReplicaStatus>>>,
    version: Arc<watch::Sender<u64>>,
}

impl Default for ReplicaBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplicaBoard {
    pub fn new() -> Self {
        Self {
            replicas: Arc::default(),
            version: Arc::new(watch::channel(0).0),
        }
    }

    /// Sets a replica's status; subscribers are woken if it changed.
    pub fn publish(&self, key: &ReplicaKey, status: ReplicaStatus) {
        let changed = {
            let mut map = self.replicas.write().unwrap_or_else(|e| e.into_inner());
            let changed = map.get(key) != Some(&status);
            map.insert(key.clone(), status);
            changed
        };
        if changed {
            self.version.send_modify(|v| *v += 1);
        }
    }

    pub fn remove(&self, key: &ReplicaKey) {
        let removed = self
            .replicas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .is_some();
        if removed {
            self.version.send_modify(|v| *v += 1);
        }
    }

    pub fn get(&self, key: &ReplicaKey) -> Option<ReplicaStatus> {
        self.replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// All replicas, ordered by service then slot.
    pub fn snapshot(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A receiver that changes whenever any replica's status does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Health;

    fn status(health: Health) -> ReplicaStatus {
        ReplicaStatus {
            service: "web".into(),
            replica: "web.1".into(),
            index: 1,
            pid: Some(1),
            port: Some(8000),
            health,
            release: "r1-abc".into(),
            started_at: None,
            restarts: 0,
            last_exit: None,
            last_log: vec![],
            limits: None,
        }
    }

    #[test]
    fn publish_wakes_subscribers_only_on_change() {
        let board = ReplicaBoard::new();
        let mut rx = board.subscribe();
        let key = ReplicaKey::new("web", 1);
        board.publish(&key, status(Health::Starting));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        board.publish(&key, status(Health::Starting));
        assert!(!rx.has_changed().unwrap());
        board.publish(&key, status(Health::Healthy));
        assert!(rx.has_changed().unwrap());
        assert_eq!(board.get(&key).unwrap().health, Health::Healthy);
        board.remove(&key);
        assert!(board.snapshot().is_empty());
    }
}
