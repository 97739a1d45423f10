//! The commit protocol end to end on real stores: concurrent writers, crashes, and
//! time travel.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use terrace_format::{Dataset, Layout, WriterOptions};
use terrace_tests::read_rows;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("writer", DataType::Utf8, true),
        Field::new("seq", DataType::Int32, false),
        Field::new("row", DataType::Int32, false),
    ]))
}

fn batch(writer: usize, seq: i32, rows: i32) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec![
                format!("w/{writer}");
                rows as usize
            ])),
            Arc::new(Int32Array::from(vec![seq; rows as usize])),
            Arc::new(Int32Array::from_iter_values(0..rows)),
        ],
    )
    .unwrap()
}

fn layout() -> Layout {
    Layout {
        partition_on: vec!["writer".into()],
        bucket_by: vec!["row".into()],
        num_buckets: Some(2),
    }
}

async fn append(dataset: &Dataset, batch: RecordBatch) -> Dataset {
    let mut writer = dataset.writer(WriterOptions::default()).unwrap();
    writer.write(batch).await.unwrap();
    let files = writer.finish().await.unwrap();
    let committed = dataset.append(files).commit().await.unwrap();
    dataset.with_snapshot(committed.snapshot.clone())
}

/// 8 writers x 20 appends each: exactly 160 new versions, a chain without gaps, and
/// every row present exactly once.
async fn concurrent_appends(location: String) {
    const WRITERS: usize = 8;
    const APPENDS: i32 = 20;
    const ROWS: i32 = 5;
    Dataset::create(&location, schema(), layout())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let location = location.clone();
        tasks.push(tokio::spawn(async move {
            let mut dataset = Dataset::open(&location).await.unwrap();
            let mut versions = Vec::new();
            for seq in 0..APPENDS {
                dataset = append(&dataset, batch(w, seq, ROWS)).await;
                versions.push(dataset.version());
            }
            versions
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.extend(task.await.unwrap());
    }
    versions.sort_unstable();
    let expected: Vec<u64> = (1..=(WRITERS as u64 * APPENDS as u64)).collect();
    assert_eq!(
        versions, expected,
        "each commit got its own version, none skipped"
    );

    let dataset = Dataset::open(&location).await.unwrap();
    assert_eq!(dataset.version(), 160);
    let history = dataset.history().await.unwrap();
    assert_eq!(history.len(), 161);
    for (i, snapshot) in history.iter().enumerate() {
        assert_eq!(snapshot.version(), i as u64);
        assert_eq!(snapshot.parent(), i.checked_sub(1).map(|p| p as u64));
        assert_eq!(snapshot.num_rows(), i as u64 * ROWS as u64, "version {i}");
    }
    let rows = read_rows(&dataset).await;
    assert_eq!(rows.len(), WRITERS * APPENDS as usize * ROWS as usize);
    let distinct: BTreeSet<_> = rows.iter().collect();
    assert_eq!(distinct.len(), rows.len(), "no row twice");
    for w in 0..WRITERS {
        for seq in 0..APPENDS {
            for row in 0..ROWS {
                assert!(
                    distinct.contains(&format!("{row}|{seq}|w/{w}")),
                    "missing w{w} s{seq} r{row}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_twenty_appends_each_on_the_local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_appends(dir.path().join("lake").display().to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_twenty_appends_each_in_memory() {
    concurrent_appends(format!("memory://{}/lake", uuid::Uuid::new_v4())).await;
}

#[tokio::test]
async fn crash_between_writing_files_and_committing_leaves_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("lake").display().to_string();
    let dataset = Dataset::create(&location, schema(), layout())
        .await
        .unwrap();
    let dataset = append(&dataset, batch(1, 0, 10)).await;
    let before = read_rows(&dataset).await;

    // The "crashed" job wrote its data files (and more) but never committed.
    let mut writer = dataset.writer(WriterOptions::default()).unwrap();
    writer.write(batch(2, 1, 1000)).await.unwrap();
    let orphans = writer.finish().await.unwrap();
    assert!(!orphans.is_empty());
    for file in &orphans {
        assert!(dir.path().join("lake").join(&file.path).exists());
    }

    let reopened = Dataset::open(&location).await.unwrap();
    assert_eq!(reopened.version(), 1);
    assert_eq!(read_rows(&reopened).await, before);
    let listed: BTreeSet<String> = reopened
        .files()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    for file in &orphans {
        assert!(
            !listed.contains(&file.path),
            "an uncommitted file is not referenced"
        );
    }
}

#[tokio::test]
async fn time_travel_by_version_and_timestamp() {
    let location = format!("memory://{}/lake", uuid::Uuid::new_v4());
    let dataset = Dataset::create(&location, schema(), layout())
        .await
        .unwrap();
    let v1 = append(&dataset, batch(1, 0, 3)).await;
    let after_v1 = v1.current().timestamp();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let v2 = append(&v1, batch(2, 0, 4)).await;
    assert_eq!(v2.version(), 2);

    let old = Dataset::open_version(&location, 1).await.unwrap();
    assert_eq!(read_rows(&old).await.len(), 3);
    let as_of = Dataset::open_as_of(&location, after_v1).await.unwrap();
    assert_eq!(as_of.version(), 1);
    let latest = Dataset::open(&location).await.unwrap();
    assert_eq!(read_rows(&latest).await.len(), 7);

    let missing = Dataset::open_version(&location, 9).await.unwrap_err();
    assert!(
        matches!(
            missing,
            terrace_format::Error::VersionNotFound { version: 9, .. }
        ),
        "{missing}"
    );
    let too_early = Dataset::open_as_of(&location, after_v1 - chrono::Duration::days(1))
        .await
        .unwrap_err();
    assert!(
        matches!(too_early, terrace_format::Error::NoVersionAtTime { .. }),
        "{too_early}"
    );
}

#[tokio::test]
async fn overwrite_and_delete_partitions() {
    let location = format!("memory://{}/lake", uuid::Uuid::new_v4());
    let dataset = Dataset::create(&location, schema(), layout())
        .await
        .unwrap();
    let dataset = append(&dataset, batch(1, 0, 3)).await;
    let dataset = append(&dataset, batch(2, 0, 4)).await;

    // Overwrite partition w/1 with new rows; w/2 untouched.
    let mut writer = dataset.writer(WriterOptions::default()).unwrap();
    writer.write(batch(1, 9, 2)).await.unwrap();
    let files = writer.finish().await.unwrap();
    let committed = dataset.overwrite_partitions(files).commit().await.unwrap();
    assert_eq!(committed.commit().rows_removed, 3);
    let dataset = dataset.with_snapshot(committed.snapshot.clone());
    let rows = read_rows(&dataset).await;
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter()
            .filter(|r| r.ends_with("|w/1"))
            .all(|r| r.contains("|9|"))
    );

    let committed = dataset
        .delete_partitions(vec![vec![datafusion::common::ScalarValue::from("w/2")]])
        .commit()
        .await
        .unwrap();
    assert_eq!(committed.commit().rows_removed, 4);
    let dataset = dataset.with_snapshot(committed.snapshot.clone());
    assert_eq!(read_rows(&dataset).await.len(), 2);
}

#[tokio::test]
async fn an_overwrite_conflicts_with_a_concurrent_append_to_the_same_partition() {
    let location = format!("memory://{}/lake", uuid::Uuid::new_v4());
    let base = Dataset::create(&location, schema(), layout())
        .await
        .unwrap();
    let base = append(&base, batch(1, 0, 3)).await;

    let mut writer = base.writer(WriterOptions::default()).unwrap();
    writer.write(batch(1, 5, 2)).await.unwrap();
    let overwrite_files = writer.finish().await.unwrap();

    // Someone else appends to w/1 (and w/3) first.
    append(&base, batch(1, 1, 1)).await;
    // An append to another partition alone would not conflict.
    let err = base
        .overwrite_partitions(overwrite_files)
        .commit()
        .await
        .unwrap_err();
    assert!(
        matches!(err, terrace_format::Error::Conflict { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("writer=w%2F1"), "{err}");
    assert_eq!(Dataset::open(&location).await.unwrap().version(), 2);
}

#[tokio::test]
async fn an_idempotency_key_commits_once() {
    let location = format!("memory://{}/lake", uuid::Uuid::new_v4());
    let dataset = Dataset::create(&location, schema(), layout())
        .await
        .unwrap();
    let mut versions = Vec::new();
    for _ in 0..2 {
        let mut writer = dataset.writer(WriterOptions::default()).unwrap();
        writer.write(batch(1, 0, 3)).await.unwrap();
        let files = writer.finish().await.unwrap();
        let committed = dataset
            .append(files)
            .with_idempotency_key("nightly/2026-11-22")
            .commit()
            .await
            .unwrap();
        versions.push((committed.version(), committed.duplicate_of));
    }
    assert_eq!(versions, vec![(1, None), (1, Some(1))]);
    assert_eq!(
        read_rows(&Dataset::open(&location).await.unwrap())
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn added_nullable_columns_read_as_null_in_older_files() {
    let location = format!("memory://{}/lake", uuid::Uuid::new_v4());
    let dataset = Dataset::create(&location, schema(), layout())
        .await
        .unwrap();
    let dataset = append(&dataset, batch(1, 0, 2)).await;

    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("note", DataType::Utf8, true));
    let evolved = Arc::new(Schema::new(fields));
    let accepted = terrace_format::reconcile(
        &dataset.schema(),
        &evolved,
        terrace_format::SchemaEvolution::AddColumns,
    )
    .unwrap();
    assert_eq!(accepted.fields().len(), 4);
    let base = batch(2, 0, 1);
    let mut columns = base.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![Some("new")])));
    let evolved_batch = RecordBatch::try_new(evolved.clone(), columns).unwrap();
    let mut writer = dataset
        .writer_with_schema(evolved.clone(), WriterOptions::default())
        .unwrap();
    writer.write(evolved_batch).await.unwrap();
    let files = writer.finish().await.unwrap();
    let committed = dataset
        .append(files)
        .with_schema(evolved)
        .commit()
        .await
        .unwrap();
    assert_eq!(committed.schema().fields().len(), 4);

    let reopened = Dataset::open(&location).await.unwrap();
    let rows = read_rows(&reopened).await;
    // Columns sorted by name: note|row|seq|writer.
    assert_eq!(rows, vec!["NULL|0|0|w/1", "NULL|1|0|w/1", "new|0|0|w/2"]);
}
