//! Query: read tasks planned and pruned by terrace-planner, an optional `--map` SQL run on
//! each task's rows where they are read (table `part`, as TileDB-VCF's `map_dask`), then
//! one gather task that concatenates the parts, runs the optional `--reduce` SQL (table
//! `parts`) and the limit, and writes the result to the run's staging directory, from
//! where the client streams it to the terminal or an output file.
//!
//! Memory: a read task streams its rows (DataFusion's Parquet scan) into a Parquet part
//! that is flushed to the store whenever the buffered row group reaches half the memory
//! budget, so a task never holds a whole file; DataFusion's own operators (the map SQL's
//! aggregations, sorts) run under a memory pool of the same budget.
//!
//! A map's SQL sees the files' string columns as Arrow views
//! ([`ScanRequest::string_views`](terrace_format::ScanRequest::string_views)): grouping
//! by plain strings, and expanding dictionary pages into them, cost a large share of an
//! aggregate's CPU. Views can point into decompressed pages, so a
//! map that sorts long strings holds those pages (counted by the pool) until its output
//! is cast back to the planned plain types.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext as DfTaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{SetExpr, Statement as SqlStatement};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
// Deprecated in parquet 59.3 in favour of hand-written `AsyncFileReader`/`AsyncFileWriter`
// implementations; they are still what DataFusion itself uses, and parquet 59.3 has no
// replacement for the writer yet (`BufWriter` does not implement `AsyncFileWriter`).
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
#[allow(deprecated)]
use parquet::arrow::async_writer::ParquetObjectWriter;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::json;
use terrace_format::{Dataset, Location, read_data_files, scratch_properties};
use terrace_planner::{
    Predicate, ReadOptions, ReadPlan, ReadTask, RegionSample, SchemaField, plan_read,
    schema_from_fields, schema_to_fields,
};

use super::KIND_QUERY;
use super::common::{absolute, location, where_error};
use crate::error::{Error, Result};
use crate::model::{ClaimedTask, JobRecord, NewJob, NewTask, TaskOutput};
use crate::worker::TaskContext;

/// Region x sample partitioning of a query (see [`RegionSample`]).
pub type RegionQuery = RegionSample;

/// A query as a user asks for it.
#[derive(Debug, Clone, Default)]
pub struct QueryRequest {
    /// The dataset.
    pub dataset: String,
    /// SQL boolean expression over the dataset's columns.
    pub predicate: Option<String>,
    /// Columns to return (default all).
    pub columns: Option<Vec<String>>,
    /// Read this version.
    pub version: Option<u64>,
    /// Read the version current at this time.
    pub as_of: Option<DateTime<Utc>>,
    /// SQL run on each task's rows (table `part`).
    pub map_sql: Option<String>,
    /// SQL run once over all map outputs (table `parts`).
    pub reduce_sql: Option<String>,
    /// Split the query into region x sample tasks.
    pub region: Option<RegionQuery>,
    /// Return at most this many rows.
    pub limit: Option<u64>,
    /// Bytes a task may hold (default 256 MiB).
    pub memory_budget: Option<usize>,
    /// Group small files into tasks of at most this many bytes (0: one task per file;
    /// default [`terrace_planner::DEFAULT_BYTES_PER_TASK`]).
    pub target_bytes_per_task: Option<u64>,
    /// One task per value of this partition column.
    pub dispatch_by: Option<String>,
}

/// What a query job stores as its spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuerySpec {
    /// The dataset (absolute path or URL).
    pub dataset: String,
    /// The version read.
    pub version: u64,
    /// Unique id of the run (names its staging directory).
    pub run_id: String,
    /// Staging directory relative to the dataset root.
    pub staging: String,
    /// SQL run on each task's rows.
    pub map_sql: Option<String>,
    /// SQL run once over the map outputs.
    pub reduce_sql: Option<String>,
    /// Row limit.
    pub limit: Option<u64>,
    /// Bytes a task may hold.
    pub memory_budget: usize,
    /// Schema of a task's output (the map's, or the projection's).
    pub part_schema: Vec<SchemaField>,
    /// Number of read tasks.
    pub read_tasks: u64,
}

