//! Listing, inferring, splitting and reading ingest inputs from local files.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use terrace_planner::{
    Error, InputFormat, WriteOptions, infer_schema, list_inputs, plan_write, read_split,
    split_inputs,
};

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

async fn rows(
    split: terrace_planner::InputSplit,
    schema: arrow::datatypes::SchemaRef,
) -> terrace_planner::Result<usize> {
    let batches: Vec<RecordBatch> = read_split(split, schema).try_collect().await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

#[tokio::test]
async fn csv_glob_infer_split_read() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.csv", "origin,n\nJFK,1\nLGA,2\n");
    write(dir.path(), "b.csv", "origin,n\nEWR,3\n");
    write(dir.path(), "skip.txt", "x");
    let pattern = format!("{}/*.csv", dir.path().display());
    let files = list_inputs(&[pattern], None).await.unwrap();
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| f.format == InputFormat::Csv));
    let schema = infer_schema(&files, 8).await.unwrap();
    assert_eq!(schema.field(1).data_type(), &DataType::Int64);
    let splits = split_inputs(&files, 1 << 20).await.unwrap();
    assert_eq!(splits.len(), 1, "small files are grouped");
    assert_eq!(rows(splits[0].clone(), schema.clone()).await.unwrap(), 3);
    let splits = split_inputs(&files, 1).await.unwrap();
    assert_eq!(splits.len(), 2);
    let plan = plan_write(
        splits,
        &schema,
        WriteOptions {
            job_id: "j".into(),
            dataset: "/tmp/x".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(plan.num_tasks(), 3);
}

/// Whole-second timestamps (nycflights13's time_hour) are read as milliseconds: Parquet
/// has no logical type for seconds, and other readers would see bare integers.
#[tokio::test]
async fn csv_and_json_timestamps_are_read_as_milliseconds() {
    use arrow::array::{Array, TimestampMillisecondArray};
    use arrow::datatypes::TimeUnit;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.csv", "time_hour,n\n2013-01-01T10:00:00Z,1\n");
    write(
        dir.path(),
        "t.jsonl",
        "{\"time_hour\": \"2013-01-01T10:00:00Z\"}\n",
    );
    for name in ["t.csv", "t.jsonl"] {
        let files = list_inputs(&[format!("{}/{name}", dir.path().display())], None)
            .await
            .unwrap();
        let schema = infer_schema(&files, 8).await.unwrap();
        if name.ends_with(".csv") {
            assert_eq!(
                schema.field(0).data_type(),
                &DataType::Timestamp(TimeUnit::Millisecond, None),
                "{name}"
            );
            let splits = split_inputs(&files, 1 << 20).await.unwrap();
            let batches: Vec<RecordBatch> = read_split(splits[0].clone(), schema)
                .try_collect()
                .await
                .unwrap();
            let times = batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            assert_eq!(times.value(0), 1_357_034_400_000);
            assert_eq!(times.len(), 1);
        } else {
            assert!(
                !matches!(
                    schema.field(0).data_type(),
                    DataType::Timestamp(TimeUnit::Second, _)
                ),
                "{name}: {schema:?}"
            );
        }
    }
}

#[tokio::test]
async fn csv_bad_row_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.csv", "origin,n\nJFK,1\nLGA,2\nEWR,oops\n");
    let files = list_inputs(std::slice::from_ref(&path), None)
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("origin", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let splits = split_inputs(&files, 1 << 20).await.unwrap();
    let err = rows(splits[0].clone(), schema).await.unwrap_err();
    match &err {
        Error::BadRow { path: p, line, .. } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 4, "{err}");
        }
        other => panic!("{other}"),
    }
    let path = write(dir.path(), "short.csv", "origin,n\nJFK,1\nLGA\n");
    let files = list_inputs(&[path], None).await.unwrap();
    let splits = split_inputs(&files, 1 << 20).await.unwrap();
    let err = rows(splits[0].clone(), files_schema()).await.unwrap_err();
    assert!(matches!(err, Error::BadRow { line: 3, .. }), "{err}");
}

fn files_schema() -> arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("origin", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]))
}

#[tokio::test]
async fn mixed_schemas_missing_and_empty_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "origin,n\nJFK,1\n");
    let b = write(dir.path(), "b.csv", "origin,n\nJFK,x\n");
    let files = list_inputs(&[a.clone(), b.clone()], None).await.unwrap();
    let err = infer_schema(&files, 8).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("a.csv") && text.contains("b.csv") && text.contains("\"n\""),
        "{text}"
    );

    let err = list_inputs(&[format!("{}/*.parquet", dir.path().display())], None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EmptyGlob { .. }), "{err}");
    let err = list_inputs(&[format!("{}/nope.csv", dir.path().display())], None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");
}

#[tokio::test]
async fn jsonl_and_parquet_by_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let j = write(
        dir.path(),
        "a.jsonl",
        "{\"a\": 1, \"s\": \"x\"}\n{\"a\": 2, \"s\": \"y\"}\n",
    );
    let files = list_inputs(&[j], None).await.unwrap();
    let schema = infer_schema(&files, 1).await.unwrap();
    let splits = split_inputs(&files, 1 << 20).await.unwrap();
    assert_eq!(rows(splits[0].clone(), schema.clone()).await.unwrap(), 2);
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"a\": 1, \"s\": \"x\"}\n{\"a\": \"zz\"}\n",
    );
    let files = list_inputs(&[bad], None).await.unwrap();
    let splits = split_inputs(&files, 1 << 20).await.unwrap();
    let err = rows(splits[0].clone(), schema).await.unwrap_err();
    assert!(matches!(err, Error::BadRow { line: 2, .. }), "{err}");

    // A Parquet file with 10 row groups, split by row groups.
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]));
    let path = dir.path().join("p.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(100))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..1000)),
            Arc::new(StringArray::from_iter_values(
                (0..1000).map(|i| format!("v{i}")),
            )),
        ],
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let files = list_inputs(&[path.to_string_lossy().into_owned()], None)
        .await
        .unwrap();
    let inferred = infer_schema(&files, 1).await.unwrap();
    assert_eq!(inferred.fields(), schema.fields());
    let target = files[0].size_bytes / 4;
    let splits = split_inputs(&files, target).await.unwrap();
    assert!(splits.len() >= 3, "{splits:?}");
    let mut total = 0;
    for split in splits {
        total += rows(split, inferred.clone()).await.unwrap();
    }
    assert_eq!(total, 1000);
}
