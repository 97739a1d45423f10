//! gc and the commit against each other, end to end through the `terrace` binary: gc
//! never removes what a running or committing job needs, touches only names terrace
//! writes, never descends into a nested dataset; "latest" does not trust the `_latest`
//! hint; permanent store errors fail a task on its first attempt.
//!
//! The race of the fault campaign (gc with a 0 s retention while an ingest was between
//! writing its files and putting its version) is made deterministic with the test hook
//! that holds a commit just before its put (`TERRACE_TEST_PAUSE_BEFORE_PUT`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use terrace_tests::{
    eventually, files_below, ingest, job_count, sorted_csv_rows, spawn_terrace_with, terrace,
    write_flights_csv,
};

const ROWS_PER_MONTH: usize = 1_500;

/// `flights/flights-01.csv` and `-02.csv`, and `lake/f` holding the first, partitioned on
/// `origin` (versions 0 and 1).
fn flights_lake(cwd: &Path) {
    write_flights_csv(&cwd.join("flights"), 2, ROWS_PER_MONTH);
    ingest(
        cwd,
        &[
            "flights/flights-01.csv",
            "--into",
            "lake/f",
            "--partition-on",
            "origin",
        ],
    )
    .ok();
}

/// Every row of `dataset`, read with a query (so the files every version lists exist).
fn rows(cwd: &Path, dataset: &str) -> usize {
    let output = format!("rows-{}.csv", uuid::Uuid::new_v4().simple());
    terrace(cwd, &[], &["query", dataset, "--output", &output]).ok();
    let rows = sorted_csv_rows(&cwd.join(&output)).len();
    std::fs::remove_file(cwd.join(&output)).unwrap();
    rows
}

fn inspect(cwd: &Path, dataset: &str) -> serde_json::Value {
    let out = terrace(cwd, &[], &["inspect", dataset, "--json"]).ok();
    serde_json::from_str(&out.stdout).unwrap()
}

/// Run `gc args…` and return its JSON report.
fn gc(cwd: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["gc"];
    all.extend(args);
    all.push("--json");
    let out = terrace(cwd, &[], &all).ok();
    serde_json::from_str(&out.stdout).unwrap()
}

