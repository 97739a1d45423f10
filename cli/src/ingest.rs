//! `terrace ingest`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use terrace_format::{InputFormat, Layout};
use terrace_jobs::kinds::{
    IngestMode, IngestRequest, IngestSpec, PathPick, ShuffleMethod, plan_ingest,
};
use terrace_jobs::{JobRecord, NewJob};
use terrace_planner::{SchemaField, schema_from_fields};

use terrace_planner::human_bytes;

use crate::session::{QueueArgs, Waited, ensure_succeeded, submit_and_wait};

/// Input formats on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// CSV with a header line.
    Csv,
    /// Parquet.
    Parquet,
    /// One JSON object per line.
    Jsonl,
    /// Arrow IPC stream.
    Arrow,
}

/// Ingest modes on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// Add the rows.
    Append,
    /// Replace the partitions written to.
    Overwrite,
}

/// How a shuffle carries rows, on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ShuffleMethodArg {
    /// Sorted runs per map task: memory and files do not grow with the group count.
    Runs,
    /// A piece per map task and group, copied by row group into the group's file.
    Pieces,
}

/// `terrace ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Input files: paths, URLs or globs ('flights/*.csv', 's3://landing/2026-11-23/*.parquet').
    /// CSV, JSON lines and Arrow files ending in .gz are decompressed while read. Each file
    /// is read once: a file two inputs name is refused.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// The dataset to write (created by the first ingest).
    #[arg(long, value_name = "DATASET")]
    pub into: String,
    /// Partition columns (hive-style directories).
    #[arg(long, num_args = 1.., value_name = "COLUMN")]
    pub partition_on: Vec<String>,
    /// Bucket columns (needs --buckets).
    #[arg(long, num_args = 1.., value_name = "COLUMN", requires = "buckets")]
    pub bucket_by: Vec<String>,
    /// Number of buckets.
    #[arg(long, value_name = "N", requires = "bucket_by")]
    pub buckets: Option<u32>,
    /// Sort rows within each row group (not across a file's row groups: with several row
    /// groups per file, each is sorted on its own).
    #[arg(long, num_args = 1.., value_name = "COLUMN")]
    pub sort_by: Vec<String>,
    /// Rows per Parquet row group (default 1000000). Smaller row groups let queries skip
    /// more of a file: the manifest keeps each row group's statistics.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub row_group_rows: Option<u64>,
    /// Shuffle through staging: one file per (partition, bucket). By default the plan
    /// picks: a direct write where it already gives one file per group (one group, or one
    /// task and few groups), a shuffle elsewhere; --explain says which and why.
    #[arg(long, conflicts_with = "no_shuffle")]
    pub shuffle: bool,
    /// Write directly, each task a file per (partition, bucket) it touches.
    #[arg(long)]
    pub no_shuffle: bool,
    /// How the shuffle carries rows [default: runs when a sample of the first input holds
    /// more than 256 (partition, bucket) groups, else pieces].
    #[arg(long, value_name = "METHOD", requires = "shuffle")]
    pub shuffle_method: Option<ShuffleMethodArg>,
    /// Input format (default: from each file's extension).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// JSON file with the input schema: [{"name": …, "type": "Int64", "nullable": true}, …].
    #[arg(long, value_name = "FILE")]
    pub schema: Option<std::path::PathBuf>,
    /// Allow new nullable columns to be added to the dataset's schema.
    #[arg(long)]
    pub add_columns: bool,
    /// Append rows, or overwrite the partitions written to.
    #[arg(long, value_enum, default_value = "append")]
    pub mode: ModeArg,
    /// Columns to index (value -> files), chosen when the dataset is created.
    #[arg(long, num_args = 1.., value_name = "COLUMN")]
    pub index: Vec<String>,
    /// Input bytes per write task (e.g. 32MiB; default 128MiB, or 64MiB per map task
    /// when the rows are shuffled).
    #[arg(long, value_parser = crate::parse::size)]
    pub split_size: Option<u64>,
    /// Recorded in the commit; an ingest with a key already committed changes nothing.
    /// Without it an append's key is what the job is: the dataset, the mode, how the
    /// inputs are read and each input file's path, size and modification time (or
    /// e-tag), so the same ingest of unchanged inputs commits once and running it again
    /// is a no-op that says so (as COPY INTO does). Only versions still kept are checked:
    /// after `terrace gc` has removed the version that committed a key (versions older
    /// than its --retention, 7d by default), an ingest with that key commits again.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Ingest even inputs that were ingested before, unchanged (their rows are added
    /// again).
    #[arg(long, conflicts_with = "idempotency_key")]
    pub force: bool,
    /// Print the plan (the path the rows take and why, the tasks of each stage) instead
    /// of ingesting; nothing is written.
    #[arg(long)]
    pub explain: bool,
    /// Print the job's result (or with --explain the plan) as JSON.
    #[arg(long)]
    pub json: bool,
}

