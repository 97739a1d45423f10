//! Write benchmark on a given input: reads Parquet files (e.g. TPC-H lineitem made by
//! `tpchgen-cli`) and writes them as a terrace dataset, so the peer (pyarrow's
//! `write_dataset`, see `compare_pyarrow.py`) can write the very same input.
//!
//! `cargo bench -p terrace-format --bench write_input -- INPUT OUTPUT PARTITION BUCKET N ZSTD_LEVEL`
//! prints one JSON line: rows, seconds, files, bytes. Peak RSS is measured from outside
//! (`/usr/bin/time`), the same way for both systems.

use std::sync::Arc;
use std::time::Instant;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use terrace_format::{DataFileWriter, Layout, WriterOptions};

fn input_files(input: &std::path::Path) -> Vec<std::path::PathBuf> {
    if input.is_file() {
        return vec![input.to_path_buf()];
    }
    let mut files: Vec<_> = std::fs::read_dir(input)
        .expect("read the input directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (fixed, budget) = match args.len() {
        6 => (&args[..], None),
        7 => (
            &args[..6],
            Some(
                args[6]
                    .parse::<usize>()
                    .expect("MEMORY_BUDGET_MIB is a number"),
            ),
        ),
        _ => {
            eprintln!(
                "usage: write_input INPUT OUTPUT PARTITION_COLUMN BUCKET_COLUMN NUM_BUCKETS ZSTD_LEVEL [MEMORY_BUDGET_MIB]"
            );
            std::process::exit(2);
        }
    };
    let [input, output, partition, bucket, buckets, level] = fixed else {
        unreachable!("six arguments checked above");
    };
    let files = input_files(std::path::Path::new(input));
    let schema = ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&files[0]).expect("open input"),
    )
    .expect("read the input footer")
    .schema()
    .clone();
    let layout = Layout {
        partition_on: vec![partition.clone()],
        bucket_by: vec![bucket.clone()],
        num_buckets: Some(buckets.parse().expect("NUM_BUCKETS is a number")),
    };
    let options = WriterOptions {
        zstd_level: level.parse().expect("ZSTD_LEVEL is a number"),
        memory_budget: budget.map_or(WriterOptions::default().memory_budget, |mib| mib << 20),
        ..WriterOptions::default()
    };
    std::fs::create_dir_all(output).expect("create the output directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let (rows, written) = runtime.block_on(async move {
        let store = Arc::new(LocalFileSystem::new());
        let root = Path::from_absolute_path(std::fs::canonicalize(output).expect("output path"))
            .expect("output path");
        let mut writer = DataFileWriter::new(store, root, schema, layout, options).expect("writer");
        // Decode on its own thread so reading overlaps encoding.
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let reader = std::thread::spawn(move || {
            for file in files {
                let reader = ParquetRecordBatchReaderBuilder::try_new(
                    std::fs::File::open(file).expect("open input"),
                )
                .expect("input footer")
                .with_batch_size(64 * 1024)
                .build()
                .expect("input reader");
                for batch in reader {
                    if tx.blocking_send(batch.expect("decode input")).is_err() {
                        return;
                    }
                }
            }
        });
        let mut rows = 0usize;
        while let Some(batch) = rx.recv().await {
            rows += batch.num_rows();
            writer.write(batch).await.expect("write");
        }
        reader.join().expect("reader thread");
        (rows, writer.finish().await.expect("finish"))
    });
    let seconds = started.elapsed().as_secs_f64();
    let bytes: u64 = written.iter().map(|f| f.size_bytes).sum();
    println!(
        "{{\"system\": \"terrace\", \"rows\": {rows}, \"seconds\": {seconds:.3}, \"files\": {}, \"bytes\": {bytes}}}",
        written.len()
    );
}
