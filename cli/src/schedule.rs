//! `terrace schedule …`: ingestion on a cron cadence that fires once per slot however
//! many workers run.
//!
//! A schedule's job template is the command line of a `terrace ingest` (after `--`) with
//! placeholders such as `{date}`; it is parsed here when the schedule is added (so a bad
//! template is refused before anything is stored) and again, rendered, when a worker's
//! scheduler fires a slot ([`CliPlanner`]). Relative paths in it are resolved against the
//! directory `schedule add` ran in.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::future::BoxFuture;
use terrace_jobs::kinds::plan_ingest;
use terrace_jobs::schedule::{FireOutcome, PLACEHOLDERS, slot_text};
use terrace_jobs::{
    Cadence, CatchUp, JobTemplate, NewJob, NewSchedule, SchedulePlanner, ScheduleRecord,
    ScheduleRun,
};

use crate::ingest::{IngestArgs, report_ingest};
use crate::session::{QueueArgs, Waited, wait_submitted};

/// `terrace schedule`.
#[derive(Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    command: ScheduleCommand,
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Add a schedule: NAME --cron "0 2 * * *" -- ingest 'landing/{date}/*.csv' --into lake
    Add(AddArgs),
    /// List schedules with their next slot and latest run.
    List(JsonArg),
    /// Show a schedule and its recent runs.
    Show(ShowArgs),
    /// Stop firing a schedule (slots passed while paused are skipped).
    Pause(NameArg),
    /// Fire a paused schedule again, from the next slot on.
    Resume(NameArg),
    /// Remove a schedule and its run history (the jobs it fired stay).
    Remove(NameArg),
    /// Run one slot now (a manual backfill); a slot already ingested commits nothing,
    /// unless `terrace gc` has removed the version that ingested it (versions older than
    /// its --retention, 7d by default), and then the slot is ingested again.
    Run(RunArgs),
}

/// Catch-up policies on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum CatchUpArg {
    /// Slots missed while no worker ran are not fired.
    None,
    /// The latest missed slot fires.
    Last,
    /// Every missed slot fires, oldest first.
    All,
}

#[derive(Args)]
struct AddArgs {
    /// Unique name (letters, digits, '-', '_', '.').
    name: String,
    /// Cron expression: minute hour day-of-month month day-of-week ("0 2 * * *").
    #[arg(long)]
    cron: String,
    /// IANA time zone the cron fields and date placeholders are read in.
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// What happens to slots missed while no worker ran.
    #[arg(long, value_enum, default_value = "last")]
    catch_up: CatchUpArg,
    /// The job, after `--`: `ingest INPUTS… --into DATASET …` with placeholders {date},
    /// {date-1}, {yyyy}, {mm}, {dd}, {hh}, {scheduled_at}, {schedule}, {date:%Y/%m/%d}.
    /// Each slot's ingest commits with the idempotency key schedule:NAME:SLOT; an
    /// --idempotency-key KEY in the job is appended to it (schedule:NAME:SLOT:KEY), so a
    /// key without a placeholder still lets every slot commit once.
    #[arg(last = true, required = true, value_name = "JOB")]
    template: Vec<String>,
}

#[derive(Args)]
struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct NameArg {
    /// The schedule's name.
    name: String,
}

#[derive(Args)]
struct ShowArgs {
    /// The schedule's name.
    name: String,
    /// Runs to list, latest slot first.
    #[arg(long, default_value_t = 20)]
    runs: i64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// The schedule's name.
    name: String,
    /// The slot: 2026-11-23T02:00:00+01:00, "2026-11-23 02:00" (in the schedule's time
    /// zone), or a date when the schedule has one slot that day.
    #[arg(long)]
    at: String,
    /// Print the job's result as JSON.
    #[arg(long)]
    json: bool,
}

/// A job template's command line.
#[derive(Parser)]
#[command(name = "terrace", no_binary_name = true)]
struct TemplateCli {
    #[command(subcommand)]
    command: TemplateCommand,
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// An ingest.
    Ingest(IngestArgs),
}