fn removed(report: &serde_json::Value) -> Vec<String> {
    report["files_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// Write `text` at `path` (creating directories) and make it `days` old.
fn put_aged(path: &Path, text: &str, days: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    age(path, days);
}

fn age(path: &Path, days: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
        .unwrap();
}

/// The data files of a dataset directory (relative paths), as the store names them.
fn data_files(dataset: &Path) -> Vec<String> {
    files_below(dataset)
        .into_iter()
        .map(|(p, _, _)| {
            p.strip_prefix(dataset)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|p| !p.starts_with("_terrace/") && p.ends_with(".parquet"))
        .collect()
}

/// Regression: `gc --retention 0s` while an ingest was between writing its segments and
/// putting its version removed the files; the ingest said "ingested … at version 2" and
/// every query then failed with "No such file or directory".
#[test]
fn gc_racing_a_commit_held_before_its_put_never_leaves_a_version_without_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    let hook = cwd.join("hook");
    std::fs::create_dir(&hook).unwrap();
    let hook_var = hook.to_str().unwrap().to_string();

    let ingest = spawn_terrace_with(
        cwd,
        &[(terrace_format::PAUSE_BEFORE_PUT_VAR, &hook_var)],
        &["ingest", "flights/flights-02.csv", "--into", "lake/f"],
        "ingest.log",
    );
    eventually(Duration::from_secs(120), "the commit to pause", || {
        hook.join("paused").exists().then_some(())
    });
    let staging_before: Vec<String> = files_below(&cwd.join("lake/f/_terrace/staging"))
        .into_iter()
        .map(|(p, _, _)| p.display().to_string())
        .collect();
    assert!(
        !staging_before.is_empty(),
        "the paused run has staged reports"
    );

    // The paused job's data files and segments are unreferenced and older than 0 s: gc
    // takes them. Its staging it leaves alone: the job has not finished.
    let report = gc(cwd, &["lake/f", "--retention", "0s", "--force"]);
    let taken = removed(&report);
    assert!(
        taken.iter().any(|p| p.starts_with("origin=")),
        "gc took the paused job's data files: {taken:?}"
    );
    assert!(
        taken.iter().all(|p| !p.starts_with("_terrace/staging/")),
        "gc took the staging of a live job: {taken:?}"
    );
    for path in &staging_before {
        assert!(Path::new(path).exists(), "{path} was removed");
    }

    std::fs::write(hook.join("resume"), b"").unwrap();
    let mut ingest = ingest;
    let status = ingest.wait().unwrap();
    let log = std::fs::read_to_string(cwd.join("ingest.log")).unwrap();
    // The commit saw that its files were gone and put nothing.
    assert!(!status.success(), "the ingest reported success:\n{log}");
    assert!(
        log.contains("no longer exist") && log.contains("nothing was committed"),
        "{log}"
    );
    assert!(!log.contains("ingested"), "{log}");
    assert_eq!(inspect(cwd, "lake/f")["version"], 1);
    assert_eq!(rows(cwd, "lake/f"), ROWS_PER_MONTH);

    // Running it again works, and every query still does.
    ingest_again(cwd);
    assert_eq!(rows(cwd, "lake/f"), 2 * ROWS_PER_MONTH);
    terrace(
        cwd,
        &[],
        &[
            "query",
            "lake/f",
            "--where",
            "origin = 'JFK'",
            "--limit",
            "5",
        ],
    )
    .ok();
}

fn ingest_again(cwd: &Path) {
    let out = ingest(cwd, &["flights/flights-02.csv", "--into", "lake/f"]).ok();
    assert!(out.stdout.contains("at version 2"), "{}", out.stdout);
}

#[test]
fn gc_below_the_retention_floor_is_refused_without_force_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    // An older version and replaced files, which a 0 s retention would remove.
    ingest(
        cwd,
        &[
            "flights/flights-02.csv",
            "--into",
            "lake/f",
            "--mode",
            "overwrite",
        ],
    )
    .ok();
    let (jobs_before, files_before) = (job_count(cwd), files_below(&cwd.join("lake")));

    for retention in ["0s", "1h", "23h"] {
        for extra in [&[][..], &["--dry-run"][..]] {
            let mut args = vec!["gc", "lake/f", "--retention", retention];
            args.extend(extra);
            let out = terrace(cwd, &[], &args).fails_with("24h floor");
            assert!(out.stderr.contains("--force"), "{}", out.stderr);
            assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        }
    }
    assert_eq!(
        job_count(cwd),
        jobs_before,
        "no refused gc reached the queue"
    );
    assert_eq!(
        files_below(&cwd.join("lake")),
        files_before,
        "gc removed nothing"
    );

    // At the floor no --force is needed; below it --force does what was asked.
    gc(cwd, &["lake/f", "--retention", "24h"]);
    let forced = gc(cwd, &["lake/f", "--retention", "0s", "--force"]);
    assert_eq!(forced["versions_removed"], serde_json::json!([0, 1]));
    assert!(!removed(&forced).is_empty());
    assert_eq!(rows(cwd, "lake/f"), ROWS_PER_MONTH);
}

/// Regression: `gc --dry-run` on a dataset created inside a non-empty directory listed
/// `docs/thesis.txt` and `input.csv`, and a real run deleted them.
#[test]
fn gc_touches_only_names_terrace_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    // Replaced files, which gc does remove.
    ingest(
        cwd,
        &[
            "flights/flights-02.csv",
            "--into",
            "lake/f",
            "--mode",
            "overwrite",
        ],
    )
    .ok();
    // Files a user put beside the dataset (a dataset made by an older terrace in a
    // non-empty directory), a month old; some named almost as terrace names files.
    let lake = cwd.join("lake/f");
    let id = uuid::Uuid::new_v4();
    let foreign = [
        "docs/thesis.txt".to_string(),
        "input.csv".to_string(),
        "origin=JFK/notes.txt".to_string(),
        format!("origin=JFK/old/part-{id}.parquet"),
        format!("part-{id}.parquet"),
        "_terrace/NOTES".to_string(),
    ];
    for path in &foreign {
        put_aged(&lake.join(path), "mine", 30);
    }

    let dry = gc(
        cwd,
        &["lake/f", "--retention", "0s", "--force", "--dry-run"],
    );
    let listed = removed(&dry);
    assert!(!listed.is_empty());
    for path in &foreign {
        assert!(!listed.contains(path), "the dry run lists {path}");
    }
    let real = gc(cwd, &["lake/f", "--retention", "0s", "--force"]);
    assert_eq!(removed(&real), listed);
    for path in &foreign {
        assert!(lake.join(path).exists(), "{path} was removed");
    }
    assert_eq!(rows(cwd, "lake/f"), ROWS_PER_MONTH);
}

