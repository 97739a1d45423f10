//! The `terrace` command.
//!
//! So far it inspects datasets (`inspect`, `history`); ingestion, queries and the job
//! commands come with the CLI issue. Errors print as one line (`{:#}`, the cause chain)
//! and exit 1; usage errors exit 2 (clap's convention).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use terrace_format::{Dataset, Snapshot};

#[derive(Parser)]
#[command(
    name = "terrace",
    version,
    about = "Partitioned, bucketed Parquet datasets on any object store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a dataset's schema, layout, indices and size at its latest (or a given) version.
    Inspect {
        /// Dataset path or URL (./lake/x, s3://bucket/x, …).
        dataset: String,
        /// Inspect this version instead of the latest.
        #[arg(long)]
        version: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a dataset's retained versions with what each commit did.
    History {
        /// Dataset path or URL.
        dataset: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("terrace: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Inspect {
                dataset,
                version,
                json,
            } => inspect(&dataset, version, json).await,
            Command::History { dataset, json } => history(&dataset, json).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
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

async fn inspect(location: &str, version: Option<u64>, json: bool) -> anyhow::Result<()> {
    let dataset = match version {
        Some(v) => Dataset::open_version(location, v).await,
        None => Dataset::open(location).await,
    }
    .with_context(|| format!("cannot open {location}"))?;
    let s = dataset.current();
    let layout = s.layout();
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

async fn history(location: &str, json: bool) -> anyhow::Result<()> {
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