/// Where a finished query's rows are.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The dataset's store.
    pub location: Location,
    /// The result file (Parquet), relative to the dataset root.
    pub path: String,
    /// Rows in it.
    pub rows: u64,
    /// The run's staging directory, relative to the dataset root.
    pub staging: String,
}

impl QueryResult {
    /// Where a finished query job left its rows.
    pub fn of_job(job: &JobRecord) -> Result<QueryResult> {
        let spec: QuerySpec = job.spec_as()?;
        let result = job.result.as_ref();
        let path = result
            .and_then(|r| r["result"].as_str())
            .ok_or_else(|| Error::invalid(format!("job {}", job.id), "it has no result file"))?;
        let location = location(&spec.dataset)?;
        Ok(QueryResult {
            location,
            path: path.to_string(),
            rows: result.and_then(|r| r["rows"].as_u64()).unwrap_or(0),
            staging: spec.staging,
        })
    }
}

const DEFAULT_BUDGET: usize = 256 * 1024 * 1024;

fn df_error(
    context: &str,
    retryable: bool,
) -> impl Fn(datafusion::error::DataFusionError) -> Error {
    let context = context.to_string();
    move |e| Error::Execution {
        context: context.clone(),
        reason: e.to_string(),
        retryable,
    }
}

fn session(budget: usize) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(budget, 1.0)
        .build_arc()
        .map_err(df_error("setting up the query engine", false))?;
    Ok(SessionContext::new_with_config_rt(
        SessionConfig::new().with_target_partitions(1),
        runtime,
    ))
}

/// What user SQL (`--map`, `--reduce`) may do: read the tables terrace registered in its
/// session (`part`, `parts`) in one query, nothing else. DataFusion's defaults would run
/// DDL (`CREATE EXTERNAL TABLE … LOCATION '/any/file'` reads any file the worker can),
/// DML (`COPY (…) TO '/any/path'`, `INSERT INTO` write as the worker's user on every
/// worker machine) and statements (`SET` changes the session's settings).
///
/// The session itself has no URL tables (`SELECT * FROM '/etc/passwd'` names no table),
/// and its table functions, `generate_series` and `range`, read no file.
fn user_sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Refuse SQL from `flag` that is not exactly one query, with one line naming the flag
/// and what the SQL is instead (`--map: only a query (SELECT …) is allowed, not COPY`).
/// Checked on the client before a job is queued and again by the task that runs it.
pub(crate) fn check_user_sql(flag: &str, sql: &str) -> Result<()> {
    let statements = DFParserBuilder::new(sql)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| Error::invalid(flag, format!("{}: {}", quoted(sql), e.strip_backtrace())))?;
    let statement = match statements.len() {
        0 => return Err(Error::invalid(flag, "the SQL is empty")),
        1 => &statements[0],
        n => {
            return Err(Error::invalid(
                flag,
                format!(
                    "only one query (SELECT …) is allowed, not {n} statements separated by `;`"
                ),
            ));
        }
    };
    let not = |what: &str| {
        Err(Error::invalid(
            flag,
            format!("only a query (SELECT …) is allowed, not {what}"),
        ))
    };
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(query) => match query.body.as_ref() {
                SetExpr::Select(select) if select.into.is_some() => not("SELECT … INTO"),
                _ => Ok(()),
            },
            other => not(&statement_name(&other.to_string())),
        },
        DfStatement::CreateExternalTable(_) => not("CREATE EXTERNAL TABLE"),
        DfStatement::CopyTo(_) => not("COPY"),
        DfStatement::Explain(_) => not("EXPLAIN"),
        DfStatement::Reset(_) => not("RESET"),
    }
}