/// Regression: a gc of an outer dataset deleted a nested dataset's version files.
#[test]
fn gc_of_an_outer_dataset_leaves_a_nested_dataset_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    // A dataset whose root looks like a partition directory of the outer one and whose
    // data files are named as the outer one's would be there.
    ingest(
        cwd,
        &["flights/flights-02.csv", "--into", "lake/f/origin=ZZZ"],
    )
    .ok();
    let inner = cwd.join("lake/f/origin=ZZZ");
    let inner_files = files_below(&inner);
    assert!(
        data_files(&inner)
            .iter()
            .all(|p| p.starts_with("part-") && !p.contains('/')),
        "{:?}",
        data_files(&inner)
    );
    for (path, _, _) in &inner_files {
        age(path, 30);
    }
    let inner_files = files_below(&inner);

    let report = gc(cwd, &["lake/f", "--retention", "0s", "--force"]);
    assert!(
        removed(&report)
            .iter()
            .all(|p| !p.starts_with("origin=ZZZ")),
        "{report}"
    );
    assert_eq!(
        files_below(&inner),
        inner_files,
        "the nested dataset was touched"
    );
    assert_eq!(inspect(cwd, "lake/f/origin=ZZZ")["version"], 1);
    assert_eq!(rows(cwd, "lake/f/origin=ZZZ"), ROWS_PER_MONTH);
    assert_eq!(rows(cwd, "lake/f"), ROWS_PER_MONTH);
}

/// Regression: the `…#N` temporary files of puts killed before their rename were never
/// removed, not even by gc.
#[test]
fn gc_removes_old_temporary_files_of_killed_puts() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    let lake = cwd.join("lake/f");
    let data = data_files(&lake);
    let old = [
        format!("{}#1", data[0]),
        format!("{}#7", data[1]),
        "_terrace/_latest#1".to_string(),
        "_terrace/versions/00000000000000000002.json#1".to_string(),
    ];
    for path in &old {
        put_aged(&lake.join(path), "half a put", 2);
    }
    let young = format!("{}#2", data[0]);
    put_aged(&lake.join(&young), "a put in flight", 0);
    let foreign = ["input.csv#1", "origin=JFK/notes.txt#1"];
    for path in foreign {
        put_aged(&lake.join(path), "mine", 30);
    }

    // The floor itself: no --force needed.
    let report = gc(cwd, &["lake/f", "--retention", "1d"]);
    let mut expected = old.to_vec();
    expected.sort();
    assert_eq!(removed(&report), expected);
    for path in &old {
        assert!(!lake.join(path).exists(), "{path} was kept");
    }
    for path in foreign.iter().copied().chain([young.as_str()]) {
        assert!(lake.join(path).exists(), "{path} was removed");
    }
    assert_eq!(rows(cwd, "lake/f"), ROWS_PER_MONTH);
}

