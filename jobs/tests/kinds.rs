//! The job kinds run by in-process workers on a SQLite queue against a real local
//! dataset: ingest with and without shuffle, overwrite, idempotency keys, queries with
//! map/reduce and limits, partition deletes and gc.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, StringArray};
use futures::TryStreamExt;
use terrace_format::{Dataset, Layout};
use terrace_jobs::kinds::{
    IngestMode, IngestRequest, IngestSpec, QueryRequest, QueryResult, ShuffleMethod, WritePath,
    plan_delete, plan_gc, plan_ingest, plan_query, read_query_result,
};
use terrace_jobs::{JobRecord, JobState};

mod common;
use common::Env;

fn write_csv(dir: &Path, name: &str, rows: std::ops::Range<i64>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = String::from("id,origin,tail,delay\n");
    for i in rows {
        text.push_str(&format!(
            "{i},{},N{},{}\n",
            ["EWR", "JFK", "LGA"][(i % 3) as usize],
            i % 17,
            i % 50
        ));
    }
    std::fs::write(dir.join(name), text).unwrap();
}

fn layout() -> Layout {
    Layout {
        partition_on: vec!["origin".into()],
        bucket_by: vec!["tail".into()],
        num_buckets: Some(4),
    }
}

async fn ids(dataset: &str) -> Vec<i64> {
    let ds = Dataset::open(dataset).await.unwrap();
    let rows = terrace_format::read_data_files(
        ds.store(),
        ds.root().clone(),
        ds.schema(),
        ds.current().layout(),
        terrace_format::ScanRequest {
            projection: Some(vec!["id".into()]),
            ..terrace_format::ScanRequest::new(ds.files().await.unwrap())
        },
    )
    .await
    .unwrap()
    .try_collect::<Vec<_>>()
    .await
    .unwrap();
    let mut out: Vec<i64> = rows
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            a.values().to_vec()
        })
        .collect();
    out.sort_unstable();
    out
}

fn succeeded(job: &JobRecord) {
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
}

/// Ingest ids `0..rows` from two CSV files, one map task each, with a shuffle through
/// staged pieces into a dataset partitioned on origin (and indexing `index_columns`);
/// the job and the files.
async fn shuffle_two_files(
    env: &Env,
    rows: i64,
    index_columns: Vec<String>,
) -> (String, JobRecord, Vec<terrace_format::DataFile>) {
    let input = env.dir.path().join("in");
    write_csv(&input, "a.csv", 0..rows / 2);
    write_csv(&input, "b.csv", rows / 2..rows);
    let dataset = env.path("lake");
    let job = env
        .run(
            plan_ingest(IngestRequest {
                inputs: vec![format!("{}/*.csv", input.display())],
                dataset: dataset.clone(),
                layout: Layout {
                    partition_on: vec!["origin".into()],
                    ..Layout::default()
                },
                index_columns,
                split_bytes: Some(1),
                shuffle: Some(true),
                shuffle_method: Some(ShuffleMethod::Pieces),
                ..Default::default()
            })
            .await
            .unwrap(),
        )
        .await;
    succeeded(&job);
    let files = Dataset::open(&dataset)
        .await
        .unwrap()
        .files()
        .await
        .unwrap();
    (dataset, job, files)
}

/// Pieces big enough are combined by copying their row groups: each (partition, bucket)
/// file then has one row group per map task, and every row is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffle_combines_big_pieces_by_their_row_groups() {
    let env = Env::new().await;
    let (dataset, job, files) = shuffle_two_files(&env, 240_000, Vec::new()).await;
    // Regression: map and reduce both counted their rows and bytes, so a shuffle ingest
    // reported twice the rows and the staged pieces' bytes on top of the dataset's.
    assert_eq!(job.rows, 240_000, "rows counted once");
    let written: u64 = files.iter().map(|f| f.size_bytes).sum();
    assert_eq!(job.bytes, written as i64, "bytes of the dataset's files");
    assert_eq!(files.len(), 3, "one file per origin");
    for file in &files {
        // 40,000 rows of each map task: worth copying, so two row groups.
        assert_eq!(file.row_groups.len(), 2, "{}", file.path);
        let rows: u64 = file.row_groups.iter().map(|rg| rg.num_rows).sum();
        assert_eq!(rows, file.num_rows);
        assert!(!file.path.contains("_terrace"), "{}", file.path);
    }
    assert_eq!(ids(&dataset).await, (0..240_000).collect::<Vec<_>>());
    let staging = std::path::Path::new(&dataset).join("_terrace/staging");
    let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the commit removed the staged pieces");
}

