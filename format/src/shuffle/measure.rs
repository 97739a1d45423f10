//! A micro-measure (not a timing assertion): 2,500 days x 8 buckets of small rows written
//! by direct write tasks, and through runs and the clustered writer.
//!
//! `cargo test --workspace --lib -- --ignored --nocapture shuffle_against_direct_writes`
//! (rows via `TERRACE_MEASURE_ROWS`, default 400,000; map / write tasks via
//! `TERRACE_MEASURE_TASKS`, default 8). Prints wall time, files and bytes held
//! (`peak_buffered_bytes`) per phase; the process's peak RSS is no measure of a phase
//! (the allocator keeps what an earlier phase freed), so it is left out.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use super::*;
use crate::layout::Layout;
use crate::writer::{ClusteredWriter, DataFileWriter, WriterOptions};

const BATCH_ROWS: usize = 8 * 1024;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("day", DataType::Int32, false),
        Field::new("key", DataType::Int64, false),
        Field::new("qty", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
        Field::new("note", DataType::Utf8, false),
    ]))
}

fn layout() -> Layout {
    Layout {
        partition_on: vec!["day".into()],
        bucket_by: vec!["key".into()],
        num_buckets: Some(8),
    }
}

/// Rows `start..end`, days and keys scattered as lineitem's ship dates and order keys are.
fn batch(start: usize, end: usize) -> RecordBatch {
    let ids = start as i64..end as i64;
    let mix = |i: i64| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int32Array::from_iter_values(
                ids.clone().map(|i| (mix(i) % 2_500) as i32),
            )),
            Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| i / 4))),
            Arc::new(Int64Array::from_iter_values(
                ids.clone().map(|i| (mix(i) % 50) as i64),
            )),
            Arc::new(Float64Array::from_iter_values(
                ids.clone().map(|i| (mix(i) % 100_000) as f64 / 100.0),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.map(|i| format!("note {}", mix(i) % 1_000)),
            )),
        ],
    )
    .unwrap()
}

/// The input of task `task` of `tasks`, in batches.
fn task_batches(rows: usize, tasks: usize, task: usize) -> impl Iterator<Item = RecordBatch> {
    let per_task = rows.div_ceil(tasks);
    let (start, end) = (task * per_task, ((task + 1) * per_task).min(rows));
    (start..end)
        .step_by(BATCH_ROWS)
        .map(move |s| batch(s, (s + BATCH_ROWS).min(end)))
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const MIB: f64 = 1024.0 * 1024.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
async fn shuffle_against_direct_writes() {
    let rows = env("TERRACE_MEASURE_ROWS", 400_000);
    let tasks = env("TERRACE_MEASURE_TASKS", 8);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    println!("{rows} rows, 2,500 days x 8 buckets, {tasks} tasks, local filesystem");

    // Direct: each write task keeps a file per group it touches.
    let started = Instant::now();
    let (mut files, mut peak) = (0, 0);
    for task in 0..tasks {
        let mut writer = DataFileWriter::new(
            Arc::clone(&store),
            Path::from("direct"),
            schema(),
            layout(),
            WriterOptions::default(),
        )
        .unwrap();
        for b in task_batches(rows, tasks, task) {
            writer.write(b).await.unwrap();
        }
        peak = peak.max(writer.peak_buffered_bytes());
        files += writer.finish().await.unwrap().len();
    }
    println!(
        "direct:  {:6.2} s  {files:6} files  peak buffered {:6.1} MiB",
        started.elapsed().as_secs_f64(),
        peak as f64 / MIB,
    );

    // Shuffle: map tasks write runs, reduce tasks merge ranges into clustered files.
    let started = Instant::now();
    let mut runs = Vec::new();
    let mut map_peak = 0;
    for task in 0..tasks {
        let mut writer = RunWriter::new(
            Arc::clone(&store),
            Path::from("staging"),
            format!("map-{task}"),
            schema(),
            layout(),
            RunOptions::default(),
        )
        .unwrap();
        for b in task_batches(rows, tasks, task) {
            writer.write(b).await.unwrap();
        }
        map_peak = map_peak.max(writer.peak_buffered_bytes());
        runs.extend(writer.finish().await.unwrap());
    }
    let map_seconds = started.elapsed().as_secs_f64();
    let run_bytes: u64 = runs.iter().map(|r| r.size_bytes).sum();
    let report_bytes: usize = runs
        .iter()
        .map(|r| serde_json::to_string(r).unwrap().len())
        .sum();
    let reduce_started = Instant::now();
    let ranges = split_group_ranges(&runs, (run_bytes / tasks as u64).max(1));
    let (mut files, mut reduce_peak) = (0, 0);
    for range in &ranges {
        let mut merge = RunMerge::open(
            Arc::clone(&store),
            &Path::from("staging"),
            &schema(),
            &layout(),
            &runs,
            range,
            MergeOptions::default(),
        )
        .await
        .unwrap();
        let mut writer = ClusteredWriter::new(
            Arc::clone(&store),
            Path::from("clustered"),
            schema(),
            layout(),
            WriterOptions::default(),
        )
        .unwrap();
        writer.write_merged(&mut merge).await.unwrap();
        reduce_peak = reduce_peak.max(writer.peak_buffered_bytes());
        files += writer.finish().await.unwrap().len();
    }
    let reduce_seconds = reduce_started.elapsed().as_secs_f64();
    println!(
        "map:     {map_seconds:6.2} s  {:6} runs   peak buffered {:6.1} MiB  \
         ({:.1} MiB of runs, {:.1} MiB of JSON reports)",
        runs.len(),
        map_peak as f64 / MIB,
        run_bytes as f64 / MIB,
        report_bytes as f64 / MIB
    );
    println!(
        "reduce:  {reduce_seconds:6.2} s  {files:6} files  peak buffered {:6.1} MiB  \
         ({} ranges)",
        reduce_peak as f64 / MIB,
        ranges.len()
    );
    println!("shuffle: {:6.2} s in all", map_seconds + reduce_seconds);
}