impl IngestArgs {
    /// The ingest this command line asks for.
    pub fn request(&self) -> anyhow::Result<IngestRequest> {
        let schema = match &self.schema {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the schema file {}", path.display()))?;
                let fields: Vec<SchemaField> = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is not a schema: expected [{{\"name\": …, \"type\": …, \"nullable\": …}}, …]",
                        path.display()
                    )
                })?;
                Some(schema_from_fields(&fields).with_context(|| {
                    format!("the schema file {} has a bad type", path.display())
                })?)
            }
            None => None,
        };
        Ok(IngestRequest {
            inputs: self.inputs.clone(),
            dataset: self.into.clone(),
            format: self.format.map(|f| match f {
                FormatArg::Csv => InputFormat::Csv,
                FormatArg::Parquet => InputFormat::Parquet,
                FormatArg::Jsonl => InputFormat::JsonLines,
                FormatArg::Arrow => InputFormat::ArrowStream,
            }),
            schema,
            layout: Layout {
                partition_on: self.partition_on.clone(),
                bucket_by: self.bucket_by.clone(),
                num_buckets: self.buckets,
            },
            sort_by: self.sort_by.clone(),
            row_group_rows: self.row_group_rows.map(|n| n as usize),
            shuffle: match (self.shuffle, self.no_shuffle) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            shuffle_method: self.shuffle_method.map(|m| match m {
                ShuffleMethodArg::Runs => ShuffleMethod::Runs,
                ShuffleMethodArg::Pieces => ShuffleMethod::Pieces,
            }),
            mode: match self.mode {
                ModeArg::Append => IngestMode::Append,
                ModeArg::Overwrite => IngestMode::Overwrite,
            },
            index_columns: self.index.clone(),
            add_columns: self.add_columns,
            split_bytes: self.split_size,
            idempotency_key: self.idempotency_key.clone(),
            force: self.force,
        })
    }
}

/// Run an ingest.
pub async fn run(queue: &QueueArgs, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let job = plan_ingest(args.request()?)
        .await
        .with_context(|| format!("cannot ingest into {}", args.into))?;
    if args.explain {
        explain_ingest(&job, &args.into, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    match submit_and_wait(queue, job, "ingest").await? {
        Waited::Detached(id) => println!("{id}"),
        Waited::Finished(job) => report_ingest(&job, &args.into, args.json, started)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Print a planned ingest: its path and why, and its stages.
fn explain_ingest(job: &NewJob, into: &str, json: bool) -> anyhow::Result<()> {
    let spec: IngestSpec =
        serde_json::from_value(job.spec.clone()).context("reading the planned ingest")?;
    let mut stages: Vec<(String, usize)> = Vec::new();
    for task in &job.tasks {
        let kind = task.payload["kind"].as_str().unwrap_or("task").to_string();
        match stages.last_mut() {
            Some((k, n)) if *k == kind => *n += 1,
            _ => stages.push((kind, 1)),
        }
    }
    let pick = spec
        .path
        .as_ref()
        .context("the planned ingest carries no path")?;
    if json {
        let stages: Vec<_> = stages
            .iter()
            .map(|(kind, tasks)| serde_json::json!({"stage": kind, "tasks": tasks}))
            .collect();
        let plan = serde_json::json!({
            "dataset": spec.dataset,
            "input_files": spec.input_files,
            "input_bytes": spec.input_bytes,
            "path": pick.path,
            "why": pick.why,
            "splits": pick.splits,
            "sample": pick.sample,
            "stages": stages,
        });
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    println!(
        "ingest of {} input {} ({}) into {into}",
        spec.input_files,
        if spec.input_files == 1 {
            "file"
        } else {
            "files"
        },
        human_bytes(spec.input_bytes)
    );
    println!("path: {}: {}", pick.path, pick.why);
    let stages: Vec<String> = stages
        .iter()
        .map(|(kind, n)| format!("{kind} {n} {}", if *n == 1 { "task" } else { "tasks" }))
        .collect();
    println!("stages: {}", stages.join(", "));
    Ok(())
}

/// Print what a finished ingest job did (or why it failed).
pub fn report_ingest(
    job: &JobRecord,
    into: &str,
    json: bool,
    started: Instant,
) -> anyhow::Result<()> {
    ensure_succeeded(job).with_context(|| format!("ingest into {into} failed"))?;
    let mut result = job.result.clone().unwrap_or_default();
    // The path the plan took (absent from jobs planned before the pick existed).
    let pick: Option<PathPick> = serde_json::from_value(job.spec["path"].clone()).ok();
    if json {
        if let (Some(object), Some(pick)) = (result.as_object_mut(), &pick) {
            object.insert("path".into(), serde_json::to_value(pick)?);
        }
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else if result["committed"].as_bool() == Some(true) {
        println!(
            "ingested {} rows ({} files, {}) into {into} at version {} in {:.1}s{}",
            result["rows"],
            result["files"],
            human_bytes(job.bytes.max(0) as u64),
            result["version"],
            started.elapsed().as_secs_f64(),
            pick.map(|p| format!(" ({})", p.path)).unwrap_or_default()
        );
    } else if let Some(v) = result["duplicate_of"].as_u64() {
        let by = result["duplicate_job"]
            .as_i64()
            .map(|j| format!(" by job {j}"))
            .unwrap_or_default();
        if result["same_inputs"].as_bool() == Some(true) {
            println!(
                "nothing ingested: these inputs, unchanged, were already ingested into {into} \
                 at version {v}{by} ({} rows); --force ingests them again",
                result["duplicate_rows"]
            );
        } else {
            println!(
                "nothing ingested: idempotency key {} already committed in version {v} of \
                 {into}{by}",
                result["idempotency_key"].as_str().unwrap_or("")
            );
        }
    } else {
        println!("nothing ingested: the inputs have no rows");
    }
    Ok(())
}