/// A shuffle through sorted runs makes the same dataset as one through pieces, at a
/// group count where pieces cost a file per map task and group: every group is one file
/// holding its rows from every map task, with the same partition values and buckets, and
/// the staging is gone after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffle_through_runs_writes_the_dataset_a_shuffle_through_pieces_does() {
    let env = Env::new().await;
    let input = env.dir.path().join("in");
    for (name, rows) in [
        ("a.csv", 0..3_000),
        ("b.csv", 3_000..6_000),
        ("c.csv", 6_000..9_000),
    ] {
        write_csv(&input, name, rows);
    }
    let mut datasets = Vec::new();
    for method in [ShuffleMethod::Runs, ShuffleMethod::Pieces] {
        let dataset = env.path(&format!("lake-{method:?}"));
        let job = env
            .run(
                plan_ingest(IngestRequest {
                    inputs: vec![format!("{}/*.csv", input.display())],
                    dataset: dataset.clone(),
                    // 3 origins x 17 tails x 4 buckets: 204 groups.
                    layout: Layout {
                        partition_on: vec!["origin".into(), "tail".into()],
                        bucket_by: vec!["id".into()],
                        num_buckets: Some(4),
                    },
                    index_columns: vec!["delay".into()],
                    split_bytes: Some(1),
                    shuffle: Some(true),
                    shuffle_method: Some(method),
                    ..Default::default()
                })
                .await
                .unwrap(),
            )
            .await;
        succeeded(&job);
        // The map tasks say what they staged: run descriptions, or file reports.
        let reported: Vec<bool> = env
            .queue
            .stage_results(job.id, 0)
            .await
            .unwrap()
            .iter()
            .map(|(_, result)| result.get("runs_report").is_some())
            .collect();
        assert_eq!(reported.len(), 3, "{method:?}: a map task per input");
        let through_runs = method == ShuffleMethod::Runs;
        assert!(
            reported.iter().all(|&r| r == through_runs),
            "{method:?}: {reported:?}"
        );
        assert_eq!(job.rows, 9_000, "{method:?}: rows counted once");
        assert_eq!(
            ids(&dataset).await,
            (0..9_000).collect::<Vec<_>>(),
            "{method:?}"
        );
        let staging = std::path::Path::new(&dataset).join("_terrace/staging");
        let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "{method:?}: the commit removed the staging");
        let mut groups: Vec<(String, Option<u32>, u64)> = Dataset::open(&dataset)
            .await
            .unwrap()
            .files()
            .await
            .unwrap()
            .iter()
            .map(|f| {
                let dir = f.path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
                (dir, f.bucket, f.num_rows)
            })
            .collect();
        groups.sort();
        assert_eq!(groups.len(), 204, "{method:?}: one file per group");
        datasets.push(groups);
    }
    assert_eq!(
        datasets[0], datasets[1],
        "the same groups, buckets and rows"
    );
}

