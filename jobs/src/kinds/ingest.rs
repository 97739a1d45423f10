//! Ingest: input files into a dataset, through the planner's write plan (write, or map
//! and reduce through staging), then exactly one commit.
//!
//! Unless the request says, the planner picks the path ([`pick_write_path`]) from the
//! layout, the number of splits and the (partition, bucket) groups in a sample of the
//! first input; the job's spec keeps the pick and why ([`IngestSpec::path`]).
//!
//! A shuffle carries each (partition, bucket) group's rows from the map tasks to the one
//! reduce task that writes the group's file, in one of two ways ([`ShuffleMethod`]):
//! - through sorted runs (`shuffle.rs`): a map task writes a few Arrow IPC
//!   runs sorted by group, whatever the number of groups, and a reduce task merges its
//!   ranges of groups from every run, one file open at a time;
//! - through pieces: map tasks write each group's rows as a piece in the final encoding
//!   and a reduce task combines a group's pieces by copying their row groups into one
//!   file ([`concat_data_files`], which also reads the file's index values from the
//!   pieces' indexed columns); a group whose pieces would make row groups of fewer than
//!   8 Ki rows on average is decoded and encoded again instead. A file per map task and
//!   group, so it suits few groups only.
//!
//! The dataset is created by the commit of the first ingest, so a failed first ingest
//! leaves nothing behind, nor does one whose inputs hold no rows ([`nothing_to_commit`]);
//! two first ingests racing both commit (the loser of the create opens what the winner
//! created and checks its layout).

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use terrace_format::{
    CreateOptions, DataFile, DataFileWriter, Dataset, InputFile, InputFormat, Layout, Location,
    ScanRequest, SchemaEvolution, WriterOptions, check_partition_sample, check_schema_names,
    concat_data_files, conform_batch, infer_schema_and_unseen, partition_path, read_data_files,
    read_split, reconcile, with_types_of, worth_concatenating,
};
use terrace_planner::{
    PathPick, PathRequest, SchemaField, ShuffleMethod, WriteOptions, WriteTask, list_inputs,
    pick_write_path, plan_write, reduce_task_for, schema_from_fields, schema_to_fields,
    split_inputs,
};

use super::KIND_INGEST;
use super::commits::{commit_job_id, committing_job, is_run};
use super::common::{absolute, delete_prefix, location, read_reports, store_error, write_report};
use crate::error::{Error, Result};
use crate::model::{ClaimedTask, NewJob, NewTask, TaskOutput};
use crate::worker::TaskContext;

/// What happens to the partitions an ingest writes into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestMode {
    /// Add the rows to the dataset.
    #[default]
    Append,
    /// Replace the partitions the ingest writes into (others are kept).
    Overwrite,
}

/// An ingest as a user asks for it.
#[derive(Debug, Clone, Default)]
pub struct IngestRequest {
    /// Paths, URLs or globs of the input files.
    pub inputs: Vec<String>,
    /// The dataset's location (created by the first ingest).
    pub dataset: String,
    /// Input format; by default each file's extension decides.
    pub format: Option<InputFormat>,
    /// The input schema; by default inferred from every input file, which must agree.
    pub schema: Option<SchemaRef>,
    /// Partition columns, bucket columns and bucket count; for an existing dataset they
    /// must be the dataset's or left empty.
    pub layout: Layout,
    /// Sort the rows of each row group by these columns (each row group on its own,
    /// not a whole file).
    pub sort_by: Vec<String>,
    /// Rows per Parquet row group (default: the writer's).
    pub row_group_rows: Option<usize>,
    /// Map / reduce through staging (one file per (partition, bucket)) when `Some(true)`,
    /// a direct write when `Some(false)`; by default picked from the plan
    /// ([`pick_write_path`]).
    pub shuffle: Option<bool>,
    /// How the shuffle carries rows; by default chosen from a sample of the first input
    /// (runs where it holds many groups, pieces where few). Implies a shuffle.
    pub shuffle_method: Option<ShuffleMethod>,
    /// Append, or overwrite the partitions written.
    pub mode: IngestMode,
    /// Columns with a secondary index (only when the dataset is created).
    pub index_columns: Vec<String>,
    /// Allow new nullable columns to be added to the dataset schema.
    pub add_columns: bool,
    /// Target bytes of input per write task (default 128 MiB, or 64 MiB per map task of
    /// a shuffle; see `default_split_bytes`).
    pub split_bytes: Option<u64>,
    /// Recorded in the commit; a second ingest with the same key commits nothing. By
    /// default an append's key is derived from what the job is ([`inputs_key`]), so the
    /// same ingest of unchanged inputs commits once.
    pub idempotency_key: Option<String>,
    /// Ingest even inputs that were ingested before: the commit gets a key of its own run
    /// instead of the one derived from the inputs.
    pub force: bool,
}

