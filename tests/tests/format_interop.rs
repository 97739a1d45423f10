//! Other engines read a committed dataset's data files directly: pyarrow and DuckDB with
//! hive partitioning return the same rows and partition values, including nulls and
//! values with `/`, spaces, `=`, `%`, a leading `.` and non-ASCII text.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::{Value, json};
use terrace_format::{Dataset, Layout, WriterOptions};
use terrace_tests::run_python;

const ORIGINS: &[Option<&str>] = &[
    Some("JFK"),
    None,
    Some("a/b"),
    Some("with space"),
    Some("50% = half"),
    Some(".hidden"),
    Some("Zürich"),
    Some("__HIVE_DEFAULT_PARTITION__"),
];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("origin", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
    ]))
}

fn expected_rows() -> Vec<Value> {
    (0..200i64)
        .map(|id| {
            let origin = ORIGINS[id as usize % ORIGINS.len()];
            let note = if id % 3 == 0 {
                None
            } else {
                Some(format!("n/{}", id % 3))
            };
            let value = if id % 7 == 0 {
                None
            } else {
                Some(id as f64 / 4.0)
            };
            json!([id, origin, note, value])
        })
        .collect()
}

fn batch() -> RecordBatch {
    let rows = expected_rows();
    let col = |i: usize| rows.iter().map(move |r| r[i].clone());
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                col(0).map(|v| v.as_i64().unwrap()),
            )),
            Arc::new(StringArray::from_iter(
                col(1).map(|v| v.as_str().map(String::from)),
            )),
            Arc::new(StringArray::from_iter(
                col(2).map(|v| v.as_str().map(String::from)),
            )),
            Arc::new(Float64Array::from_iter(col(3).map(|v| v.as_f64()))),
        ],
    )
    .unwrap()
}

const READ_WITH_PYARROW: &str = r#"
import json, sys
import pyarrow as pa, pyarrow.dataset as ds
root, paths = sys.argv[1], json.loads(sys.argv[2])
part = ds.partitioning(pa.schema([("origin", pa.string()), ("note", pa.string())]), flavor="hive")
table = ds.dataset([root + "/" + p for p in paths], format="parquet", partitioning=part,
                   partition_base_dir=root).to_table()
rows = sorted([[r["id"], r["origin"], r["note"], r["value"]] for r in table.to_pylist()])
print(json.dumps(rows))
"#;

const READ_WITH_DUCKDB: &str = r#"
import json, sys
import duckdb
root, paths = sys.argv[1], json.loads(sys.argv[2])
files = [root + "/" + p for p in paths]
rel = duckdb.sql(
    "SELECT id, origin, note, value FROM read_parquet($files, hive_partitioning=true, "
    "hive_types={'origin': 'VARCHAR', 'note': 'VARCHAR'}) ORDER BY id",
    params={"files": files})
print(json.dumps([list(r) for r in rel.fetchall()]))
"#;

async fn committed_dataset(dir: &std::path::Path) -> (String, Vec<String>) {
    let root = dir.join("lake");
    let layout = Layout {
        partition_on: vec!["origin".into(), "note".into()],
        bucket_by: vec!["id".into()],
        num_buckets: Some(3),
    };
    let dataset = Dataset::create(&root.display().to_string(), schema(), layout)
        .await
        .unwrap();
    let mut writer = dataset.writer(WriterOptions::default()).unwrap();
    writer.write(batch()).await.unwrap();
    let files = writer.finish().await.unwrap();
    let committed = dataset.append(files).commit().await.unwrap();
    let dataset = dataset.with_snapshot(committed.snapshot.clone());
    let paths = dataset
        .files()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    (root.display().to_string(), paths)
}

fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r[0].as_i64());
    rows
}

#[tokio::test]
async fn pyarrow_reads_the_data_files_with_hive_partitioning() {
    let dir = tempfile::tempdir().unwrap();
    let (root, paths) = committed_dataset(dir.path()).await;
    // The partition directories are escaped: no value made a directory of its own.
    assert!(
        paths.iter().all(|p| p.matches('/').count() == 2),
        "{paths:?}"
    );
    let out = run_python(
        READ_WITH_PYARROW,
        &[&root, &serde_json::to_string(&paths).unwrap()],
    );
    let rows: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    // pyarrow compares with its null marker after percent-decoding, so it cannot tell
    // the literal text "__HIVE_DEFAULT_PARTITION__" (written escaped) from a null; DuckDB
    // (below) can. Every other value must come back exactly.
    let expected: Vec<Value> = expected_rows()
        .into_iter()
        .map(|mut row| {
            if row[1] == json!(terrace_format::NULL_PARTITION_MARKER) {
                row[1] = Value::Null;
            }
            row
        })
        .collect();
    assert_eq!(sorted(rows), expected);
}

#[tokio::test]
async fn duckdb_reads_the_data_files_with_hive_partitioning() {
    let dir = tempfile::tempdir().unwrap();
    let (root, paths) = committed_dataset(dir.path()).await;
    let out = run_python(
        READ_WITH_DUCKDB,
        &[&root, &serde_json::to_string(&paths).unwrap()],
    );
    let rows: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(sorted(rows), expected_rows());
}
