//! Pruning never drops a file or row group that holds a matching row: for random
//! datasets (real files written with terrace-format into an in-memory store, some with
//! several row groups per file) and random predicates, the rows read by the planned tasks
//! (their files and row-group hints) with exact filtering equal a brute-force scan.
//! Float columns holding NaN (of either sign), infinities, -0.0 and nulls get the same
//! check: Parquet's bounds leave NaN out, and NaN matches `x > 5` or `x <> 1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use proptest::prelude::*;
use terrace_format::{CreateOptions, Dataset, Layout, ScanRequest, WriterOptions, read_data_files};
use terrace_planner::{Predicate, ReadOptions, ReadTask, Region, RegionSample, plan_read, prune};

type Row = (Option<String>, i64, Option<i64>, Option<String>);

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("p", DataType::Utf8, true),
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
    ]))
}

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(rows.iter().map(|r| r.0.clone()).collect::<StringArray>()),
            Arc::new(rows.iter().map(|r| Some(r.1)).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.2).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.3.clone()).collect::<StringArray>()),
        ],
    )
    .unwrap()
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A dataset partitioned on `p`, bucketed by `k` into 4, indexed on `s`, one commit per
/// element of `commits` (so several segments), row groups of `row_group_rows` rows.
async fn dataset(commits: &[Vec<Row>], partitioned: bool) -> Dataset {
    dataset_with_row_groups(commits, partitioned, 1_000_000, &[]).await
}

async fn dataset_with_row_groups(
    commits: &[Vec<Row>],
    partitioned: bool,
    row_group_rows: usize,
    sort_by: &[&str],
) -> Dataset {
    let layout = Layout {
        partition_on: if partitioned {
            vec!["p".into()]
        } else {
            vec![]
        },
        bucket_by: vec!["k".into()],
        num_buckets: Some(4),
    };
    let options = CreateOptions {
        layout,
        indexed_columns: vec!["s".into()],
    };
    let batches: Vec<RecordBatch> = commits
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| batch(r))
        .collect();
    create(schema(), options, &batches, row_group_rows, sort_by).await
}

/// A new dataset with one commit per batch, written with row groups of
/// `row_group_rows` rows sorted by `sort_by`.
async fn create(
    schema: SchemaRef,
    options: CreateOptions,
    commits: &[RecordBatch],
    row_group_rows: usize,
    sort_by: &[&str],
) -> Dataset {
    let name = format!("memory://props{}/ds", NEXT.fetch_add(1, Ordering::SeqCst));
    let mut ds = Dataset::create_with(&name, schema, options).await.unwrap();
    for batch in commits {
        let mut writer = ds
            .writer(WriterOptions {
                upload_part_size: 1 << 16,
                row_group_rows,
                sort_by: sort_by.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            })
            .unwrap();
        writer.write(batch.clone()).await.unwrap();
        let files = writer.finish().await.unwrap();
        let committed = ds.append(files).commit().await.unwrap();
        ds = ds.with_snapshot(committed.snapshot);
    }
    ds
}

fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let options = arrow::util::display::FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            let row: Vec<String> = formatters.iter().map(|f| f.value(i).to_string()).collect();
            rows.push(row.join("|"));
        }
    }
    rows.sort();
    rows
}

