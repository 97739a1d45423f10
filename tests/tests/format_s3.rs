//! A dataset on an S3 API server (moto on loopback): create, concurrent commits through
//! real conditional puts (`If-None-Match: *`), read back.

use std::sync::Arc;

use arrow::array::{Int32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use terrace_format::{CreateOptions, Dataset, Layout, Location, WriterOptions};
use terrace_tests::{MotoServer, read_rows};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("p", DataType::Int32, false),
        Field::new("v", DataType::Int32, false),
    ]))
}

fn location(server: &MotoServer, url: &str) -> Location {
    Location::parse_with(url, server.env()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_on_s3_each_get_their_own_version() {
    let server = MotoServer::start();
    server.create_bucket("lake");
    let url = "s3://lake/events";
    let options = CreateOptions {
        layout: Layout {
            partition_on: vec!["p".into()],
            ..Layout::default()
        },
        ..CreateOptions::default()
    };
    Dataset::create_at(location(&server, url), schema(), options)
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for w in 0..4 {
        let loc = location(&server, url);
        tasks.push(tokio::spawn(async move {
            let mut dataset = Dataset::open_at(loc).await.unwrap();
            for seq in 0..5 {
                let batch = RecordBatch::try_new(
                    schema(),
                    vec![
                        Arc::new(Int32Array::from(vec![w; 3])),
                        Arc::new(Int32Array::from(vec![seq * 10, seq * 10 + 1, seq * 10 + 2])),
                    ],
                )
                .unwrap();
                let mut writer = dataset.writer(WriterOptions::default()).unwrap();
                writer.write(batch).await.unwrap();
                let files = writer.finish().await.unwrap();
                let committed = dataset.append(files).commit().await.unwrap();
                dataset = dataset.with_snapshot(committed.snapshot.clone());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let dataset = Dataset::open_at(location(&server, url)).await.unwrap();
    assert_eq!(dataset.version(), 20);
    let rows = read_rows(&dataset).await;
    assert_eq!(rows.len(), 60);
    let distinct: std::collections::BTreeSet<_> = rows.iter().collect();
    assert_eq!(distinct.len(), 60);
}

#[tokio::test]
async fn creating_twice_on_s3_is_refused() {
    let server = MotoServer::start();
    server.create_bucket("lake");
    let url = "s3://lake/once";
    Dataset::create_at(location(&server, url), schema(), CreateOptions::default())
        .await
        .unwrap();
    let err = Dataset::create_at(location(&server, url), schema(), CreateOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, terrace_format::Error::DatasetExists { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_store_without_conditional_create_is_refused() {
    let server = MotoServer::start();
    server.create_bucket("lake");
    let mut options = server.env();
    options.push(("aws_conditional_put", "disabled".into()));
    let loc = Location::parse_with("s3://lake/racy", options).unwrap();
    let err = Dataset::create_at(loc, schema(), CreateOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, terrace_format::Error::ConditionalPutUnsupported { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("conditional create"), "{err}");
    let err = Dataset::open_at(location(&server, "s3://lake/racy"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, terrace_format::Error::DatasetNotFound { .. }),
        "{err}"
    );
}