/// Without `shuffle_method`, a shuffle of many groups goes through runs and one of few
/// through pieces, as a sample of the first input counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shuffle_is_chosen_by_the_number_of_groups_in_the_inputs() {
    let env = Env::new().await;
    let input = env.dir.path().join("in");
    write_csv(&input, "a.csv", 0..3_000);
    write_csv(&input, "b.csv", 3_000..6_000);
    // 3 origins: 3 groups; 3 origins x 17 tails x 8 buckets: 408 groups.
    let few = Layout {
        partition_on: vec!["origin".into()],
        ..Layout::default()
    };
    let many = Layout {
        partition_on: vec!["origin".into(), "tail".into()],
        bucket_by: vec!["id".into()],
        num_buckets: Some(8),
    };
    for (name, layout, through_runs) in [("few", few, false), ("many", many, true)] {
        let dataset = env.path(name);
        let job = env
            .run(
                plan_ingest(IngestRequest {
                    inputs: vec![format!("{}/*.csv", input.display())],
                    dataset: dataset.clone(),
                    layout,
                    split_bytes: Some(1),
                    shuffle: Some(true),
                    ..Default::default()
                })
                .await
                .unwrap(),
            )
            .await;
        succeeded(&job);
        let results = env.queue.stage_results(job.id, 0).await.unwrap();
        assert_eq!(results.len(), 2, "{name}: a map task per input");
        for (_, result) in &results {
            assert_eq!(
                result.get("runs_report").is_some(),
                through_runs,
                "{name}: {result}"
            );
        }
        assert_eq!(
            ids(&dataset).await,
            (0..6_000).collect::<Vec<_>>(),
            "{name}"
        );
    }
}

/// Without a shuffle asked for or refused, the plan picks the path and the job's spec
/// says which and why: a direct write where it already makes one file per group (one
/// group, or one split of few groups), a shuffle elsewhere, through runs for many groups
/// even from one split. Each path writes every row; the shuffled ones a file per group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_picks_the_path_unless_the_request_says() {
    let env = Env::new().await;
    let input = env.dir.path().join("in");
    write_csv(&input, "a.csv", 0..3_000);
    write_csv(&input, "b.csv", 3_000..6_000);
    let one_file = format!("{}/a.csv", input.display());
    let both = format!("{}/*.csv", input.display());
    let origins = Layout {
        partition_on: vec!["origin".into()],
        ..Layout::default()
    };
    // 3 origins x 17 tails x 8 buckets: 408 groups.
    let many = Layout {
        partition_on: vec!["origin".into(), "tail".into()],
        bucket_by: vec!["id".into()],
        num_buckets: Some(8),
    };
    let runs = WritePath::Shuffle(ShuffleMethod::Runs);
    let pieces = WritePath::Shuffle(ShuffleMethod::Pieces);
    let cases = [
        (
            "one group",
            Layout::default(),
            &both,
            None,
            WritePath::Direct,
        ),
        (
            "one split",
            origins.clone(),
            &one_file,
            None,
            WritePath::Direct,
        ),
        ("two splits", origins.clone(), &both, None, pieces),
        ("many groups", many.clone(), &one_file, None, runs),
        ("refused", many, &both, Some(false), WritePath::Direct),
    ];
    for (name, layout, inputs, shuffle, path) in cases {
        let dataset = env.path(name);
        let job = env
            .run(
                plan_ingest(IngestRequest {
                    inputs: vec![inputs.clone()],
                    dataset: dataset.clone(),
                    layout,
                    split_bytes: Some(1),
                    shuffle,
                    ..Default::default()
                })
                .await
                .unwrap(),
            )
            .await;
        succeeded(&job);
        let spec: IngestSpec = serde_json::from_value(job.spec.clone()).unwrap();
        let pick = spec.path.expect("the spec keeps the pick");
        assert_eq!(pick.path, path, "{name}: {}", pick.why);
        assert!(!pick.why.is_empty(), "{name}");
        let rows = if inputs == &one_file { 3_000 } else { 6_000 };
        assert_eq!(ids(&dataset).await, (0..rows).collect::<Vec<_>>(), "{name}");
        let files = Dataset::open(&dataset)
            .await
            .unwrap()
            .files()
            .await
            .unwrap();
        let mut per_group: HashMap<String, usize> = HashMap::new();
        for file in &files {
            *per_group
                .entry(format!("{:?} {:?}", file.partition_values, file.bucket))
                .or_default() += 1;
        }
        let most = per_group.values().copied().max().unwrap_or(0);
        match (name, path) {
            ("one group", _) => assert_eq!(files.len(), 2, "{name}: a file per split"),
            ("refused", _) => assert!(most > 1, "{name}: a file per split and group"),
            (_, _) => assert_eq!(most, 1, "{name}: a file per group"),
        }
        if name == "two splits" {
            assert_eq!(files.len(), 3, "{name}: one file per origin");
        }
    }
}

