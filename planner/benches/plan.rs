//! Planning speed on a large manifest: a point lookup and a range query on a synthetic
//! dataset of 1,000,000 data files in 10,000 partitions (100 files each), and the same
//! point lookup on 100,000 files in 1,000 partitions, to show that planning time follows
//! the files in the touched partitions, not the dataset's total.
//!
//! ```text
//! cargo bench -p terrace-planner --bench plan
//! TERRACE_BENCH_PARTITIONS=2000 cargo bench -p terrace-planner --bench plan
//! ```
//! No data file is written: the `DataFile` entries (paths, partition values, buckets,
//! statistics) are built in memory and committed to an in-memory dataset
//! (`memory://plan-bench-<uuid>/ds`), so only the manifest exists.
//!
//! Layout: `part: Utf8` (partition column, `p00000`..), `key: Int64` (bucket column, 8
//! buckets), `ts: Int64`, `v: Float64`. File `j` of a partition holds keys
//! `[j * 2000, j * 2000 + 1999]` (the same key space in every partition) and timestamps
//! `[g * 3600, g * 3600 + 3599]` with `g` its global index, so timestamps grow across
//! partitions. Buckets are assigned so that the file holding key 123456 is in the bucket
//! 123456 hashes to: the point lookup keeps exactly one file.
//!
//! Printed: manifest build time, median (of 5) planning time per query (predicate
//! parsing + `plan_read`), files before / after each pruning step, and peak RSS (VmHWM)
//! of the build and, separately, of the planning phase (the peak is reset in between
//! through `/proc/self/clear_refs` when the kernel allows it).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use terrace_format::{ColumnStats, DataFile, Dataset, Layout, bucket_for_scalar, partition_path};
use terrace_planner::{ReadOptions, ReadPlan, plan_read};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const FILES_PER_PARTITION: u32 = 100;
const NUM_BUCKETS: u32 = 8;
const KEYS_PER_FILE: i64 = 2000;
const TS_PER_FILE: i64 = 3600;
const LOOKUP_KEY: i64 = 123_456;
const REPEATS: usize = 5;
/// Partitions committed together (100,000 files per commit).
const PARTITIONS_PER_COMMIT: u32 = 1000;

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let partitions: u32 = std::env::var("TERRACE_BENCH_PARTITIONS")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let bucket_offset = bucket_offset()?;

    println!(
        "building manifest: {} files in {partitions} partitions ({FILES_PER_PARTITION} files each, {NUM_BUCKETS} buckets)",
        u64::from(partitions) * u64::from(FILES_PER_PARTITION)
    );
    let (large, large_build) = build(0..partitions, bucket_offset).await?;
    println!(
        "  built in {:.2} s; VmRSS {} MiB, VmHWM {} MiB",
        large_build.as_secs_f64(),
        mib(proc_status("VmRSS:")),
        mib(proc_status("VmHWM:"))
    );

    // 1,000 partitions around the lookup's partition, so both manifests hold it.
    let small_partitions = 4000..5000u32;
    println!(
        "building manifest: {} files in {} partitions (p{:05}..p{:05})",
        small_partitions.len() as u64 * u64::from(FILES_PER_PARTITION),
        small_partitions.len(),
        small_partitions.start,
        small_partitions.end - 1
    );
    let (small, small_build) = build(small_partitions, bucket_offset).await?;
    println!(
        "  built in {:.2} s; VmRSS {} MiB, VmHWM {} MiB",
        small_build.as_secs_f64(),
        mib(proc_status("VmRSS:")),
        mib(proc_status("VmHWM:"))
    );

    let reset = reset_peak_rss();
    println!(
        "planning (peak RSS {}): VmRSS {} MiB",
        if reset {
            "reset before planning"
        } else {
            "NOT reset: includes the build"
        },
        mib(proc_status("VmRSS:"))
    );

    let point = format!("part = 'p04242' AND key = {LOOKUP_KEY}");
    // Files of p05005 onwards have later timestamps; the threshold is inside file 0 of p05005.
    let ts = (5005 * i64::from(FILES_PER_PARTITION)) * TS_PER_FILE + TS_PER_FILE / 2;
    let range = format!("part >= 'p05000' AND part < 'p05010' AND ts > {ts}");

    let point_large = bench_query(&large, "point lookup", &point).await?;
    let range_large = bench_query(&large, "range query", &range).await?;
    let point_small = bench_query(&small, "point lookup", &point).await?;

    println!();
    println!("point lookup `{point}`, median of {REPEATS}:");
    println!(
        "  {:>9} files / {:>6} partitions: {:>8.2} ms ({} files kept)",
        point_large.total_files,
        partitions,
        ms(point_large.median),
        point_large.kept
    );
    println!(
        "  {:>9} files / {:>6} partitions: {:>8.2} ms ({} files kept)",
        point_small.total_files,
        point_small.total_files / u64::from(FILES_PER_PARTITION),
        ms(point_small.median),
        point_small.kept
    );
    println!(
        "range query `{range}`: {:.2} ms on {} files ({} files kept)",
        ms(range_large.median),
        range_large.total_files,
        range_large.kept
    );
    println!(
        "peak RSS while planning: VmHWM {} MiB",
        mib(proc_status("VmHWM:"))
    );
    Ok(())
}

struct QueryResult {
    median: Duration,
    total_files: u64,
    kept: u64,
}

