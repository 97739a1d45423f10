//! Runs written, read back by group ranges and merged: every row comes back once, in its
//! group, groups in order; bad runs are clear errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use proptest::prelude::*;

use super::*;
use crate::error::Error;
use crate::layout::{Layout, bucket_ids, partition_path};
use crate::writer::tests::{Row, batch, layout, rows, schema};

/// The group of each test row, computed independently of the writers.
fn key_of(row: &Row, layout: &Layout) -> ShuffleKey {
    let values: Vec<ScalarValue> = layout
        .partition_on
        .iter()
        .map(|c| match c.as_str() {
            "p1" => ScalarValue::Utf8(row.p1.clone()),
            "p2" => ScalarValue::Int32(row.p2),
            other => panic!("no test column {other}"),
        })
        .collect();
    let bucket = layout.num_buckets.map(|n| {
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![row.id]));
        bucket_ids(&[ids], n).unwrap()[0]
    });
    ShuffleKey {
        partition_path: partition_path(&layout.partition_on, &values).unwrap(),
        bucket,
    }
}

/// Test rows by group, ids in order.
pub(crate) fn expected_groups(rows: &[Row], layout: &Layout) -> BTreeMap<ShuffleKey, Vec<i64>> {
    let mut groups: BTreeMap<ShuffleKey, Vec<i64>> = BTreeMap::new();
    for row in rows {
        groups.entry(key_of(row, layout)).or_default().push(row.id);
    }
    groups
}

/// Write `rows` in batches of `batch_rows` as runs below `ds/`.
pub(crate) async fn write_runs(
    store: &Arc<dyn ObjectStore>,
    rows: &[Row],
    batch_rows: usize,
    layout: &Layout,
    options: RunOptions,
) -> Vec<RunFile> {
    let mut writer = RunWriter::new(
        Arc::clone(store),
        Path::from("ds"),
        "_terrace/staging/job/map-0",
        schema(),
        layout.clone(),
        options,
    )
    .unwrap();
    for chunk in rows.chunks(batch_rows.max(1)) {
        writer.write(batch(chunk)).await.unwrap();
    }
    writer.finish().await.unwrap()
}

/// Every group of every range, merged from all runs: key -> (partition values, ids).
async fn merge_all(
    store: &Arc<dyn ObjectStore>,
    runs: &[RunFile],
    layout: &Layout,
    ranges: &[GroupRange],
    options: MergeOptions,
) -> BTreeMap<ShuffleKey, (Vec<ScalarValue>, Vec<i64>)> {
    let mut out = BTreeMap::new();
    let mut last: Option<ShuffleKey> = None;
    for range in ranges {
        let mut merge = RunMerge::open(
            Arc::clone(store),
            &Path::from("ds"),
            &schema(),
            layout,
            runs,
            range,
            options.clone(),
        )
        .await
        .unwrap();
        while let Some(group) = merge.next_group().await.unwrap() {
            assert!(
                range.contains(&group.key),
                "{} outside {range:?}",
                group.key
            );
            assert!(
                last.as_ref().is_none_or(|l| *l < group.key),
                "{} after {last:?}",
                group.key
            );
            last = Some(group.key.clone());
            let mut ids = Vec::new();
            while let Some(b) = merge.next_batch().await.unwrap() {
                assert!(
                    b.schema()
                        .fields()
                        .iter()
                        .all(|f| !layout.partition_on.contains(f.name()))
                );
                let id = b.column(b.schema().index_of("id").unwrap());
                let column = id.as_any().downcast_ref::<Int64Array>().unwrap();
                ids.extend(column.values().iter().copied());
            }
            assert_eq!(ids.len() as u64, group.rows, "{}", group.key);
            ids.sort_unstable();
            let previous = out.insert(group.key.clone(), (group.partition_values, ids));
            assert!(previous.is_none(), "{} twice", group.key);
        }
    }
    out
}

/// Sizes of a round trip: rows per input batch, run writer budget and batch bytes,
/// bytes per range, merge budget; and whether runs are compressed.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    batch_rows: usize,
    budget: usize,
    run_batch_bytes: usize,
    range_bytes: u64,
    merge_budget: usize,
    compress: bool,
}

