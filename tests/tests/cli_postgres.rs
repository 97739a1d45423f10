//! The flights flow with the queue on the real PostgreSQL: `terrace worker` processes in
//! separate working directories (two "machines") share one job submitted with
//! `--detach` and watched with `status`, then a query waits for those workers.

use std::path::Path;
use std::time::Duration;

use terrace_tests::{
    PgDatabase, eventually, sorted_csv_rows, spawn_terrace, stop_terrace, terrace,
    write_flights_csv,
};

fn completed(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("terrace worker stopped"))
        .unwrap_or_else(|| panic!("worker did not stop cleanly:\n{text}"));
    line.split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

#[test]
fn workers_on_two_machines_complete_a_detached_job_on_postgres() {
    let db = PgDatabase::create();
    let shared = tempfile::tempdir().unwrap();
    let (machine_a, machine_b, client) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let flights = shared.path().join("flights");
    write_flights_csv(&flights, 6, 1_000);
    let lake = shared.path().join("lake").display().to_string();
    let pattern = flights.join("*.csv").display().to_string();

    let worker_args = ["--db", db.url.as_str(), "worker", "--concurrency", "2"];
    let a = spawn_terrace(machine_a.path(), &worker_args, "worker.log");
    let b = spawn_terrace(machine_b.path(), &worker_args, "worker.log");

    let submitted = terrace(
        client.path(),
        &[],
        &[
            "--db",
            &db.url,
            "ingest",
            &pattern,
            "--into",
            &lake,
            "--partition-on",
            "origin",
            "--bucket-by",
            "tailnum",
            "--buckets",
            "8",
            "--split-size",
            "16KiB",
            "--detach",
        ],
    )
    .ok();
    let id = submitted.stdout.trim().to_string();
    assert!(
        id.parse::<i64>().is_ok(),
        "--detach prints the job id: {id:?}"
    );
    let status = eventually(Duration::from_secs(120), "the ingest to finish", || {
        let out = terrace(
            client.path(),
            &[],
            &["--db", &db.url, "status", &id, "--json"],
        )
        .ok();
        let job: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        match job["state"].as_str() {
            Some("succeeded") => Some(job),
            Some("failed" | "cancelled") => panic!("job ended {job}"),
            _ => None,
        }
    });
    assert_eq!(status["rows"].as_u64(), Some(6_000));
    assert!(
        !client.path().join(".terrace").exists(),
        "a Postgres client keeps no local queue"
    );

    // Without --detach the client waits for the remote workers (it runs none itself).
    let out = client.path().join("jfk_aa.csv").display().to_string();
    terrace(
        client.path(),
        &[],
        &[
            "--db",
            &db.url,
            "query",
            &lake,
            "--where",
            "origin = 'JFK' AND carrier = 'AA'",
            "--output",
            &out,
        ],
    )
    .ok();
    let mut expected: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&flights).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        expected.extend(
            text.lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    f[5] == "AA" && f[8] == "JFK"
                })
                .map(str::to_string),
        );
    }
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(sorted_csv_rows(Path::new(&out)), expected);

    // The shuffle through sorted runs across the two machines makes the dataset the
    // default pick (through pieces, for these 24 groups) made: the same rows, a file
    // per (origin, bucket) group.
    let lake_runs = shared.path().join("lake-runs").display().to_string();
    let runs = terrace(
        client.path(),
        &[],
        &[
            "--db",
            &db.url,
            "ingest",
            &pattern,
            "--into",
            &lake_runs,
            "--partition-on",
            "origin",
            "--bucket-by",
            "tailnum",
            "--buckets",
            "8",
            "--split-size",
            "16KiB",
            "--shuffle",
            "--shuffle-method",
            "runs",
            "--json",
        ],
    )
    .ok();
    let result: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(
        result["path"]["path"],
        serde_json::json!({"shuffle": "runs"})
    );
    assert_eq!(result["rows"], 6_000);
    let inspect = |dataset: &str| -> serde_json::Value {
        let out = terrace(client.path(), &[], &["inspect", dataset, "--json"]).ok();
        serde_json::from_str(&out.stdout).unwrap()
    };
    let (pieces, sorted) = (inspect(&lake), inspect(&lake_runs));
    assert_eq!(
        sorted["files"], pieces["files"],
        "a file per group both ways"
    );
    let all_rows = |dataset: &str, name: &str| {
        let out = client.path().join(name).display().to_string();
        terrace(
            client.path(),
            &[],
            &["--db", &db.url, "query", dataset, "--output", &out],
        )
        .ok();
        sorted_csv_rows(Path::new(&out))
    };
    assert_eq!(
        all_rows(&lake_runs, "runs.csv"),
        all_rows(&lake, "pieces.csv")
    );

    stop_terrace(a);
    stop_terrace(b);
    let (done_a, done_b) = (
        completed(&machine_a.path().join("worker.log")),
        completed(&machine_b.path().join("worker.log")),
    );
    assert!(
        done_a > 0 && done_b > 0,
        "both machines ran tasks ({done_a} and {done_b})"
    );
}