/// Parses a template's arguments as a terrace command line.
fn parse_template(args: &[String]) -> Result<IngestArgs, String> {
    match TemplateCli::try_parse_from(args) {
        Ok(TemplateCli {
            command: TemplateCommand::Ingest(ingest),
        }) => Ok(ingest),
        Err(e) => {
            // clap's message without its usage and help lines, on one line.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .collect();
            Err(message.join(" ").trim_start_matches("error: ").to_owned())
        }
    }
}

/// Resolves a relative local path against `dir`; URLs and absolute paths are kept.
fn resolve(dir: Option<&str>, path: &str) -> String {
    match dir {
        Some(dir) if !path.contains("://") && Path::new(path).is_relative() => {
            Path::new(dir).join(path).display().to_string()
        }
        _ => path.to_owned(),
    }
}

/// Why a template may not say `--force`: every slot commits once, under its own key.
const FORCE_IN_TEMPLATE: &str = "--force has no place in a schedule: each slot's ingest \
     commits once under the key schedule:NAME:SLOT (`schedule run --at SLOT` runs a slot \
     again; a plain `terrace ingest --force` ingests again)";

/// Why a template may not say `--explain`: a slot's job is run, not shown.
const EXPLAIN_IN_TEMPLATE: &str = "--explain has no place in a schedule: a slot's ingest runs \
     (`terrace ingest … --explain` shows the plan of one)";

/// Why a template's ingest cannot be a schedule's, if it cannot.
fn refused_in_template(ingest: &IngestArgs) -> Option<&'static str> {
    if ingest.force {
        Some(FORCE_IN_TEMPLATE)
    } else if ingest.explain {
        Some(EXPLAIN_IN_TEMPLATE)
    } else {
        None
    }
}

/// The idempotency key a slot's ingest commits with: the slot's own
/// (`schedule:NAME:SLOT`), with a key the template gives appended. The template's key
/// alone would not do: one without a placeholder is the same for every slot, and every
/// slot after the first would commit nothing yet report success.
fn slot_key(schedule: &ScheduleRecord, slot: DateTime<Utc>, template: Option<String>) -> String {
    let key = schedule.idempotency_key(slot);
    match template {
        Some(template) => format!("{key}:{template}"),
        None => key,
    }
}

/// Plans the ingest a schedule's template renders to; what workers' schedulers and
/// `schedule run` use.
pub struct CliPlanner;

impl CliPlanner {
    async fn plan_slot(
        schedule: &ScheduleRecord,
        slot: DateTime<Utc>,
        args: Vec<String>,
    ) -> terrace_jobs::Result<NewJob> {
        let invalid = |reason: String| terrace_jobs::Error::InvalidRequest {
            what: format!("the job template of schedule {:?}", schedule.name),
            reason,
        };
        let mut ingest = parse_template(&args).map_err(invalid)?;
        if let Some(refusal) = refused_in_template(&ingest) {
            return Err(invalid(refusal.to_owned()));
        }
        let dir = schedule.template.working_dir.as_deref();
        ingest.inputs = ingest.inputs.iter().map(|i| resolve(dir, i)).collect();
        ingest.into = resolve(dir, &ingest.into);
        ingest.schema = ingest
            .schema
            .map(|s| resolve(dir, &s.display().to_string()).into());
        let mut request = ingest.request().map_err(|e| invalid(format!("{e:#}")))?;
        request.idempotency_key = Some(slot_key(schedule, slot, request.idempotency_key));
        plan_ingest(request).await
    }
}

impl SchedulePlanner for CliPlanner {
    fn plan<'a>(
        &'a self,
        schedule: &'a ScheduleRecord,
        slot: DateTime<Utc>,
        args: Vec<String>,
    ) -> BoxFuture<'a, terrace_jobs::Result<NewJob>> {
        Box::pin(Self::plan_slot(schedule, slot, args))
    }
}

impl ScheduleArgs {
    /// `schedule run` submits a slot's job and waits for it; the other subcommands only
    /// read or change schedules.
    pub fn runs_a_slot(&self) -> bool {
        matches!(self.command, ScheduleCommand::Run(_))
    }
}