/// What a statement is, from its text: its first word (`INSERT`, `SET`, `DROP`), with
/// what it creates, drops or alters (`CREATE TABLE`, `DROP VIEW`).
fn statement_name(text: &str) -> String {
    const OBJECTS: &[&str] = &[
        "TABLE", "VIEW", "FUNCTION", "SCHEMA", "DATABASE", "INDEX", "CATALOG",
    ];
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else {
        return "an empty statement".to_string();
    };
    let first = first.to_ascii_uppercase();
    if !matches!(first.as_str(), "CREATE" | "DROP" | "ALTER") {
        return first;
    }
    let mut name = vec![first];
    for word in words.take(4) {
        let word = word.to_ascii_uppercase();
        let object = OBJECTS.contains(&word.as_str());
        name.push(word);
        if object {
            break;
        }
    }
    name.join(" ")
}

/// `sql` quoted for a message, cut after 200 characters.
fn quoted(sql: &str) -> String {
    match sql.char_indices().nth(200) {
        None => format!("{sql:?}"),
        Some((cut, _)) => format!("{:?}…", &sql[..cut]),
    }
}

/// `sql` from `flag` planned in `ctx` after [`check_user_sql`], with DDL, DML and
/// statements refused by DataFusion too.
async fn plan_user_sql(ctx: &SessionContext, flag: &str, sql: &str) -> Result<DataFrame> {
    check_user_sql(flag, sql)?;
    ctx.sql_with_options(sql, user_sql_options())
        .await
        .map_err(|e| {
            let message = e.strip_backtrace();
            // DataFusion's own refusals (SQLOptions), for what the check let through.
            let refused = ["DDL", "DML", "Statement"].iter().find_map(|kind| {
                message
                    .split_once(&format!("{kind} not supported: "))
                    .map(|(_, what)| what.to_string())
            });
            match refused {
                Some(what) => Error::invalid(
                    flag,
                    format!("only a query (SELECT …) is allowed, not {what}"),
                ),
                None => Error::invalid(flag, format!("{}: {message}", quoted(sql))),
            }
        })
}

/// `sql` planned over an empty table `name` with `schema`; errors name the flag the SQL
/// came from.
async fn sql_frame(flag: &str, sql: &str, name: &str, schema: SchemaRef) -> Result<DataFrame> {
    let ctx = session(DEFAULT_BUDGET)?;
    let table = MemTable::try_new(schema, vec![vec![]]).map_err(df_error(flag, false))?;
    ctx.register_table(name, Arc::new(table))
        .map_err(df_error(flag, false))?;
    plan_user_sql(&ctx, flag, sql).await
}

/// The spec's user SQL checked again where it runs: a task payload need not have come
/// through [`plan_query`].
fn check_spec_sql(spec: &QuerySpec) -> Result<()> {
    if let Some(sql) = &spec.map_sql {
        check_user_sql("--map", sql)?;
    }
    if let Some(sql) = &spec.reduce_sql {
        check_user_sql("--reduce", sql)?;
    }
    Ok(())
}