async fn brute_force(ds: &Dataset, sql: &str) -> Vec<String> {
    let all = read_data_files(
        ds.store(),
        ds.root().clone(),
        ds.schema(),
        ds.current().layout(),
        ScanRequest::new(ds.files().await.unwrap()),
    )
    .await
    .unwrap()
    .try_collect::<Vec<_>>()
    .await
    .unwrap();
    let ctx = SessionContext::new();
    let mut all = all;
    all.push(RecordBatch::new_empty(ds.schema()));
    let table = datafusion::datasource::MemTable::try_new(ds.schema(), vec![all]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let out = ctx
        .sql(&format!("SELECT * FROM t WHERE {sql}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    lines(&out)
}

async fn read_tasks(ds: &Dataset, tasks: &[ReadTask]) -> Vec<String> {
    let schema = ds.schema();
    let layout = ds.current().layout();
    let mut rows = Vec::new();
    for task in tasks {
        // Through JSON, as the queue carries it.
        let task: ReadTask = serde_json::from_str(&serde_json::to_string(task).unwrap()).unwrap();
        let request = task.scan_request(&schema, layout, None, 1024).unwrap();
        let batches = read_data_files(
            ds.store(),
            ds.root().clone(),
            schema.clone(),
            layout,
            request,
        )
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
        rows.extend(lines(&batches));
    }
    rows.sort();
    rows
}

fn row() -> impl Strategy<Value = Row> {
    (
        prop::option::weighted(
            0.9,
            prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from),
        ),
        0i64..12,
        prop::option::weighted(0.8, -5i64..30),
        prop::option::weighted(
            0.8,
            prop::sample::select(vec!["x", "y", "z", "w"]).prop_map(String::from),
        ),
    )
}

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["a", "b", "c"]).prop_map(|p| format!("p = '{p}'")),
        Just("p IN ('a', 'c')".to_string()),
        Just("p IS NULL".to_string()),
        (0i64..12).prop_map(|k| format!("k = {k}")),
        (0i64..12, 0i64..12).prop_map(|(a, b)| format!("k IN ({a}, {b})")),
        (-6i64..31).prop_map(|v| format!("v > {v}")),
        (-6i64..31).prop_map(|v| format!("v <= {v}")),
        Just("v IS NULL".to_string()),
        prop::sample::select(vec!["x", "y", "z", "q"]).prop_map(|s| format!("s = '{s}'")),
        Just("s IN ('x', 'w')".to_string()),
        (-6i64..31, 0i64..12).prop_map(|(v, w)| format!("v BETWEEN {v} AND {}", v + w)),
    ]
}

fn predicate() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn pruning_keeps_every_matching_row(
        commits in prop::collection::vec(prop::collection::vec(row(), 0..25), 1..4),
        sql in predicate(),
        partitioned in any::<bool>(),
        row_group_rows in prop_oneof![Just(1_000_000usize), 1usize..6],
        sorted in any::<bool>(),
    ) {
        runtime().block_on(async {
            let sort_by: &[&str] = if sorted { &["v"] } else { &[] };
            let ds = dataset_with_row_groups(&commits, partitioned, row_group_rows, sort_by).await;
            let predicate = Predicate::parse(&sql, &ds.schema()).unwrap();
            let expected = brute_force(&ds, &sql).await;
            let pruned = prune(&ds, Some(&predicate)).await.unwrap();
            // Counts only ever go down, step after step.
            for w in pruned.steps.windows(2) {
                prop_assert_eq!(w[0].files_after, w[1].files_before);
            }
            prop_assert!(pruned.steps.iter().all(|s| s.files_after <= s.files_before));
            // One task per file with a target of 0; by default, small files share tasks.
            let per_file = ReadOptions {
                predicate: Some(predicate.clone()),
                target_bytes_per_task: Some(0),
                ..Default::default()
            };
            let plan = plan_read(&ds, &per_file).await.unwrap();
            prop_assert_eq!(plan.tasks.len(), pruned.files.len());
            let plan = plan_read(&ds, &ReadOptions { predicate: Some(predicate), ..Default::default() }).await.unwrap();
            let planned: Vec<&str> = plan.tasks.iter().flat_map(|t| &t.files).map(|f| f.path.as_str()).collect();
            let kept: Vec<&str> = pruned.files.iter().map(|f| f.path.as_str()).collect();
            prop_assert_eq!(planned, kept);
            prop_assert!(plan.tasks.len() <= pruned.files.len().max(1));
            let groups = pruned.steps.last().unwrap();
            prop_assert!(groups.row_groups_after <= groups.row_groups_before);
            let got = read_tasks(&ds, &plan.tasks).await;
            prop_assert_eq!(got, expected, "predicate {}", sql);
            Ok(())
        })?;
    }
}

#[test]
fn point_lookup_prunes_to_one_bucket_and_partition() {
    runtime().block_on(async {
        let rows: Vec<Row> = (0..200)
            .map(|i| {
                (
                    Some(["a", "b", "c"][i % 3].to_string()),
                    (i % 40) as i64,
                    Some(i as i64),
                    Some(["x", "y", "z", "w"][i % 4].to_string()),
                )
            })
            .collect();
        let ds = dataset(&[rows[..100].to_vec(), rows[100..].to_vec()], true).await;
        let total = ds.current().num_files();
        let p = Predicate::parse("p = 'a' AND k = 3", &ds.schema()).unwrap();
        let pruned = prune(&ds, Some(&p)).await.unwrap();
        assert_eq!(pruned.steps[0].files_before, total);
        assert!(pruned.files.len() <= 2, "{:?}", pruned.steps);
        assert!(pruned.files.iter().all(|f| f.path.starts_with("p=a/")));
        // Buckets prune files within the partition.
        let buckets = &pruned.steps[2];
        assert!(
            buckets.files_after < buckets.files_before,
            "{:?}",
            pruned.steps
        );
        // An index lookup on `s` keeps only files holding the value.
        let p = Predicate::parse("s = 'nope'", &ds.schema()).unwrap();
        let pruned = prune(&ds, Some(&p)).await.unwrap();
        assert!(pruned.files.is_empty(), "{:?}", pruned.steps);
        assert!(pruned.steps[3].files_after < pruned.steps[3].files_before);
    });
}

