//! User SQL on the worker: a query job whose spec or tasks did not come through
//! `plan_query` (a crafted job, an older client) is checked again where its tasks run.
//! `--map` / `--reduce` SQL that is not one query is refused before it runs (nothing is
//! written anywhere), and a predicate nested too deeply is refused with a clear error
//! instead of overflowing the worker's stack.

use std::path::Path;

use terrace_format::Layout;
use terrace_jobs::kinds::{IngestRequest, QueryRequest, plan_ingest, plan_query};
use terrace_jobs::{JobState, NewJob, TaskState};

mod common;
use common::Env;

impl Env {
    /// A dataset of ids 0..300 partitioned on origin.
    async fn dataset(&self) -> String {
        let input = self.dir.path().join("in");
        std::fs::create_dir_all(&input).unwrap();
        let mut text = String::from("id,origin\n");
        for i in 0..300 {
            text.push_str(&format!("{i},{}\n", ["EWR", "JFK", "LGA"][i % 3]));
        }
        std::fs::write(input.join("a.csv"), text).unwrap();
        let dataset = self.path("lake");
        let job = self
            .run(
                plan_ingest(IngestRequest {
                    inputs: vec![format!("{}/a.csv", input.display())],
                    dataset: dataset.clone(),
                    layout: Layout {
                        partition_on: vec!["origin".into()],
                        ..Layout::default()
                    },
                    ..Default::default()
                })
                .await
                .unwrap(),
            )
            .await;
        assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
        dataset
    }
}

/// Every file below `dir`, relative, with its size: what a test compares before and after.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                let name = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .display()
                    .to_string();
                out.push((name, meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// A query job planned for benign SQL, with `tamper` applied to its spec (JSON).
async fn crafted(dataset: &str, tamper: impl FnOnce(&mut serde_json::Value)) -> NewJob {
    let (mut job, _) = plan_query(QueryRequest {
        dataset: dataset.to_string(),
        map_sql: Some("SELECT id, origin FROM part".into()),
        reduce_sql: Some("SELECT * FROM parts".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    tamper(&mut job.spec);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_refuses_map_and_reduce_sql_that_bypassed_the_client() {
    let env = Env::new().await;
    let dataset = env.dataset().await;
    let outside = env.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let out = |name: &str| outside.join(name).display().to_string();
    let version_file = format!("{dataset}/_terrace/versions/00000000000000000001.json");
    let before = listing(Path::new(&dataset));

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "map_sql",
            format!("COPY (SELECT * FROM part) TO '{}'", out("map.csv")),
            "--map: only a query (SELECT …) is allowed, not COPY",
        ),
        (
            // What the fault campaign did: overwrite the dataset's own version file.
            "map_sql",
            format!("COPY (SELECT 1 AS x) TO '{version_file}' STORED AS JSON"),
            "--map: only a query (SELECT …) is allowed, not COPY",
        ),
        (
            "reduce_sql",
            format!("COPY (SELECT * FROM parts) TO '{}'", out("reduce.csv")),
            "--reduce: only a query (SELECT …) is allowed, not COPY",
        ),
        (
            "reduce_sql",
            format!(
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}'",
                env.dir.path().join("in/a.csv").display()
            ),
            "--reduce: only a query (SELECT …) is allowed, not CREATE EXTERNAL TABLE",
        ),
        (
            "map_sql",
            "SET datafusion.execution.batch_size = 1".to_string(),
            "--map: only a query (SELECT …) is allowed, not SET",
        ),
        (
            "map_sql",
            format!(
                "SELECT * FROM part; COPY (SELECT 1) TO '{}'",
                out("second.csv")
            ),
            "--map: only one query (SELECT …) is allowed, not 2 statements",
        ),
    ];
    for (field, sql, message) in cases {
        let job = crafted(&dataset, |spec| spec[field] = serde_json::json!(sql)).await;
        let record = env.run(job).await;
        assert_eq!(record.state, JobState::Failed, "{sql}");
        let error = record.error.unwrap_or_default();
        assert!(error.contains(message), "{sql}: {error}");
        // Refused at once: a permanent error is not retried.
        let tasks = env.queue.tasks(record.id).await.unwrap();
        let dead: Vec<_> = tasks
            .iter()
            .filter(|t| t.state == TaskState::Dead)
            .collect();
        assert_eq!(dead.len(), 1, "{sql}: {tasks:?}");
        assert_eq!(dead[0].attempts, 1, "{sql}");
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "no file was written outside the dataset"
    );
    let after: Vec<(String, u64)> = listing(Path::new(&dataset))
        .into_iter()
        .filter(|(name, _)| !name.starts_with("_terrace/staging/"))
        .collect();
    assert_eq!(after, before, "the dataset is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_refuses_a_predicate_nested_too_deeply_without_crashing() {
    let env = Env::new().await;
    let dataset = env.dataset().await;
    let deep = format!("{}id = 1{}", "(".repeat(100_000), ")".repeat(100_000));
    // On the client: refused before anything is queued, naming the flag.
    let err = plan_query(QueryRequest {
        dataset: dataset.clone(),
        predicate: Some(deep.clone()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("--where: predicate too large: nested deeper than 64 levels"),
        "{err}"
    );
    assert!(env.queue.list_jobs(None, 100).await.unwrap().len() == 1);

    // On the worker: a crafted task carrying it fails with the same words, and this
    // process (whose tokio threads ran it) is still here to see that.
    let (mut job, _) = plan_query(QueryRequest {
        dataset: dataset.clone(),
        predicate: Some("id = 1".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    for task in job.tasks.iter_mut().filter(|t| t.stage == 0) {
        task.payload["predicate"] = serde_json::json!(deep);
    }
    let record = env.run(job).await;
    assert_eq!(record.state, JobState::Failed);
    let error = record.error.unwrap_or_default();
    assert!(error.contains("nested deeper than"), "{error}");

    // A long flat OR chain is no problem for a worker thread.
    let wide: Vec<String> = (0..10_000).map(|i| format!("id = {}", i * 7)).collect();
    let (job, _) = plan_query(QueryRequest {
        dataset,
        predicate: Some(wide.join(" OR ")),
        ..Default::default()
    })
    .await
    .unwrap();
    let record = env.run(job).await;
    assert_eq!(record.state, JobState::Succeeded, "{:?}", record.error);
    let rows = record.result.as_ref().and_then(|r| r["rows"].as_u64());
    assert_eq!(rows, Some(300 / 7 + 1));
}