/// The columns of table `part` (typed as `schema`) that the planned map `frame` reads,
/// after DataFusion's projection pushdown; `None` when it reads all of them. A map that
/// reads none (`SELECT count(*) FROM part`) still needs the rows: it gets the first column.
fn map_columns(frame: DataFrame, schema: &Schema) -> Result<Option<Vec<String>>> {
    let plan = frame
        .into_optimized_plan()
        .map_err(|e| Error::invalid("--map", e.to_string()))?;
    let mut used: Option<BTreeSet<usize>> = Some(BTreeSet::new());
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == "part"
        {
            match (&scan.projection, used.as_mut()) {
                (Some(columns), Some(used)) => used.extend(columns),
                _ => used = None,
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(df_error("--map", false))?;
    let Some(mut used) = used else {
        return Ok(None);
    };
    if used.len() == schema.fields().len() {
        return Ok(None);
    }
    if used.is_empty() {
        used.insert(0);
    }
    Ok(Some(
        used.into_iter()
            .map(|i| schema.field(i).name().clone())
            .collect(),
    ))
}

/// A query checked against its dataset, with its read tasks planned: what [`plan_query`]
/// submits and what `terrace explain` shows.
#[derive(Debug)]
pub struct PlannedRead {
    /// The dataset as the job names it (an absolute path or a URL).
    pub dataset_location: String,
    /// The dataset at the version the query reads.
    pub dataset: Dataset,
    /// The read tasks, pruned.
    pub plan: ReadPlan,
    /// The schema of a read task's output (after the map SQL, if any).
    pub part_schema: SchemaRef,
}

/// Check a query against the dataset and plan its reads: the SQL, the version, the
/// predicate and the columns are checked here, once, for every caller.
pub async fn plan_query_read(request: &QueryRequest) -> Result<PlannedRead> {
    // Before anything else: refused SQL must not even open the dataset.
    if let Some(sql) = &request.map_sql {
        check_user_sql("--map", sql)?;
    }
    if let Some(sql) = &request.reduce_sql {
        check_user_sql("--reduce", sql)?;
    }
    let dataset_location = absolute(&request.dataset)?;
    let context = format!("opening {dataset_location}");
    let dataset = match (request.version, request.as_of) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "--version / --as-of",
                "give one of them, not both",
            ));
        }
        (Some(v), None) => Dataset::open_version(&dataset_location, v).await,
        (None, Some(t)) => Dataset::open_as_of(&dataset_location, t).await,
        (None, None) => Dataset::open(&dataset_location).await,
    }
    .map_err(Error::format(context))?;
    let schema = dataset.schema();
    let predicate = match request.predicate.as_deref() {
        Some(sql) => Some(Predicate::parse(sql, &schema).map_err(where_error)?),
        None => None,
    };
    let projected: SchemaRef = match &request.columns {
        Some(columns) => Arc::new(
            schema
                .project(
                    &columns
                        .iter()
                        .map(|c| schema.index_of(c))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| Error::invalid("--columns", e.to_string()))?,
                )
                .map_err(|e| Error::invalid("--columns", e.to_string()))?,
        ),
        None => schema.clone(),
    };
    // A map reads only the columns its SQL uses; the scan decodes nothing else.
    let (part_schema, read_columns) = match &request.map_sql {
        Some(sql) => {
            let frame = sql_frame("--map", sql, "part", Arc::clone(&projected)).await?;
            let part_schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let columns = map_columns(frame, &projected)?;
            (part_schema, columns.or_else(|| request.columns.clone()))
        }
        None => (Arc::clone(&projected), request.columns.clone()),
    };
    let options = ReadOptions {
        projection: read_columns,
        predicate,
        target_bytes_per_task: request.target_bytes_per_task,
        dispatch_by: request.dispatch_by.clone(),
        region_sample: request.region.clone(),
    };
    let plan = plan_read(&dataset, &options)
        .await
        .map_err(Error::planner("planning the query"))?;

    if let Some(sql) = &request.reduce_sql {
        sql_frame("--reduce", sql, "parts", part_schema.clone()).await?;
    }
    Ok(PlannedRead {
        dataset_location,
        dataset,
        plan,
        part_schema,
    })
}

/// Check a query against the dataset and plan it as a job: read tasks (stage 0) and the
/// gather task (stage 1). Returns the job and the read plan (for explain).
pub async fn plan_query(request: QueryRequest) -> Result<(NewJob, ReadPlan)> {
    let PlannedRead {
        dataset_location,
        dataset,
        plan,
        part_schema,
    } = plan_query_read(&request).await?;
    let run_id = uuid::Uuid::now_v7().to_string();
    let spec = QuerySpec {
        dataset: dataset_location,
        version: dataset.version(),
        staging: terrace_format::staging_dir(&run_id),
        run_id,
        map_sql: request.map_sql,
        reduce_sql: request.reduce_sql,
        limit: request.limit,
        memory_budget: request
            .memory_budget
            .unwrap_or(DEFAULT_BUDGET)
            .max(1024 * 1024),
        part_schema: schema_to_fields(&part_schema)
            .map_err(Error::planner("carrying the query's schema"))?,
        read_tasks: plan.tasks.len() as u64,
    };
    let mut job = NewJob::new(
        KIND_QUERY,
        serde_json::to_value(&spec).map_err(|e| Error::invalid("query spec", e.to_string()))?,
    );
    for task in &plan.tasks {
        let payload =
            serde_json::to_value(task).map_err(|e| Error::invalid("query task", e.to_string()))?;
        job = job.with_task(NewTask::new(0, payload));
    }
    job = job.with_task(NewTask::new(1, json!({"gather": true})));
    Ok((job, plan))
}

