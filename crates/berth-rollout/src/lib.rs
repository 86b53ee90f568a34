//! The rollout engine: replaces the replicas of a service's old release by those of a new one
//! with a strategy (rolling, blue/green, canary), runs the smoke checks, analyses the new
//! release while it takes traffic, and rolls back automatically when a rule fires: traffic goes
//! back to the old release first, then the new replicas stop. The rules are [`judge::judge`], a
//! pure function of both releases' traffic over the same window; [`Analysis`] picks the windows.
//!
//! It drives the [`Supervisor`] (start, wait healthy, stop) and the edge through
//! [`TrafficControl`] (weights, drains, per-release counters), and writes what it does to a
//! [`Journal`]; it knows nothing of the store, the API or the CLI. The deploy pipeline around it
//! (pre-flight, backup, migration, records) is the daemon's.

pub mod analysis;
pub mod judge;
pub mod migrate;
pub mod smoke;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_model::deploy::{Judgment, StepState, Verdict};
use berth_model::traffic::ReleaseTraffic;
use berth_model::{Health, ReplicaKey, TrafficControl};
use berth_spec::{DeploySpec, Inconclusive, Strategy};
use berth_supervisor::{ServicePlan, Supervisor};
use tokio::sync::watch;

pub use analysis::Analysis;
pub use smoke::SmokeTarget;

/// Where the engine writes its steps and what it measured.
pub trait Journal: Send {
    /// Starts a step; returns its index.
    fn begin(&mut self, name: &str) -> usize;
    fn end(&mut self, step: usize, state: StepState, detail: &str);
    /// The new release's user requests and failures so far.
    fn traffic(&mut self, requests: u64, errors: u64);
    /// The numbers of the analysis' last judgment during `step`.
    fn judgment(&mut self, _step: usize, _numbers: &Judgment) {}
}

/// Alarms that speak against a release while it is analysed (the daemon's alarms). An alarm of
/// the service in ALARM during the analysis window fails the release like a rule does.
pub trait AlarmWatch: Send + Sync {
    /// An alarm of `service` that is in ALARM now and entered it since the deploy began: its
    /// name and reason (None: no such alarm).
    fn firing(&self, service: &str) -> Option<(String, String)>;
}

/// One rollout of a service from its old release to a new one.
pub struct Rollout {
    pub supervisor: Arc<Supervisor>,
    pub traffic: Arc<dyn TrafficControl>,
    /// Where smoke checks go (None: the service has no route; checks are skipped, and said so).
    pub smoke: Option<SmokeTarget>,
    /// The release that carries the traffic now (None for a service without one).
    pub old: Option<ServicePlan>,
    pub new: ServicePlan,
    pub desired: u32,
    pub deploy: DeploySpec,
    pub strategy: Strategy,
    /// Turns true when `berth deploy cancel` asks to roll back.
    pub cancel: watch::Receiver<bool>,
    /// Alarms consulted during the analysis (None: none).
    pub alarms: Option<Arc<dyn AlarmWatch>>,
}

/// How a rollout ended.
#[derive(Debug)]
pub enum Outcome {
    /// The new release carries all the traffic. With blue/green and canary the old group is
    /// still up (at weight 0) for an instant rollback until `retire_at`.
    Succeeded { retire_at: Option<Instant> },
    /// A rule fired; the old release carries the traffic again.
    RolledBack(Verdict),
}

/// How often the analysis looks at health and traffic.
const TICK: Duration = Duration::from_millis(250);

impl Rollout {
    fn service(&self) -> &str {
        &self.new.service.name
    }

    fn new_release(&self) -> String {
        self.new.release.id.to_string()
    }

    fn old_release(&self) -> Option<String> {
        self.old.as_ref().map(|p| p.release.id.to_string())
    }

    /// Live replicas of the service whose release is (or is not) `release`.
    fn live(&self, release: &str, same: bool) -> Vec<ReplicaKey> {
        self.supervisor
            .live(self.service())
            .into_iter()
            .filter(|(_, r)| (r.0 == release) == same)
            .map(|(k, _)| k)
            .collect()
    }

