//! Exactly-once commit under chaos: an ingest of 200 write tasks and one commit, 4
//! `terrace worker` processes, one of them killed with SIGKILL about every 2 seconds and
//! restarted. The job must commit once and every input row must be in the dataset once.
//! On the SQLite queue (one file shared by the processes) and on PostgreSQL.

use std::process::Child;
use std::time::{Duration, Instant};

use rstest::rstest;
use terrace_tests::{PgDatabase, spawn_terrace, terrace};

const FILES: usize = 200;
const ROWS_PER_FILE: usize = 2_000;

#[rstest]
#[case::sqlite(false)]
#[case::postgres(true)]
fn an_ingest_commits_once_while_workers_are_killed(#[case] postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let pg = postgres.then(PgDatabase::create);
    let db = match &pg {
        Some(pg) => pg.url.clone(),
        None => cwd.join("queue.db").display().to_string(),
    };
    std::fs::create_dir_all(cwd.join("in")).unwrap();
    for f in 0..FILES {
        let mut text = String::from("id,origin,value,note\n");
        for r in 0..ROWS_PER_FILE {
            let id = f * ROWS_PER_FILE + r;
            text.push_str(&format!(
                "{id},{},{},row {id} of file {f} with some text to parse and encode\n",
                ["EWR", "JFK", "LGA"][id % 3],
                id * 2
            ));
        }
        std::fs::write(cwd.join(format!("in/part-{f:03}.csv")), text).unwrap();
    }
    let submitted = terrace(
        cwd,
        &[],
        &[
            "--db",
            &db,
            "ingest",
            "in/*.csv",
            "--into",
            "lake",
            "--partition-on",
            "origin",
            "--split-size",
            "1",
            "--detach",
        ],
    )
    .ok();
    let id = submitted.stdout.trim().to_string();

    let worker = |n: usize, generation: usize| -> Child {
        spawn_terrace(
            cwd,
            &["--db", &db, "worker", "--concurrency", "1", "--lease", "2s"],
            &format!("worker-{n}-{generation}.log"),
        )
    };
    let mut workers: Vec<Child> = (0..4).map(|n| worker(n, 0)).collect();
    let started = Instant::now();
    let mut kills = 0;
    let mut last_kill = Instant::now() - Duration::from_millis(1_500);
    let state = loop {
        std::thread::sleep(Duration::from_millis(250));
        let out = terrace(cwd, &[], &["--db", &db, "status", &id, "--json"]).ok();
        let job: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let state = job["state"].as_str().unwrap_or_default().to_string();
        if matches!(state.as_str(), "succeeded" | "failed" | "cancelled") {
            break job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "job not done after 5 minutes: {job}"
        );
        // About every 2 seconds (the first after half a second), SIGKILL a worker and
        // start a new one in its place.
        if last_kill.elapsed() >= Duration::from_secs(2) {
            let victim = kills % workers.len();
            workers[victim].kill().unwrap();
            workers[victim].wait().unwrap();
            kills += 1;
            workers[victim] = worker(victim, kills);
            last_kill = Instant::now();
        }
    };
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    assert_eq!(state["state"], "succeeded", "{state}");
    // Kills happen only while the job runs, so at least one hit it mid-job (how many
    // depends on the machine's speed).
    assert!(
        kills >= 1,
        "the chaos must have killed workers mid-job ({kills} kills)"
    );

    // One commit of this job, and every row once.
    let history = terrace(cwd, &[], &["history", "lake", "--json"]).ok();
    let history: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let appends: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["operation"] == "Append")
        .collect();
    assert_eq!(appends.len(), 1, "{history}");
    assert_eq!(
        appends[0]["rows_added"].as_u64(),
        Some((FILES * ROWS_PER_FILE) as u64)
    );

    terrace(
        cwd,
        &[],
        &[
            "--db",
            &db,
            "--workers",
            "2",
            "query",
            "lake",
            "--columns",
            "id",
            "--output",
            "ids.csv",
        ],
    )
    .ok();
    let text = std::fs::read_to_string(cwd.join("ids.csv")).unwrap();
    let mut ids: Vec<usize> = text.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..FILES * ROWS_PER_FILE).collect::<Vec<_>>());
}
