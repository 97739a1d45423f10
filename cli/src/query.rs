//! `terrace query` and `terrace explain`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use terrace_format::Location;
use terrace_jobs::JobRecord;
use terrace_jobs::kinds::{
    QueryRequest, QueryResult, RegionQuery, delete_prefix, plan_query, plan_query_read,
    read_query_result,
};
use terrace_planner::{Explain, parse_bed};

use crate::output::{OutputFormat, write_result};
use crate::session::{QueueArgs, Waited, ensure_succeeded, submit_and_wait};

/// Region x sample options (TileDB-VCF's read_dask).
#[derive(Debug, Clone, clap::Args)]
pub struct RegionArgs {
    /// BED-like file of regions (contig, start, end; tab separated).
    #[arg(long, value_name = "BED", requires_all = ["region_partitions", "sample_partitions", "sample_column"])]
    pub regions: Option<std::path::PathBuf>,
    /// Number of region groups R.
    #[arg(long, value_name = "R", requires = "regions")]
    pub region_partitions: Option<usize>,
    /// Number of sample groups S.
    #[arg(long, value_name = "S", requires = "regions")]
    pub sample_partitions: Option<usize>,
    /// The sample column.
    #[arg(long, value_name = "COLUMN", requires = "regions")]
    pub sample_column: Option<String>,
    /// The contig column of the regions.
    #[arg(
        long,
        value_name = "COLUMN",
        default_value = "contig",
        requires = "regions"
    )]
    pub contig_column: String,
    /// The position column of the regions.
    #[arg(
        long,
        value_name = "COLUMN",
        default_value = "pos",
        requires = "regions"
    )]
    pub position_column: String,
}

/// How a read becomes tasks; by default one task per data file (as kartothek), small
/// files grouped into tasks of up to 32 MiB (as dask fuses small partitions).
#[derive(Debug, Clone, clap::Args)]
pub struct TaskArgs {
    /// Group files into tasks of up to this many bytes [default: 32MiB]; 256MiB makes
    /// fewer, bigger tasks, 0 one task per data file.
    #[arg(long, value_name = "SIZE", value_parser = crate::parse::size,
          conflicts_with_all = ["dispatch_by", "regions"])]
    pub task_size: Option<u64>,
    /// One task per value of this partition column.
    #[arg(long, value_name = "COLUMN", conflicts_with = "regions")]
    pub dispatch_by: Option<String>,
}

impl RegionArgs {
    fn region(&self) -> anyhow::Result<Option<RegionQuery>> {
        let Some(bed) = &self.regions else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(bed)
            .with_context(|| format!("cannot read the regions file {}", bed.display()))?;
        let regions =
            parse_bed(&text).with_context(|| format!("bad regions file {}", bed.display()))?;
        Ok(Some(RegionQuery {
            contig_column: self.contig_column.clone(),
            position_column: self.position_column.clone(),
            regions,
            region_partitions: self.region_partitions.unwrap_or(1),
            sample_column: self.sample_column.clone().unwrap_or_default(),
            sample_partitions: self.sample_partitions.unwrap_or(1),
        }))
    }
}

/// `terrace query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// Dataset path or URL.
    pub dataset: String,
    /// SQL boolean expression: the rows to return.
    #[arg(long = "where", value_name = "SQL")]
    pub predicate: Option<String>,
    /// Columns to return (default all).
    #[arg(long, num_args = 1.., value_name = "COLUMN")]
    pub columns: Option<Vec<String>>,
    /// Read this version.
    #[arg(long, conflicts_with = "as_of")]
    pub version: Option<u64>,
    /// Read the version current at this time (2026-11-23T10:00:00Z or 2026-11-23).
    #[arg(long, value_parser = crate::parse::time)]
    pub as_of: Option<DateTime<Utc>>,
    /// SQL run on each task's rows where they are read (table `part`).
    #[arg(long, value_name = "SQL")]
    pub map: Option<String>,
    /// SQL run once over all map outputs (table `parts`).
    #[arg(long, value_name = "SQL")]
    pub reduce: Option<String>,
    #[command(flatten)]
    pub region: RegionArgs,
    #[command(flatten)]
    pub tasks: TaskArgs,
    /// Return at most N rows.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Write the result here (file or URL) instead of the terminal. An existing file is
    /// replaced only once the query has succeeded. Not with --detach: `terrace status ID
    /// --result` prints a detached query's result.
    #[arg(long, value_name = "FILE|URL")]
    pub output: Option<String>,
    /// Output format (default: table on the terminal, else from the output's extension).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Memory a task may hold (e.g. 256MiB).
    #[arg(long, value_parser = crate::parse::size)]
    pub memory_budget: Option<u64>,
    /// Print the pruning counts to stderr.
    #[arg(long)]
    pub explain: bool,
}

