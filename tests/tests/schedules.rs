//! Scheduled ingestion, end to end, with time injected: every `terrace` process reads the
//! clock from the file in `TERRACE_CLOCK_FILE`, and the test moves it. Several `terrace
//! worker` processes run schedulers against one queue and race for each nightly slot;
//! each slot must fire once and each day's rows must land once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use terrace_tests::{PgDatabase, eventually, spawn_terrace_with, stop_terrace, terrace};

/// The injected clock: a file holding an RFC 3339 time, replaced atomically.
struct TestClock {
    path: PathBuf,
}

impl TestClock {
    fn new(dir: &Path, start: &str) -> TestClock {
        let clock = TestClock {
            path: dir.join("clock"),
        };
        clock.set(start);
        clock
    }

    fn set(&self, time: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, time).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    fn env(&self) -> [(&'static str, String); 1] {
        [("TERRACE_CLOCK_FILE", self.path.display().to_string())]
    }
}

/// Worker processes, stopped (SIGTERM, then reaped) when dropped, also when a test fails.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in self.0.drain(..) {
            stop_terrace(w);
        }
    }
}

/// One test's world: a working directory with a landing area of daily CSV folders, a
/// queue, and the clock.
struct World {
    dir: tempfile::TempDir,
    db: Vec<String>,
    clock: TestClock,
    _pg: Option<PgDatabase>,
}

/// Rows landed for day `d` (1-based) of January 2026: 10 + d of them.
fn rows_of_day(d: u32) -> usize {
    10 + d as usize
}

impl World {
    fn new(postgres: bool, days: u32) -> World {
        let dir = tempfile::tempdir().unwrap();
        for d in 1..=days {
            let day = format!("2026-01-{d:02}");
            let folder = dir.path().join("landing").join(&day);
            std::fs::create_dir_all(&folder).unwrap();
            let mut csv = String::from("day,id,amount\n");
            for i in 0..rows_of_day(d) {
                csv.push_str(&format!("{day},{i},{}\n", i * 3 + d as usize));
            }
            std::fs::write(folder.join("events.csv"), csv).unwrap();
        }
        let pg = postgres.then(PgDatabase::create);
        let db = match &pg {
            Some(pg) => pg.url.clone(),
            None => dir.path().join("queue.db").display().to_string(),
        };
        let clock = TestClock::new(dir.path(), "2026-01-01T00:00:00Z");
        World {
            dir,
            db: vec!["--db".into(), db],
            clock,
            _pg: pg,
        }
    }

    fn run(&self, args: &[&str]) -> terrace_tests::Output {
        let env = self.clock.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut all: Vec<&str> = self.db.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        terrace(self.dir.path(), &env, &all)
    }

    fn add(&self, name: &str, catch_up: &str, into: &str) {
        self.run(&[
            "schedule",
            "add",
            name,
            "--cron",
            "0 2 * * *",
            "--timezone",
            "UTC",
            "--catch-up",
            catch_up,
            "--",
            "ingest",
            "landing/{date}/*.csv",
            "--into",
            into,
            "--partition-on",
            "day",
        ])
        .ok();
    }

    fn start_workers(&self, n: usize) -> Workers {
        let env = self.clock.env();
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // Their logs (printed when a test fails) say what each scheduler fired.
        env.push(("TERRACE_LOG", "info"));
        let children = (0..n)
            .map(|i| {
                let mut args: Vec<&str> = self.db.iter().map(String::as_str).collect();
                args.extend_from_slice(&[
                    "worker",
                    "--concurrency",
                    "1",
                    "--scheduler-interval",
                    "50ms",
                    // The simulated days would otherwise prune the first nights' jobs.
                    "--retention",
                    "0",
                ]);
                spawn_terrace_with(self.dir.path(), &env, &args, &format!("worker-{i}.log"))
            })
            .collect();
        Workers(children)
    }

    fn runs(&self, name: &str) -> Vec<serde_json::Value> {
        let out = self
            .run(&["schedule", "show", name, "--runs", "1000", "--json"])
            .ok();
        let shown: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        shown["runs"].as_array().unwrap().clone()
    }

