//! The map half of the shuffle: rows sorted by group into run files.

use std::collections::BTreeMap;
use std::mem;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::RecordBatch;
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use object_store::ObjectStore;
use object_store::path::Path;

use super::run_file::{RunFile, RunGroup, ShuffleKey, run_schema};
use crate::blocking::step_blocking;
use crate::error::{Error, Result};
use crate::group::Grouping;
use crate::layout::{Layout, check_partition_values, partition_path};
use crate::upload::{PartSink, Upload, delete_uploaded, join_uploads, wait_for_parts};
use crate::writer::{WriterOptions, check_batch, object_path};

/// Tuning of a [`RunWriter`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Bytes the writer buffers (rows and an entry per group) before it writes them as
    /// a run (default 256 MiB); exceeded by at most one input batch and its groups'
    /// entries.
    pub memory_budget: usize,
    /// Whether run files are LZ4-compressed (default yes). Leave them uncompressed on a
    /// local store, where compressing costs CPU and saves only page cache.
    pub compress: bool,
    /// Size of the parts uploaded to the store (default 8 MiB).
    pub upload_part_size: usize,
    /// A run's record batches are cut at about this many bytes of rows (default 1 MiB):
    /// big enough that a batch's IPC framing is noise, small enough that a reader holds
    /// little per run and that the batches a reduce task reads only in part (at most
    /// one at each end of its range, per run) cost little.
    pub batch_bytes: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self::from(&WriterOptions::default())
    }
}

impl From<&WriterOptions> for RunOptions {
    /// The budget, part size and scratch compression of a data-file writer's options.
    fn from(options: &WriterOptions) -> Self {
        Self {
            memory_budget: options.memory_budget,
            compress: options.compress_scratch,
            upload_part_size: options.upload_part_size,
            batch_bytes: 1024 * 1024,
        }
    }
}

/// Bytes a buffered group costs beyond its rows and its key's path: its map entry (key
/// and slice list), the node's share, the path's and the first slices' allocations (an
/// estimate: what matters is that the budget counts the groups, whose number the budget
/// does not bound otherwise).
pub(crate) const GROUP_OVERHEAD_BYTES: usize = 128;

/// Writes batches of a dataset as sorted runs: Arrow IPC files of the stored columns
/// whose rows are in the shuffle's group order ([`ShuffleKey`]), each (partition,
/// bucket) group's rows consecutive.
///
/// Call [`write`](Self::write) for each batch, then [`finish`](Self::finish) for the
/// runs, or [`abort`](Self::abort) to remove the runs written so far. A run is written
/// whenever the buffered rows reach [`RunOptions::memory_budget`], and at the end.
pub struct RunWriter {
    schema: SchemaRef,
    plan: Arc<Plan>,
    /// `None` only while a blocking step owns it (or after a step panicked).
    state: Option<Box<State>>,
    uploads: Vec<Upload>,
}

impl std::fmt::Debug for RunWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWriter")
            .field("root", &self.plan.root)
            .field("dir", &self.plan.dir)
            .field("runs", &self.state.as_ref().map(|s| s.runs.len()))
            .finish()
    }
}

struct Plan {
    store: Arc<dyn ObjectStore>,
    root: Path,
    dir: String,
    layout: Layout,
    grouping: Grouping,
    run_schema: SchemaRef,
    ipc_options: IpcWriteOptions,
    options: RunOptions,
    handle: tokio::runtime::Handle,
    in_flight: Arc<AtomicUsize>,
}

/// Rows waiting for the next run.
#[derive(Default)]
struct State {
    /// Stored columns of each input batch, rows in group order.
    batches: Vec<RecordBatch>,
    /// Each group's rows among `batches`, groups in the shuffle's order.
    groups: BTreeMap<ShuffleKey, Vec<Slice>>,
    buffered: usize,
    peak: usize,
    runs: Vec<RunFile>,
    new_uploads: Vec<Upload>,
    /// A run failed half-written: its rows are gone, so the writer can only be aborted.
    failed: bool,
}

/// Rows `start..start + len` of buffered batch `batch` (u32: a batch has fewer rows, a
/// run fewer batches).
struct Slice {
    batch: u32,
    start: u32,
    len: u32,
}