/// Run one task of a query.
pub(crate) async fn run(
    spec: &QuerySpec,
    task: &ClaimedTask,
    ctx: &TaskContext,
) -> Result<TaskOutput> {
    check_spec_sql(spec)?;
    let loc = location(&spec.dataset)?;
    if task.stage == 0 {
        let read: ReadTask = task.payload_as()?;
        read_part(spec, &loc, &read).await
    } else {
        let parts = ctx.stage_results(task.job_id, 0).await?;
        let parts: Vec<(String, u64)> = parts
            .iter()
            .filter_map(|(_, r)| {
                let path = r.get("part")?.as_str()?.to_string();
                Some((path, r.get("rows").and_then(|n| n.as_u64()).unwrap_or(0)))
            })
            .collect();
        if let [(part, rows)] = parts.as_slice()
            && part_is_the_result(spec)
        {
            // Decoding and encoding it again would only copy it.
            return Ok(TaskOutput::new(json!({"result": part, "rows": rows})));
        }
        gather(spec, &loc, parts.into_iter().map(|(p, _)| p).collect()).await
    }
}

/// Whether a lone part is already the query's result: nothing is reduced, and the read
/// task applied the limit itself (it does when there is no map).
fn part_is_the_result(spec: &QuerySpec) -> bool {
    spec.reduce_sql.is_none() && (spec.limit.is_none() || spec.map_sql.is_none())
}

async fn read_part(spec: &QuerySpec, loc: &Location, read: &ReadTask) -> Result<TaskOutput> {
    let dataset = Dataset::open_version(&spec.dataset, spec.version)
        .await
        .map_err(Error::format(format!(
            "opening version {} of {}",
            spec.version, spec.dataset
        )))?;
    let schema = dataset.schema();
    let layout = dataset.current().layout().clone();
    let mut request = read
        .scan_request(&schema, &layout, None, 8192)
        .map_err(Error::planner("reading the task's files and predicate"))?;
    // The map's SQL groups and compares strings as views, which is cheaper than as plain
    // strings (ScanRequest::string_views); its output is cast back to the planned types.
    request.string_views = spec.map_sql.is_some();
    let stream = read_data_files(
        loc.store.clone(),
        loc.root.clone(),
        schema,
        &layout,
        request,
    )
    .await
    .map_err(Error::format("reading data files"))?;
    let stream: BoxStream<'static, Result<RecordBatch>> = stream
        .map_err(|e| Error::format("reading data files")(e))
        .boxed();

    let stream = match &spec.map_sql {
        Some(sql) => {
            let first = peek_schema(stream).await?;
            let Some((schema, stream)) = first else {
                return Ok(TaskOutput::new(json!({"part": null, "rows": 0}))
                    .with_progress(0, read.size_bytes() as i64));
            };
            let ctx = session(spec.memory_budget)?;
            register_stream(&ctx, "part", schema, stream)?;
            let frame = plan_user_sql(&ctx, "--map", sql).await?;
            let out = frame
                .execute_stream()
                .await
                .map_err(df_error("running --map", false))?;
            let planned = schema_from_fields(&spec.part_schema)
                .map_err(Error::planner("reading the query's schema"))?;
            out.map_err(df_error("running --map", false))
                .map(move |batch| batch.and_then(|b| as_planned_types(b, &planned)))
                .boxed()
        }
        // Without a map, no task needs more rows than the limit.
        None => match spec.limit {
            Some(limit) => limit_stream(stream, limit),
            None => stream,
        },
    };
    let path = terrace_format::new_query_part_path(&spec.staging, read.index);
    let rows = write_parquet(loc, &path, stream, spec.memory_budget, None).await?;
    let part = (rows > 0).then_some(path.clone());
    if rows == 0 {
        let _ = loc.store.delete(&loc.child(&path)).await;
    }
    Ok(TaskOutput::new(json!({"part": part, "rows": rows}))
        .with_progress(rows as i64, read.size_bytes() as i64))
}