    fn health(&self, key: &ReplicaKey) -> Option<Health> {
        self.supervisor.board().get(key).map(|s| s.health)
    }

    async fn sample(&self) -> Vec<ReleaseTraffic> {
        match self.traffic.traffic(self.service()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("{}: reading the edge's counters: {e:#}", self.service());
                Vec::new()
            }
        }
    }

    fn cancelled(&self) -> Option<Verdict> {
        (*self.cancel.borrow()).then(|| Verdict {
            rule: "cancelled".into(),
            message: "`berth deploy cancel` asked for a rollback".into(),
        })
    }

    async fn set_weights(&self, weights: &[(&str, u32)]) -> anyhow::Result<()> {
        let map: BTreeMap<String, u32> = weights
            .iter()
            .map(|(release, weight)| (release.to_string(), *weight))
            .collect();
        self.traffic.set_weights(self.service(), map).await
    }

    /// Runs the rollout to its end.
    pub async fn run(&self, journal: &mut dyn Journal) -> Outcome {
        let lock = self.supervisor.lock_service(self.service());
        let _guard = lock.lock().await;
        let earlier = self
            .traffic
            .traffic_before(self.service(), self.deploy.analysis.window)
            .await
            .map(|(_, traffic)| traffic);
        let at_start = self.sample().await;
        let mut analysis = Analysis::new(
            self.deploy.analysis.clone(),
            self.service(),
            &self.new_release(),
            self.old_release().as_deref(),
            earlier,
            at_start,
        );
        let result = match self.strategy {
            Strategy::Rolling => self.rolling(&mut analysis, journal).await,
            Strategy::Bluegreen | Strategy::Canary => self.switched(&mut analysis, journal).await,
        };
        match result {
            Ok(retire_at) => Outcome::Succeeded { retire_at },
            Err(verdict) => {
                self.roll_back(journal).await;
                Outcome::RolledBack(verdict)
            }
        }
    }

    // ----- rolling --------------------------------------------------------------------------

    async fn rolling(
        &self,
        analysis: &mut Analysis,
        journal: &mut dyn Journal,
    ) -> Result<Option<Instant>, Verdict> {
        let desired = self.desired;
        let mut surge = self.deploy.max_surge.of(desired, true);
        let unavailable = self.deploy.max_unavailable.of(desired, false);
        if surge == 0 && unavailable == 0 {
            surge = 1;
        }
        let target = berth_supervisor::planner::Desired {
            count: desired,
            max_surge: surge,
            max_unavailable: unavailable,
        };
        let new = self.new_release();
        let step = journal.begin(&format!(
            "rolling: {desired} replica(s) of {new}, max surge {surge}, max unavailable {unavailable}"
        ));
        let timeout = Supervisor::healthy_timeout(&self.new);
        let mut started: HashMap<ReplicaKey, Instant> = HashMap::new();
        let mut changes = self.supervisor.board().subscribe();
        let began = Instant::now();
        loop {
            if let Some(v) = self.cancelled() {
                journal.end(step, StepState::Failed, &v.message);
                return Err(v);
            }
            // A new replica that fails before it ever served stops the rollout.
            if let Some((key, reason)) = self.supervisor.failed_start(&mut started, timeout) {
                let message = format!("{key} of {new} {reason}");
                journal.end(step, StepState::Failed, &message);
                return Err(Verdict {
                    rule: "health".into(),
                    message,
                });
            }
            let observed = self
                .supervisor
                .observe(self.service(), |_, release| release.0 != new);
            let new_healthy = observed
                .iter()
                .filter(|o| !o.outdated && o.health == Some(Health::Healthy))
                .count();
            if new_healthy > 0 {
                if analysis.at_traffic.is_none() {
                    analysis.traffic_started(self.sample().await);
                }
                self.judge(analysis, step, journal).await.inspect_err(|v| {
                    journal.end(step, StepState::Failed, &v.message);
                })?;
            }
            if berth_supervisor::planner::is_done(&target, &observed) {
                break;
            }
            // The planner decides what starts and stops; the supervisor does it.
            let actions = berth_supervisor::planner::plan(&target, &observed);
            if actions.is_empty() {
                changes.mark_unchanged();
                let _ = tokio::time::timeout(TICK, changes.changed()).await;
                continue;
            }
            let now = Instant::now();
            for key in self.supervisor.apply(&self.new, &actions).await {
                started.insert(key, now);
            }
        }
        journal.end(
            step,
            StepState::Done,
            &format!(
                "{desired}/{desired} healthy on {new} in {:.1}s",
                began.elapsed().as_secs_f64()
            ),
        );
        analysis.traffic_started(self.sample().await);
        self.post_checks(journal).await?;
        self.bake(analysis, journal).await?;
        Ok(None)
    }

    // ----- blue/green and canary ------------------------------------------------------------

    async fn switched(
        &self,
        analysis: &mut Analysis,
        journal: &mut dyn Journal,
    ) -> Result<Option<Instant>, Verdict> {
        let new = self.new_release();
        let old = self.old_release();
        let weights = |old_weight: u32, new_weight: u32| -> Vec<(String, u32)> {
            let mut w = vec![(new.clone(), new_weight)];
            if let Some(old) = &old {
                w.push((old.clone(), old_weight));
            }
            w
        };
        let apply = |w: Vec<(String, u32)>| async move {
            let pairs: Vec<(&str, u32)> = w.iter().map(|(r, n)| (r.as_str(), *n)).collect();
            self.set_weights(&pairs).await
        };
        if let Err(e) = apply(weights(100, 0)).await {
            return Err(Verdict {
                rule: "edge".into(),
                message: format!("could not hold the traffic on the old release: {e:#}"),
            });
        }

        // The new group, beside the old one, without user traffic.
        let step = journal.begin(&format!("start {} replica(s) of {new}", self.desired));
        let began = Instant::now();
        let keys: Vec<ReplicaKey> = (0..self.desired)
            .map(|_| self.supervisor.start_replica(&self.new))
            .collect();
        if let Err(message) = self.wait_group(&keys).await {
            journal.end(step, StepState::Failed, &message);
            return Err(Verdict {
                rule: "health".into(),
                message,
            });
        }
        journal.end(
            step,
            StepState::Done,
            &format!(
                "{n}/{n} healthy in {:.1}s",
                began.elapsed().as_secs_f64(),
                n = self.desired
            ),
        );
        if let Some(v) = self.cancelled() {
            return Err(v);
        }
        self.smoke_checks("smoke checks through the test route", journal)
            .await?;

        // Canary steps.
        if self.strategy == Strategy::Canary {
            for canary in &self.deploy.steps {
                let step = journal.begin(&format!(
                    "canary {}% for {}",
                    canary.weight,
                    humantime::format_duration(canary.pause)
                ));
                if let Err(e) = apply(weights(100 - canary.weight, canary.weight)).await {
                    journal.end(step, StepState::Failed, &format!("{e:#}"));
                    return Err(Verdict {
                        rule: "edge".into(),
                        message: format!("could not set the weights: {e:#}"),
                    });
                }
                let now = self.sample().await;
                analysis.traffic_started(now.clone());
                analysis.begin_window(now, Some(canary.weight));
                if let Err(v) = self.watch(analysis, canary.pause, step, journal).await {
                    journal.end(step, StepState::Failed, &v.message);
                    return Err(v);
                }
                match self.conclude(analysis, step, journal).await {
                    Ok(detail) => journal.end(step, StepState::Done, &detail),
                    Err(v) => {
                        journal.end(step, StepState::Failed, &v.message);
                        return Err(v);
                    }
                }
            }
        }

        // The switch.
        let step = journal.begin(&format!("switch all traffic to {new}"));
        if let Err(e) = apply(weights(0, 100)).await {
            journal.end(step, StepState::Failed, &format!("{e:#}"));
            return Err(Verdict {
                rule: "edge".into(),
                message: format!("could not switch the traffic: {e:#}"),
            });
        }
        let switched = Instant::now();
        let now = self.sample().await;
        analysis.traffic_started(now.clone());
        analysis.begin_window(now, None);
        journal.end(step, StepState::Done, "100%");
        self.post_checks(journal).await?;
        self.bake(analysis, journal).await?;
        Ok(Some(switched + self.deploy.termination_wait))
    }

    // ----- shared steps ---------------------------------------------------------------------

    /// Waits until every replica of `keys` is healthy; the first that fails ends the wait.
    async fn wait_group(&self, keys: &[ReplicaKey]) -> Result<(), String> {
        let timeout = Supervisor::healthy_timeout(&self.new);
        let waits = keys.iter().map(|key| {
            let supervisor = self.supervisor.clone();
            let key = key.clone();
            tokio::spawn(async move { supervisor.wait_healthy(&key, timeout).await })
        });
        let handles: Vec<_> = waits.collect();
        let mut cancel = self.cancel.clone();
        for handle in handles {
            tokio::select! {
                result = handle => match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(format!("{e:#}")),
                    Err(e) => return Err(format!("waiting for health: {e}")),
                },
                _ = cancel.wait_for(|c| *c) => {
                    return Err("cancelled".into());
                }
            }
        }
        Ok(())
    }

    async fn stop_all(&self, keys: &[ReplicaKey]) {
        let stops = keys.iter().map(|key| {
            let supervisor = self.supervisor.clone();
            let key = key.clone();
            tokio::spawn(async move { supervisor.stop_replica(&key).await })
        });
        for stop in stops.collect::<Vec<_>>() {
            let _ = stop.await;
        }
    }

    async fn smoke_checks(&self, name: &str, journal: &mut dyn Journal) -> Result<(), Verdict> {
        if self.deploy.checks.is_empty() {
            return Ok(());
        }
        let step = journal.begin(name);
        if let Err(e) = self.traffic.refresh().await {
            tracing::warn!("{}: refreshing the edge's table: {e:#}", self.service());
        }
        let Some(target) = &self.smoke else {
            journal.end(
                step,
                StepState::Skipped,
                "the service has no route through the edge",
            );
            return Ok(());
        };
        match smoke::run_all(target, &self.new_release(), &self.deploy.checks).await {
            Ok(detail) => {
                journal.end(step, StepState::Done, &detail);
                Ok(())
            }
            Err(message) => {
                journal.end(step, StepState::Failed, &message);
                Err(Verdict {
                    rule: "smoke-check".into(),
                    message,
                })
            }
        }
    }

    async fn post_checks(&self, journal: &mut dyn Journal) -> Result<(), Verdict> {
        self.smoke_checks("post-deploy checks", journal).await
    }

    /// Keeps analysing until the window (from the first user traffic) is over.
    async fn bake(
        &self,
        analysis: &mut Analysis,
        journal: &mut dyn Journal,
    ) -> Result<(), Verdict> {
        if !self.new.service.port.has_port() {
            // A worker takes no requests: there is no traffic to analyse.
            return Ok(());
        }
        let left = analysis.window_left();
        let step = journal.begin(&format!(
            "analysis for {}",
            humantime::format_duration(Duration::from_secs(left.as_secs().max(1)))
        ));
        if let Err(v) = self.watch(analysis, left, step, journal).await {
            journal.end(step, StepState::Failed, &v.message);
            return Err(v);
        }
        let now = self.sample().await;
        let verdict = analysis.judge(self.supervisor.board(), &now);
        journal.judgment(step, &verdict.numbers);
        let detail = if verdict.outcome == judge::Outcome::Inconclusive {
            // After the switch there is nothing left to hold back: too little traffic is said,
            // not judged (a canary step is where too little traffic stops a deploy).
            format!("no traffic verdict since the switch: {}", verdict.message)
        } else {
            verdict.message
        };
        journal.end(step, StepState::Done, &detail);
        Ok(())
    }

    /// After a canary step's pause: a pass goes on; too few requests wait up to `max_wait`
    /// for more, then the step is inconclusive, which rolls back (or, with
    /// `inconclusive = "pause"`, holds the canary at its weight until a verdict or a cancel).
    async fn conclude(
        &self,
        analysis: &mut Analysis,
        step: usize,
        journal: &mut dyn Journal,
    ) -> Result<String, Verdict> {
        let waited = Instant::now();
        loop {
            if let Some(v) = self.cancelled() {
                return Err(v);
            }
            let now = self.sample().await;
            let verdict = analysis.judge(self.supervisor.board(), &now);
            journal.judgment(step, &verdict.numbers);
            let (requests, errors) = analysis.totals(&now);
            journal.traffic(requests, errors);
            match verdict.outcome {
                judge::Outcome::Pass => return Ok(verdict.message),
                judge::Outcome::Fail => {
                    return Err(Verdict {
                        rule: verdict.rule.unwrap_or("latency").into(),
                        message: verdict.message,
                    })
                }
                judge::Outcome::Inconclusive => {
                    let pause = analysis.spec.inconclusive == Inconclusive::Pause;
                    if !pause && waited.elapsed() >= analysis.spec.max_wait {
                        return Err(Verdict {
                            rule: "inconclusive".into(),
                            message: format!(
                                "{} after waiting {}s more",
                                verdict.message,
                                waited.elapsed().as_secs()
                            ),
                        });
                    }
                }
            }
            let mut cancel = self.cancel.clone();
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = cancel.wait_for(|c| *c) => {}
            }
        }
    }

    /// Evaluates the rules every tick for `duration`.
    async fn watch(
        &self,
        analysis: &mut Analysis,
        duration: Duration,
        step: usize,
        journal: &mut dyn Journal,
    ) -> Result<(), Verdict> {
        let until = Instant::now() + duration;
        loop {
            if let Some(v) = self.cancelled() {
                return Err(v);
            }
            self.judge(analysis, step, journal).await?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            let mut cancel = self.cancel.clone();
            tokio::select! {
                _ = tokio::time::sleep(TICK.min(until - now)) => {}
                _ = cancel.wait_for(|c| *c) => {}
            }
        }
    }

    /// One look at the rules: a failing rule ends the step; too few requests do not (yet).
    async fn judge(
        &self,
        analysis: &mut Analysis,
        step: usize,
        journal: &mut dyn Journal,
    ) -> Result<(), Verdict> {
        let now = if analysis.at_traffic.is_some() {
            self.sample().await
        } else {
            Vec::new()
        };
        let verdict = analysis.judge(self.supervisor.board(), &now);
        if analysis.at_traffic.is_some() {
            let (requests, errors) = analysis.totals(&now);
            journal.traffic(requests, errors);
            journal.judgment(step, &verdict.numbers);
        }
        if analysis.at_traffic.is_some() {
            if let Some((alarm, reason)) = self
                .alarms
                .as_ref()
                .and_then(|alarms| alarms.firing(self.service()))
            {
                return Err(alarm_verdict(&alarm, &reason));
            }
        }
        if verdict.outcome == judge::Outcome::Fail {
            let rule = verdict.rule.unwrap_or("latency");
            // Before any user traffic, only the health rule speaks.
            if analysis.at_traffic.is_some() || rule == "health" {
                return Err(Verdict {
                    rule: rule.into(),
                    message: verdict.message,
                });
            }
        }
        Ok(())
    }

    /// The rollback: the old release back to its full count, all traffic to it, then the new
    /// replicas stop. Migrations are not undone.
    pub async fn roll_back(&self, journal: &mut dyn Journal) {
        let new = self.new_release();
        let Some(old_plan) = &self.old else {
            let step = journal.begin(&format!("stop {new} (no earlier release to go back to)"));
            let keys = self.live(&new, true);
            self.stop_all(&keys).await;
            let _ = self
                .traffic
                .set_weights(self.service(), BTreeMap::new())
                .await;
            journal.end(step, StepState::Done, "");
            return;
        };
        let old = old_plan.release.id.to_string();
        let step = journal.begin(&format!("roll back to {old}"));
        let began = Instant::now();
        // Old replicas up to the desired count (none to start when its group is still alive).
        let old_live: Vec<ReplicaKey> = self.live(&old, true);
        let missing = self.desired.saturating_sub(old_live.len() as u32);
        let mut fresh = Vec::new();
        for _ in 0..missing {
            fresh.push(self.supervisor.start_replica(old_plan));
        }
        let timeout = Supervisor::healthy_timeout(old_plan);
        let mut back = old_live
            .iter()
            .filter(|k| self.health(k) == Some(Health::Healthy))
            .count();
        for key in &fresh {
            if self.supervisor.wait_healthy(key, timeout).await.is_ok() {
                back += 1;
            }
        }
        if back == 0 && self.desired > 0 {
            // Nothing to give the traffic back to: the new release keeps serving.
            self.stop_all(&fresh).await;
            let _ = self
                .traffic
                .set_weights(self.service(), BTreeMap::new())
                .await;
            journal.end(
                step,
                StepState::Failed,
                &format!("{old} did not come back healthy; {new} keeps serving"),
            );
            return;
        }
        if let Err(e) = self
            .set_weights(&[(old.as_str(), 100), (new.as_str(), 0)])
            .await
        {
            tracing::warn!("{}: moving traffic back: {e:#}", self.service());
        }
        // Everything but the old release stops (the new group, and any group an earlier deploy
        // left at weight 0), so that clearing the weights gives the old release all traffic.
        let keys = self.live(&old, false);
        self.stop_all(&keys).await;
        let _ = self
            .traffic
            .set_weights(self.service(), BTreeMap::new())
            .await;
        journal.end(
            step,
            StepState::Done,
            &format!(
                "all traffic on {old} ({back} healthy), {} replica(s) of {new} stopped in {:.1}s",
                keys.len(),
                began.elapsed().as_secs_f64()
            ),
        );
    }
}

