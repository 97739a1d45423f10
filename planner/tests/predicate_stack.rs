//! Predicates at the size limits, walked on a worker's stack. Tokio's worker threads
//! have 2 MiB; a `--where` of a few thousand OR terms used to overflow one (left-deep
//! trees, one level per term) and abort the process. Here each predicate is parsed,
//! planned (pruning on statistics, buckets and indices), scanned with the predicate
//! pushed into the Parquet reader, displayed, cloned and dropped on a thread of that
//! size: the long flat chains and the deepest, widest predicate the limits let through.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use terrace_format::{CreateOptions, Dataset, Layout, WriterOptions, read_data_files};
use terrace_planner::{MAX_NESTING, MAX_OPERATORS, MAX_TERMS, Predicate, ReadOptions, plan_read};

const ROWS: i64 = 5_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
        Field::new("g", DataType::Int64, false),
    ]))
}

async fn dataset() -> Dataset {
    let name = format!("memory://stack{}/ds", uuid::Uuid::new_v4().simple());
    let options = CreateOptions {
        layout: Layout {
            partition_on: vec!["g".into()],
            bucket_by: vec!["k".into()],
            num_buckets: Some(4),
        },
        indexed_columns: vec!["s".into()],
    };
    let mut ds = Dataset::create_with(&name, schema(), options)
        .await
        .unwrap();
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..ROWS)),
            Arc::new(StringArray::from_iter_values(
                (0..ROWS).map(|k| format!("s{}", k % 97)),
            )),
            Arc::new(Int64Array::from_iter_values((0..ROWS).map(|k| k % 3))),
        ],
    )
    .unwrap();
    let mut writer = ds
        .writer(WriterOptions {
            row_group_rows: 1_000,
            ..Default::default()
        })
        .unwrap();
    writer.write(batch).await.unwrap();
    let files = writer.finish().await.unwrap();
    let committed = ds.append(files).commit().await.unwrap();
    ds = ds.with_snapshot(committed.snapshot);
    ds
}

/// Parse, plan, scan; returns the rows read.
async fn run(ds: &Dataset, sql: &str) -> usize {
    let schema = ds.schema();
    let predicate = Predicate::parse(sql, &schema).unwrap_or_else(|e| panic!("{e}"));
    // Display, Clone and Drop of the whole expression.
    let shown = predicate.expr().to_string();
    assert!(!shown.is_empty());
    drop(predicate.clone());
    let plan = plan_read(
        ds,
        &ReadOptions {
            predicate: Some(predicate),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut rows = 0;
    for task in &plan.tasks {
        // Through JSON and parsed again, as a worker does.
        let task: terrace_planner::ReadTask =
            serde_json::from_str(&serde_json::to_string(task).unwrap()).unwrap();
        let request = task
            .scan_request(&schema, ds.current().layout(), None, 1024)
            .unwrap();
        let batches: Vec<RecordBatch> = read_data_files(
            ds.store(),
            ds.root().clone(),
            schema.clone(),
            ds.current().layout(),
            request,
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
        rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    }
    rows
}

/// Run `f` on a thread with a tokio worker's stack (2 MiB) and a runtime of its own.
fn on_a_worker_stack<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send + 'static,
) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
        .unwrap()
        .join()
        .expect("the thread finished (a stack overflow aborts the process instead)")
}

#[test]
fn long_chains_plan_and_scan_on_a_worker_stack() {
    let rows = on_a_worker_stack(|| {
        Box::pin(async {
            let ds = dataset().await;
            let or: Vec<String> = (0..10_000).map(|i| format!("k = {}", i * 3)).collect();
            let or_rows = run(&ds, &or.join(" OR ")).await;
            let and: Vec<String> = (0..10_000).map(|i| format!("k <> {}", i * 2)).collect();
            let and_rows = run(&ds, &and.join(" AND ")).await;
            let mixed: Vec<String> = (0..5_000)
                .map(|i| format!("(s = 's{}' AND k > {i})", i % 97))
                .collect();
            let mixed_rows = run(&ds, &mixed.join(" OR ")).await;
            (or_rows, and_rows, mixed_rows)
        })
    });
    assert_eq!(rows.0, (ROWS as usize).div_ceil(3));
    assert_eq!(rows.1, (ROWS / 2) as usize);
    assert!(rows.2 > 0);
}

/// The deepest and widest predicate the limits accept: groups nested to the limit,
/// alternating AND and OR, each level as wide as the term limit allows, with the nested
/// group last (deepest in the balanced tree) and an innermost operand with the most
/// operators one operand may have.
#[test]
fn the_largest_predicate_the_limits_accept_plans_and_scans_on_a_worker_stack() {
    let levels = MAX_NESTING - 2;
    let width = MAX_TERMS / (levels + 1) - 1;
    let mut sql = format!(
        "k = 0{}",
        " + 0".repeat(MAX_OPERATORS - 1) // `=` is one operator, each `+` one more
    );
    for level in 0..levels {
        let (op, term) = if level % 2 == 0 {
            ("OR", "k = 7")
        } else {
            ("AND", "k >= 0")
        };
        let mut terms = vec![term.to_string(); width];
        terms.push(format!("({sql})"));
        sql = terms.join(&format!(" {op} "));
    }
    let rows =
        on_a_worker_stack(move || Box::pin(async move { run(&dataset().await, &sql).await }));
    assert!(rows >= 1);
}
