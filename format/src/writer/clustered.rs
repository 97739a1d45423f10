//! Data files from rows that arrive group by group, with one file open at a time.
//!
//! A reduce task of the shuffle gets its groups in the shuffle's order
//! ([`RunMerge`](crate::RunMerge)): every row of a group before any row of the next.
//! Then no group needs a file open while another is written, so the writer keeps one:
//! when the group changes, the open file is finished (its upload goes on in the
//! background) before the next is opened. Its memory is one file's buffers whatever
//! the number of groups, and each group becomes one file where its rows fit the target
//! size. Encoding, statistics, NaN counts, index values, uploads and rolling at
//! [`WriterOptions::target_file_size`] are the [`DataFileWriter`]'s own.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{FieldRef, SchemaRef};
use datafusion::common::ScalarValue;
use object_store::ObjectStore;
use object_store::path::Path;

use super::{DataFileWriter, WriterOptions, add_groups, check_batch, close_all};
use crate::datafile::DataFile;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::layout::{Layout, parse_partition_path};
use crate::shuffle::{RunMerge, ShuffleKey};

/// Writes data files from batches that arrive grouped: all of a (partition, bucket)
/// group's rows, then the next group's, groups in increasing [`ShuffleKey`] order.
///
/// Files, names, statistics and [`DataFile`] reports are those [`DataFileWriter`]
/// writes; at most one file is open (plus uploads finishing). A group arriving after a
/// later one is refused ([`Error::GroupOutOfOrder`]): it would need a second file.
pub struct ClusteredWriter {
    inner: DataFileWriter,
    current: Option<ShuffleKey>,
    current_values: Vec<ScalarValue>,
    partition_fields: Vec<FieldRef>,
}

impl std::fmt::Debug for ClusteredWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusteredWriter")
            .field("inner", &self.inner)
            .field("current", &self.current)
            .finish()
    }
}