async fn round_trip(rows: &[Row], layout: &Layout, sizes: Sizes) -> Vec<RunFile> {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let options = RunOptions {
        memory_budget: sizes.budget,
        upload_part_size: 64 * 1024,
        batch_bytes: sizes.run_batch_bytes,
        compress: sizes.compress,
    };
    let (batch_rows, range_bytes) = (sizes.batch_rows, sizes.range_bytes);
    let runs = write_runs(&store, rows, batch_rows, layout, options).await;
    assert_eq!(runs.iter().map(|r| r.rows).sum::<u64>(), rows.len() as u64);
    for run in &runs {
        assert!(run.path.starts_with("_terrace/staging/job/map-0/run-"));
        let json = serde_json::to_string(run).unwrap();
        assert_eq!(&serde_json::from_str::<RunFile>(&json).unwrap(), run);
    }
    let ranges = split_group_ranges(&runs, range_bytes);
    let merged = merge_all(
        &store,
        &runs,
        layout,
        &ranges,
        MergeOptions {
            memory_budget: sizes.merge_budget,
        },
    )
    .await;
    let expected = expected_groups(rows, layout);
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, (values, ids)) in &merged {
        assert_eq!(ids, &expected[key], "{key}");
        assert_eq!(
            partition_path(&layout.partition_on, values).unwrap(),
            key.partition_path
        );
    }
    runs
}

