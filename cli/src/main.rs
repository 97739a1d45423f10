//! The `terrace` command: ingest, query and maintain partitioned, bucketed Parquet
//! datasets through a durable job queue.
//!
//! With no `--db` the queue is an embedded SQLite file and workers run in this process
//! (see [`session`]); with `--db postgres://…` the same commands submit to a queue that
//! `terrace worker` processes on many machines consume.
//!
//! Exit codes: 0 success, 1 failure, 2 usage (clap's convention). A failure prints one
//! line (what failed and the root cause, with a hint where one helps); `-v` prints the
//! whole cause chain. Nothing below this crate prints or exits.

mod data;
mod ingest;
mod jobs;
mod output;
mod parse;
mod query;
mod quickstart;
mod schedule;
mod session;

use std::process::ExitCode;

use anyhow::Context;
use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use session::QueueArgs;

/// mimalloc rather than the system allocator: with tasks' threads freeing what others
/// allocated, glibc's per-thread arenas held far more than the live heap
/// (bench/README.md, "Measurements behind the code's choices").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "terrace",
    version,
    about = "Partitioned, bucketed Parquet datasets on any object store, with ingestion and \
             queries run as jobs on a durable queue"
)]
struct Cli {
    /// Print the whole cause chain of an error (and worker logs with -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a sample flights data set, ingest it and run three queries (a tour).
    Quickstart(quickstart::QuickstartArgs),
    /// Ingest CSV, Parquet, JSON-lines or Arrow files into a dataset (created on first use).
    Ingest(ingest::IngestArgs),
    /// Query a dataset: filter, project, time travel, map/reduce SQL, region x sample.
    Query(query::QueryArgs),
    /// Show how a query would be pruned and split into tasks, without running it.
    Explain(query::ExplainArgs),
    /// Show a dataset's schema, layout, indices and size at its latest (or a given) version.
    Inspect(data::InspectArgs),
    /// List a dataset's retained versions with what each commit did.
    History(data::HistoryArgs),
    /// Delete whole partitions matching a predicate on partition columns.
    Delete(data::DeleteArgs),
    /// Remove versions and unreferenced files older than a retention period.
    Gc(data::GcArgs),
    /// Show a job (or the unfinished jobs): state, tasks, rows, bytes, result, error.
    Status(jobs::StatusArgs),
    /// List jobs, newest first.
    Jobs(jobs::JobsArgs),
    /// Cancel a job: its pending tasks will not run.
    Cancel(jobs::JobArg),
    /// Run a failed job's dead tasks again.
    Retry(jobs::JobArg),
    /// Run a worker until SIGTERM or Ctrl-C (draining what it holds); it also fires
    /// schedules.
    Worker(jobs::WorkerArgs),
    /// Schedules: ingestion on a cron cadence, each slot fired once (add, list, show,
    /// pause, resume, remove, run).
    Schedule(schedule::ScheduleArgs),
}

impl Command {
    /// The command's name when it submits no job, so `--detach` and `--workers` (which
    /// say how to wait for one) would do nothing.
    fn runs_no_job(&self) -> Option<&'static str> {
        match self {
            Command::Quickstart(_)
            | Command::Ingest(_)
            | Command::Query(_)
            | Command::Delete(_)
            | Command::Gc(_) => None,
            Command::Schedule(args) if args.runs_a_slot() => None,
            Command::Schedule(_) => Some("schedule"),
            Command::Explain(_) => Some("explain"),
            Command::Inspect(_) => Some("inspect"),
            Command::History(_) => Some("history"),
            Command::Status(_) => Some("status"),
            Command::Jobs(_) => Some("jobs"),
            Command::Cancel(_) => Some("cancel"),
            Command::Retry(_) => Some("retry"),
            Command::Worker(_) => Some("worker"),
        }
    }
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = parse_args();
    let verbose = cli.verbose;
    init_logging(verbose);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            report(&err, verbose > 0);
            ExitCode::FAILURE
        }
    }
}

/// The command line, with the rules the argument structs do not state themselves; a
/// flag that would be ignored is a usage error (exit 2), never silently accepted.
fn parse_args() -> Cli {
    let mut command = Cli::command();
    let parsed = Cli::from_arg_matches(&command.get_matches_mut())
        .and_then(|cli| check_flags(&cli).map(|()| cli));
    parsed.unwrap_or_else(|e| e.format(&mut command).exit())
}