async fn bench_query(location: &str, name: &str, sql: &str) -> Result<QueryResult, BoxError> {
    let start = Instant::now();
    let dataset = Dataset::open(location).await?;
    let open = start.elapsed();
    let total_files = dataset.current().num_files();
    println!();
    println!(
        "{name} on {total_files} files ({} segments), `{sql}`",
        dataset.current().segments().len()
    );
    println!("  Dataset::open: {:.2} ms", ms(open));
    let mut times = Vec::with_capacity(REPEATS);
    let mut plan: Option<ReadPlan> = None;
    for _ in 0..REPEATS {
        let start = Instant::now();
        let predicate = terrace_planner::Predicate::parse(sql, &dataset.schema())?;
        let options = ReadOptions {
            predicate: Some(predicate),
            ..Default::default()
        };
        let p = plan_read(&dataset, &options).await?;
        times.push(start.elapsed());
        plan = Some(p);
    }
    let all: Vec<String> = times.iter().map(|t| format!("{:.2}", ms(*t))).collect();
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "  planning (parse + plan_read): median {:.2} ms (runs: {} ms)",
        ms(median),
        all.join(", ")
    );
    let plan = plan.ok_or("no run")?;
    for step in &plan.steps {
        println!(
            "  {:<11} files {:>8} -> {:>8}",
            format!("{:?}", step.step),
            step.files_before,
            step.files_after
        );
    }
    let kept = plan.steps.last().map_or(0, |s| s.files_after);
    println!(
        "  {} task(s); VmHWM {} MiB",
        plan.tasks.len(),
        mib(proc_status("VmHWM:"))
    );
    Ok(QueryResult {
        median,
        total_files,
        kept,
    })
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("part", DataType::Utf8, false),
        Field::new("key", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("v", DataType::Float64, true),
    ]))
}

fn layout() -> Layout {
    Layout {
        partition_on: vec!["part".into()],
        bucket_by: vec!["key".into()],
        num_buckets: Some(NUM_BUCKETS),
    }
}

/// Shift of the bucket numbering that puts the file holding `LOOKUP_KEY` in its bucket.
fn bucket_offset() -> Result<u32, BoxError> {
    let wanted = bucket_for_scalar(&[ScalarValue::Int64(Some(LOOKUP_KEY))], NUM_BUCKETS)?;
    let file = (LOOKUP_KEY / KEYS_PER_FILE) as u32 % NUM_BUCKETS;
    Ok((wanted + NUM_BUCKETS - file) % NUM_BUCKETS)
}

/// Create an in-memory dataset and commit `FILES_PER_PARTITION` files per partition.
async fn build(partitions: Range<u32>, bucket_offset: u32) -> Result<(String, Duration), BoxError> {
    let location = format!("memory://plan-bench-{}/ds", uuid::Uuid::new_v4());
    let start = Instant::now();
    let mut dataset = Dataset::create(&location, schema(), layout()).await?;
    let columns = layout().partition_on;
    let mut first = partitions.start;
    while first < partitions.end {
        let last = (first + PARTITIONS_PER_COMMIT).min(partitions.end);
        let chunk = Instant::now();
        let mut files = Vec::with_capacity(((last - first) * FILES_PER_PARTITION) as usize);
        for p in first..last {
            let value = ScalarValue::Utf8(Some(format!("p{p:05}")));
            let dir = partition_path(&columns, std::slice::from_ref(&value))?;
            for j in 0..FILES_PER_PARTITION {
                files.push(data_file(&dir, &value, p, j, bucket_offset));
            }
        }
        let generated = chunk.elapsed();
        let committed = dataset.append(files).commit().await?;
        dataset = dataset.with_snapshot(committed.snapshot);
        println!(
            "  p{first:05}..p{:05}: generated in {:.2} s, committed in {:.2} s (version {}, {} files, {} segments, {:.1} s so far)",
            last - 1,
            generated.as_secs_f64(),
            (chunk.elapsed() - generated).as_secs_f64(),
            dataset.version(),
            dataset.current().num_files(),
            dataset.current().segments().len(),
            start.elapsed().as_secs_f64()
        );
        first = last;
    }
    Ok((location, start.elapsed()))
}

fn data_file(dir: &str, value: &ScalarValue, p: u32, j: u32, bucket_offset: u32) -> DataFile {
    let bucket = (j + bucket_offset) % NUM_BUCKETS;
    let global = i64::from(p) * i64::from(FILES_PER_PARTITION) + i64::from(j);
    let key_min = i64::from(j) * KEYS_PER_FILE;
    let ts_min = global * TS_PER_FILE;
    let num_rows = 10_000 + u64::from(j);
    let int = |min: i64, max: i64| ColumnStats {
        min: ScalarValue::Int64(Some(min)),
        max: ScalarValue::Int64(Some(max)),
        null_count: Some(0),
        nan_count: None,
    };
    let mut column_stats = BTreeMap::new();
    column_stats.insert("key".to_string(), int(key_min, key_min + KEYS_PER_FILE - 1));
    column_stats.insert("ts".to_string(), int(ts_min, ts_min + TS_PER_FILE - 1));
    column_stats.insert(
        "v".to_string(),
        ColumnStats {
            min: ScalarValue::Float64(Some(global as f64)),
            max: ScalarValue::Float64(Some(global as f64 + 1.0)),
            null_count: Some(u64::from(j % 3)),
            nan_count: Some(0),
        },
    );
    DataFile {
        path: format!("{dir}/part-{bucket:05}-{j}.parquet"),
        partition_values: vec![value.clone()],
        bucket: Some(bucket),
        num_rows,
        size_bytes: num_rows * 24 + 4096,
        column_stats,
        row_groups: Vec::new(),
        index_values: BTreeMap::new(),
    }
}

/// A `/proc/self/status` field in KiB (0 when unavailable).
fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: u64) -> u64 {
    kib / 1024
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