async fn gather(spec: &QuerySpec, loc: &Location, parts: Vec<String>) -> Result<TaskOutput> {
    let part_schema = schema_from_fields(&spec.part_schema)
        .map_err(Error::planner("reading the query's schema"))?;
    let stream = read_parts(loc, parts);
    let stream: BoxStream<'static, Result<RecordBatch>> = match &spec.reduce_sql {
        Some(sql) => {
            let ctx = session(spec.memory_budget)?;
            match peek_schema(stream).await? {
                Some((schema, stream)) => register_stream(&ctx, "parts", schema, stream)?,
                None => {
                    let empty = MemTable::try_new(part_schema.clone(), vec![vec![]])
                        .map_err(df_error("--reduce", false))?;
                    ctx.register_table("parts", Arc::new(empty))
                        .map_err(df_error("--reduce", false))?;
                }
            }
            let frame = plan_user_sql(&ctx, "--reduce", sql).await?;
            let out = frame
                .execute_stream()
                .await
                .map_err(df_error("running --reduce", false))?;
            out.map_err(df_error("running --reduce", false)).boxed()
        }
        None => stream,
    };
    let stream = match spec.limit {
        Some(limit) => limit_stream(stream, limit),
        None => stream,
    };
    let path = terrace_format::query_result_path(&spec.staging);
    let empty_schema = if spec.reduce_sql.is_some() {
        None
    } else {
        Some(part_schema)
    };
    let rows = write_parquet(loc, &path, stream, spec.memory_budget, empty_schema).await?;
    Ok(TaskOutput::new(json!({"result": path, "rows": rows})))
}

/// Stop after `limit` rows.
fn limit_stream(
    stream: BoxStream<'static, Result<RecordBatch>>,
    limit: u64,
) -> BoxStream<'static, Result<RecordBatch>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    stream
        .scan(limit, |left, batch| {
            let out = match batch {
                Ok(_) if *left == 0 => None,
                Ok(batch) => {
                    let n = batch.num_rows().min(*left);
                    *left -= n;
                    Some(Ok(batch.slice(0, n)))
                }
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        })
        .boxed()
}

/// The parts' rows, one part after the other.
#[allow(deprecated)]
fn read_parts(loc: &Location, parts: Vec<String>) -> BoxStream<'static, Result<RecordBatch>> {
    let loc = loc.clone();
    futures::stream::iter(parts)
        .then(move |path| {
            let loc = loc.clone();
            async move {
                let reader = ParquetObjectReader::new(loc.store.clone(), loc.child(&path));
                let stream = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .map_err(|e| parquet_error(&path, e))?
                    .build()
                    .map_err(|e| parquet_error(&path, e))?;
                Ok::<_, Error>(stream.map_err(move |e| parquet_error(&path, e)))
            }
        })
        .try_flatten()
        .boxed()
}

fn parquet_error(path: &str, e: parquet::errors::ParquetError) -> Error {
    Error::Execution {
        context: format!("reading {path}"),
        reason: e.to_string(),
        retryable: !terrace_format::has_permanent_io_cause(&e),
    }
}