/// What an ingest job stores as its spec, shared by its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestSpec {
    /// The dataset (absolute path or URL).
    pub dataset: String,
    /// Unique id of this run (names its staging directory).
    pub run_id: String,
    /// The inputs as given.
    pub inputs: Vec<String>,
    /// Number of input files and their bytes.
    pub input_files: u64,
    /// Bytes of input.
    pub input_bytes: u64,
    /// The schema inputs are read with.
    pub input_schema: Vec<SchemaField>,
    /// The schema rows are written with (the dataset's, possibly with added columns).
    pub schema: Vec<SchemaField>,
    /// The dataset's layout.
    pub layout: Layout,
    /// Sort columns.
    pub sort_by: Vec<String>,
    /// Rows per Parquet row group (`None`: the writer's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_group_rows: Option<usize>,
    /// Append or overwrite.
    pub mode: IngestMode,
    /// Indexed columns.
    pub index_columns: Vec<String>,
    /// Whether the write adds columns to the dataset schema.
    pub add_columns: bool,
    /// The key recorded in the commit.
    pub idempotency_key: String,
    /// Whether that key was derived from the inputs ([`inputs_key`]) rather than given
    /// or the run's own; only changes how a no-op commit is reported.
    #[serde(default)]
    pub key_from_inputs: bool,
    /// Staging directory relative to the dataset root.
    pub staging: String,
    /// Whether a shuffle's map tasks write pieces in the final encoding, which the
    /// reduce tasks combine by copying row groups ([`concat_data_files`]) instead of
    /// decoding and encoding every row again. Jobs planned before this existed wrote
    /// scratch pieces, hence the default.
    #[serde(default)]
    pub concat_pieces: bool,
    /// Whether a shuffle goes through sorted runs (see `shuffle.rs`) rather than pieces
    /// per group. Jobs planned before this existed staged pieces, hence the default.
    #[serde(default)]
    pub shuffle_runs: bool,
    /// The path the plan took, and why (jobs planned before this existed: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathPick>,
}

impl IngestSpec {
    pub(super) fn schema(&self) -> Result<SchemaRef> {
        schema_from_fields(&self.schema).map_err(Error::planner("reading the job's schema"))
    }

    pub(super) fn input_schema(&self) -> Result<SchemaRef> {
        schema_from_fields(&self.input_schema)
            .map_err(Error::planner("reading the job's input schema"))
    }
}

/// Input bytes per task of an ingest without `split_bytes`.
///
/// Without a shuffle a write task's files are final, so tasks are large (128 MiB) and
/// files few. With a shuffle the reduce combines what the map tasks wrote, so map tasks
/// are half that: a map task holds its rows as Arrow until it encodes them (up to the
/// writer's 256 MiB budget), and with one task per core a process held two full budgets;
/// half-size map tasks hold less, as fast. Their pieces stay large enough to copy: see
/// [`MIN_CONCAT_ROWS_PER_ROW_GROUP`](terrace_format::MIN_CONCAT_ROWS_PER_ROW_GROUP).
pub fn default_split_bytes(shuffle: bool) -> u64 {
    if shuffle { 64 << 20 } else { 128 << 20 }
}

