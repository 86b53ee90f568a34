//! Which replicas of a service to start and which to stop, as one pure function: the only
//! replacement and scaling policy of Berth. `Supervisor::converge` (scaling, `berth scale`, the
//! autoscaler, a rolling `berth restart`) and the rollout engine's rolling deploy both ask
//! [`plan`] and hand its [`Action`]s to `Supervisor::apply`, the one place that turns them into
//! processes started and stopped.
//!
//! The policy: a replica is *outdated* when it runs another release (or, in a restart, was up
//! before the restart began). While outdated replicas remain, new ones start as far as
//! `max_surge` allows above the desired count, and outdated ones stop (unhealthy ones first,
//! then healthy ones, lowest number first) as far as `max_unavailable` allows below it. Without
//! outdated replicas the count is met: missing replicas start, extra ones stop (not healthy
//! first, then the newest). Knows nothing of processes, health checks or time.

use berth_model::{Health, ReplicaKey};

/// What the service should become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desired {
    /// Replicas of the wanted release.
    pub count: u32,
    /// How many replicas may run above `count` while outdated ones are replaced.
    pub max_surge: u32,
    /// How many of `count` may be unavailable (not healthy) while outdated ones are replaced.
    pub max_unavailable: u32,
}

/// One live replica as the driver of the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub key: ReplicaKey,
    /// It runs another release than the wanted one, or is being restarted.
    pub outdated: bool,
    /// None: no status yet (just started).
    pub health: Option<Health>,
}

impl Observed {
    fn healthy(&self) -> bool {
        self.health == Some(Health::Healthy)
    }
}

/// One step toward the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start one replica of the wanted release.
    Start,
    /// Stop this replica (drained through the edge first).
    Stop(ReplicaKey),
}

/// What to do now to move `observed` toward `desired`. Empty when nothing can or need be done
/// now (waiting for new replicas to turn healthy, or done: see [`is_done`]).
pub fn plan(desired: &Desired, observed: &[Observed]) -> Vec<Action> {
    let (mut outdated, mut current): (Vec<&Observed>, Vec<&Observed>) =
        observed.iter().partition(|o| o.outdated);
    outdated.sort_by_key(|o| o.key.index);
    current.sort_by_key(|o| o.key.index);
    let count = desired.count as usize;
    let mut actions = Vec::new();

    if outdated.is_empty() {
        if current.len() < count {
            actions.extend(std::iter::repeat_n(Action::Start, count - current.len()));
        } else if current.len() > count {
            // The least useful first: not healthy, then the newest.
            let mut candidates = current.clone();
            candidates.sort_by(|a, b| {
                a.healthy()
                    .cmp(&b.healthy())
                    .then(b.key.index.cmp(&a.key.index))
            });
            actions.extend(
                candidates
                    .into_iter()
                    .take(current.len() - count)
                    .map(|o| Action::Stop(o.key.clone())),
            );
        }
        return actions;
    }

    // Replacing: never both zero, or nothing could move.
    let (mut surge, unavailable) = (desired.max_surge, desired.max_unavailable);
    if surge == 0 && unavailable == 0 {
        surge = 1;
    }
    let total = outdated.len() + current.len();
    let room = (count + surge as usize).saturating_sub(total);
    let needed = count.saturating_sub(current.len());
    actions.extend(std::iter::repeat_n(Action::Start, room.min(needed)));

    // Stop what capacity allows: every outdated replica that is not healthy, then healthy ones
    // while at least `count - unavailable` replicas stay healthy.
    let healthy_current = current.iter().filter(|o| o.healthy()).count();
    let (healthy_outdated, unhealthy_outdated): (Vec<&Observed>, Vec<&Observed>) =
        outdated.iter().partition(|o| o.healthy());
    let available = healthy_outdated.len() + healthy_current;
    let floor = count.saturating_sub(unavailable as usize);
    let can_stop = available.saturating_sub(floor);
    actions.extend(
        unhealthy_outdated
            .into_iter()
            .chain(healthy_outdated.into_iter().take(can_stop))
            .map(|o| Action::Stop(o.key.clone())),
    );
    actions
}