impl ClusteredWriter {
    /// A writer for a dataset with `schema` (partition columns included) and `layout`,
    /// below `root` in `store`; see [`DataFileWriter::new`].
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: Path,
        schema: SchemaRef,
        layout: Layout,
        options: WriterOptions,
    ) -> Result<Self> {
        let inner = DataFileWriter::new(store, root, Arc::clone(&schema), layout, options)?;
        let partition_fields = inner
            .plan
            .grouping
            .partition_idx
            .iter()
            .map(|&i| FieldRef::clone(&schema.fields()[i]))
            .collect();
        Ok(Self {
            inner,
            current: None,
            current_values: Vec::new(),
            partition_fields,
        })
    }

    /// The stored columns (the dataset schema without partition columns) that
    /// [`write`](Self::write) takes.
    pub fn file_schema(&self) -> &SchemaRef {
        &self.inner.plan.file_schema
    }

    /// Write rows of group `key`: `batch` holds the stored columns ([`file_schema`]) of
    /// rows of that group, as [`RunMerge`] yields them (they are not grouped again). A
    /// new key finishes the open file first; a key before the current one is an
    /// [`Error::GroupOutOfOrder`].
    ///
    /// [`file_schema`]: Self::file_schema
    pub async fn write(&mut self, key: &ShuffleKey, batch: RecordBatch) -> Result<()> {
        check_batch(&self.inner.plan.file_schema, &batch)?;
        let layout = &self.inner.plan.layout;
        if key.bucket.is_some() != layout.num_buckets.is_some()
            || key
                .bucket
                .zip(layout.num_buckets)
                .is_some_and(|(b, n)| b >= n)
        {
            return Err(Error::InvalidLayout {
                reason: format!(
                    "group {key} does not fit the layout's {} buckets",
                    layout.num_buckets.unwrap_or(0)
                ),
            });
        }
        if let Some(previous) = &self.current
            && key < previous
        {
            return Err(Error::GroupOutOfOrder {
                previous: previous.to_string(),
                next: key.to_string(),
            });
        }
        // The current group is the one whose rows were written last (its file may be
        // open), so an empty batch changes nothing.
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let changed = self.current.as_ref() != Some(key);
        if changed {
            self.current_values =
                parse_partition_path(&key.partition_path, &self.partition_fields)?;
            self.current = Some(key.clone());
        }
        let group = Group {
            key: (Box::from(key.partition_path.as_bytes()), key.bucket),
            partition_values: self.current_values.clone(),
            bucket: key.bucket,
            batch,
        };
        self.inner
            .step(move |plan, state| {
                if changed {
                    close_all(plan, state)?;
                }
                add_groups(plan, state, vec![group])
            })
            .await?;
        self.inner.wait_for_uploads().await;
        Ok(())
    }

    /// Write every group of `merge` (from its current position to its end).
    pub async fn write_merged(&mut self, merge: &mut RunMerge) -> Result<()> {
        while let Some(group) = merge.next_group().await? {
            while let Some(batch) = merge.next_batch().await? {
                self.write(&group.key, batch).await?;
            }
        }
        Ok(())
    }

    /// Files open right now: at most one.
    pub fn open_files(&self) -> usize {
        self.inner.state.as_ref().map_or(0, |s| s.open.len())
    }

    /// See [`DataFileWriter::buffered_bytes`].
    pub fn buffered_bytes(&self) -> usize {
        self.inner.buffered_bytes()
    }

    /// See [`DataFileWriter::peak_buffered_bytes`].
    pub fn peak_buffered_bytes(&self) -> usize {
        self.inner.peak_buffered_bytes()
    }

    /// Finish the open file, wait for all uploads and return the files written; see
    /// [`DataFileWriter::finish`].
    pub async fn finish(self) -> Result<Vec<DataFile>> {
        self.inner.finish().await
    }

    /// Stop and delete every file uploaded so far; see [`DataFileWriter::abort`].
    pub async fn abort(self) -> Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::RecordBatch;
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    use object_store::memory::InMemory;
    use object_store::path::Path;

    use super::*;
    use crate::datafile::DataFile;
    use crate::error::Error;
    use crate::shuffle::tests::{expected_groups, write_runs};
    use crate::shuffle::{GroupRange, MergeOptions, RunFile, RunOptions, RunWriter};
    use crate::writer::WriterOptions;
    use crate::writer::tests::{Row, batch, check_files, layout, rows, schema, write_rows};

    /// A clustered writer of the test dataset below `root`.
    fn writer_at(
        store: &Arc<dyn ObjectStore>,
        root: &str,
        options: WriterOptions,
    ) -> ClusteredWriter {
        ClusteredWriter::new(
            Arc::clone(store),
            Path::from(root),
            schema(),
            layout(),
            options,
        )
        .unwrap()
    }

    async fn clustered_files(
        store: &Arc<dyn ObjectStore>,
        root: &Path,
        runs: &[RunFile],
        options: WriterOptions,
    ) -> Vec<DataFile> {
        let mut merge = RunMerge::open(
            Arc::clone(store),
            &Path::from("ds"),
            &schema(),
            &layout(),
            runs,
            &GroupRange::all(),
            MergeOptions::default(),
        )
        .await
        .unwrap();
        let mut writer = writer_at(store, root.as_ref(), options);
        while let Some(group) = merge.next_group().await.unwrap() {
            while let Some(b) = merge.next_batch().await.unwrap() {
                writer.write(&group.key, b).await.unwrap();
                assert!(writer.open_files() <= 1);
            }
        }
        writer.finish().await.unwrap()
    }

    /// Through runs and the clustered writer, each group is exactly one file, with the rows,
    /// partition values, bucket and statistics the direct writer gives for the same input.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clustered_writer_makes_one_file_per_group_like_the_direct_writer() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rows = rows(0, 8_000);
        let runs = write_runs(
            &store,
            &rows,
            1_000,
            &layout(),
            RunOptions {
                memory_budget: 100 * 1024,
                ..RunOptions::default()
            },
        )
        .await;
        assert!(runs.len() > 1);
        let root = Path::from("clustered");
        let files = clustered_files(&store, &root, &runs, WriterOptions::default()).await;
        check_files(store.as_ref(), &root, &files, &rows).await;
        let groups = expected_groups(&rows, &layout());
        assert_eq!(files.len(), groups.len(), "one file per group");

        let direct_root = Path::from("direct");
        let (direct, _) = write_rows(
            Arc::clone(&store),
            &direct_root,
            &rows,
            1_000,
            WriterOptions::default(),
        )
        .await;
        let describe = |files: &[DataFile]| {
            let mut out: Vec<_> = files
                .iter()
                .map(|f| {
                    let dir = f.path.rsplit_once('/').map(|(d, _)| d.to_string());
                    (
                        dir,
                        f.bucket,
                        format!("{:?}", f.partition_values),
                        f.num_rows,
                        f.column_stats.clone(),
                    )
                })
                .collect();
            out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            out
        };
        assert_eq!(describe(&files), describe(&direct));
    }

    /// A group whose rows come from several runs, compressed or not, is one row group
    /// (and, being small, Snappy) within a budget far above its rows: the batches the
    /// merge yields hold only their rows, not the run's shared buffers, so the writer does
    /// not see the budget exceeded and cut the group into row groups of a few rows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_from_several_runs_is_one_row_group() {
        use object_store::ObjectStoreExt;
        for compress in [false, true] {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let rows = rows(0, 20_000);
            let runs = write_runs(
                &store,
                &rows,
                1_000,
                &layout(),
                RunOptions {
                    memory_budget: 200 * 1024,
                    compress,
                    ..RunOptions::default()
                },
            )
            .await;
            assert!(runs.len() > 2, "{} runs", runs.len());
            let root = Path::from("one-row-group");
            let options = WriterOptions {
                memory_budget: 64 * 1024,
                ..WriterOptions::default()
            };
            let files = clustered_files(&store, &root, &runs, options).await;
            check_files(store.as_ref(), &root, &files, &rows).await;
            for file in &files {
                let location = crate::writer::object_path(&root, &file.path).unwrap();
                let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .unwrap();
                let metadata = reader.metadata();
                assert_eq!(
                    metadata.num_row_groups(),
                    1,
                    "{} ({} rows, compress {compress})",
                    file.path,
                    file.num_rows
                );
                assert_eq!(
                    metadata.row_group(0).column(0).compression(),
                    parquet::basic::Compression::SNAPPY
                );
            }
        }
    }

    /// A group bigger than the target size rolls into several files, as with the direct
    /// writer, still one open at a time (groups arrive in many batches: one per run).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clustered_writer_rolls_big_groups_past_the_target_size() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rows = rows(0, 40_000);
        let run_options = RunOptions {
            memory_budget: 64 * 1024,
            ..RunOptions::default()
        };
        let runs = write_runs(&store, &rows, 1_000, &layout(), run_options).await;
        assert!(runs.len() > 10, "{} runs", runs.len());
        let root = Path::from("rolled");
        let options = WriterOptions {
            target_file_size: 2 * 1024,
            row_group_rows: 200,
            ..WriterOptions::default()
        };
        let files = clustered_files(&store, &root, &runs, options).await;
        check_files(store.as_ref(), &root, &files, &rows).await;
        assert!(
            files.len() > expected_groups(&rows, &layout()).len(),
            "{} files",
            files.len()
        );
    }

    #[tokio::test]
    async fn clustered_writer_refuses_a_group_after_a_later_one() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut writer = writer_at(&store, "t", WriterOptions::default());
        let data = |r: &[Row]| {
            let b = batch(r);
            b.project(&[2, 3, 4]).unwrap()
        };
        let later = ShuffleKey {
            partition_path: "p1=b/p2=1".into(),
            bucket: Some(1),
        };
        let earlier = ShuffleKey {
            partition_path: "p1=a/p2=1".into(),
            bucket: Some(3),
        };
        writer.write(&later, data(&rows(0, 3))).await.unwrap();
        let err = writer.write(&earlier, data(&rows(3, 3))).await.unwrap_err();
        assert!(
            matches!(&err, Error::GroupOutOfOrder { previous, next }
            if previous == "p1=b/p2=1 bucket 1" && next == "p1=a/p2=1 bucket 3"),
            "{err}"
        );
        assert!(!err.is_retryable());
        writer.abort().await.unwrap();
        let left: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert!(left.is_empty(), "{left:?}");
    }

    /// An empty batch of the next group does not count as its start: the open file is
    /// finished when that group's rows come.
    #[tokio::test]
    async fn one_file_open_across_an_empty_batch_of_the_next_group() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut writer = writer_at(&store, "t", WriterOptions::default());
        let data = |r: &[Row]| batch(r).project(&[2, 3, 4]).unwrap();
        let key = |p: &str| ShuffleKey {
            partition_path: p.into(),
            bucket: Some(0),
        };
        writer
            .write(&key("p1=a/p2=1"), data(&rows(0, 3)))
            .await
            .unwrap();
        writer
            .write(&key("p1=b/p2=1"), data(&rows(0, 0)))
            .await
            .unwrap();
        writer
            .write(&key("p1=b/p2=1"), data(&rows(3, 3)))
            .await
            .unwrap();
        assert_eq!(writer.open_files(), 1);
        let files = writer.finish().await.unwrap();
        assert_eq!(files.len(), 2);
    }

    /// An aborted clustered writer removes the files it wrote.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_clustered_writer_leaves_no_files() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rows = rows(0, 3_000);
        let runs = write_runs(&store, &rows, 1_000, &layout(), RunOptions::default()).await;
        let mut merge = RunMerge::open(
            Arc::clone(&store),
            &Path::from("ds"),
            &schema(),
            &layout(),
            &runs,
            &GroupRange::all(),
            MergeOptions::default(),
        )
        .await
        .unwrap();
        let options = WriterOptions {
            upload_part_size: 1024,
            ..WriterOptions::default()
        };
        let mut clustered = writer_at(&store, "out", options);
        clustered.write_merged(&mut merge).await.unwrap();
        clustered.abort().await.unwrap();
        let left: Vec<_> = store
            .list(Some(&Path::from("out")))
            .try_collect()
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Job kinds run these in spawned tasks: their futures must be `Send`.
    #[allow(dead_code)]
    fn futures_are_send(
        runs: &mut RunWriter,
        merge: &mut RunMerge,
        clustered: &mut ClusteredWriter,
        batch: RecordBatch,
        key: &ShuffleKey,
    ) {
        fn send<T: Send>(_: T) {}
        send(runs.write(batch.clone()));
        send(merge.next_group());
        send(merge.next_batch());
        send(clustered.write(key, batch));
        send(clustered.write_merged(merge));
    }
}