/// Run `terrace schedule …`.
pub async fn run(queue: &QueueArgs, args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ScheduleCommand::Add(add) => self::add(queue, add).await,
        ScheduleCommand::List(a) => list(queue, a.json).await,
        ScheduleCommand::Show(show) => self::show(queue, show).await,
        ScheduleCommand::Pause(n) => set_paused(queue, &n.name, true).await,
        ScheduleCommand::Resume(n) => set_paused(queue, &n.name, false).await,
        ScheduleCommand::Remove(n) => {
            let (q, _) = queue.connect().await?;
            q.remove_schedule(&n.name).await?;
            println!("schedule {} removed", n.name);
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Run(r) => run_slot(queue, r).await,
    }
}

async fn add(queue: &QueueArgs, args: AddArgs) -> anyhow::Result<ExitCode> {
    let cadence = Cadence::new(&args.cron, &args.timezone)?;
    let working_dir = std::env::current_dir()
        .context("cannot read the current directory")?
        .display()
        .to_string();
    let template = JobTemplate {
        args: args.template.clone(),
        working_dir: Some(working_dir),
    };
    let catch_up = match args.catch_up {
        CatchUpArg::None => CatchUp::None,
        CatchUpArg::Last => CatchUp::Last,
        CatchUpArg::All => CatchUp::All,
    };
    let schedule =
        NewSchedule::new(&args.name, cadence, template, catch_up).with_context(|| {
            let known: Vec<_> = PLACEHOLDERS
                .iter()
                .map(|(n, d)| format!("{{{n}}}: {d}"))
                .collect();
            format!(
                "cannot add schedule {:?} (placeholders: {})",
                args.name,
                known.join("; ")
            )
        })?;
    let (q, _) = queue.connect().await?;
    // The template must be an ingest command line both as written and rendered for a
    // slot (a placeholder where a number belongs shows only then).
    let example_slot = schedule
        .cadence
        .next_after(q.now())
        .context("the cron expression never matches")?;
    let rendered = schedule
        .template
        .render(&schedule.cadence, &schedule.name, example_slot)?;
    parse_template(&args.template)
        .and_then(|_| parse_template(&rendered))
        .and_then(|ingest| match refused_in_template(&ingest) {
            Some(refusal) => Err(refusal.to_owned()),
            None => Ok(ingest),
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot add schedule {:?}: the job after -- is not a terrace ingest: {e}",
                args.name
            )
        })?;
    let stored = q.add_schedule(&schedule).await?;
    let next = stored.next_slot(q.now());
    println!(
        "schedule {} added: {} ({}), catch-up {}; next slot {}",
        stored.name,
        stored.cadence.expression(),
        stored.cadence.timezone(),
        stored.catch_up,
        next.map_or("never".into(), |n| local_text(&stored.cadence, n))
    );
    println!("  renders to: {}", rendered.join(" "));
    println!("  fired by `terrace worker` processes (each runs a scheduler unless --no-scheduler)");
    Ok(ExitCode::SUCCESS)
}

fn local_text(cadence: &Cadence, t: DateTime<Utc>) -> String {
    cadence.local(t).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

fn run_json(cadence: &Cadence, run: &ScheduleRun) -> serde_json::Value {
    serde_json::json!({
        "slot": slot_text(run.slot),
        "slot_local": local_text(cadence, run.slot),
        "manual": run.manual,
        "fired_at": slot_text(run.fired_at),
        "job": run.job_id.map(|j| j.0),
        "state": run.state.map(|s| s.as_str()),
        "rows": run.rows,
        "error": run.error,
    })
}

fn schedule_json(
    s: &ScheduleRecord,
    next: Option<DateTime<Utc>>,
    runs: &[ScheduleRun],
) -> serde_json::Value {
    serde_json::json!({
        "name": s.name,
        "cron": s.cadence.expression(),
        "timezone": s.cadence.timezone(),
        "catch_up": s.catch_up.as_str(),
        "paused": s.paused,
        "template": s.template.args,
        "working_dir": s.template.working_dir,
        "next_slot": next.map(slot_text),
        "runs": runs.iter().map(|r| run_json(&s.cadence, r)).collect::<Vec<_>>(),
    })
}

fn run_state(run: &ScheduleRun) -> &'static str {
    match (run.job_id, run.state) {
        (_, Some(state)) => state.as_str(),
        (None, None) if run.error.is_some() => "not planned",
        _ => "pruned",
    }
}

