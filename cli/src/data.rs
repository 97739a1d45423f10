//! Dataset commands: inspect, history, delete, gc.

use std::process::ExitCode;

use anyhow::Context;
use terrace_format::{Dataset, Snapshot};
use terrace_jobs::kinds::{plan_delete, plan_gc};

use crate::session::{QueueArgs, Waited, ensure_succeeded, submit_and_wait};

/// `terrace inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Dataset path or URL (./lake/x, s3://bucket/x, …).
    pub dataset: String,
    /// Inspect this version instead of the latest.
    #[arg(long)]
    pub version: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `terrace history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Dataset path or URL.
    pub dataset: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `terrace delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Dataset path or URL.
    pub dataset: String,
    /// SQL over partition columns: the partitions to delete.
    #[arg(long = "where", value_name = "SQL")]
    pub predicate: String,
    /// Print the job's result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `terrace gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Dataset path or URL.
    pub dataset: String,
    /// Keep versions and files younger than this (24h, 3d, 7d); at least 24h unless
    /// --force.
    #[arg(long, default_value = "7d", value_parser = crate::parse::duration)]
    pub retention: std::time::Duration,
    /// Report what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Accept a retention below the 24h floor. Files of jobs still writing may then be
    /// removed (their commits fail and nothing is lost, but they must be run again); the
    /// staging of unfinished jobs in this queue is kept anyway.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Submit a one-task maintenance job and print its result.
async fn run_job(
    queue: &QueueArgs,
    job: terrace_jobs::NewJob,
    what: &str,
    json: bool,
    describe: impl Fn(&serde_json::Value) -> String,
) -> anyhow::Result<ExitCode> {
    match submit_and_wait(queue, job, what).await? {
        Waited::Detached(id) => println!("{id}"),
        Waited::Finished(job) => {
            ensure_succeeded(&job)?;
            let result = job.result.unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                println!("{}", describe(&result));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Delete partitions.
pub async fn delete(queue: &QueueArgs, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let job = plan_delete(&args.dataset, &args.predicate)
        .await
        .with_context(|| format!("cannot delete from {}", args.dataset))?;
    run_job(queue, job, "delete", args.json, |r| {
        if r["committed"].as_bool() == Some(true) {
            format!(
                "deleted {} partition(s), {} file(s), {} row(s); now at version {}",
                r["partitions"], r["files_removed"], r["rows_removed"], r["version"]
            )
        } else {
            format!("no partition matched; still at version {}", r["version"])
        }
    })
    .await
}

/// Garbage-collect a dataset.
pub async fn gc(queue: &QueueArgs, args: GcArgs) -> anyhow::Result<ExitCode> {
    let job = plan_gc(&args.dataset, args.retention, args.dry_run, args.force)
        .await
        .with_context(|| format!("cannot collect garbage in {}", args.dataset))?;
    let dry_run = args.dry_run;
    run_job(queue, job, "gc", args.json, |r| {
        let files = r["files_removed"].as_array().map_or(0, Vec::len);
        let versions = r["versions_removed"].as_array().map_or(0, Vec::len);
        format!(
            "{} {versions} version(s) and {files} file(s) ({} bytes); {} version(s) kept",
            if dry_run { "would remove" } else { "removed" },
            r["bytes_removed"],
            r["versions_kept"]
        )
    })
    .await
}

fn commit_json(s: &Snapshot) -> serde_json::Value {
    let c = s.commit();
    serde_json::json!({
        "version": s.version(),
        "timestamp": s.timestamp().to_rfc3339(),
        "operation": format!("{:?}", c.operation),
        "job_id": c.job_id,
        "idempotency_key": c.idempotency_key,
        "rows_added": c.rows_added,
        "files_added": c.files_added,
        "rows_removed": c.rows_removed,
        "files_removed": c.files_removed,
    })
}

/// Show a dataset.
pub async fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    show(&args.dataset, args.version, args.json).await?;
    Ok(ExitCode::SUCCESS)
}

async fn show(location: &str, version: Option<u64>, json: bool) -> anyhow::Result<()> {
    let dataset = match version {
        Some(v) => Dataset::open_version(location, v).await,
        None => Dataset::open(location).await,
    }
    .with_context(|| format!("cannot open {location}"))?;
    let s = dataset.current();
    let layout = s.layout();
    let versions = dataset
        .versions()
        .await
        .with_context(|| format!("cannot list the versions of {location}"))?;
    if json {
        let columns: Vec<_> = s
            .schema()
            .fields()
            .iter()
            .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
            .collect();
        let out = serde_json::json!({
            "location": dataset.location(),
            "dataset_id": s.dataset_id(),
            "version": s.version(),
            "columns": columns,
            "partition_on": layout.partition_on,
            "bucket_by": layout.bucket_by,
            "num_buckets": layout.num_buckets,
            "indexed_columns": s.indexed_columns(),
            "files": s.num_files(),
            "rows": s.num_rows(),
            "bytes": s.size_bytes(),
            "segments": s.segments().len(),
            "versions_retained": versions.len(),
            "oldest_version": versions.first(),
            "last_commit": commit_json(s),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("dataset    {} (id {})", dataset.location(), s.dataset_id());
    println!(
        "version    {} committed {}",
        s.version(),
        s.timestamp().to_rfc3339()
    );
    println!(
        "versions   {} retained ({})",
        versions.len(),
        match (versions.first(), versions.last()) {
            (Some(a), Some(b)) if a != b => format!("{a}..={b}"),
            (Some(a), _) => a.to_string(),
            _ => "-".into(),
        }
    );
    println!("rows       {}", s.num_rows());
    println!(
        "files      {} in {} segments",
        s.num_files(),
        s.segments().len()
    );
    println!("bytes      {}", s.size_bytes());
    println!(
        "partition  {}",
        if layout.partition_on.is_empty() {
            "-".into()
        } else {
            layout.partition_on.join(", ")
        }
    );
    match layout.num_buckets {
        Some(n) => println!("buckets    {n} by {}", layout.bucket_by.join(", ")),
        None => println!("buckets    -"),
    }
    println!(
        "indices    {}",
        if s.indexed_columns().is_empty() {
            "-".into()
        } else {
            s.indexed_columns().join(", ")
        }
    );
    println!("columns");
    for f in s.schema().fields() {
        println!(
            "  {:<24} {}{}",
            f.name(),
            f.data_type(),
            if f.is_nullable() { "" } else { " not null" }
        );
    }
    Ok(())
}

/// List a dataset's versions.
pub async fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    list_versions(&args.dataset, args.json).await?;
    Ok(ExitCode::SUCCESS)
}

async fn list_versions(location: &str, json: bool) -> anyhow::Result<()> {
    let dataset = Dataset::open(location)
        .await
        .with_context(|| format!("cannot open {location}"))?;
    let versions = dataset
        .history()
        .await
        .with_context(|| format!("cannot list the versions of {location}"))?;
    if json {
        let out: Vec<_> = versions.iter().map(commit_json).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:>8}  {:<25}  {:<20}  {:>10}  {:>10}",
        "version", "committed", "operation", "+rows", "-rows"
    );
    for s in versions.iter().rev() {
        let c = s.commit();
        println!(
            "{:>8}  {:<25}  {:<20}  {:>10}  {:>10}",
            s.version(),
            s.timestamp().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            format!("{:?}", c.operation),
            c.rows_added,
            c.rows_removed
        );
    }
    Ok(())
}