/// Regression: "ingest accepts a non-empty non-dataset directory".
#[test]
fn ingest_refuses_a_directory_that_holds_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    write_flights_csv(&cwd.join("mine"), 1, 100);
    std::fs::create_dir_all(cwd.join("mine/docs")).unwrap();
    std::fs::write(cwd.join("mine/docs/thesis.txt"), "chapter 1").unwrap();
    let before = files_below(&cwd.join("mine"));

    let out = ingest(cwd, &["mine/flights-01.csv", "--into", "mine"])
        .fails_with("refusing to create a dataset at");
    assert!(
        out.stderr.contains("mine") && out.stderr.contains("terrace did not write"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert_eq!(
        files_below(&cwd.join("mine")),
        before,
        "nothing was written"
    );
    // An empty directory (or a new one) is fine.
    std::fs::create_dir(cwd.join("empty")).unwrap();
    ingest(cwd, &["mine/flights-01.csv", "--into", "empty"]).ok();
    ingest(cwd, &["mine/flights-01.csv", "--into", "mine/lake"]).ok();
}

/// The library refuses too, for every caller of `Dataset::create`.
#[tokio::test]
async fn dataset_create_refuses_a_location_holding_other_objects() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.csv"), "a,b\n1,2\n").unwrap();
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("a", arrow::datatypes::DataType::Int64, true),
    ]));
    let location = dir.path().to_str().unwrap();
    let err = terrace_format::Dataset::create(location, schema, Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, terrace_format::Error::LocationNotEmpty { ref example, .. } if example == "input.csv"),
        "{err:?}"
    );
    assert!(!dir.path().join("_terrace").exists());
}

/// Regression: with versions 0, 1, 2 and 4 (3 removed by hand) and the `_latest` hint at
/// 2, the next append was acknowledged at version 3 and then invisible.
#[test]
fn latest_does_not_trust_a_stale_hint_below_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    for month in ["02", "01", "02"] {
        ingest(
            cwd,
            // --force: the second ingest of month 02 would otherwise be a no-op re-run.
            &[
                &format!("flights/flights-{month}.csv"),
                "--into",
                "lake/f",
                "--force",
            ],
        )
        .ok();
    }
    let lake = cwd.join("lake/f/_terrace");
    std::fs::remove_file(lake.join("versions/00000000000000000003.json")).unwrap();
    std::fs::write(lake.join("_latest"), "2").unwrap();
    assert_eq!(inspect(cwd, "lake/f")["version"], 4);

    let out = ingest(
        cwd,
        &["flights/flights-01.csv", "--into", "lake/f", "--force"],
    )
    .ok();
    assert!(out.stdout.contains("at version 5"), "{}", out.stdout);
    assert!(!lake.join("versions/00000000000000000003.json").exists());
    assert_eq!(inspect(cwd, "lake/f")["version"], 5);
    // Version 4 lists what version 3 added; the new rows are visible.
    assert_eq!(rows(cwd, "lake/f"), 5 * ROWS_PER_MONTH);
}

/// Regression: permanent store errors (EACCES, ENAMETOOLONG, ENOSPC) were retried five
/// times with backoff. A partition directory that is a file fails for root too.
#[test]
fn a_permanent_store_error_fails_the_task_on_its_first_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    let text = std::fs::read_to_string(cwd.join("flights/flights-02.csv")).unwrap();
    std::fs::write(cwd.join("zzz.csv"), text.replace(",JFK,", ",ZZZ,")).unwrap();
    std::fs::write(
        cwd.join("lake/f/origin=ZZZ"),
        "a file where a directory goes",
    )
    .unwrap();

    let started = std::time::Instant::now();
    let out = ingest(cwd, &["zzz.csv", "--into", "lake/f"]).fails_with("Not a directory");
    assert!(out.stderr.contains("origin=ZZZ"), "{}", out.stderr);
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
    let attempts = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             print(c.execute(\"SELECT group_concat(attempts) FROM tasks WHERE state='dead'\").fetchone()[0])",
        )
        .arg(cwd.join(".terrace/queue.db"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&attempts.stdout).trim(),
        "1",
        "the dead task ran once: {}",
        String::from_utf8_lossy(&attempts.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(inspect(cwd, "lake/f")["version"], 1);
}