/// A dataset with a secondary index is combined by copying too, and each combined file's
/// index holds the values of every piece: a lookup of a value from either map task's
/// input finds its file, and only that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffle_with_an_index_combines_pieces_and_keeps_every_value() {
    let env = Env::new().await;
    let (dataset, _, files) = shuffle_two_files(&env, 120_000, vec!["id".into()]).await;
    assert_eq!(files.len(), 3, "one file per origin");
    for file in &files {
        // 20,000 rows of each map task: copied, not encoded again.
        assert_eq!(file.row_groups.len(), 2, "{}", file.path);
    }
    // 7 is in a.csv (the first map task), 100,000 in b.csv (the second).
    for id in [7i64, 100_000] {
        let request = QueryRequest {
            dataset: dataset.clone(),
            predicate: Some(format!("id = {id}")),
            ..Default::default()
        };
        let (_, plan) = plan_query(request.clone()).await.unwrap();
        let opened: usize = plan.tasks.iter().map(|t| t.files.len()).sum();
        assert_eq!(opened, 1, "the index leaves the one file holding id {id}");
        let rows = query_rows(&env, request).await;
        let ids: Vec<i64> = rows
            .iter()
            .flat_map(|b| {
                let column = b.column_by_name("id").unwrap();
                let a = column.as_any().downcast_ref::<Int64Array>().unwrap();
                a.values().to_vec()
            })
            .collect();
        assert_eq!(ids, vec![id]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_without_and_with_shuffle_then_overwrite() {
    let env = Env::new().await;
    let input = env.dir.path().join("in");
    for f in 0..4 {
        write_csv(&input, &format!("f{f}.csv"), f * 100..(f + 1) * 100);
    }
    let dataset = env.path("lake");
    let request = IngestRequest {
        inputs: vec![format!("{}/*.csv", input.display())],
        dataset: dataset.clone(),
        layout: layout(),
        split_bytes: Some(1),
        shuffle: Some(false),
        ..Default::default()
    };
    let job = env.run(plan_ingest(request.clone()).await.unwrap()).await;
    succeeded(&job);
    assert_eq!(job.tasks_total, 5, "4 write tasks and the commit");
    assert_eq!(job.rows, 400);
    assert_eq!(ids(&dataset).await, (0..400).collect::<Vec<_>>());
    let no_shuffle_files = Dataset::open(&dataset).await.unwrap().current().num_files();

    // Shuffle: one file per (partition, bucket), whatever the number of splits.
    let shuffled = env.path("lake-shuffled");
    let job = env
        .run(
            plan_ingest(IngestRequest {
                dataset: shuffled.clone(),
                shuffle: Some(true),
                sort_by: vec!["id".into()],
                ..request.clone()
            })
            .await
            .unwrap(),
        )
        .await;
    succeeded(&job);
    let ds = Dataset::open(&shuffled).await.unwrap();
    assert_eq!(ids(&shuffled).await, (0..400).collect::<Vec<_>>());
    let files = ds.files().await.unwrap();
    let mut keys: Vec<_> = files
        .iter()
        .map(|f| (format!("{:?}", f.partition_values), f.bucket))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "one file per (partition, bucket)");
    assert!(n < no_shuffle_files as usize, "{n} vs {no_shuffle_files}");
    let staging = std::path::Path::new(&shuffled).join("_terrace/staging");
    let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the commit removed the run's staging files");

    // Overwrite the partitions written by a smaller input: JFK keeps only the new rows.
    let small = env.dir.path().join("small");
    write_csv(&small, "s.csv", 1000..1003);
    let job = env
        .run(
            plan_ingest(IngestRequest {
                inputs: vec![format!("{}/s.csv", small.display())],
                mode: IngestMode::Overwrite,
                layout: Layout::default(),
                ..request.clone()
            })
            .await
            .unwrap(),
        )
        .await;
    succeeded(&job);
    let left = ids(&dataset).await;
    assert!(left.contains(&1000) && left.contains(&1001) && left.contains(&1002));
    assert_eq!(left.len(), 3, "every partition was overwritten: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_commits_once() {
    let env = Env::new().await;
    let input = env.dir.path().join("in");
    write_csv(&input, "a.csv", 0..50);
    let request = IngestRequest {
        inputs: vec![format!("{}/a.csv", input.display())],
        dataset: env.path("lake"),
        idempotency_key: Some("nightly:2026-11-22".into()),
        ..Default::default()
    };
    succeeded(&env.run(plan_ingest(request.clone()).await.unwrap()).await);
    let again = env.run(plan_ingest(request.clone()).await.unwrap()).await;
    succeeded(&again);
    let result = again.result.unwrap();
    assert_eq!(result["committed"], false, "{result}");
    assert_eq!(result["duplicate_of"], 1, "{result}");
    assert_eq!(ids(&request.dataset).await.len(), 50);
}

async fn query_rows(env: &Env, request: QueryRequest) -> Vec<arrow::record_batch::RecordBatch> {
    let (job, _plan) = plan_query(request).await.unwrap();
    let job = env.run(job).await;
    succeeded(&job);
    let result = QueryResult::of_job(&job).unwrap();
    read_query_result(&result)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_map_reduce_and_limit() {
    let env = Env::new().await;
    let input = env.dir.path().join("in");
    for f in 0..3 {
        write_csv(&input, &format!("f{f}.csv"), f * 300..(f + 1) * 300);
    }
    let dataset = env.path("lake");
    succeeded(
        &env.run(
            plan_ingest(IngestRequest {
                inputs: vec![format!("{}/*.csv", input.display())],
                dataset: dataset.clone(),
                layout: layout(),
                split_bytes: Some(1),
                ..Default::default()
            })
            .await
            .unwrap(),
        )
        .await,
    );

    let rows = query_rows(
        &env,
        QueryRequest {
            dataset: dataset.clone(),
            predicate: Some("origin = 'JFK' AND delay >= 40".into()),
            columns: Some(vec!["id".into(), "origin".into()]),
            ..Default::default()
        },
    )
    .await;
    let mut got: Vec<i64> = rows
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            a.values().to_vec()
        })
        .collect();
    got.sort_unstable();
    let want: Vec<i64> = (0..900).filter(|i| i % 3 == 1 && i % 50 >= 40).collect();
    assert_eq!(got, want);

    let rows = query_rows(
        &env,
        QueryRequest {
            dataset: dataset.clone(),
            map_sql: Some(
                "SELECT origin, count(*) AS n, sum(delay) AS d FROM part GROUP BY origin".into(),
            ),
            reduce_sql: Some(
                "SELECT origin, sum(n) AS n, sum(d) AS d FROM parts GROUP BY origin ORDER BY origin"
                    .into(),
            ),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows.len(), 1);
    let origins = rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let counts = rows[0]
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let sums = rows[0]
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    for (i, origin) in ["EWR", "JFK", "LGA"].iter().enumerate() {
        assert_eq!(origins.value(i), *origin);
        assert_eq!(counts.value(i), 300);
        let want: i64 = (0..900).filter(|x| x % 3 == i as i64).map(|x| x % 50).sum();
        assert_eq!(sums.value(i), want);
    }

    // A map reads stored strings as views; what it returns has the planned plain types.
    let rows = query_rows(
        &env,
        QueryRequest {
            dataset: dataset.clone(),
            predicate: Some("tail >= 'N5'".into()),
            map_sql: Some(
                "SELECT tail, lower(tail) AS low, count(*) AS n FROM part GROUP BY tail".into(),
            ),
            reduce_sql: Some(
                "SELECT tail, low, sum(n) AS n FROM parts GROUP BY tail, low ORDER BY tail".into(),
            ),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows.len(), 1);
    let strings = |i: usize| {
        rows[0]
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap_or_else(|| panic!("column {i} is {}", rows[0].column(i).data_type()))
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(strings(0), ["N5", "N6", "N7", "N8", "N9"]);
    assert_eq!(strings(1), ["n5", "n6", "n7", "n8", "n9"]);
    let counts = rows[0]
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    // 900 ids, tail N(id % 17): 53 of each of these.
    assert_eq!(counts.values().to_vec(), vec![53; 5]);

    // A map's read tasks decode only the columns its SQL uses.
    let map_plan = |sql: &str| {
        let request = QueryRequest {
            dataset: dataset.clone(),
            map_sql: Some(sql.to_string()),
            ..Default::default()
        };
        async move {
            let (_, plan) = plan_query(request).await.unwrap();
            plan.tasks[0].projection.clone()
        }
    };
    let columns = |names: &[&str]| Some(names.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    assert_eq!(
        map_plan("SELECT origin, count(*) AS n, sum(delay) AS d FROM part GROUP BY origin").await,
        columns(&["origin", "delay"])
    );
    assert_eq!(
        map_plan("SELECT count(*) AS n FROM part")
            .await
            .map(|c| c.len()),
        Some(1)
    );
    assert_eq!(map_plan("SELECT * FROM part WHERE delay > 3").await, None);

    let rows = query_rows(
        &env,
        QueryRequest {
            dataset: dataset.clone(),
            limit: Some(7),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
    // These small files are one read task, whose part becomes the result as it is, unless
    // a map ran there: then the limit is applied by the gather.
    let with_map = QueryRequest {
        dataset: dataset.clone(),
        map_sql: Some("SELECT * FROM part".into()),
        limit: Some(7),
        ..Default::default()
    };
    assert_eq!(plan_query(with_map.clone()).await.unwrap().1.tasks.len(), 1);
    let rows = query_rows(&env, with_map).await;
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 7);

    // A query that matches nothing still has a (typed, empty) result.
    let rows = query_rows(
        &env,
        QueryRequest {
            dataset,
            predicate: Some("id < 0".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_partitions_and_gc_collects_them() {
    let env = Env::new().await;
    let input = env.dir.path().join("in");
    write_csv(&input, "a.csv", 0..90);
    let dataset = env.path("lake");
    succeeded(
        &env.run(
            plan_ingest(IngestRequest {
                inputs: vec![format!("{}/a.csv", input.display())],
                dataset: dataset.clone(),
                layout: layout(),
                ..Default::default()
            })
            .await
            .unwrap(),
        )
        .await,
    );
    let err = plan_delete(&dataset, "delay > 3").await.unwrap_err();
    assert!(err.to_string().contains("not a partition column"), "{err}");

    let job = env
        .run(
            plan_delete(&dataset, "origin IN ('JFK', 'LGA')")
                .await
                .unwrap(),
        )
        .await;
    succeeded(&job);
    assert_eq!(job.result.as_ref().unwrap()["partitions"], 2);
    let left = ids(&dataset).await;
    assert_eq!(left, (0..90).filter(|i| i % 3 == 0).collect::<Vec<_>>());

    let job = env
        .run(
            plan_gc(&dataset, Duration::ZERO, false, true)
                .await
                .unwrap(),
        )
        .await;
    succeeded(&job);
    let report = job.result.unwrap();
    assert!(
        !report["files_removed"].as_array().unwrap().is_empty(),
        "the deleted partitions' files are collected: {report}"
    );
    assert_eq!(
        ids(&dataset).await.len(),
        30,
        "gc keeps what the latest version lists"
    );
}

/// A Parquet input of ids `ids` with a Float64 column `x`: `i % 100`, except that rows
/// `i % 1000` in `specials` take NaN, -NaN, +-inf, -0.0 or null, in that order.
fn write_float_parquet(dir: &Path, name: &str, ids: std::ops::Range<i64>, specials: bool) {
    use arrow::array::Float64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    let special = [
        Some(f64::NAN),
        Some(-f64::NAN),
        Some(f64::INFINITY),
        Some(f64::NEG_INFINITY),
        Some(-0.0),
        None,
    ];
    let x: Float64Array = ids
        .clone()
        .map(|i| match special.get((i % 1000) as usize) {
            Some(v) if specials => *v,
            _ => Some((i % 100) as f64),
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("x", DataType::Float64, true),
    ]));
    let batch = arrow::record_batch::RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Int64Array::from_iter_values(ids)), Arc::new(x)],
    )
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let file = std::fs::File::create(dir.join(name)).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// The ids of `dataset`'s rows matching `sql`, by DataFusion over every row.
async fn brute_force_ids(dataset: &str, sql: &str) -> Vec<i64> {
    let ds = Dataset::open(dataset).await.unwrap();
    let mut all: Vec<_> = terrace_format::read_data_files(
        ds.store(),
        ds.root().clone(),
        ds.schema(),
        ds.current().layout(),
        terrace_format::ScanRequest::new(ds.files().await.unwrap()),
    )
    .await
    .unwrap()
    .try_collect()
    .await
    .unwrap();
    all.push(arrow::record_batch::RecordBatch::new_empty(ds.schema()));
    let ctx = datafusion::prelude::SessionContext::new();
    let table = datafusion::datasource::MemTable::try_new(ds.schema(), vec![all]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let rows = ctx
        .sql(&format!("SELECT id FROM t WHERE {sql}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    sorted_ids(&rows)
}

fn sorted_ids(batches: &[arrow::record_batch::RecordBatch]) -> Vec<i64> {
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("id").unwrap();
            let a = column.as_any().downcast_ref::<Int64Array>().unwrap();
            a.values().to_vec()
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Regression: Parquet's float bounds leave NaN out, so a file holding `x = [1.0, NaN]`
/// had `min = max = 1.0` and `x > 5`, `x <> 1` or `x = 'NaN'` lost the NaN rows. Through
/// a shuffle ingest (pieces combined by copying row groups) and the query job, every
/// query returns the rows DataFusion's filter gives over all rows, and the row group
/// without NaN is still skipped where its bounds rule it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_a_float_column_with_nan_return_every_matching_row() {
    let env = Env::new().await;
    let input = env.dir.path().join("in");
    write_float_parquet(&input, "a.parquet", 0..10_000, false);
    write_float_parquet(&input, "b.parquet", 10_000..20_000, true);
    let dataset = env.path("lake");
    let job = env
        .run(
            plan_ingest(IngestRequest {
                inputs: vec![format!("{}/*.parquet", input.display())],
                dataset: dataset.clone(),
                split_bytes: Some(1),
                shuffle: Some(true),
                // The pieces' row groups are copied with their NaN counts.
                shuffle_method: Some(ShuffleMethod::Pieces),
                ..Default::default()
            })
            .await
            .unwrap(),
        )
        .await;
    succeeded(&job);
    let files = Dataset::open(&dataset)
        .await
        .unwrap()
        .files()
        .await
        .unwrap();
    // One file of two row groups copied from the pieces; the NaN counts came along.
    assert_eq!(files.len(), 1);
    let file = &files[0];
    assert_eq!(file.row_groups.len(), 2);
    let nans: Vec<Option<u64>> = file
        .row_groups
        .iter()
        .map(|g| g.column_stats["x"].nan_count)
        .collect();
    let nan_group = nans
        .iter()
        .position(|n| *n == Some(20))
        .unwrap_or_else(|| panic!("{nans:?}"));
    assert!(nans.contains(&Some(0)), "{nans:?}");
    assert_eq!(file.column_stats["x"].nan_count, Some(20));
    assert!(file.column_stats["x"].max.is_null());

    for sql in [
        "x > 1000",
        "x < -1000",
        "x = 'NaN'",
        "x <> 5",
        "NOT (x <= 99)",
        "x = 0",
        "x < 0",
        "x IS NULL",
        "x BETWEEN 10 AND 12",
    ] {
        let request = QueryRequest {
            dataset: dataset.clone(),
            predicate: Some(sql.into()),
            ..Default::default()
        };
        let (_, plan) = plan_query(request.clone()).await.unwrap();
        let got = sorted_ids(&query_rows(&env, request).await);
        let want = brute_force_ids(&dataset, sql).await;
        assert!(!want.is_empty(), "{sql}");
        assert_eq!(got, want, "{sql}");
        if sql == "x > 1000" {
            let hints: Vec<_> = plan
                .tasks
                .iter()
                .flat_map(|t| &t.files)
                .map(|f| f.row_groups.as_ref().map(|h| h.read.clone()))
                .collect();
            assert_eq!(
                hints,
                vec![Some(vec![nan_group])],
                "the NaN-free group is skipped"
            );
        }
    }
}