    /// Waits until `name` has `n` runs, all succeeded, and returns their slots' dates.
    fn wait_for_runs(&self, name: &str, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let runs = self.runs(name);
            if runs.len() == n && runs.iter().all(|r| r["state"] == "succeeded") {
                let mut days: Vec<String> = runs
                    .iter()
                    .map(|r| r["slot"].as_str().unwrap()[..10].to_owned())
                    .collect();
                days.sort();
                return days;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {n} succeeded runs of {name} in {}; runs: {runs:#?}\n{}",
                self.dir.path().display(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Rows per `day` in a dataset.
    fn rows_by_day(&self, dataset: &str) -> BTreeMap<String, usize> {
        let out = self.dir.path().join(format!("{dataset}.csv"));
        self.run(&[
            "query",
            dataset,
            "--columns",
            "day",
            "--format",
            "csv",
            "--output",
            out.to_str().unwrap(),
        ])
        .ok();
        let mut counts = BTreeMap::new();
        for line in std::fs::read_to_string(&out).unwrap().lines().skip(1) {
            *counts.entry(line.to_owned()).or_default() += 1;
        }
        counts
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                text += &format!(
                    "--- {}\n{}",
                    path.display(),
                    std::fs::read_to_string(&path).unwrap()
                );
            }
        }
        text
    }
}

fn days(list: &[u32]) -> Vec<String> {
    list.iter().map(|d| format!("2026-01-{d:02}")).collect()
}

fn expected_rows(list: &[u32]) -> BTreeMap<String, usize> {
    list.iter()
        .map(|d| (format!("2026-01-{d:02}"), rows_of_day(*d)))
        .collect()
}

/// Ten simulated nights with `schedulers` worker processes racing for every slot.
fn ten_nights(postgres: bool, schedulers: usize) {
    let world = World::new(postgres, 10);
    world.add("nightly", "last", "lake");
    let workers = world.start_workers(schedulers);
    for d in 1..=10u32 {
        // Half a minute past the slot: on time, and every scheduler sees it due.
        world.clock.set(&format!("2026-01-{d:02}T02:00:30Z"));
        world.wait_for_runs("nightly", d as usize);
    }
    // Give the schedulers more ticks in which a second firing would show.
    std::thread::sleep(Duration::from_millis(500));
    let all: Vec<u32> = (1..=10).collect();
    let runs = world.runs("nightly");
    assert_eq!(runs.len(), 10, "{runs:#?}\n{}", world.logs());
    assert!(runs.iter().all(|r| r["manual"] == false));
    let jobs = world.run(&["jobs", "--json", "--limit", "1000"]).ok();
    let jobs: Vec<serde_json::Value> = serde_json::from_str(&jobs.stdout).unwrap();
    assert_eq!(jobs.len(), 10, "exactly one job per night: {jobs:#?}");
    assert_eq!(world.wait_for_runs("nightly", 10), days(&all));
    // (The query's in-process workers prune jobs finished more than 7 simulated days
    // ago, so the runs' job states are checked before it.)
    assert_eq!(world.rows_by_day("lake"), expected_rows(&all));

    // A manual re-run of an ingested slot commits nothing and says so. (With PostgreSQL
    // the command runs no workers of its own: the worker processes run the job.)
    let again = world
        .run(&["schedule", "run", "nightly", "--at", "2026-01-05"])
        .ok();
    assert!(
        again.stdout.contains(
            "nothing ingested: idempotency key schedule:nightly:2026-01-05T02:00:00Z already committed"
        ),
        "{}",
        again.stdout
    );
    assert_eq!(world.rows_by_day("lake"), expected_rows(&all));
    drop(workers);
    let runs = world.runs("nightly");
    assert_eq!(runs.len(), 11);
    let manual: Vec<_> = runs.iter().filter(|r| r["manual"] == true).collect();
    assert_eq!(manual.len(), 1);
    assert_eq!(manual[0]["rows"], 0, "{manual:?}");
    assert_eq!(manual[0]["state"], "succeeded");
}

#[test]
fn three_schedulers_on_postgres_fire_each_of_ten_nights_once() {
    ten_nights(true, 3);
}

#[test]
fn two_schedulers_on_sqlite_fire_each_of_ten_nights_once() {
    ten_nights(false, 2);
}

#[test]
fn catch_up_policies_after_a_three_day_outage() {
    let world = World::new(false, 5);
    world.add("skip-missed", "none", "lake-none");
    world.add("latest-missed", "last", "lake-last");
    world.add("every-missed", "all", "lake-all");
    let names = ["skip-missed", "latest-missed", "every-missed"];

    let workers = world.start_workers(1);
    world.clock.set("2026-01-01T02:00:10Z");
    for name in names {
        world.wait_for_runs(name, 1);
    }
    drop(workers);

    // Everything is down for the nights of the 2nd, 3rd and 4th; workers come back at
    // noon on the 4th, ten hours after its slot.
    world.clock.set("2026-01-04T12:00:00Z");
    let workers = world.start_workers(2);
    assert_eq!(world.wait_for_runs("every-missed", 4), days(&[1, 2, 3, 4]));
    assert_eq!(world.wait_for_runs("latest-missed", 2), days(&[1, 4]));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(world.wait_for_runs("skip-missed", 1), days(&[1]));

    // The next night fires for every policy.
    world.clock.set("2026-01-05T02:00:10Z");
    assert_eq!(world.wait_for_runs("skip-missed", 2), days(&[1, 5]));
    assert_eq!(world.wait_for_runs("latest-missed", 3), days(&[1, 4, 5]));
    assert_eq!(
        world.wait_for_runs("every-missed", 5),
        days(&[1, 2, 3, 4, 5])
    );
    drop(workers);
    assert_eq!(world.rows_by_day("lake-none"), expected_rows(&[1, 5]));
    assert_eq!(world.rows_by_day("lake-last"), expected_rows(&[1, 4, 5]));
    assert_eq!(
        world.rows_by_day("lake-all"),
        expected_rows(&[1, 2, 3, 4, 5])
    );
}

#[test]
fn paused_schedules_skip_their_slots_and_resume_on_the_next() {
    let world = World::new(false, 3);
    world.add("nightly", "all", "lake");
    world.run(&["schedule", "pause", "nightly"]).ok();
    let listed = world.run(&["schedule", "list"]).ok();
    assert!(listed.stdout.contains("paused"), "{}", listed.stdout);
    let workers = world.start_workers(1);
    world.clock.set("2026-01-01T02:00:10Z");
    std::thread::sleep(Duration::from_millis(800));
    assert!(world.runs("nightly").is_empty(), "a paused schedule fired");
    // Resumed after the 1st's slot: even with catch-up all, the paused slot is skipped.
    world.clock.set("2026-01-01T09:00:00Z");
    let resumed = world.run(&["schedule", "resume", "nightly"]).ok();
    assert!(
        resumed.stdout.contains("next slot 2026-01-02 02:00:00"),
        "{}",
        resumed.stdout
    );
    world.clock.set("2026-01-02T02:00:10Z");
    assert_eq!(world.wait_for_runs("nightly", 1), days(&[2]));
    drop(workers);
    world.run(&["schedule", "remove", "nightly"]).ok();
    world
        .run(&["schedule", "show", "nightly"])
        .fails_with("no schedule named \"nightly\"");
    assert_eq!(world.rows_by_day("lake"), expected_rows(&[2]));
}

#[test]
fn a_slot_whose_input_is_missing_records_why() {
    let world = World::new(false, 1);
    world.add("nightly", "last", "lake");
    let workers = world.start_workers(1);
    // No landing folder for the 2nd: the run is recorded with the planner's error.
    world.clock.set("2026-01-02T02:00:10Z");
    let runs = eventually(Duration::from_secs(60), "a recorded run", || {
        let runs = world.runs("nightly");
        (!runs.is_empty()).then_some(runs)
    });
    drop(workers);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["job"], serde_json::Value::Null);
    let error = runs[0]["error"].as_str().unwrap();
    assert!(error.contains("2026-01-02"), "{error}");
    let shown = world.run(&["schedule", "show", "nightly"]).ok();
    assert!(shown.stdout.contains("not planned"), "{}", shown.stdout);
}

#[test]
fn bad_schedules_are_refused_and_nothing_is_stored() {
    let world = World::new(false, 1);
    world.add("nightly", "last", "lake");
    let template = ["--", "ingest", "landing/{date}/*.csv", "--into", "lake"];
    let add = |name: &str, cron: &str, tz: &str, template: &[&str]| {
        let mut args = vec!["schedule", "add", name, "--cron", cron, "--timezone", tz];
        args.extend_from_slice(template);
        world.run(&args)
    };
    add("bad-cron", "0 2 * *", "UTC", &template).fails_with("cron expression \"0 2 * *\"");
    add("bad-cron2", "0 25 * * *", "UTC", &template).fails_with("cron expression \"0 25 * * *\"");
    add("bad-tz", "0 2 * * *", "Europe/Berln", &template).fails_with("time zone \"Europe/Berln\"");
    add(
        "bad-placeholder",
        "0 2 * * *",
        "UTC",
        &["--", "ingest", "landing/{day}/*.csv", "--into", "lake"],
    )
    .fails_with("unknown placeholder {day}");
    add("nightly", "0 3 * * *", "UTC", &template)
        .fails_with("a schedule named \"nightly\" exists already");
    add("not-ingest", "0 2 * * *", "UTC", &["--", "query", "lake"])
        .fails_with("not a terrace ingest");
    add(
        "no-into",
        "0 2 * * *",
        "UTC",
        &["--", "ingest", "landing/{date}/*.csv"],
    )
    .fails_with("--into");
    add(
        "bad-buckets",
        "0 2 * * *",
        "UTC",
        &[
            "--",
            "ingest",
            "x.csv",
            "--into",
            "lake",
            "--bucket-by",
            "id",
            "--buckets",
            "{dd}x",
        ],
    )
    .fails_with("not a terrace ingest");
    add("bad name", "0 2 * * *", "UTC", &template).fails_with("schedule name \"bad name\"");

    let listed = world.run(&["schedule", "list", "--json"]).ok();
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["name"], "nightly");
    assert_eq!(listed[0]["cron"], "0 2 * * *");