#[test]
fn region_sample_tasks_cover_the_query_exactly_once() {
    runtime().block_on(async {
        // contig in p, position in v, sample in s.
        let mut rows: Vec<Row> = Vec::new();
        for i in 0..300i64 {
            rows.push((
                Some(["chr1", "chr2", "chr3"][(i % 3) as usize].to_string()),
                i % 7,
                Some(i % 100),
                Some(format!("sample{:02}", i % 13)),
            ));
        }
        rows.push((Some("chr1".into()), 1, Some(5), None));
        let ds = dataset(&[rows[..150].to_vec(), rows[150..].to_vec()], true).await;
        let regions = vec![
            Region::new("chr1", 0, 30).unwrap(),
            Region::new("chr1", 20, 50).unwrap(),
            Region::new("chr2", 10, 20).unwrap(),
            Region::new("chr3", 60, 99).unwrap(),
            Region::new("chr3", 70, 80).unwrap(),
        ];
        let predicate = Predicate::parse("k <> 2", &ds.schema()).unwrap();
        let rs = RegionSample {
            contig_column: "p".into(),
            position_column: "v".into(),
            regions,
            region_partitions: 2,
            sample_column: "s".into(),
            sample_partitions: 3,
        };
        let plan = plan_read(
            &ds,
            &ReadOptions {
                predicate: Some(predicate),
                region_sample: Some(rs),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(plan.tasks.len() > 3, "{:#?}", plan.tasks);
        let got = read_tasks(&ds, &plan.tasks).await;
        let expected = brute_force(
            &ds,
            "k <> 2 AND ((p = 'chr1' AND v >= 0 AND v < 50) OR (p = 'chr2' AND v >= 10 AND v < 20) OR (p = 'chr3' AND v >= 60 AND v < 99))",
        )
        .await;
        assert!(!expected.is_empty());
        assert_eq!(got, expected);
    });
}

#[test]
fn dispatch_by_and_grouping() {
    runtime().block_on(async {
        let rows: Vec<Row> = (0..60)
            .map(|i| {
                (
                    Some(["a", "b", "c"][i % 3].to_string()),
                    (i % 8) as i64,
                    Some(i as i64),
                    None,
                )
            })
            .collect();
        let ds = dataset(&[rows.clone(), rows], true).await;
        let plan = plan_read(
            &ds,
            &ReadOptions {
                dispatch_by: Some("p".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let labels: Vec<&str> = plan.tasks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, vec!["p=a", "p=b", "p=c"]);
        for task in &plan.tasks {
            let json = serde_json::to_string(task).unwrap();
            assert_eq!(&serde_json::from_str::<ReadTask>(&json).unwrap(), task);
        }
        let total: usize = plan.tasks.iter().map(|t| t.files.len()).sum();
        assert_eq!(total as u64, ds.current().num_files());
        let plan = plan_read(
            &ds,
            &ReadOptions {
                target_bytes_per_task: Some(u64::MAX),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(plan.tasks.len(), 1);
        let err = plan_read(
            &ds,
            &ReadOptions {
                dispatch_by: Some("v".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("not a partition column"), "{err}");
        let explain = terrace_planner::Explain::new(&plan);
        assert!(explain.to_string().contains("statistics"));
    });
}

#[test]
fn row_group_hints_skip_row_groups_that_cannot_match() {
    runtime().block_on(async {
        let rows: Vec<Row> = (0..400)
            .map(|i| {
                (
                    Some(["a", "b"][i % 2].to_string()),
                    (i % 3) as i64,
                    Some(i as i64),
                    Some(["x", "y"][i % 2].to_string()),
                )
            })
            .collect();
        // Sorted by v with 10-row row groups: each row group covers a narrow v range.
        let ds = dataset_with_row_groups(&[rows], true, 10, &["v"]).await;
        let files = ds.files().await.unwrap();
        assert!(files.iter().all(|f| f.row_groups.len() > 3), "{files:?}");

        let sql = "v >= 100 AND v < 130";
        let predicate = Predicate::parse(sql, &ds.schema()).unwrap();
        let pruned = prune(&ds, Some(&predicate)).await.unwrap();
        let step = pruned.steps.last().unwrap();
        assert_eq!(step.step, terrace_planner::PruneStepKind::RowGroups);
        let (before, after) = (
            step.row_groups_before.unwrap(),
            step.row_groups_after.unwrap(),
        );
        assert!(after * 4 < before, "{step:?}");
        assert!(step.bytes_after < step.bytes_before, "{step:?}");

        let plan = plan_read(
            &ds,
            &ReadOptions {
                predicate: Some(predicate),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let total_rows: u64 = files.iter().map(|f| f.num_rows).sum();
        let planned_rows: u64 = plan.tasks.iter().map(|t| t.num_rows()).sum();
        assert!(
            planned_rows < total_rows / 4,
            "{planned_rows} of {total_rows}"
        );
        assert!(
            plan.tasks
                .iter()
                .all(|t| t.files.iter().all(|f| f.row_groups.is_some()))
        );
        let explain = terrace_planner::Explain::new(&plan);
        assert!(explain.to_string().contains("row groups"), "{explain}");
        assert_eq!(
            read_tasks(&ds, &plan.tasks).await,
            brute_force(&ds, sql).await
        );

        // Region x sample tasks choose row groups with their own predicates.
        let rs = RegionSample {
            contig_column: "p".into(),
            position_column: "v".into(),
            regions: vec![
                Region::new("a", 0, 40).unwrap(),
                Region::new("b", 300, 330).unwrap(),
            ],
            region_partitions: 2,
            sample_column: "s".into(),
            sample_partitions: 2,
        };
        let plan = plan_read(
            &ds,
            &ReadOptions {
                region_sample: Some(rs),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let planned_rows: u64 = plan.tasks.iter().map(|t| t.num_rows()).sum();
        assert!(
            planned_rows < total_rows / 4,
            "{planned_rows} of {total_rows}"
        );
        assert_eq!(
            read_tasks(&ds, &plan.tasks).await,
            brute_force(
                &ds,
                "(p = 'a' AND v >= 0 AND v < 40) OR (p = 'b' AND v >= 300 AND v < 330)"
            )
            .await
        );
    });
}

/// A row of the float dataset: partition, `x` (Float64), `y` (Float32); `id` is the row's
/// position, so every row prints differently.
type FloatRow = (Option<String>, Option<f64>, Option<f32>);

fn float_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("p", DataType::Utf8, true),
        Field::new("id", DataType::Int64, false),
        Field::new("x", DataType::Float64, true),
        Field::new("y", DataType::Float32, true),
    ]))
}

fn float_batch(rows: &[FloatRow], first_id: i64) -> RecordBatch {
    RecordBatch::try_new(
        float_schema(),
        vec![
            Arc::new(rows.iter().map(|r| r.0.clone()).collect::<StringArray>()),
            Arc::new(Int64Array::from_iter_values(
                (0..rows.len() as i64).map(|i| first_id + i),
            )),
            Arc::new(rows.iter().map(|r| r.1).collect::<Float64Array>()),
            Arc::new(rows.iter().map(|r| r.2).collect::<Float32Array>()),
        ],
    )
    .unwrap()
}

/// A dataset of `float_schema`, partitioned on `p` or not, bucketed by `id`, one commit
/// per element of `commits`.
async fn float_dataset(
    commits: &[Vec<FloatRow>],
    partitioned: bool,
    row_group_rows: usize,
    sort_by: &[&str],
) -> Dataset {
    let options = CreateOptions {
        layout: Layout {
            partition_on: if partitioned {
                vec!["p".into()]
            } else {
                vec![]
            },
            bucket_by: vec!["id".into()],
            num_buckets: Some(2),
        },
        indexed_columns: vec![],
    };
    let mut first_id = 0;
    let mut batches = Vec::new();
    for rows in commits.iter().filter(|r| !r.is_empty()) {
        batches.push(float_batch(rows, first_id));
        first_id += rows.len() as i64;
    }
    create(float_schema(), options, &batches, row_group_rows, sort_by).await
}

/// NaN of both signs and another payload, infinities, both zeros, finite values.
const SPECIAL: [f64; 13] = [
    f64::NAN,
    -f64::NAN,
    f64::from_bits(0x7ff8_0000_0000_0001),
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.0,
    -0.0,
    1.5,
    -2.0,
    3.0,
    7.25,
    -1e300,
    1e300,
];

fn float_row() -> impl Strategy<Value = FloatRow> {
    let value = prop_oneof![
        4 => prop::sample::select(SPECIAL.to_vec()),
        1 => (-40i32..40).prop_map(|v| f64::from(v) / 4.0),
    ];
    (
        prop::option::weighted(
            0.9,
            prop::sample::select(vec!["a", "b"]).prop_map(String::from),
        ),
        prop::option::weighted(0.85, value.clone()),
        prop::option::weighted(0.85, value.prop_map(|v| v as f32)),
    )
}

fn float_atom() -> impl Strategy<Value = String> {
    let literal = prop::sample::select(vec![
        "-1e301", "-2", "-0.0", "0", "1.5", "3", "5", "1e300", "'NaN'", "'inf'", "'-inf'",
    ]);
    let op = prop::sample::select(vec!["=", "<>", "<", "<=", ">", ">="]);
    let column = prop::sample::select(vec!["x", "y"]);
    prop_oneof![
        4 => (column.clone(), op, literal.clone()).prop_map(|(c, o, l)| format!("{c} {o} {l}")),
        1 => column.clone().prop_map(|c| format!("{c} IS NULL")),
        1 => column.clone().prop_map(|c| format!("{c} IS NOT NULL")),
        1 => column.clone().prop_map(|c| format!("isnan({c})")),
        1 => column.clone().prop_map(|c| format!("{c} IN (1.5, 3)")),
        1 => (column, literal.clone(), literal)
            .prop_map(|(c, a, b)| format!("{c} BETWEEN {a} AND {b}")),
        1 => Just("x > y".to_string()),
        1 => prop::sample::select(vec!["a", "b"]).prop_map(|p| format!("p = '{p}'")),
    ]
}

fn float_predicate() -> impl Strategy<Value = String> {
    float_atom().prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) OR ({b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Regression: a file with `x = [1.0, NaN]` has Parquet bounds `min = max = 1.0`,
    /// and `x > 5`, `x <> 1` and `x = 'NaN'` returned no row instead of the NaN row.
    #[test]
    fn pruning_keeps_every_matching_row_of_float_columns_with_nan(
        commits in prop::collection::vec(prop::collection::vec(float_row(), 0..20), 1..4),
        sql in float_predicate(),
        partitioned in any::<bool>(),
        row_group_rows in prop_oneof![Just(1_000_000usize), 1usize..5],
        sorted in any::<bool>(),
    ) {
        runtime().block_on(async {
            let sort_by: &[&str] = if sorted { &["x"] } else { &[] };
            let ds = float_dataset(&commits, partitioned, row_group_rows, sort_by).await;
            let predicate = Predicate::parse(&sql, &ds.schema()).unwrap();
            let expected = brute_force(&ds, &sql).await;
            let plan = plan_read(&ds, &ReadOptions {
                predicate: Some(predicate.clone()),
                target_bytes_per_task: Some(0),
                ..Default::default()
            })
            .await
            .unwrap();
            let got = read_tasks(&ds, &plan.tasks).await;
            prop_assert_eq!(got, expected.clone(), "predicate {}", sql);
            // Region x sample tasks prune with the same statistics; x is the sample
            // column, split into ranges whose bounds come from the files' statistics.
            let rs = RegionSample {
                contig_column: "p".into(),
                position_column: "id".into(),
                regions: vec![
                    Region::new("a", 0, 1_000).unwrap(),
                    Region::new("b", 0, 1_000).unwrap(),
                ],
                region_partitions: 2,
                sample_column: "x".into(),
                sample_partitions: 3,
            };
            let plan = plan_read(&ds, &ReadOptions {
                predicate: Some(predicate),
                region_sample: Some(rs),
                ..Default::default()
            })
            .await
            .unwrap();
            let in_regions = brute_force(&ds, &format!("({sql}) AND p IS NOT NULL")).await;
            prop_assert_eq!(read_tasks(&ds, &plan.tasks).await, in_regions, "predicate {}", sql);
            Ok(())
        })?;
    }
}

/// Pruning on a float column still skips files and row groups without NaN, and only
/// those.
#[test]
fn float_pruning_skips_nan_free_files_and_row_groups() {
    runtime().block_on(async {
        let finite: Vec<FloatRow> = (0..40)
            .map(|i| (Some("a".to_string()), Some(f64::from(i)), Some(1.0)))
            .collect();
        let mut with_nan = finite.clone();
        with_nan.push((Some("a".to_string()), Some(f64::NAN), Some(1.0)));
        // Sorted by x in 10-row row groups: NaN sorts last, into the fifth row group.
        let ds = float_dataset(&[finite, with_nan], false, 10, &["x"]).await;
        let files = ds.files().await.unwrap();
        let nans = |f: &terrace_format::DataFile| f.column_stats["x"].nan_count;
        let mut counts: Vec<_> = files.iter().map(nans).collect();
        counts.sort();
        assert_eq!(
            counts,
            vec![Some(0), Some(0), Some(0), Some(1)],
            "{files:#?}"
        );
        let nan_file = files.iter().find(|f| nans(f) == Some(1)).unwrap();
        assert!(
            nan_file.column_stats["x"].max.is_null(),
            "no bounds with NaN"
        );

        for sql in ["x > 100", "x = 'NaN'"] {
            let predicate = Predicate::parse(sql, &ds.schema()).unwrap();
            let pruned = prune(&ds, Some(&predicate)).await.unwrap();
            // Only the file holding the NaN is left, and of it only the NaN's row group.
            assert_eq!(pruned.files.len(), 1, "{sql}: {:?}", pruned.steps);
            assert_eq!(nans(&pruned.files[0]), Some(1));
            let hint = pruned.row_groups[0].as_ref().unwrap();
            let groups = &pruned.files[0].row_groups;
            assert_eq!(hint.read.len(), 1, "{sql}: {hint:?}");
            assert_eq!(groups[hint.read[0]].column_stats["x"].nan_count, Some(1));
            let plan = plan_read(
                &ds,
                &ReadOptions {
                    predicate: Some(predicate),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let got = read_tasks(&ds, &plan.tasks).await;
            assert_eq!(got, brute_force(&ds, sql).await);
            assert_eq!(got.len(), 1, "{sql}: the NaN row");
        }
    });
}

/// Files listed by segments written before NaN counts existed have none: their float
/// bounds (which left NaN out) are not pruned on, by the planner or the reader.
#[test]
fn files_without_nan_counts_are_not_pruned_on_float_columns() {
    runtime().block_on(async {
        let rows: Vec<FloatRow> = vec![
            (Some("a".into()), Some(1.0), Some(1.0)),
            (Some("a".into()), Some(f64::NAN), Some(f32::NAN)),
        ];
        let name = format!("memory://props{}/ds", NEXT.fetch_add(1, Ordering::SeqCst));
        let ds = Dataset::create(&name, float_schema(), Layout::default())
            .await
            .unwrap();
        let mut writer = ds.writer(WriterOptions::default()).unwrap();
        writer.write(float_batch(&rows, 0)).await.unwrap();
        let mut files = writer.finish().await.unwrap();
        // What the writer recorded before: Parquet's NaN-free bounds and no count.
        for file in &mut files {
            for (column, bound) in [
                ("x", ScalarValue::Float64(Some(1.0))),
                ("y", ScalarValue::Float32(Some(1.0))),
            ] {
                let stats = file.column_stats.get_mut(column).unwrap();
                stats.min = bound.clone();
                stats.max = bound;
                stats.nan_count = None;
            }
        }
        let committed = ds.append(files).commit().await.unwrap();
        let ds = ds.with_snapshot(committed.snapshot);
        assert!(
            ds.files().await.unwrap()[0].column_stats["x"]
                .nan_count
                .is_none()
        );
        for sql in ["x > 5", "x <> 1.0", "x = 'NaN'", "y > 5", "NOT (x <= 1)"] {
            let predicate = Predicate::parse(sql, &ds.schema()).unwrap();
            let plan = plan_read(
                &ds,
                &ReadOptions {
                    predicate: Some(predicate),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            let got = read_tasks(&ds, &plan.tasks).await;
            assert_eq!(got, brute_force(&ds, sql).await, "{sql}");
            assert_eq!(got.len(), 1, "{sql}: the NaN row");
        }
    });
}