/// Rules on global flags that clap cannot check: a global flag may stand before the
/// subcommand or after it, and a `conflicts_with` between two of them is missed when
/// they stand on different sides.
fn check_flags(cli: &Cli) -> Result<(), clap::Error> {
    let conflict = |message: &str| Err(clap::Error::raw(ErrorKind::ArgumentConflict, message));
    let workers = cli.queue.workers.is_some();
    if workers && matches!(cli.command, Command::Worker(_)) {
        return conflict(
            "--workers sets how many workers a command runs while it waits for its job; \
             `terrace worker` is one worker: give its slots with --concurrency",
        );
    }
    // `terrace worker --detach` used to start a worker in the foreground, and `inspect
    // --workers 4` to read the dataset with no worker at all.
    if let Some(name) = cli.command.runs_no_job()
        && (cli.queue.detach || workers)
    {
        let flag = if cli.queue.detach {
            "--detach"
        } else {
            "--workers"
        };
        return conflict(&format!(
            "{flag} only acts on commands that run a job (quickstart, ingest, query, delete, \
             gc, schedule run); `terrace {name}` runs none"
        ));
    }
    if workers && cli.queue.detach {
        return conflict(
            "--workers cannot be used with --detach: the workers run while a command \
             waits for its job, and --detach does not wait",
        );
    }
    Ok(())
}

/// Rust ignores SIGPIPE, so `terrace jobs | head` would make `println!` panic once `head`
/// exits. Restore the default action: the process ends quietly, as Unix tools do.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        // sqlx warns of every connection it loses; the client says in one line what an
        // outage means for the command (session.rs), so those warnings wait for -v.
        0 => "warn,sqlx=error",
        1 => "warn",
        2 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TERRACE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// One line: the outermost message, the root cause when it adds something, and what to
/// do where we know; with `verbose` every cause on its own line.
fn report(err: &anyhow::Error, verbose: bool) {
    let hint = hint(err).map(|h| format!(" ({h})")).unwrap_or_default();
    if verbose {
        eprintln!("terrace: {err}{hint}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
    } else {
        let top = err.to_string();
        let root = err.root_cause().to_string();
        if root == top || top.contains(&root) {
            eprintln!("terrace: {top}{hint}");
        } else {
            eprintln!("terrace: {top}: {root}{hint}");
        }
    }
}

fn hint(err: &anyhow::Error) -> Option<&'static str> {
    for cause in err.chain() {
        let format_error = cause.downcast_ref::<terrace_format::Error>().or_else(|| {
            cause
                .downcast_ref::<Box<terrace_format::Error>>()
                .map(|b| &**b)
        });
        if let Some(e) = format_error {
            match e {
                terrace_format::Error::DatasetNotFound { .. } => {
                    return Some(
                        "check the path; `terrace ingest FILES --into DATASET` creates a dataset",
                    );
                }
                terrace_format::Error::VersionNotFound { .. } => {
                    return Some("`terrace history DATASET` lists the versions that exist");
                }
                _ => {}
            }
        }
        if let Some(hint) = cause
            .downcast_ref::<terrace_jobs::Error>()
            .and_then(terrace_jobs::Error::queue_hint)
        {
            return Some(hint);
        }
    }
    None
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let queue = cli.queue;
    runtime.block_on(async move {
        match cli.command {
            Command::Quickstart(args) => quickstart::run(&queue, args).await,
            Command::Ingest(args) => ingest::run(&queue, args).await,
            Command::Query(args) => query::run(&queue, args).await,
            Command::Explain(args) => query::explain(args).await,
            Command::Inspect(args) => data::inspect(args).await,
            Command::History(args) => data::history(args).await,
            Command::Delete(args) => data::delete(&queue, args).await,
            Command::Gc(args) => data::gc(&queue, args).await,
            Command::Status(args) => jobs::status(&queue, args).await,
            Command::Jobs(args) => jobs::list(&queue, args).await,
            Command::Cancel(args) => jobs::cancel(&queue, args).await,
            Command::Retry(args) => jobs::retry(&queue, args).await,
            Command::Worker(args) => jobs::worker(&queue, args).await,
            Command::Schedule(args) => schedule::run(&queue, args).await,
        }
    })
}