impl RunWriter {
    /// A writer of runs for a dataset with `schema` (partition columns included) and
    /// `layout`, as files `dir/run-…` below `root` in `store` (a dataset's staging
    /// directory, or a local scratch directory when one process runs every task).
    ///
    /// Fails when the layout does not fit the schema, or outside a Tokio runtime.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: Path,
        dir: impl Into<String>,
        schema: SchemaRef,
        layout: Layout,
        options: RunOptions,
    ) -> Result<Self> {
        let grouping = Grouping::new(&schema, &layout)?;
        let run_schema = run_schema(&grouping.file_schema);
        let compression = options.compress.then_some(CompressionType::LZ4_FRAME);
        let ipc_options = IpcWriteOptions::default()
            .try_with_compression(compression)
            .map_err(|e| Error::arrow("configuring run files", e))?;
        let handle = tokio::runtime::Handle::try_current().map_err(|e| Error::Task {
            context: "creating a run writer".to_string(),
            reason: format!("must be called inside a Tokio runtime: {e}"),
        })?;
        Ok(Self {
            schema,
            plan: Arc::new(Plan {
                store,
                root,
                dir: dir.into().trim_matches('/').to_string(),
                layout,
                grouping,
                run_schema,
                ipc_options,
                options,
                handle,
                in_flight: Arc::new(AtomicUsize::new(0)),
            }),
            state: Some(Box::default()),
            uploads: Vec::new(),
        })
    }

    /// Buffer one batch of the dataset schema; writes a run when the buffer reaches the
    /// budget. Sorting and encoding run off the async executor.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        check_batch(&self.schema, &batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.step(move |plan, state| {
            buffer(plan, state, &batch)?;
            if state.buffered >= plan.options.memory_budget {
                write_run(plan, state)?;
            }
            Ok(())
        })
        .await?;
        // Parts of earlier runs still uploading occupy memory too.
        let held = self.state.as_ref().map_or(0, |s| s.buffered);
        wait_for_parts(&self.plan.in_flight, held, self.plan.options.memory_budget).await;
        Ok(())
    }

    /// Bytes held right now: buffered rows and groups, plus upload parts in flight.
    pub fn buffered_bytes(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.buffered) + self.plan.in_flight.load(Ordering::Relaxed)
    }

    /// The most bytes held at any point so far (measured after each batch is buffered,
    /// before a run is written): at most the budget plus one batch and its groups'
    /// entries, whatever the number of groups.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.peak)
    }

    /// Runs written so far (not counting rows still buffered).
    pub fn runs_written(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.runs.len())
    }

    /// Write the buffered rows as a last run, wait for every upload and return the runs
    /// in the order written. Writing no rows gives no runs.
    pub async fn finish(mut self) -> Result<Vec<RunFile>> {
        let written = self.step(write_run).await;
        join_uploads(mem::take(&mut self.uploads), written).await?;
        Ok(self.state.take().map(|s| s.runs).unwrap_or_default())
    }

    /// Stop and delete, best effort, every run written so far.
    pub async fn abort(mut self) -> Result<()> {
        self.state = None;
        delete_uploaded(self.plan.store.as_ref(), mem::take(&mut self.uploads)).await
    }

    /// Run `f` on the state off the async executor and put the state back.
    async fn step<F>(&mut self, f: F) -> Result<()>
    where
        F: FnOnce(&Plan, &mut State) -> Result<()> + Send + 'static,
    {
        let failed = || Error::Task {
            context: "writing shuffle runs".to_string(),
            reason: "the writer failed earlier and can only be aborted".to_string(),
        };
        let state = self.state.take().ok_or_else(failed)?;
        if state.failed {
            self.state = Some(state);
            return Err(failed());
        }
        let (mut state, result) =
            step_blocking(&self.plan, state, "sorting rows into runs", f).await?;
        self.uploads.append(&mut state.new_uploads);
        self.state = Some(state);
        result
    }
}

/// Put a batch's rows in group order (one copy) and note each group's slice of it.
fn buffer(plan: &Plan, state: &mut State, batch: &RecordBatch) -> Result<()> {
    let sorted = plan.grouping.sort(batch)?;
    // A partition value too long for a directory name fails here, as in the data-file
    // writer: before any of the batch's rows are buffered.
    let mut keys = Vec::with_capacity(sorted.groups.len());
    for group in &sorted.groups {
        check_partition_values(&plan.layout.partition_on, &group.partition_values)?;
        keys.push(ShuffleKey {
            partition_path: partition_path(&plan.layout.partition_on, &group.partition_values)?,
            bucket: group.bucket,
        });
    }
    let data = match &sorted.order {
        Some(order) => take_record_batch(&sorted.data, order)
            .map_err(|e| Error::arrow("sorting rows by partition and bucket", e))?,
        None => sorted.data,
    };
    let data = to_run_schema(&plan.run_schema, data)?;
    let at = state.batches.len();
    state.buffered += data.get_array_memory_size();
    state.batches.push(data);
    for (key, group) in keys.into_iter().zip(&sorted.groups) {
        let slice = Slice {
            batch: at as u32,
            start: group.start as u32,
            len: group.len as u32,
        };
        state.buffered += mem::size_of::<Slice>();
        match state.groups.get_mut(&key) {
            Some(slices) => slices.push(slice),
            None => {
                state.buffered += GROUP_OVERHEAD_BYTES + key.partition_path.len();
                state.groups.insert(key, vec![slice]);
            }
        }
    }
    state.peak = state
        .peak
        .max(state.buffered + plan.in_flight.load(Ordering::Relaxed));
    Ok(())
}