/// `batch` with each column whose type differs from the planned part schema's (by
/// position) cast to it: a map reads strings as views where the plan typed them plain.
fn as_planned_types(batch: RecordBatch, planned: &Schema) -> Result<RecordBatch> {
    let schema = batch.schema();
    if planned.fields().len() != schema.fields().len()
        || planned
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(p, f)| p.data_type() == f.data_type())
    {
        return Ok(batch);
    }
    let cast_err = |e: arrow::error::ArrowError| Error::Execution {
        context: "typing the output of --map as planned".to_string(),
        reason: e.to_string(),
        retryable: false,
    };
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for ((field, column), target) in schema
        .fields()
        .iter()
        .zip(batch.columns())
        .zip(planned.fields())
    {
        if field.data_type() == target.data_type() {
            fields.push(Arc::clone(field));
            columns.push(Arc::clone(column));
        } else {
            fields.push(Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(target.data_type().clone()),
            ));
            columns.push(arrow::compute::cast(column, target.data_type()).map_err(cast_err)?);
        }
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    RecordBatch::try_new(schema, columns).map_err(cast_err)
}

/// The schema of a stream's first batch and the stream with that batch put back; `None`
/// when the stream is empty.
async fn peek_schema(
    mut stream: BoxStream<'static, Result<RecordBatch>>,
) -> Result<Option<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)>> {
    match stream.next().await {
        None => Ok(None),
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => {
            let schema = first.schema();
            let stream = futures::stream::once(async move { Ok(first) })
                .chain(stream)
                .boxed();
            Ok(Some((schema, stream)))
        }
    }
}

/// A one-shot stream as a DataFusion table: the SQL reads it as it arrives.
struct OnceStream {
    schema: SchemaRef,
    stream: Mutex<Option<BoxStream<'static, Result<RecordBatch>>>>,
}

impl std::fmt::Debug for OnceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnceStream")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PartitionStream for OnceStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<DfTaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        let stream = match taken {
            Some(stream) => stream
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
                .boxed(),
            None => futures::stream::once(async {
                Err(datafusion::error::DataFusionError::Execution(
                    "a task's rows can be read only once".into(),
                ))
            })
            .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

fn register_stream(
    ctx: &SessionContext,
    name: &str,
    schema: SchemaRef,
    stream: BoxStream<'static, Result<RecordBatch>>,
) -> Result<()> {
    let partition = Arc::new(OnceStream {
        schema: schema.clone(),
        stream: Mutex::new(Some(stream)),
    });
    let table = StreamingTable::try_new(schema, vec![partition])
        .map_err(df_error("registering a task's rows", false))?;
    ctx.register_table(name, Arc::new(table))
        .map_err(df_error("registering a task's rows", false))?;
    Ok(())
}

/// Stream `batches` into a Parquet object at `relative`, flushing row groups when the
/// buffered data reaches half of `budget`. With no batch, writes `empty_schema` (or
/// nothing when that is `None`, returning 0). Returns the rows written.
///
/// Parts and results are read back once and deleted, so they are written as scratch
/// files ([`scratch_properties`]), compressed even on a local store: a Parquet `--output`
/// is a copy of the result, so the result is what the user keeps.
#[allow(deprecated)]
async fn write_parquet(
    loc: &Location,
    relative: &str,
    mut batches: BoxStream<'static, Result<RecordBatch>>,
    budget: usize,
    empty_schema: Option<SchemaRef>,
) -> Result<u64> {
    let first = match batches.next().await {
        Some(first) => first?,
        None => match empty_schema {
            Some(schema) => RecordBatch::new_empty(schema),
            None => RecordBatch::new_empty(Arc::new(Schema::empty())),
        },
    };
    let object = ParquetObjectWriter::new(loc.store.clone(), loc.child(relative));
    let props = scratch_properties(WriterProperties::builder(), true).build();
    let write_err = |e: parquet::errors::ParquetError| Error::Execution {
        context: format!("writing {relative} in {}", loc.display),
        reason: e.to_string(),
        retryable: !terrace_format::has_permanent_io_cause(&e),
    };
    let mut writer =
        AsyncArrowWriter::try_new(object, first.schema(), Some(props)).map_err(write_err)?;
    let mut rows = 0u64;
    let mut next = Some(Ok(first));
    while let Some(batch) = next {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).await.map_err(write_err)?;
        if writer.in_progress_size() >= budget / 2 {
            writer.flush().await.map_err(write_err)?;
        }
        next = batches.next().await;
    }
    writer.close().await.map_err(write_err)?;
    Ok(rows)
}

