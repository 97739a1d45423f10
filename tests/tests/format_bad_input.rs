//! Bad input to the format: each gets a clear typed error and nothing is written.

use std::sync::Arc;

use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use terrace_format::{Dataset, Error, Layout, WriterOptions};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int32, false),
    ]))
}

fn layout() -> Layout {
    Layout {
        partition_on: vec!["k".into()],
        bucket_by: vec!["v".into()],
        num_buckets: Some(4),
    }
}

async fn object_count(dataset_root: &std::path::Path) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(dataset_root)
}

async fn dataset_with_rows(dir: &std::path::Path) -> Dataset {
    let location = dir.join("lake").display().to_string();
    let dataset = Dataset::create(&location, schema(), layout())
        .await
        .unwrap();
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec![Some("a"), None])),
            Arc::new(Int32Array::from(vec![1, 2])),
        ],
    )
    .unwrap();
    let mut writer = dataset.writer(WriterOptions::default()).unwrap();
    writer.write(batch).await.unwrap();
    let files = writer.finish().await.unwrap();
    let committed = dataset.append(files).commit().await.unwrap();
    dataset.with_snapshot(committed.snapshot.clone())
}

#[tokio::test]
async fn a_write_with_another_schema_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dataset_with_rows(dir.path()).await;
    let before = object_count(&dir.path().join("lake")).await;
    let wrong = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, false),
    ]));
    let err = terrace_format::reconcile(&dataset.schema(), &wrong, Default::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "column \"v\" has type Int64 in the write but Int32 in the dataset"
    );

    let batch = RecordBatch::try_new(
        wrong,
        vec![
            Arc::new(StringArray::from(vec!["a"])),
            Arc::new(Int64Array::from(vec![1])),
        ],
    )
    .unwrap();
    let mut writer = dataset.writer(WriterOptions::default()).unwrap();
    let err = writer.write(batch).await.unwrap_err();
    assert!(err.to_string().contains("\"v\""), "{err}");
    assert_eq!(
        object_count(&dir.path().join("lake")).await,
        before,
        "nothing written"
    );
}

#[tokio::test]
async fn unknown_partition_column_and_zero_buckets_are_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("lake").display().to_string();
    let bad = Layout {
        partition_on: vec!["nope".into()],
        ..Layout::default()
    };
    let err = Dataset::create(&location, schema(), bad).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnknownColumn {
                role: "partition",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("\"nope\"") && err.to_string().contains("k, v"),
        "{err}"
    );

    let zero = Layout {
        bucket_by: vec!["v".into()],
        num_buckets: Some(0),
        ..Layout::default()
    };
    let err = Dataset::create(&location, schema(), zero)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidLayout { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("num_buckets must be at least 1, got 0"),
        "{err}"
    );
    assert!(!dir.path().join("lake").exists(), "nothing written");

    let err = Dataset::open(&location).await.unwrap_err();
    assert!(matches!(err, Error::DatasetNotFound { .. }), "{err}");
}

#[tokio::test]
async fn creating_over_an_existing_dataset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dataset_with_rows(dir.path()).await;
    let err = Dataset::create(dataset.location(), schema(), layout())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DatasetExists { .. }), "{err}");
    assert_eq!(
        Dataset::open(dataset.location()).await.unwrap().version(),
        1
    );
}

async fn put(dataset: &Dataset, relative: &str, bytes: Vec<u8>) {
    let path = Path::from(format!("{}/{relative}", dataset.root()));
    dataset.store().put(&path, bytes.into()).await.unwrap();
}

#[tokio::test]
async fn a_corrupt_version_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dataset_with_rows(dir.path()).await;
    put(
        &dataset,
        "_terrace/versions/00000000000000000002.json",
        b"{\"format_version\": 1, \"oops\"".to_vec(),
    )
    .await;
    let err = Dataset::open(dataset.location()).await.unwrap_err();
    assert!(matches!(err, Error::CorruptManifest { .. }), "{err}");
    assert!(
        err.to_string().contains("00000000000000000002.json"),
        "{err}"
    );
    // The good versions are still readable.
    assert_eq!(
        Dataset::open_version(dataset.location(), 1)
            .await
            .unwrap()
            .version(),
        1
    );
}

#[tokio::test]
async fn a_version_file_from_a_newer_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dataset_with_rows(dir.path()).await;
    put(
        &dataset,
        "_terrace/versions/00000000000000000002.json",
        br#"{"format_version": 99, "something_new": true}"#.to_vec(),
    )
    .await;
    let err = Dataset::open(dataset.location()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedFormatVersion {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade terrace"), "{err}");
}

#[tokio::test]
async fn a_truncated_segment_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dataset_with_rows(dir.path()).await;
    let segment = &dataset.current().segments()[0];
    let file = dir.path().join("lake").join(&segment.path);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = dataset.files().await.unwrap_err();
    assert!(matches!(err, Error::CorruptManifest { .. }), "{err}");
    assert!(err.to_string().contains(&segment.path), "{err}");
}