/// After a blue/green or canary deploy: stops the replicas of `service` that do not run `keep`
/// (the old group, at weight 0 since the switch), then returns the service to a single target
/// group.
///
/// The caller holds the service's lock ([`Supervisor::lock_service`]) and has checked that
/// `keep` is still the release to keep.
pub async fn retire(
    supervisor: &Arc<Supervisor>,
    traffic: &Arc<dyn TrafficControl>,
    service: &str,
    keep: &str,
) -> usize {
    let old: Vec<ReplicaKey> = supervisor
        .live(service)
        .into_iter()
        .filter(|(_, r)| r.0 != keep)
        .map(|(k, _)| k)
        .collect();
    let mut stops = Vec::new();
    for key in &old {
        let supervisor = supervisor.clone();
        let key = key.clone();
        stops.push(tokio::spawn(
            async move { supervisor.stop_replica(&key).await },
        ));
    }
    for stop in stops {
        let _ = stop.await;
    }
    if let Err(e) = traffic.set_weights(service, BTreeMap::new()).await {
        tracing::warn!("{service}: clearing the weights: {e:#}");
    }
    old.len()
}

/// Switches all of a service's traffic to `to` at once, when its group is alive and healthy
/// (an instant blue/green rollback), then stops the others and clears the weights. Returns
/// false (changing nothing) when `to` has no healthy replica. Takes the service's lock.
pub async fn switch_back(
    supervisor: &Arc<Supervisor>,
    traffic: &Arc<dyn TrafficControl>,
    service: &str,
    to: &str,
    from: &str,
) -> anyhow::Result<bool> {
    let healthy = supervisor
        .live(service)
        .into_iter()
        .filter(|(k, r)| {
            r.0 == to && supervisor.board().get(k).map(|s| s.health) == Some(Health::Healthy)
        })
        .count();
    if healthy == 0 {
        return Ok(false);
    }
    let lock = supervisor.lock_service(service);
    let _guard = lock.lock().await;
    traffic
        .set_weights(
            service,
            [(to.to_string(), 100), (from.to_string(), 0)].into(),
        )
        .await?;
    retire(supervisor, traffic, service, to).await;
    Ok(true)
}
/// The verdict of an alarm in ALARM during the analysis: rule `alarm`.
pub fn alarm_verdict(alarm: &str, reason: &str) -> Verdict {
    Verdict {
        rule: "alarm".into(),
        message: format!("alarm {alarm} went to ALARM during the analysis: {reason}"),
    }
}
