//! The reduce half of the shuffle: a range of groups read from every run, in order.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{FieldRef, SchemaRef};
use datafusion::common::ScalarValue;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStore;
use object_store::path::Path;

use super::run_file::{GroupRange, RunFile, ShuffleKey, run_schema};
use super::run_reader::RunCursor;
use crate::error::{Error, Result};
use crate::group::Grouping;
use crate::layout::{Layout, parse_partition_path};

/// Runs whose footers are fetched at once when a merge opens.
const OPENING_AT_ONCE: usize = 16;

/// Tuning of a [`RunMerge`].
#[derive(Debug, Clone, PartialEq)]
pub struct MergeOptions {
    /// Encoded bytes the merge may have fetched ahead, over all runs (default 64 MiB):
    /// each run reads windows of this divided by the number of runs, and at least one
    /// record batch (about a MiB of rows, less once compressed). Decoded batches of the
    /// windows come on top.
    pub memory_budget: usize,
}

impl Default for MergeOptions {
    fn default() -> Self {
        Self {
            memory_budget: 64 * 1024 * 1024,
        }
    }
}

/// A group as the merge yields it: the key, its typed partition values and bucket, and
/// its rows over all runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedGroup {
    /// The group.
    pub key: ShuffleKey,
    /// One value per partition column, as [`DataFile::partition_values`](crate::DataFile)
    /// has them.
    pub partition_values: Vec<ScalarValue>,
    /// The bucket, when the dataset is bucketed.
    pub bucket: Option<u32>,
    /// Rows of the group over every run.
    pub rows: u64,
}

/// Reads a range of groups from many runs in the shuffle's order: a k-way merge by
/// group key (each run's groups are contiguous and ordered), one group at a time.
///
/// Call [`next_group`](Self::next_group), then [`next_batch`](Self::next_batch) until
/// it gives `None` for that group's batches (stored columns in compact arrays, from
/// each run in turn); the next `next_group` skips what was left unread. Only the
/// current windows of the runs are held, so a big group streams through.
pub struct RunMerge {
    cursors: Vec<RunCursor>,
    /// Cursors in the current group, in run order, and the one being read.
    members: Vec<usize>,
    reading: usize,
    partition_fields: Vec<FieldRef>,
}

impl std::fmt::Debug for RunMerge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunMerge")
            .field("runs", &self.cursors.len())
            .finish()
    }
}

impl RunMerge {
    /// Open the groups `range` selects in `runs` (paths relative to `root`), written by
    /// a [`RunWriter`](crate::RunWriter) for a dataset of `schema` and `layout`. Fetches
    /// each run's footer (a few at a time) and checks it against its report and the
    /// stored columns: a run that is truncated, of another schema or inconsistent with
    /// its report is an [`Error::InvalidRunFile`] naming it.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        root: &Path,
        schema: &SchemaRef,
        layout: &Layout,
        runs: &[RunFile],
        range: &GroupRange,
        options: MergeOptions,
    ) -> Result<Self> {
        let grouping = Grouping::new(schema, layout)?;
        let run_schema = run_schema(&grouping.file_schema);
        let selected = runs
            .iter()
            .filter(|r| !r.groups_in(range).is_empty())
            .count();
        let window = options.memory_budget as u64 / selected.max(1) as u64;
        // Each opening owns what it reads: a future borrowing the closure's captures is
        // not `Send` for every lifetime, which a task handler needs.
        let opened: Vec<Option<RunCursor>> = stream::iter(runs.iter().cloned())
            .map(|run| {
                let store = Arc::clone(&store);
                let (root, range) = (root.clone(), range.clone());
                let run_schema = Arc::clone(&run_schema);
                let file_schema = Arc::clone(&grouping.file_schema);
                async move {
                    RunCursor::open(store, &root, &run, &range, &run_schema, file_schema, window)
                        .await
                }
            })
            .buffered(OPENING_AT_ONCE)
            .try_collect()
            .await?;
        let partition_fields = grouping
            .partition_idx
            .iter()
            .map(|&i| FieldRef::clone(&schema.fields()[i]))
            .collect();
        Ok(Self {
            cursors: opened.into_iter().flatten().collect(),
            members: Vec::new(),
            reading: 0,
            partition_fields,
        })
    }

    /// Move to the next group in key order, `None` after the last.
    pub async fn next_group(&mut self) -> Result<Option<MergedGroup>> {
        let Some(key) = self.cursors.iter().filter_map(RunCursor::next_key).min() else {
            return Ok(None);
        };
        let key = key.clone();
        self.members.clear();
        self.reading = 0;
        let mut rows = 0;
        for (i, cursor) in self.cursors.iter_mut().enumerate() {
            if cursor.next_key() == Some(&key) {
                rows += cursor.enter().unwrap_or(0);
                self.members.push(i);
            }
        }
        let partition_values = parse_partition_path(&key.partition_path, &self.partition_fields)
            .map_err(|e| Error::InvalidRunFile {
                path: self
                    .members
                    .first()
                    .map_or_else(String::new, |&i| self.cursors[i].path().to_string()),
                reason: format!("group {key}: {e}"),
            })?;
        Ok(Some(MergedGroup {
            bucket: key.bucket,
            key,
            partition_values,
            rows,
        }))
    }

    /// GET requests made so far over all runs, and the bytes they returned (footers
    /// and batches): for a task's metrics.
    pub fn reads(&self) -> (u64, u64) {
        self.cursors
            .iter()
            .map(RunCursor::reads)
            .fold((0, 0), |(r, b), (r2, b2)| (r + r2, b + b2))
    }

    /// The next batch of the current group, `None` after its last.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while let Some(&i) = self.members.get(self.reading) {
            if let Some(batch) = self.cursors[i].next_batch().await? {
                return Ok(Some(batch));
            }
            self.reading += 1;
        }
        Ok(None)
    }
}