fn layouts() -> [Layout; 3] {
    [
        layout(),
        Layout {
            partition_on: vec!["p2".into()],
            ..Layout::default()
        },
        Layout {
            partition_on: Vec::new(),
            bucket_by: vec!["id".into()],
            num_buckets: Some(5),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_through_runs_come_back_by_group_in_every_range() {
    let rows = rows(0, 6_000);
    for layout in layouts() {
        // Small budget: several runs, groups spread over all of them and over several
        // batches of each, read in ranges and windows that cut batches.
        let sizes = Sizes {
            batch_rows: 700,
            budget: 64 * 1024,
            run_batch_bytes: 4 * 1024,
            range_bytes: 16 * 1024,
            merge_budget: 4 * 1024,
            compress: true,
        };
        let runs = round_trip(&rows, &layout, sizes).await;
        assert!(runs.len() > 2, "{} runs", runs.len());
        let batches: Vec<usize> = runs.iter().map(|r| r.block_rows.len()).collect();
        assert!(batches.iter().all(|&b| b > 1), "{batches:?}");
        // Everything in one run, read as one range.
        let sizes = Sizes {
            batch_rows: 6_000,
            budget: usize::MAX,
            run_batch_bytes: usize::MAX,
            range_bytes: u64::MAX,
            merge_budget: usize::MAX,
            compress: false,
        };
        let runs = round_trip(&rows, &layout, sizes).await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].block_rows.len(), 1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any number of rows, batch size, budget and range size: every row comes back once,
    /// in its group, groups in order.
    #[test]
    fn runs_round_trip_for_any_layout_budget_and_batching(
        n in 0i64..3_000,
        start in 0i64..1_000_000,
        batch_rows in 10usize..1_500,
        budget in 1usize..200_000,
        run_batch_bytes in 1usize..50_000,
        range_bytes in 1u64..100_000,
        merge_budget in 1usize..100_000,
        compress in any::<bool>(),
        which in 0usize..3,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rows = rows(start, n);
        let layout = layouts()[which].clone();
        let sizes = Sizes { batch_rows, budget, run_batch_bytes, range_bytes, merge_budget, compress };
        let runs = runtime.block_on(round_trip(&rows, &layout, sizes));
        prop_assert_eq!(runs.is_empty(), n == 0);
    }
}

/// A range is read with ranged GETs of just its batches: a footer and one window per
/// run with a big merge budget, a GET per batch with a tiny one; the ranges together
/// read each batch at most twice (a batch at a range's edge is read by both ranges).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_read_only_their_batches_with_one_get_per_window() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rows = rows(0, 6_000);
    let options = RunOptions {
        batch_bytes: 8 * 1024,
        ..RunOptions::default()
    };
    let runs = write_runs(&store, &rows, 1_000, &layout(), options).await;
    let [run] = runs.as_slice() else {
        panic!("{} runs", runs.len());
    };
    let batches = run.block_rows.len() as u64;
    assert!(batches > 8, "{batches} batches");
    let ranges = split_group_ranges(&runs, run.tail_offset / 4);
    assert!(ranges.len() >= 4, "{} ranges", ranges.len());
    let tail = run.size_bytes - run.tail_offset;
    for (budget, one_window) in [(usize::MAX, true), (1, false)] {
        let mut data_bytes = 0;
        let mut data_gets = 0;
        for range in &ranges {
            let mut merge = RunMerge::open(
                Arc::clone(&store),
                &Path::from("ds"),
                &schema(),
                &layout(),
                &runs,
                range,
                MergeOptions {
                    memory_budget: budget,
                },
            )
            .await
            .unwrap();
            while merge.next_group().await.unwrap().is_some() {
                while merge.next_batch().await.unwrap().is_some() {}
            }
            let (gets, bytes) = merge.reads();
            if one_window {
                assert_eq!(gets, 2, "footer and one window for {range:?}");
            }
            data_gets += gets - 1;
            data_bytes += bytes - tail;
        }
        assert!(
            data_bytes < 2 * run.tail_offset,
            "{data_bytes} of {}",
            run.tail_offset
        );
        // Each batch once, and those at the edges between ranges twice.
        let edges = ranges.len() as u64 - 1;
        if !one_window {
            assert!(
                (batches..=batches + edges).contains(&data_gets),
                "{data_gets} GETs for {batches} batches"
            );
        }
    }
}

/// 20,000 groups in a 2 MiB budget: what the run writer holds stays within the budget
/// plus one batch (its rows and its groups' entries), and every row still comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_writer_memory_stays_within_budget_at_twenty_thousand_groups() {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("day", DataType::Int32, false),
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, false),
    ]));
    let layout = Layout {
        partition_on: vec!["day".into()],
        bucket_by: vec!["id".into()],
        num_buckets: Some(8),
    };
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let budget = 2 * 1024 * 1024;
    let mut writer = RunWriter::new(
        Arc::clone(&store),
        Path::from("ds"),
        "runs",
        Arc::clone(&schema),
        layout.clone(),
        RunOptions {
            memory_budget: budget,
            upload_part_size: 64 * 1024,
            ..RunOptions::default()
        },
    )
    .unwrap();
    let (batches, batch_rows) = (100, 4_096);
    let mut max_batch = 0;
    for b in 0..batches {
        let ids: Vec<i64> = (b * batch_rows..(b + 1) * batch_rows).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int32Array::from_iter_values(
                    ids.iter().map(|i| ((i * 7919) % 2_500) as i32),
                )),
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("value {i}")),
                )),
            ],
        )
        .unwrap();
        // A batch adds its rows and, at worst, an entry for a new group per row (paths
        // like "day=1234").
        let entries = batch_rows as usize
            * (super::run_writer::GROUP_OVERHEAD_BYTES + 8 + std::mem::size_of::<u32>() * 3);
        max_batch = max_batch.max(batch.get_array_memory_size() + entries);
        writer.write(batch).await.unwrap();
        assert!(writer.buffered_bytes() <= budget + max_batch);
    }
    let peak = writer.peak_buffered_bytes();
    let runs = writer.finish().await.unwrap();
    assert!(
        peak > budget / 2,
        "the test should stress the budget ({peak})"
    );
    assert!(
        peak <= budget + max_batch,
        "peak {peak} > budget {budget} + batch {max_batch}"
    );
    assert!(runs.len() > 2, "{} runs", runs.len());
    let mut keys = std::collections::BTreeSet::new();
    for run in &runs {
        keys.extend(run.groups.iter().map(|g| g.key.clone()));
    }
    assert_eq!(keys.len(), 20_000);
    let mut merge = RunMerge::open(
        Arc::clone(&store),
        &Path::from("ds"),
        &schema,
        &layout,
        &runs,
        &GroupRange::all(),
        MergeOptions::default(),
    )
    .await
    .unwrap();
    let (mut groups, mut rows) = (0, 0);
    while merge.next_group().await.unwrap().is_some() {
        groups += 1;
        while let Some(b) = merge.next_batch().await.unwrap() {
            rows += b.num_rows() as i64;
        }
    }
    assert_eq!((groups, rows), (20_000, batches * batch_rows));
}

async fn merge_error(store: &Arc<dyn ObjectStore>, runs: &[RunFile]) -> Error {
    let opened = RunMerge::open(
        Arc::clone(store),
        &Path::from("ds"),
        &schema(),
        &layout(),
        runs,
        &GroupRange::all(),
        MergeOptions::default(),
    )
    .await;
    let mut merge = match opened {
        Ok(m) => m,
        Err(e) => return e,
    };
    loop {
        match merge.next_group().await {
            Ok(Some(_)) => loop {
                match merge.next_batch().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return e,
                }
            },
            Ok(None) => panic!("the bad run read without an error"),
            Err(e) => return e,
        }
    }
}