/// The rows of a finished query, streamed from its result file.
#[allow(deprecated)]
pub async fn read_query_result(
    result: &QueryResult,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let reader = ParquetObjectReader::new(
        result.location.store.clone(),
        result.location.child(&result.path),
    );
    let stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| parquet_error(&result.path, e))?
        .build()
        .map_err(|e| parquet_error(&result.path, e))?;
    let path = result.path.clone();
    Ok(stream.map_err(move |e| parquet_error(&path, e)).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(flag: &str, sql: &str) -> String {
        match check_user_sql(flag, sql) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{sql} was accepted"),
        }
    }

    #[test]
    fn only_one_query_is_user_sql() {
        let not = |what: &str| format!("--map: only a query (SELECT …) is allowed, not {what}");
        for (sql, what) in [
            ("COPY (SELECT * FROM part) TO '/tmp/x.csv'", "COPY"),
            ("COPY part TO '/tmp/x.parquet'", "COPY"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("CREATE TABLE t AS SELECT * FROM part", "CREATE TABLE"),
            (
                "CREATE OR REPLACE VIEW v AS SELECT 1",
                "CREATE OR REPLACE VIEW",
            ),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("RESET datafusion.execution.batch_size", "RESET"),
            ("INSERT INTO part VALUES (1)", "INSERT"),
            ("DELETE FROM part", "DELETE"),
            ("UPDATE part SET a = 1", "UPDATE"),
            ("DROP TABLE part", "DROP TABLE"),
            ("EXPLAIN SELECT * FROM part", "EXPLAIN"),
            ("SELECT * INTO t FROM part", "SELECT … INTO"),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("SHOW TABLES", "SHOW"),
        ] {
            assert_eq!(refused("--map", sql), not(what), "{sql}");
        }
        assert_eq!(
            refused("--reduce", "SELECT 1; DROP TABLE parts"),
            "--reduce: only one query (SELECT …) is allowed, not 2 statements separated by `;`"
        );
        assert_eq!(refused("--map", " ; "), "--map: the SQL is empty");
        assert!(refused("--map", "SELEC 1").starts_with("--map: \"SELEC 1\": "));
        for sql in [
            "SELECT month, count(*) AS n FROM part GROUP BY month",
            "WITH x AS (SELECT * FROM part) SELECT * FROM x ORDER BY 1;",
            "SELECT * FROM part UNION ALL SELECT * FROM part",
            "VALUES (1, 2)",
        ] {
            check_user_sql("--map", sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    /// Defence in depth: what the statement check let through, DataFusion's SQLOptions
    /// refuse; and the session reads no file by name.
    #[tokio::test]
    async fn the_session_reads_only_registered_tables() {
        let ctx = session(DEFAULT_BUDGET).unwrap();
        let err = ctx
            .sql_with_options("COPY (SELECT 1) TO '/tmp/never.csv'", user_sql_options())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        for sql in [
            "SELECT * FROM '/etc/passwd'",
            "SELECT * FROM 'file:///etc/passwd'",
            "SELECT * FROM read_csv('/etc/passwd')",
            "SELECT * FROM read_parquet('/etc/passwd')",
        ] {
            let err = plan_user_sql(&ctx, "--map", sql)
                .await
                .err()
                .unwrap_or_else(|| panic!("{sql} was planned"));
            assert!(err.to_string().starts_with("--map: "), "{sql}: {err}");
        }
        let mut functions: Vec<String> = ctx.state().table_functions().keys().cloned().collect();
        functions.sort();
        assert_eq!(functions, ["generate_series", "range"], "none reads a file");
    }
}