async fn list(queue: &QueueArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect().await?;
    let now = q.now();
    let mut rows = Vec::new();
    for s in q.schedules().await? {
        let runs = q.schedule_runs(&s, 1).await?;
        rows.push((s.next_slot(now), runs, s));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(next, runs, s)| schedule_json(s, *next, runs))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no schedules (terrace schedule add NAME --cron \"0 2 * * *\" -- ingest …)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20}  {:<14}  {:<16}  {:<8}  {:<7}  {:<24}  latest run",
        "name", "cron", "timezone", "catch-up", "state", "next slot"
    );
    for (next, runs, s) in &rows {
        let latest = runs.first().map_or("-".to_owned(), |r| {
            format!("{} {}", local_text(&s.cadence, r.slot), run_state(r))
        });
        println!(
            "{:<20}  {:<14}  {:<16}  {:<8}  {:<7}  {:<24}  {latest}",
            s.name,
            s.cadence.expression(),
            s.cadence.timezone(),
            s.catch_up.as_str(),
            if s.paused { "paused" } else { "active" },
            if s.paused {
                "-".to_owned()
            } else {
                next.map_or("never".into(), |n| local_text(&s.cadence, n))
            },
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(queue: &QueueArgs, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect().await?;
    let s = q.schedule(&args.name).await?;
    let runs = q.schedule_runs(&s, args.runs.max(0)).await?;
    let next = (!s.paused).then(|| s.next_slot(q.now())).flatten();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&schedule_json(&s, next, &runs))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("schedule   {}", s.name);
    println!(
        "cron       {} ({}), catch-up {}",
        s.cadence.expression(),
        s.cadence.timezone(),
        s.catch_up
    );
    println!("state      {}", if s.paused { "paused" } else { "active" });
    println!(
        "next slot  {}",
        next.map_or("-".into(), |n| local_text(&s.cadence, n))
    );
    println!("job        {}", s.template.args.join(" "));
    if let Some(dir) = &s.template.working_dir {
        println!("directory  {dir}");
    }
    if runs.is_empty() {
        println!("runs       none yet");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "\n{:<25}  {:<6}  {:>6}  {:<11}  {:>10}  error",
        "slot", "how", "job", "state", "rows"
    );
    for r in &runs {
        println!(
            "{:<25}  {:<6}  {:>6}  {:<11}  {:>10}  {}",
            local_text(&s.cadence, r.slot),
            if r.manual { "manual" } else { "cron" },
            r.job_id.map_or("-".into(), |j| j.0.to_string()),
            run_state(r),
            r.rows.map_or("-".into(), |n| n.to_string()),
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_paused(queue: &QueueArgs, name: &str, paused: bool) -> anyhow::Result<ExitCode> {
    let (q, _) = queue.connect().await?;
    q.set_schedule_paused(name, paused).await?;
    if paused {
        println!("schedule {name} paused");
    } else {
        let s = q.schedule(name).await?;
        println!(
            "schedule {name} resumed; next slot {}",
            s.next_slot(q.now())
                .map_or("never".into(), |n| local_text(&s.cadence, n))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The slot `text` names: a time with an offset, a local time in the schedule's zone,
/// or a date with exactly one slot. It must be one of the schedule's slots.
fn slot_at(cadence: &Cadence, text: &str) -> anyhow::Result<DateTime<Utc>> {
    let tz = cadence.zone();
    let local = |naive: NaiveDateTime| {
        tz.from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .with_context(|| format!("{text} does not exist in {}", cadence.timezone()))
    };
    let slot = if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        t.with_timezone(&Utc)
    } else if let Some(naive) = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    {
        local(naive)?
    } else if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        match cadence.slots_on(day).as_slice() {
            [one] => *one,
            [] => bail!("schedule has no slot on {day} ({})", cadence.expression()),
            many => bail!(
                "schedule has {} slots on {day}; give the time, e.g. --at \"{}\"",
                many.len(),
                cadence.local(many[0]).format("%Y-%m-%d %H:%M")
            ),
        }
    } else {
        bail!(
            "--at {text:?} is not a time: use 2026-11-23T02:00:00+01:00, \"2026-11-23 02:00\" \
             (in the schedule's time zone) or 2026-11-23"
        );
    };
    if !cadence.is_slot(slot) {
        let around: Vec<_> = [cadence.latest_at_or_before(slot), cadence.next_after(slot)]
            .into_iter()
            .flatten()
            .map(|s| local_text(cadence, s))
            .collect();
        bail!(
            "{} is not a slot of \"{}\" in {}; nearest: {}",
            local_text(cadence, slot),
            cadence.expression(),
            cadence.timezone(),
            around.join(", ")
        );
    }
    Ok(slot)
}

async fn run_slot(queue: &QueueArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (q, sqlite) = queue.connect().await?;
    let s = q.schedule(&args.name).await?;
    let slot =
        slot_at(&s.cadence, &args.at).with_context(|| format!("cannot run schedule {}", s.name))?;
    let rendered = s.render(slot)?;
    let job = CliPlanner::plan_slot(&s, slot, rendered)
        .await
        .with_context(|| {
            format!(
                "cannot run schedule {} for {}",
                s.name,
                local_text(&s.cadence, slot)
            )
        })?
        .with_origin(s.origin(slot));
    let into = job.spec["dataset"].as_str().unwrap_or_default().to_owned();
    let id = match q.fire_slot(s.id, slot, true, Ok(job)).await? {
        FireOutcome::Submitted(id) => id,
        other => bail!("schedule {}: the run was not submitted ({other:?})", s.name),
    };
    match wait_submitted(queue, &q, sqlite, id, "ingest").await? {
        Waited::Detached(id) => println!("{id}"),
        Waited::Finished(job) => report_ingest(&job, &into, args.json, started)?,
    }
    q.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Starts the scheduler of a `terrace worker`.
pub fn scheduler(
    queue: &terrace_jobs::Queue,
    interval: std::time::Duration,
) -> terrace_jobs::Scheduler {
    let config = terrace_jobs::SchedulerConfig {
        interval,
        ..Default::default()
    };
    terrace_jobs::Scheduler::new(queue.clone(), Arc::new(CliPlanner), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn slots_are_named_by_time_local_time_or_date() {
        let berlin = Cadence::new("0 2 * * *", "Europe/Berlin").unwrap();
        let slot = utc("2026-01-05T01:00:00Z");
        assert_eq!(slot_at(&berlin, "2026-01-05T02:00:00+01:00").unwrap(), slot);
        assert_eq!(slot_at(&berlin, "2026-01-05 02:00").unwrap(), slot);
        assert_eq!(slot_at(&berlin, "2026-01-05").unwrap(), slot);
        let e = slot_at(&berlin, "2026-01-05 03:00")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is not a slot") && e.contains("2026-01-05 02:00:00 CET"),
            "{e}"
        );
        let e = slot_at(&berlin, "yesterday").unwrap_err().to_string();
        assert!(e.contains("--at \"yesterday\" is not a time"), "{e}");
        let hourly = Cadence::new("0 * * * *", "UTC").unwrap();
        let e = slot_at(&hourly, "2026-01-05").unwrap_err().to_string();
        assert!(e.contains("24 slots"), "{e}");
    }

    #[test]
    fn templates_are_ingest_command_lines() {
        let args: Vec<String> = ["ingest", "landing/{date}/*.csv", "--into", "lake"]
            .map(String::from)
            .to_vec();
        let ingest = parse_template(&args).unwrap();
        assert_eq!(ingest.inputs, vec!["landing/{date}/*.csv"]);
        let e = parse_template(&["query".to_owned(), "lake".to_owned()]).unwrap_err();
        assert!(e.contains("query"), "{e}");
        let e = parse_template(&["ingest".to_owned(), "x.csv".to_owned()]).unwrap_err();
        assert!(e.contains("--into"), "{e}");
        assert_eq!(resolve(Some("/work"), "lake"), "/work/lake");
        assert_eq!(resolve(Some("/work"), "/abs/lake"), "/abs/lake");
        assert_eq!(resolve(Some("/work"), "s3://b/lake"), "s3://b/lake");
    }
}