/// `terrace explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Dataset path or URL.
    pub dataset: String,
    /// SQL boolean expression.
    #[arg(long = "where", value_name = "SQL")]
    pub predicate: Option<String>,
    /// Columns to return.
    #[arg(long, num_args = 1.., value_name = "COLUMN")]
    pub columns: Option<Vec<String>>,
    #[command(flatten)]
    pub region: RegionArgs,
    #[command(flatten)]
    pub tasks: TaskArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where the result goes, opened before the job is submitted so that an unwritable
/// output fails first.
enum Sink {
    Stdout,
    File(OutputFile),
    Url(Location),
}

/// A local output file, written under a temporary name beside it and renamed over it
/// once complete: a query that fails, or a write that does, leaves a file already there
/// as it was.
struct OutputFile {
    temp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl OutputFile {
    fn create(path: &Path) -> anyhow::Result<OutputFile> {
        let context = || format!("cannot write the output {}", path.display());
        let existing = match std::fs::metadata(path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(context),
        };
        if let Some(meta) = &existing {
            // A rename would replace what truncating the file used to refuse.
            if meta.is_dir() {
                bail!(
                    "cannot write the output {}: it is a directory",
                    path.display()
                );
            }
            if meta.permissions().readonly() {
                bail!(
                    "cannot write the output {}: it is read-only",
                    path.display()
                );
            }
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map_or("output".into(), |n| n.to_string_lossy());
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // What `File::create` gives a new file (less the umask), not 0600.
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let temp = builder.tempfile_in(dir).with_context(context)?;
        if let Some(meta) = existing {
            temp.as_file()
                .set_permissions(meta.permissions())
                .with_context(context)?;
        }
        Ok(OutputFile {
            temp,
            path: path.to_owned(),
        })
    }

    /// A buffered writer to the temporary file; flushed by [`OutputFile::finish`].
    fn writer(&self) -> anyhow::Result<Shared<std::io::BufWriter<std::fs::File>>> {
        let file = self
            .temp
            .as_file()
            .try_clone()
            .with_context(|| format!("cannot write the output {}", self.path.display()))?;
        Ok(Shared::new(std::io::BufWriter::new(file)))
    }

    /// Flush `writer` and put the file in place of the output.
    fn finish(self, writer: &Shared<std::io::BufWriter<std::fs::File>>) -> anyhow::Result<()> {
        let context = || format!("cannot write the output {}", self.path.display());
        writer.flush_shared().with_context(context)?;
        self.temp
            .persist(&self.path)
            .map_err(|e| e.error)
            .with_context(context)?;
        Ok(())
    }
}

fn output_format(args: &QueryArgs) -> anyhow::Result<OutputFormat> {
    if let Some(f) = args.format {
        return Ok(f);
    }
    let Some(output) = &args.output else {
        return Ok(OutputFormat::Table);
    };
    OutputFormat::of_extension(output).with_context(|| {
        format!("cannot tell the format of --output {output:?} from its extension; give --format")
    })
}

fn open_sink(output: Option<&str>) -> anyhow::Result<Sink> {
    let Some(output) = output else {
        return Ok(Sink::Stdout);
    };
    if output.contains("://") && !output.starts_with("file://") {
        let loc = Location::parse(output).with_context(|| format!("bad --output {output}"))?;
        return Ok(Sink::Url(loc));
    }
    let path = output.strip_prefix("file://").unwrap_or(output);
    Ok(Sink::File(OutputFile::create(Path::new(path))?))
}

/// Run a query.
pub async fn run(queue: &QueueArgs, args: QueryArgs) -> anyhow::Result<ExitCode> {
    if let (true, Some(output)) = (queue.detach, &args.output) {
        // The command would return before the result exists, and nothing else writes
        // the output.
        bail!(
            "--output {output} cannot be used with --detach: a detached query's result is \
             printed by `terrace status ID --result`; run without --detach to write a file"
        );
    }
    let format = output_format(&args)?;
    let request = QueryRequest {
        dataset: args.dataset.clone(),
        predicate: args.predicate.clone(),
        columns: args.columns.clone(),
        version: args.version,
        as_of: args.as_of,
        map_sql: args.map.clone(),
        reduce_sql: args.reduce.clone(),
        region: args.region.region()?,
        limit: args.limit,
        memory_budget: args.memory_budget.map(|b| b as usize),
        target_bytes_per_task: args.tasks.task_size,
        dispatch_by: args.tasks.dispatch_by.clone(),
    };
    let rows = execute(queue, request, args.explain, format, args.output.as_deref()).await?;
    if let (Some(rows), Some(output)) = (rows, args.output.as_deref()) {
        eprintln!("wrote {rows} rows to {output}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Plan, submit, wait for and deliver a query; `None` when detached (the job id is
/// printed then).
pub async fn execute(
    queue: &QueueArgs,
    request: QueryRequest,
    explain: bool,
    format: OutputFormat,
    output: Option<&str>,
) -> anyhow::Result<Option<u64>> {
    let dataset = request.dataset.clone();
    let (job, plan) = plan_query(request)
        .await
        .with_context(|| format!("cannot query {dataset}"))?;
    if explain {
        eprint!("{}", Explain::new(&plan));
    }
    let sink = open_sink(output)?;
    let job = match submit_and_wait(queue, job, "query").await? {
        Waited::Detached(id) => {
            println!("{id}");
            return Ok(None);
        }
        Waited::Finished(job) => job,
    };
    ensure_succeeded(&job).with_context(|| format!("query of {dataset} failed"))?;
    let result = QueryResult::of_job(&job)?;
    let written = deliver(&result, format, sink).await;
    // The run's parts and result are not needed once delivered.
    let _ = delete_prefix(&result.location, &result.staging).await;
    Ok(Some(written?))
}

async fn deliver(result: &QueryResult, format: OutputFormat, sink: Sink) -> anyhow::Result<u64> {
    if format == OutputFormat::Parquet {
        // The result already is a Parquet file: copy its bytes, decode nothing.
        return copy_result(result, sink).await;
    }
    let batches = read_query_result(result).await?;
    match sink {
        Sink::Stdout => {
            let out: Box<dyn Write + Send> = Box::new(std::io::stdout());
            Ok(write_result(batches, format, out).await?)
        }
        Sink::File(file) => {
            let writer = file.writer()?;
            let rows = write_result(batches, format, Box::new(writer.clone())).await?;
            file.finish(&writer)?;
            Ok(rows)
        }
        Sink::Url(loc) => {
            let buffer = Shared::<Vec<u8>>::default();
            let out: Box<dyn Write + Send> = Box::new(buffer.clone());
            let rows = write_result(batches, format, out).await?;
            let bytes = buffer.take();
            loc.store
                .put(&loc.root, PutPayload::from(bytes))
                .await
                .with_context(|| format!("cannot write the output {}", loc.display))?;
            Ok(rows)
        }
    }
}

/// Copy the result file's bytes to `sink`; returns its rows.
async fn copy_result(result: &QueryResult, sink: Sink) -> anyhow::Result<u64> {
    let read = || format!("cannot read the query result {}", result.path);
    let written = "cannot write the output";
    let object = result
        .location
        .store
        .get(&result.location.child(&result.path))
        .await
        .with_context(read)?;
    let (mut out, file): (Box<dyn Write + Send>, _) = match sink {
        Sink::Stdout => (Box::new(std::io::stdout()), None),
        Sink::File(file) => {
            let writer = file.writer()?;
            (Box::new(writer.clone()), Some((file, writer)))
        }
        Sink::Url(loc) => {
            let bytes = object.bytes().await.with_context(read)?;
            loc.store
                .put(&loc.root, PutPayload::from(bytes))
                .await
                .with_context(|| format!("cannot write the output {}", loc.display))?;
            return Ok(result.rows);
        }
    };
    let mut chunks = object.into_stream();
    while let Some(chunk) = chunks.next().await {
        out.write_all(&chunk.with_context(read)?).context(written)?;
    }
    out.flush().context(written)?;
    if let Some((file, writer)) = file {
        file.finish(&writer)?;
    }
    Ok(result.rows)
}

/// A `Write` shared by clones: the writer that consumes one clone drops it, and the
/// bytes (a URL output's) are taken, or the buffer (a file output's) flushed, through
/// another. A flush in a drop would lose its error.
#[derive(Default)]
struct Shared<W>(Arc<Mutex<W>>);

// Derived, it would ask for `W: Clone`.
impl<W> Clone for Shared<W> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<W> Shared<W> {
    fn new(inner: W) -> Shared<W> {
        Shared(Arc::new(Mutex::new(inner)))
    }

    fn lock(&self) -> std::io::Result<MutexGuard<'_, W>> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("output buffer poisoned"))
    }
}

impl Shared<Vec<u8>> {
    fn take(&self) -> Vec<u8> {
        self.lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

impl<W: Write> Shared<W> {
    fn flush_shared(&self) -> std::io::Result<()> {
        self.lock()?.flush()
    }
}

impl<W: Write> Write for Shared<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.lock()?.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.lock()?.flush()
    }
}

/// Explain a query.
pub async fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let request = QueryRequest {
        dataset: args.dataset.clone(),
        predicate: args.predicate.clone(),
        columns: args.columns.clone(),
        region: args.region.region()?,
        target_bytes_per_task: args.tasks.task_size,
        dispatch_by: args.tasks.dispatch_by.clone(),
        ..Default::default()
    };
    let planned = plan_query_read(&request)
        .await
        .with_context(|| format!("cannot plan a query of {}", args.dataset))?;
    let explain = Explain::new(&planned.plan);
    if args.json {
        println!("{}", explain.to_json()?);
    } else {
        print!("{explain}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Print a finished query's result (for `status` of a detached query).
pub async fn print_result(job: &JobRecord) -> anyhow::Result<()> {
    let result = QueryResult::of_job(job)?;
    let out: Box<dyn Write + Send> = Box::new(std::io::stdout());
    write_result(read_query_result(&result).await?, OutputFormat::Table, out).await?;
    Ok(())
}
