//! The loop workers run to fire due slots.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;

use super::{CatchUp, FireOutcome, ScheduleRecord};
use crate::error::Result;
use crate::model::NewJob;
use crate::queue::Queue;

/// Turns a schedule's template, rendered for a slot, into a job. The CLI provides it,
/// because the template is a terrace command line and the CLI owns its parser.
pub trait SchedulePlanner: Send + Sync {
    /// Plans the job for `slot`; `args` is the template rendered for it. A retryable
    /// error (an unreachable store) leaves the slot to the next tick; any other is
    /// recorded on the slot's run.
    fn plan<'a>(
        &'a self,
        schedule: &'a ScheduleRecord,
        slot: DateTime<Utc>,
        args: Vec<String>,
    ) -> BoxFuture<'a, Result<NewJob>>;
}

/// Missed slots counted per schedule and tick for [`TickReport::skipped`].
const MISSED_COUNT_LIMIT: usize = 10_000;

/// How often a scheduler looks and how it treats late slots.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Time between ticks.
    pub interval: Duration,
    /// With `--catch-up none`, a slot seen at most this late still fires; older ones
    /// count as missed.
    pub on_time_grace: Duration,
    /// With `--catch-up all`, slots fired per schedule per tick (the rest follow on
    /// later ticks), so a long outage of a frequent schedule cannot stall the loop.
    pub max_catch_up_per_tick: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            on_time_grace: Duration::from_secs(5 * 60),
            max_catch_up_per_tick: 100,
        }
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Slots this scheduler fired (jobs submitted or planning failures recorded).
    pub fired: u64,
    /// Slots another scheduler had fired.
    pub already_fired: u64,
    /// Missed slots passed over by the catch-up policy.
    pub skipped: u64,
    /// Schedules whose tick failed (logged; retried next tick).
    pub errors: u64,
}

/// Fires due slots of every active schedule. Run one per worker; any number may run
/// against one queue.
#[derive(Clone)]
pub struct Scheduler {
    queue: Queue,
    planner: Arc<dyn SchedulePlanner>,
    config: SchedulerConfig,
}

impl Scheduler {
    /// A scheduler on `queue` (whose clock it reads) using `planner`.
    pub fn new(queue: Queue, planner: Arc<dyn SchedulePlanner>, config: SchedulerConfig) -> Self {
        Self {
            queue,
            planner,
            config,
        }
    }

    /// Ticks every `interval` until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.tick().await {
                Ok(report) if report.fired > 0 || report.skipped > 0 => {
                    tracing::info!(?report, "scheduler tick");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduler tick failed"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// Looks at every active schedule once and fires what is due.
    pub async fn tick(&self) -> Result<TickReport> {
        let mut report = TickReport::default();
        for schedule in self.queue.schedules().await? {
            if schedule.paused {
                continue;
            }
            if let Err(e) = self.tick_one(&schedule, &mut report).await {
                report.errors += 1;
                tracing::warn!(schedule = %schedule.name, error = %e, "cannot fire schedule");
            }
        }
        Ok(report)
    }

    async fn tick_one(&self, schedule: &ScheduleRecord, report: &mut TickReport) -> Result<()> {
        let now = self.queue.now();
        let from = schedule.cursor.unwrap_or(schedule.created_at);
        let cadence = &schedule.cadence;
        let (due, handled) = match schedule.catch_up {
            CatchUp::All => {
                let due = cadence.slots_between(from, now, self.config.max_catch_up_per_tick);
                let handled = due.last().copied();
                (due, handled)
            }
            CatchUp::Last | CatchUp::None => {
                let Some(latest) = cadence.latest_at_or_before(now).filter(|l| *l > from) else {
                    return Ok(());
                };
                let grace =
                    TimeDelta::from_std(self.config.on_time_grace).unwrap_or(TimeDelta::MAX);
                let on_time = now - latest <= grace;
                // Only reported, so counted up to a bound: a per-minute schedule after a
                // long outage would otherwise walk every minute of it.
                let missed = cadence
                    .slots_between(from, latest, MISSED_COUNT_LIMIT)
                    .len() as u64;
                if schedule.catch_up == CatchUp::Last || on_time {
                    report.skipped += missed.saturating_sub(1);
                    (vec![latest], Some(latest))
                } else {
                    report.skipped += missed;
                    (Vec::new(), Some(latest))
                }
            }
        };
        for slot in due {
            if self.queue.slot_fired(schedule.id, slot).await? {
                report.already_fired += 1;
                continue;
            }
            match self.fire(schedule, slot, false).await? {
                FireOutcome::AlreadyFired => report.already_fired += 1,
                FireOutcome::Submitted(job) => {
                    report.fired += 1;
                    tracing::info!(schedule = %schedule.name, %slot, %job, "fired");
                }
                FireOutcome::NotPlanned(error) => {
                    report.fired += 1;
                    tracing::warn!(schedule = %schedule.name, %slot, %error, "fired; planning failed");
                }
            }
        }
        if let Some(handled) = handled {
            self.queue.advance_schedule(schedule.id, handled).await?;
        }
        Ok(())
    }

    /// Plans and submits `schedule`'s job for `slot`. Automatic firings (`manual` false)
    /// happen once per slot; a manual run always submits.
    pub async fn fire(
        &self,
        schedule: &ScheduleRecord,
        slot: DateTime<Utc>,
        manual: bool,
    ) -> Result<FireOutcome> {
        let planned = match schedule.render(slot) {
            Ok(args) => self.planner.plan(schedule, slot, args).await,
            Err(e) => Err(e),
        };
        let job = match planned {
            Ok(job) => Ok(job.with_origin(schedule.origin(slot))),
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => Err(error_chain(&e)),
        };
        self.queue.fire_slot(schedule.id, slot, manual, job).await
    }
}

/// An error and its sources on one line, as recorded on a run.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