/// Dictionary columns become their values ([`run_schema`]).
fn to_run_schema(run_schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
    if batch.schema().fields() == run_schema.fields() {
        return RecordBatch::try_new(Arc::clone(run_schema), batch.columns().to_vec())
            .map_err(|e| Error::arrow("preparing rows for a run", e));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(run_schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow("writing dictionary columns as values", e))?;
    RecordBatch::try_new(Arc::clone(run_schema), columns)
        .map_err(|e| Error::arrow("preparing rows for a run", e))
}

/// Write the buffered rows as one run: the groups' slices in key order, cut into record
/// batches of about [`RunOptions::batch_bytes`] (small groups share them); the file streams to
/// the store as it is encoded.
fn write_run(plan: &Plan, state: &mut State) -> Result<()> {
    if state.groups.is_empty() {
        return Ok(());
    }
    // Set until the run is complete: a failure leaves the buffered rows neither in the
    // buffer nor in a run.
    state.failed = true;
    let name = format!("run-{:05}-{}.arrow", state.runs.len(), uuid::Uuid::new_v4());
    let path = if plan.dir.is_empty() {
        name
    } else {
        format!("{}/{name}", plan.dir)
    };
    let location = object_path(&plan.root, &path)?;
    let (sink, upload) = PartSink::start(
        &plan.handle,
        Arc::clone(&plan.store),
        location,
        plan.options.upload_part_size,
        Arc::clone(&plan.in_flight),
    );
    state.new_uploads.push(upload);
    let ipc = |e| Error::arrow(format!("writing run file {path}"), e);
    let mut writer = Blocks {
        writer: FileWriter::try_new_with_options(sink, &plan.run_schema, plan.ipc_options.clone())
            .map_err(ipc)?,
        schema: Arc::clone(&plan.run_schema),
        pieces: Vec::new(),
        piece_bytes: 0,
        block_rows: Vec::new(),
    };
    let batches = mem::take(&mut state.batches);
    let groups = mem::take(&mut state.groups);
    state.buffered = 0;
    let mut out = Vec::with_capacity(groups.len());
    for (key, slices) in groups {
        let mut rows = 0u64;
        for slice in slices {
            let (start, len) = (slice.start as usize, slice.len as usize);
            let source = &batches[slice.batch as usize];
            writer.piece_bytes += source.get_array_memory_size() * len / source.num_rows().max(1);
            writer.pieces.push(source.slice(start, len));
            rows += len as u64;
            if writer.piece_bytes >= plan.options.batch_bytes {
                writer.write_block().map_err(ipc)?;
            }
        }
        out.push(RunGroup { key, rows });
    }
    writer.write_block().map_err(ipc)?;
    drop(batches);
    let Blocks {
        writer, block_rows, ..
    } = writer;
    let tail_offset = writer.get_ref().written;
    let mut sink = writer.into_inner().map_err(ipc)?;
    sink.finish()
        .map_err(|e| Error::arrow(format!("writing run file {path}"), e.into()))?;
    state.runs.push(RunFile {
        path,
        size_bytes: sink.written,
        tail_offset,
        rows: block_rows.iter().map(|&r| u64::from(r)).sum(),
        block_rows,
        groups: out,
    });
    state.failed = false;
    Ok(())
}

/// A run file being written: slices of rows wait until they make a record batch.
struct Blocks {
    writer: FileWriter<PartSink>,
    schema: SchemaRef,
    pieces: Vec<RecordBatch>,
    piece_bytes: usize,
    block_rows: Vec<u32>,
}

impl Blocks {
    /// Write the waiting slices as one record batch in compact arrays.
    fn write_block(&mut self) -> std::result::Result<(), arrow::error::ArrowError> {
        if self.pieces.is_empty() {
            return Ok(());
        }
        let batch = concat_batches(&self.schema, self.pieces.iter())?;
        self.pieces.clear();
        self.piece_bytes = 0;
        self.writer.write(&batch)?;
        // A batch's rows fit u32: it holds about `batch_bytes` of them.
        self.block_rows.push(batch.num_rows() as u32);
        Ok(())
    }
}