/// Check an ingest against its inputs and the dataset and plan it as a job. Nothing is
/// written; every error names what was wrong (missing input, empty glob, schemas that
/// differ between inputs or from the dataset, unknown columns).
pub async fn plan_ingest(request: IngestRequest) -> Result<NewJob> {
    let dataset_location = absolute(&request.dataset)?;
    let inputs: Vec<String> = request
        .inputs
        .iter()
        .map(|i| absolute(i))
        .collect::<Result<_>>()?;
    let files = list_inputs(&inputs, request.format)
        .await
        .map_err(Error::planner("listing the inputs"))?;
    let (mut input_schema, unseen) = match &request.schema {
        Some(schema) => {
            check_schema_names(schema).map_err(Error::format("checking the given schema"))?;
            (schema.clone(), Vec::new())
        }
        None => infer_schema_and_unseen(&files, files.len())
            .await
            .map_err(Error::format("reading the inputs' schema"))?,
    };

    let (schema, layout, index_columns) = match Dataset::open(&dataset_location).await {
        Ok(dataset) => {
            let existing = dataset.current().layout().clone();
            if request.layout != Layout::default() && request.layout != existing {
                return Err(Error::invalid(
                    "layout",
                    format!(
                        "{dataset_location} is partitioned on {:?} and bucketed by {:?} into {:?} \
                         buckets; the ingest asks for {:?}, {:?}, {:?} (leave them out to use the \
                         dataset's)",
                        existing.partition_on,
                        existing.bucket_by,
                        existing.num_buckets,
                        request.layout.partition_on,
                        request.layout.bucket_by,
                        request.layout.num_buckets
                    ),
                ));
            }
            let indexed = dataset.current().indexed_columns().to_vec();
            if !request.index_columns.is_empty() && request.index_columns != indexed {
                return Err(Error::invalid(
                    "--index",
                    format!(
                        "indices are chosen when a dataset is created; {dataset_location} indexes {indexed:?}"
                    ),
                ));
            }
            // Columns the inputs hold no value of (header-only files) are read with the
            // dataset's types, not refused for the text inference made them.
            input_schema = with_types_of(&input_schema, &unseen, &dataset.schema());
            let evolution = if request.add_columns {
                SchemaEvolution::AddColumns
            } else {
                SchemaEvolution::Strict
            };
            let schema =
                reconcile(&dataset.schema(), &input_schema, evolution).map_err(Error::format(
                    format!("the inputs do not fit the schema of {dataset_location}"),
                ))?;
            (schema, existing, indexed)
        }
        Err(terrace_format::Error::DatasetNotFound { .. }) => {
            request
                .layout
                .validate(&input_schema)
                .map_err(Error::format("checking the layout against the inputs"))?;
            // The commit creates the dataset; refuse a directory holding other files now,
            // before any task writes into it.
            Dataset::check_create(&dataset_location, &request.layout)
                .await
                .map_err(Error::format(format!("creating {dataset_location}")))?;
            for column in &request.index_columns {
                if input_schema.field_with_name(column).is_err() {
                    return Err(Error::invalid(
                        "--index",
                        format!("the inputs have no column {column:?}"),
                    ));
                }
            }
            (
                input_schema.clone(),
                request.layout.clone(),
                request.index_columns.clone(),
            )
        }
        Err(e) => return Err(Error::format(format!("opening {dataset_location}"))(e)),
    };

    // Partition values too long for a directory name, among those inference read.
    check_partition_sample(&files, &input_schema, &layout.partition_on)
        .await
        .map_err(Error::format("checking the inputs' partition values"))?;

    // The pick counts the splits of a direct write; a shuffle's map tasks are smaller.
    let mut splits = split_inputs(
        &files,
        request
            .split_bytes
            .unwrap_or_else(|| default_split_bytes(false)),
    )
    .await
    .map_err(Error::planner("splitting the inputs"))?;
    let path_request = PathRequest {
        shuffle: request.shuffle,
        method: request.shuffle_method,
    };
    let sample = if path_request.needs_sample(&layout) {
        super::shuffle::sample_groups(&files, &input_schema, &layout).await?
    } else {
        None
    };
    let pick = pick_write_path(path_request, &layout, splits.len(), sample);
    if pick.path.is_shuffle() && request.split_bytes.is_none() {
        splits = split_inputs(&files, default_split_bytes(true))
            .await
            .map_err(Error::planner("splitting the inputs"))?;
    }
    let run_id = uuid::Uuid::now_v7().to_string();
    let plan = plan_write(
        splits,
        &schema,
        WriteOptions {
            job_id: run_id.clone(),
            dataset: dataset_location.clone(),
            layout: layout.clone(),
            sort_by: request.sort_by.clone(),
            shuffle: pick.path.is_shuffle(),
            reduce_tasks: None,
        },
    )
    .map_err(Error::planner("planning the write"))?;

    // Datasets with indices are combined by copying too: the reduce reads a combined
    // file's index values from its pieces' indexed columns, which is cheaper than
    // encoding the pieces again.
    let method = pick.path.shuffle_method();
    let concat_pieces = method == Some(ShuffleMethod::Pieces);
    // An overwrite is idempotent by itself (a re-run replaces the same partitions with
    // the same rows), and a key derived from its inputs would make it wrong: overwrite p
    // from A, then from B, then from A again must restore A, not be a no-op. So only
    // appends, which a re-run would double, get the key of what they are.
    let (idempotency_key, key_from_inputs) = match (&request.idempotency_key, request.force) {
        (Some(key), _) => (key.clone(), false),
        (None, false) if request.mode == IngestMode::Append => (
            inputs_key(
                &dataset_location,
                request.mode,
                &files,
                &input_schema,
                &layout,
                request.add_columns,
            )
            .await?,
            true,
        ),
        (None, _) => (format!("run:{run_id}"), false),
    };
    let spec = IngestSpec {
        dataset: dataset_location,
        idempotency_key,
        key_from_inputs,
        run_id,
        inputs: request.inputs.clone(),
        input_files: files.len() as u64,
        input_bytes: files.iter().map(|f| f.size_bytes).sum(),
        input_schema: schema_to_fields(&input_schema)
            .map_err(Error::planner("carrying the input schema"))?,
        schema: plan.schema.clone(),
        layout,
        sort_by: request.sort_by,
        row_group_rows: request.row_group_rows,
        mode: request.mode,
        index_columns,
        add_columns: request.add_columns,
        staging: plan.staging.clone(),
        concat_pieces,
        shuffle_runs: method == Some(ShuffleMethod::Runs),
        path: Some(pick),
    };
    let mut job = NewJob::new(
        KIND_INGEST,
        serde_json::to_value(&spec).map_err(|e| Error::invalid("ingest spec", e.to_string()))?,
    );
    for (stage, tasks) in plan.stages.iter().enumerate() {
        for task in &tasks.tasks {
            let payload = serde_json::to_value(task)
                .map_err(|e| Error::invalid("ingest task", e.to_string()))?;
            job = job.with_task(NewTask::new(stage as i32, payload));
        }
    }
    Ok(job)
}