/// Whether `observed` is `desired`: no outdated replica, `count` replicas, all healthy.
pub fn is_done(desired: &Desired, observed: &[Observed]) -> bool {
    observed.iter().all(|o| !o.outdated)
        && observed.len() == desired.count as usize
        && observed.iter().all(Observed::healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(index: u32, outdated: bool, health: Option<Health>) -> Observed {
        Observed {
            key: ReplicaKey::new("web", index),
            outdated,
            health,
        }
    }

    const HEALTHY: Option<Health> = Some(Health::Healthy);
    const STARTING: Option<Health> = Some(Health::Starting);

    fn desired(count: u32, max_surge: u32, max_unavailable: u32) -> Desired {
        Desired {
            count,
            max_surge,
            max_unavailable,
        }
    }

    fn stops(actions: &[Action]) -> Vec<u32> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Stop(key) => Some(key.index),
                Action::Start => None,
            })
            .collect()
    }

    fn starts(actions: &[Action]) -> usize {
        actions.iter().filter(|a| **a == Action::Start).count()
    }

    /// Runs the plan to its end, with every started replica turning healthy one look later;
    /// returns the most replicas alive at once and the fewest healthy ones.
    fn simulate(desired: Desired, mut replicas: Vec<Observed>) -> (usize, usize, usize) {
        let mut next = replicas.iter().map(|r| r.key.index).max().unwrap_or(0) + 1;
        let (mut most, mut fewest_healthy, mut looks) = (replicas.len(), usize::MAX, 0);
        while !is_done(&desired, &replicas) {
            looks += 1;
            assert!(looks < 100, "no progress: {replicas:?}");
            for r in replicas.iter_mut() {
                if r.health == STARTING {
                    r.health = HEALTHY;
                }
            }
            let actions = plan(&desired, &replicas);
            for action in actions {
                match action {
                    Action::Start => {
                        replicas.push(replica(next, false, STARTING));
                        next += 1;
                    }
                    Action::Stop(key) => replicas.retain(|r| r.key != key),
                }
            }
            most = most.max(replicas.len());
            fewest_healthy = fewest_healthy.min(replicas.iter().filter(|r| r.healthy()).count());
        }
        (most, fewest_healthy, looks)
    }

    #[test]
    fn scaling_starts_the_missing_and_stops_the_least_useful() {
        let three = vec![
            replica(1, false, HEALTHY),
            replica(2, false, Some(Health::Unhealthy)),
            replica(3, false, HEALTHY),
        ];
        assert_eq!(starts(&plan(&desired(5, 1, 0), &three)), 2);
        // Down to 1: the unhealthy one first, then the newest healthy.
        assert_eq!(stops(&plan(&desired(1, 1, 0), &three)), [2, 3]);
        assert!(plan(&desired(3, 1, 0), &three).is_empty());
    }

    #[test]
    fn one_at_a_time_replacement_never_drops_capacity() {
        // Surge 1, unavailable 0: `berth restart` and the ECS-like default.
        let old = (1..=3).map(|i| replica(i, true, HEALTHY)).collect();
        let (most, fewest_healthy, _) = simulate(desired(3, 1, 0), old);
        assert_eq!(most, 4, "at most one above the count");
        assert_eq!(fewest_healthy, 3, "never fewer healthy than the count");
    }

    #[test]
    fn surge_and_unavailability_bound_the_replacement_both_ways() {
        let old: Vec<Observed> = (1..=4).map(|i| replica(i, true, HEALTHY)).collect();
        // The references' ECS deployment: 200% maximum, 50% minimum healthy.
        let (most, fewest_healthy, looks) = simulate(desired(4, 4, 2), old.clone());
        assert!(most <= 8 && fewest_healthy >= 2, "{most} {fewest_healthy}");
        assert!(looks <= 3, "a wide surge finishes in few looks: {looks}");
        // No surge: stops first, never below 3 healthy.
        let (most, fewest_healthy, _) = simulate(desired(4, 0, 1), old);
        assert_eq!(most, 4);
        assert_eq!(fewest_healthy, 3);
    }

    #[test]
    fn unhealthy_outdated_replicas_stop_at_once_and_healthy_ones_lowest_first() {
        let replicas = vec![
            replica(1, true, HEALTHY),
            replica(2, true, Some(Health::Failed)),
            replica(3, true, HEALTHY),
            replica(4, false, HEALTHY),
        ];
        let actions = plan(&desired(3, 1, 0), &replicas);
        // 1 new healthy + 2 old healthy = 3 = the floor: only the failed one stops; 4 alive is
        // count + surge, so the next start waits for that stop.
        assert_eq!(stops(&actions), [2]);
        assert_eq!(starts(&actions), 0);
        let actions = plan(&desired(3, 1, 1), &replicas);
        assert_eq!(stops(&actions), [2, 1]);
    }

    #[test]
    fn new_replicas_that_are_not_healthy_yet_hold_the_old_ones() {
        let replicas = vec![
            replica(1, true, HEALTHY),
            replica(2, true, HEALTHY),
            replica(3, false, STARTING),
        ];
        assert!(plan(&desired(2, 1, 0), &replicas).is_empty());
        assert!(!is_done(&desired(2, 1, 0), &replicas));
    }

    #[test]
    fn both_bounds_zero_still_moves_one_at_a_time() {
        let old = (1..=2).map(|i| replica(i, true, HEALTHY)).collect();
        let (most, fewest_healthy, _) = simulate(desired(2, 0, 0), old);
        assert_eq!((most, fewest_healthy), (3, 2));
    }
}