    world
        .run(&["schedule", "run", "nightly", "--at", "2026-01-01 03:00"])
        .fails_with("is not a slot of \"0 2 * * *\"");
    world
        .run(&["schedule", "run", "nightly", "--at", "someday"])
        .fails_with("is not a time");
    world
        .run(&["schedule", "run", "nightly", "--at", "2026-01-09"])
        .fails_with("cannot run schedule nightly for 2026-01-09");
    world
        .run(&["schedule", "pause", "weekly"])
        .fails_with("no schedule named \"weekly\"");
    assert!(
        world.runs("nightly").is_empty(),
        "a refused run was recorded"
    );
    let jobs = world.run(&["jobs", "--json"]).ok();
    assert_eq!(jobs.stdout.trim(), "[]");
}

/// A template's `--idempotency-key ev` used to replace the slot's key, so every slot
/// after the first committed nothing and still reported success.
#[test]
fn a_key_in_the_template_is_combined_with_the_slot() {
    let world = World::new(false, 2);
    world.clock.set("2026-01-03T00:00:00Z");
    world
        .run(&[
            "schedule",
            "add",
            "keyed",
            "--cron",
            "0 2 * * *",
            "--",
            "ingest",
            "landing/{date}/*.csv",
            "--into",
            "lake",
            "--partition-on",
            "day",
            "--idempotency-key",
            "ev",
        ])
        .ok();
    for (d, day) in [(1, "2026-01-01"), (2, "2026-01-02")] {
        let out = world.run(&["schedule", "run", "keyed", "--at", day]).ok();
        assert!(
            out.stdout
                .starts_with(&format!("ingested {} rows", rows_of_day(d))),
            "{}",
            out.stdout
        );
    }
    assert_eq!(world.rows_by_day("lake"), expected_rows(&[1, 2]));
    let again = world
        .run(&["schedule", "run", "keyed", "--at", "2026-01-02"])
        .ok();
    assert!(
        again.stdout.contains(
            "nothing ingested: idempotency key schedule:keyed:2026-01-02T02:00:00Z:ev already committed"
        ),
        "{}",
        again.stdout
    );
    assert_eq!(world.rows_by_day("lake"), expected_rows(&[1, 2]));
}