/// The idempotency key of an append when none is given: a digest of what the job is —
/// the dataset, the mode, how rows are read and laid out (each file's format, the input
/// schema, the layout, whether columns may be added) and each input file as it is now
/// (location, size, last-modified time and e-tag, from a HEAD of each). The same ingest of
/// unchanged inputs then has the same key, so running it again after it committed (the
/// natural thing once a client gave up waiting) commits nothing; a file that changed, or
/// one more file, makes another key and is ingested. As COPY INTO in Databricks and
/// Snowflake skips files it loaded before; `--force` ingests anyway.
///
/// Options that change how the files are cut but not which rows the dataset gets (sort
/// order, row-group size, split size, shuffle) are left out: running an ingest again with
/// another sort order must not add its rows twice.
pub async fn inputs_key(
    dataset: &str,
    mode: IngestMode,
    files: &[InputFile],
    input_schema: &SchemaRef,
    layout: &Layout,
    add_columns: bool,
) -> Result<String> {
    // Owned, so the future is Send for any lifetime (a stream of borrowed files is not).
    let named: Vec<(String, InputFormat)> = files
        .iter()
        .map(|f| (f.location.clone(), f.format))
        .collect();
    let identities: Vec<serde_json::Value> = futures::stream::iter(named)
        .map(|(file, format)| async move {
            let loc = location(&file)?;
            let meta = loc
                .store
                .head(&loc.root)
                .await
                .map_err(|source| store_error(&loc, &file, source))?;
            Ok::<_, Error>(json!({
                "location": file,
                "format": format,
                "size": meta.size,
                "last_modified": meta.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "e_tag": meta.e_tag,
                "version": meta.version,
            }))
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut identities = identities;
    identities.sort_by(|a, b| a["location"].as_str().cmp(&b["location"].as_str()));
    let what = json!({
        "key": 1,
        "dataset": dataset,
        "mode": mode,
        "input_schema": schema_to_fields(input_schema)
            .map_err(Error::planner("carrying the input schema"))?,
        "layout": layout,
        "add_columns": add_columns,
        "files": identities,
    });
    let digest = Sha256::digest(what.to_string().as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("inputs:{hex}"))
}

/// Run one task of an ingest.
pub(crate) async fn run(
    spec: &IngestSpec,
    task: &ClaimedTask,
    ctx: &TaskContext,
) -> Result<TaskOutput> {
    let loc = location(&spec.dataset)?;
    match task.payload_as::<WriteTask>()? {
        WriteTask::Write { index, split } => {
            let name = format!("write-{index:05}");
            let mut writer = dataset_writer(spec, &loc)?;
            let read = read_split(split, spec.input_schema()?);
            let files = write_all(spec, &mut writer, read.map(|b| b.map_err(read_err))).await;
            let files = finish(writer, files).await?;
            report(spec, &loc, &name, &files, "", Counted::RowsAndBytes).await
        }
        WriteTask::Map { index, split } if spec.shuffle_runs => {
            super::shuffle::map(spec, &loc, index, split).await
        }
        WriteTask::Reduce { index, of, .. } if spec.shuffle_runs => {
            super::shuffle::reduce(spec, &loc, task, ctx, index, of).await
        }
        WriteTask::Map { index, split } => {
            // A directory per attempt: a zombie attempt's pieces never mix with this one's.
            let dir = terrace_format::new_map_attempt_dir(&spec.staging, index);
            let mut writer = writer(spec, &loc, loc.child(&dir), piece_options(spec, &loc))?;
            let read = read_split(split, spec.input_schema()?);
            let files = write_all(spec, &mut writer, read.map(|b| b.map_err(read_err))).await;
            let files = finish(writer, files).await?;
            report(
                spec,
                &loc,
                &format!("map-{index:05}"),
                &files,
                &dir,
                Counted::Rows,
            )
            .await
        }
        WriteTask::Reduce { index, of, .. } => {
            let schema = spec.schema()?;
            let pieces_of_maps = ctx.stage_results(task.job_id, task.stage - 1).await?;
            let pieces = read_reports(&loc, &pieces_of_maps, &schema, &spec.layout).await?;
            let mut groups: BTreeMap<(String, Option<u32>), Vec<DataFile>> = BTreeMap::new();
            for piece in pieces {
                let ppath = partition_path(&spec.layout.partition_on, &piece.partition_values)
                    .map_err(Error::format("naming a staged piece's partition"))?;
                if reduce_task_for(&ppath, piece.bucket, of) == index {
                    groups.entry((ppath, piece.bucket)).or_default().push(piece);
                }
            }
            let mut written = Vec::new();
            for (_, group) in groups {
                if spec.concat_pieces && worth_concatenating(&group) {
                    let files = concat_data_files(
                        loc.store.clone(),
                        loc.root.clone(),
                        &schema,
                        &spec.layout,
                        &writer_options(spec, &loc, false),
                        group,
                    )
                    .await
                    .map_err(Error::format("combining staged pieces"))?;
                    written.extend(files);
                    continue;
                }
                let mut writer = dataset_writer(spec, &loc)?;
                let read = read_data_files(
                    loc.store.clone(),
                    loc.root.clone(),
                    schema.clone(),
                    &spec.layout,
                    ScanRequest::new(group),
                )
                .await
                .map_err(Error::format("reading staged pieces"))?;
                let files = write_all(
                    spec,
                    &mut writer,
                    read.map(|b| b.map_err(Error::format("reading staged pieces"))),
                )
                .await;
                written.extend(finish(writer, files).await?);
            }
            report(
                spec,
                &loc,
                &format!("reduce-{index:05}"),
                &written,
                "",
                Counted::Bytes,
            )
            .await
        }
        WriteTask::Commit => commit(spec, &loc, task, ctx).await,
    }
}

pub(super) fn read_err(e: terrace_format::Error) -> Error {
    Error::format("reading an input")(e)
}

/// A writer of data files below `root`.
fn writer(
    spec: &IngestSpec,
    loc: &Location,
    root: object_store::path::Path,
    options: WriterOptions,
) -> Result<DataFileWriter> {
    DataFileWriter::new(
        loc.store.clone(),
        root,
        spec.schema()?,
        spec.layout.clone(),
        options,
    )
    .map_err(Error::format("starting a writer"))
}

/// A writer of the dataset's own files (not staged pieces).
fn dataset_writer(spec: &IngestSpec, loc: &Location) -> Result<DataFileWriter> {
    writer(
        spec,
        loc,
        loc.root.clone(),
        writer_options(spec, loc, false),
    )
}

/// How a map task writes its pieces: in the final encoding when the reduce copies them,
/// else as scratch ([`WriterOptions::scratch`]); without index values either way, since
/// the reduce reads them from the data ([`concat_data_files`]) or its writer collects
/// them.
fn piece_options(spec: &IngestSpec, loc: &Location) -> WriterOptions {
    WriterOptions {
        index_columns: Vec::new(),
        ..writer_options(spec, loc, !spec.concat_pieces)
    }
}

pub(super) fn writer_options(spec: &IngestSpec, loc: &Location, scratch: bool) -> WriterOptions {
    WriterOptions {
        index_columns: spec.index_columns.clone(),
        sort_by: spec.sort_by.clone(),
        row_group_rows: spec
            .row_group_rows
            .unwrap_or(WriterOptions::default().row_group_rows),
        scratch,
        compress_scratch: !loc.local,
        ..WriterOptions::default()
    }
}

/// Write every batch of `read` (conformed to the write schema); on error the caller
/// aborts the writer.
async fn write_all(
    spec: &IngestSpec,
    writer: &mut DataFileWriter,
    mut read: impl futures::Stream<Item = Result<arrow::record_batch::RecordBatch>> + Unpin,
) -> Result<()> {
    let schema = spec.schema()?;
    while let Some(batch) = read.next().await {
        let batch = conform_batch(&batch?, &schema)
            .map_err(Error::format("fitting input rows to the dataset schema"))?;
        writer
            .write(batch)
            .await
            .map_err(Error::format("writing data files"))?;
    }
    Ok(())
}

async fn finish(writer: DataFileWriter, written: Result<()>) -> Result<Vec<DataFile>> {
    match written {
        Ok(()) => writer
            .finish()
            .await
            .map_err(Error::format("finishing data files")),
        Err(e) => {
            // Best effort: what stays behind is unreferenced and gc removes it.
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

/// Which of a task's figures count towards the job's progress.
///
/// A shuffle handles every row twice, so each figure is counted once: rows as the map
/// tasks read them (the stage that takes the time, so the bar moves), bytes as the reduce
/// tasks write the dataset's files (staged pieces are not what the dataset holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    RowsAndBytes,
    Rows,
    Bytes,
}

/// Report `files` (paths below `dir`, relative to the dataset root) as the task's result.
pub(super) async fn report(
    spec: &IngestSpec,
    loc: &Location,
    name: &str,
    files: &[DataFile],
    dir: &str,
    counted: Counted,
) -> Result<TaskOutput> {
    let files: Vec<DataFile> = files
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if !dir.is_empty() {
                f.path = format!("{dir}/{}", f.path);
            }
            f
        })
        .collect();
    let rows: u64 = files.iter().map(|f| f.num_rows).sum();
    let bytes: u64 = files.iter().map(|f| f.size_bytes).sum();
    let schema = spec.schema()?;
    let path = write_report(loc, &spec.staging, name, &files, &schema, &spec.layout).await?;
    let (progress_rows, progress_bytes) = match counted {
        Counted::RowsAndBytes => (rows, bytes),
        Counted::Rows => (rows, 0),
        Counted::Bytes => (0, bytes),
    };
    Ok(
        TaskOutput::new(json!({"report": path, "files": files.len(), "rows": rows}))
            .with_progress(progress_rows as i64, progress_bytes as i64),
    )
}

async fn open_or_create(spec: &IngestSpec) -> Result<Dataset> {
    let context = || format!("opening {}", spec.dataset);
    let dataset = match Dataset::open(&spec.dataset).await {
        Ok(d) => d,
        Err(terrace_format::Error::DatasetNotFound { .. }) => {
            let options = CreateOptions {
                layout: spec.layout.clone(),
                indexed_columns: spec.index_columns.clone(),
            };
            match Dataset::create_with(&spec.dataset, spec.schema()?, options).await {
                Ok(d) => d,
                Err(terrace_format::Error::DatasetExists { .. }) => Dataset::open(&spec.dataset)
                    .await
                    .map_err(Error::format(context()))?,
                Err(e) => return Err(Error::format(format!("creating {}", spec.dataset))(e)),
            }
        }
        Err(e) => return Err(Error::format(context())(e)),
    };
    if dataset.current().layout() != &spec.layout {
        return Err(Error::invalid(
            "layout",
            format!(
                "{} was created meanwhile with another layout ({:?})",
                spec.dataset,
                dataset.current().layout()
            ),
        ));
    }
    Ok(dataset)
}

async fn commit(
    spec: &IngestSpec,
    loc: &Location,
    task: &ClaimedTask,
    ctx: &TaskContext,
) -> Result<TaskOutput> {
    let schema = spec.schema()?;
    let results = ctx.stage_results(task.job_id, task.stage - 1).await?;
    let files = match read_reports(loc, &results, &schema, &spec.layout).await {
        Ok(files) => files,
        Err(e) => {
            // An earlier attempt of this task may have committed and removed the staged
            // reports before its worker died: then the job is done.
            if let Some(version) = own_commit(spec).await? {
                return Ok(TaskOutput::new(committed_result(&version, true)));
            }
            return Err(e);
        }
    };
    if files.is_empty() {
        return nothing_to_commit(spec).await;
    }
    // The point of no return: from here this task, not a cancel, decides the job (a
    // cancel now is answered with what this commit did). A cancel that came first wins,
    // and nothing is committed.
    // The staging is left alone then: when this attempt merely lost its task, the attempt
    // that holds it now reads it (a cancelled job's staging is gc's to remove).
    if !ctx.begin_commit(task).await? {
        return Err(Error::Cancelled { id: task.job_id });
    }
    let dataset = open_or_create(spec).await?;
    let result = {
        let builder = match spec.mode {
            IngestMode::Append => dataset.append(files),
            IngestMode::Overwrite => dataset.overwrite_partitions(files),
        };
        let mut builder = builder
            .with_job_id(commit_job_id(task.job_id, &spec.run_id))
            .with_idempotency_key(spec.idempotency_key.clone());
        if spec.add_columns {
            builder = builder.with_schema(schema);
        }
        let committed = builder
            .commit()
            .await
            .map_err(Error::format(format!("committing to {}", spec.dataset)))?;
        // A duplicate of this job's own commit (an earlier attempt of this task committed
        // and died before the queue heard of it) is this job's commit.
        match committed.duplicate_of {
            None => committed_result(&committed.snapshot, true),
            Some(v) => {
                let earlier = dataset.snapshot(v).await.map_err(Error::format(format!(
                    "reading version {v} of {}",
                    spec.dataset
                )))?;
                if is_run(earlier.commit().job_id.as_deref(), &spec.run_id) {
                    committed_result(&earlier, true)
                } else {
                    json!({"version": committed.version(), "rows": 0, "files": 0,
                           "committed": false, "duplicate_of": v,
                           "duplicate_job": committing_job(earlier.commit()).map(|j| j.0),
                           "duplicate_rows": earlier.commit().rows_added,
                           "same_inputs": spec.key_from_inputs,
                           "idempotency_key": spec.idempotency_key})
                }
            }
        }
    };
    // Staged pieces and reports are no longer needed; gc removes them if this fails.
    if let Err(e) = delete_prefix(loc, &spec.staging).await {
        tracing::warn!(error = %e, "could not remove the staging directory");
    }
    Ok(TaskOutput::new(result))
}

/// The commit of an ingest whose inputs hold no rows (header-only CSV files, say): no
/// version, and on a first ingest no dataset, whose version 0 would fix a schema and a
/// layout taken from headers alone (and leave a directory the user did not ask for).
///
/// The job succeeds, and the CLI says that nothing was ingested because the inputs have
/// no rows: DuckDB and polars read a header-only CSV as an empty table, not an error,
/// and a scheduled ingest of a slot with no rows is not a failure. The result's
/// `version` is the dataset's current one, or null when there is no dataset.
async fn nothing_to_commit(spec: &IngestSpec) -> Result<TaskOutput> {
    let version = match Dataset::open(&spec.dataset).await {
        Ok(dataset) => Some(dataset.version()),
        Err(terrace_format::Error::DatasetNotFound { .. }) => None,
        Err(e) => return Err(Error::format(format!("opening {}", spec.dataset))(e)),
    };
    Ok(TaskOutput::new(
        json!({"version": version, "rows": 0, "files": 0, "committed": false}),
    ))
}

fn committed_result(version: &terrace_format::Snapshot, own: bool) -> serde_json::Value {
    json!({
        "version": version.version(),
        "rows": version.commit().rows_added,
        "files": version.commit().files_added,
        "committed": own,
    })
}

/// The version this run committed, if any (looked up in the history by job id).
async fn own_commit(spec: &IngestSpec) -> Result<Option<terrace_format::Snapshot>> {
    let dataset = match Dataset::open(&spec.dataset).await {
        Ok(d) => d,
        Err(terrace_format::Error::DatasetNotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::format(format!("opening {}", spec.dataset))(e)),
    };
    let history = dataset.history().await.map_err(Error::format(format!(
        "reading the history of {}",
        spec.dataset
    )))?;
    Ok(history
        .into_iter()
        .rev()
        .find(|s| is_run(s.commit().job_id.as_deref(), &spec.run_id)))
}