/// A truncated run, one of another schema, and a report that does not match its file
/// are errors naming the run, not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_run_files_are_clear_errors_naming_them() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rows = rows(0, 3_000);
    let runs = write_runs(&store, &rows, 1_000, &layout(), RunOptions::default()).await;
    let run = runs[0].clone();
    let location = Path::parse(format!("ds/{}", run.path)).unwrap();
    let bytes = store.get(&location).await.unwrap().bytes().await.unwrap();

    let check = |err: Error, needle: &str| {
        assert!(
            matches!(&err, Error::InvalidRunFile { path, .. } if *path == run.path),
            "{err}"
        );
        assert!(err.to_string().contains(needle), "{err}");
        assert!(!err.is_retryable(), "{err}");
    };

    // Truncated.
    store
        .put(&location, PutPayload::from(bytes.slice(..bytes.len() / 2)))
        .await
        .unwrap();
    check(merge_error(&store, &runs).await, "truncated");

    // Right size, garbage footer.
    let mut garbled = bytes.to_vec();
    let n = garbled.len();
    garbled[n - 40..n - 10].fill(0xAB);
    store.put(&location, garbled.into()).await.unwrap();
    check(merge_error(&store, &runs).await, "footer");

    // Another schema: the same rows with `s` renamed.
    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[4] = Field::new("other", DataType::Utf8, true);
    let other: SchemaRef = Arc::new(Schema::new(fields));
    let mut writer = RunWriter::new(
        Arc::clone(&store),
        Path::from("ds"),
        "other",
        Arc::clone(&other),
        layout(),
        RunOptions::default(),
    )
    .unwrap();
    let b = batch(&rows);
    writer
        .write(RecordBatch::try_new(other, b.columns().to_vec()).unwrap())
        .await
        .unwrap();
    let foreign = writer.finish().await.unwrap();
    let err = merge_error(&store, &foreign).await;
    assert!(
        matches!(&err, Error::InvalidRunFile { path, reason }
            if *path == foreign[0].path && reason.contains("other Utf8")),
        "{err}"
    );

    // A report whose rows do not match the file.
    store.put(&location, bytes.into()).await.unwrap();
    let mut lying = runs.clone();
    lying[0].groups[0].rows += 1;
    check(merge_error(&store, &lying).await, "rows");
}

/// An aborted run writer removes the runs it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_run_writer_leaves_no_runs() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut writer = RunWriter::new(
        Arc::clone(&store),
        Path::from("ds"),
        "runs",
        schema(),
        layout(),
        RunOptions {
            memory_budget: 32 * 1024,
            upload_part_size: 4 * 1024,
            ..RunOptions::default()
        },
    )
    .unwrap();
    for chunk in rows(0, 5_000).chunks(500) {
        writer.write(batch(chunk)).await.unwrap();
    }
    assert!(writer.runs_written() > 1);
    writer.abort().await.unwrap();
    let left: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Dictionary columns are written to runs as values and come back as dictionaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dictionary_columns_survive_runs() {
    use arrow::datatypes::Int32Type;
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, false),
        Field::new(
            "d",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
    ]));
    let layout = Layout {
        partition_on: vec!["k".into()],
        ..Layout::default()
    };
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut writer = RunWriter::new(
        Arc::clone(&store),
        Path::from("ds"),
        "runs",
        Arc::clone(&schema),
        layout.clone(),
        RunOptions::default(),
    )
    .unwrap();
    // Two batches with different dictionaries.
    for words in [["x", "y", "x", "z"], ["q", "x", "q", "w"]] {
        let d: arrow::array::DictionaryArray<Int32Type> = words.into_iter().collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int32Array::from(vec![1, 2, 1, 2])), Arc::new(d)],
        )
        .unwrap();
        writer.write(batch).await.unwrap();
    }
    let runs = writer.finish().await.unwrap();
    let mut merge = RunMerge::open(
        Arc::clone(&store),
        &Path::from("ds"),
        &schema,
        &layout,
        &runs,
        &GroupRange::all(),
        MergeOptions::default(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while let Some(group) = merge.next_group().await.unwrap() {
        while let Some(b) = merge.next_batch().await.unwrap() {
            assert_eq!(b.schema().field(0).data_type(), schema.field(1).data_type());
            let values = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
            let values = values.as_any().downcast_ref::<StringArray>().unwrap();
            for v in values.iter().flatten() {
                seen.push(format!("{}:{v}", group.key.partition_path));
            }
        }
    }
    assert_eq!(
        seen,
        [
            "k=1:x", "k=1:x", "k=1:q", "k=1:q", "k=2:y", "k=2:z", "k=2:x", "k=2:w"
        ]
    );
}
