//! The real `terrace` binary end to end on the embedded default (SQLite queue, workers in
//! process): the nycflights13-shaped flow checked against DuckDB, map/reduce against
//! DuckDB's GROUP BY, region x sample against the unpartitioned query, quickstart.

use terrace_tests::{run_python, sorted_csv_rows, terrace, write_flights_csv};

const INGEST_FLIGHTS: &[&str] = &[
    "ingest",
    "flights/*.csv",
    "--into",
    "lake/flights",
    "--partition-on",
    "origin",
    "--bucket-by",
    "tailnum",
    "--buckets",
    "8",
    "--split-size",
    "64KiB",
];

#[test]
fn flights_flow_matches_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let rows = write_flights_csv(&cwd.join("flights"), 12, 2_000);
    let out = terrace(cwd, &[], INGEST_FLIGHTS).ok();
    assert!(
        out.stdout.contains(&format!("ingested {rows} rows")),
        "{}",
        out.stdout
    );
    assert!(
        cwd.join(".terrace/queue.db").exists(),
        "the embedded queue is a SQLite file"
    );

    terrace(
        cwd,
        &[],
        &[
            "query",
            "lake/flights",
            "--where",
            "origin = 'JFK' AND carrier = 'AA'",
            "--output",
            "jfk_aa.csv",
        ],
    )
    .ok();
    terrace(
        cwd,
        &[],
        &[
            "query",
            "lake/flights",
            "--where",
            "carrier = 'AA'",
            "--map",
            "SELECT month, sum(dep_delay) AS delay, count(*) AS n FROM part GROUP BY month",
            "--reduce",
            "SELECT month, sum(delay) AS delay, sum(n) AS flights FROM parts GROUP BY month ORDER BY month",
            "--output",
            "by_month.csv",
        ],
    )
    .ok();
    let checked = run_python(
        r#"
import duckdb, sys
d = sys.argv[1]
con = duckdb.connect()
src = f"read_csv('{d}/flights/*.csv', header=true, union_by_name=true)"
def rows(sql):
    return sorted(map(str, con.sql(sql).fetchall()))
want = rows(f"SELECT * FROM {src} WHERE origin = 'JFK' AND carrier = 'AA'")
got = rows(f"SELECT * FROM read_csv('{d}/jfk_aa.csv', header=true)")
assert want == got, (len(want), len(got), want[:3], got[:3])
want = con.sql(f"SELECT month, sum(dep_delay), count(*) FROM {src} WHERE carrier = 'AA' GROUP BY month ORDER BY month").fetchall()
got = con.sql(f"SELECT month, delay, flights FROM read_csv('{d}/by_month.csv', header=true) ORDER BY month").fetchall()
assert [tuple(map(int, r)) for r in want] == [tuple(map(int, r)) for r in got], (want, got)
print(len(want))
"#,
        &[cwd.to_str().unwrap()],
    );
    assert_eq!(checked.trim(), "12", "one aggregate row per month");

    // A point lookup on the bucket column keeps one bucket of files.
    let plan = explain_json(cwd, "lake/flights", "tailnum = 'N14203'", &[]);
    let (before, after) = step_counts(&plan, "buckets", "files");
    assert!(
        after > 0 && after * 4 <= before,
        "bucket pruning {before} -> {after}"
    );

    // The job list shows both finished jobs, with rows.
    let jobs = terrace(cwd, &[], &["jobs", "--json"]).ok();
    let jobs: serde_json::Value = serde_json::from_str(&jobs.stdout).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"), "{jobs:?}");
    assert_eq!(jobs[2]["kind"], "ingest");
    assert_eq!(jobs[2]["rows"].as_u64(), Some(rows as u64));
}

#[test]
fn region_by_sample_tasks_together_equal_the_unpartitioned_query() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::create_dir_all(cwd.join("variants")).unwrap();
    let mut text = String::from("contig,pos,sample,value\n");
    for i in 0..6_000u64 {
        text.push_str(&format!(
            "chr{},{},s{:02},{}\n",
            1 + i % 3,
            (i * 7919) % 1_000,
            (i * 31) % 12,
            i
        ));
    }
    std::fs::write(cwd.join("variants/v.csv"), text).unwrap();
    std::fs::write(
        cwd.join("regions.bed"),
        "chr1\t100\t400\nchr2\t50\t900\nchr1\t600\t650\n",
    )
    .unwrap();
    terrace(
        cwd,
        &[],
        &[
            "ingest",
            "variants/v.csv",
            "--into",
            "lake/v",
            "--partition-on",
            "contig",
            "--split-size",
            "8KiB",
        ],
    )
    .ok();
    let region_args = [
        "--regions",
        "regions.bed",
        "--region-partitions",
        "2",
        "--sample-partitions",
        "3",
        "--sample-column",
        "sample",
    ];
    let mut args = vec!["query", "lake/v", "--output", "grid.csv"];
    args.extend(region_args);
    terrace(cwd, &[], &args).ok();
    terrace(
        cwd,
        &[],
        &[
            "query",
            "lake/v",
            "--where",
            "(contig = 'chr1' AND pos >= 100 AND pos < 400) OR (contig = 'chr1' AND pos >= 600 AND pos < 650) \
             OR (contig = 'chr2' AND pos >= 50 AND pos < 900)",
            "--output",
            "all.csv",
        ],
    )
    .ok();
    let grid = sorted_csv_rows(&cwd.join("grid.csv"));
    let all = sorted_csv_rows(&cwd.join("all.csv"));
    assert!(all.len() > 1_000, "{}", all.len());
    assert_eq!(
        grid, all,
        "the R x S tasks together return the query's rows, each once"
    );

    let mut args = vec!["explain", "lake/v", "--json"];
    args.extend(region_args);
    let explain = terrace(cwd, &[], &args).ok();
    let plan: serde_json::Value = serde_json::from_str(&explain.stdout).unwrap();
    // At most R x S = 6 tasks (a cell whose regions touch no file has no task).
    let tasks = plan["tasks"].as_array().unwrap().len();
    assert!((3..=6).contains(&tasks), "{tasks} tasks");
}

#[test]
fn quickstart_runs_the_tour() {
    let dir = tempfile::tempdir().unwrap();
    let out = terrace(
        dir.path(),
        &[],
        &["quickstart", "--dir", "qs", "--rows-per-month", "1000"],
    )
    .ok();
    assert!(out.stdout.contains("ingested 12000 rows"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("pruning:").count(), 3, "{}", out.stdout);
    assert!(out.stdout.contains("avg_dep_delay"), "{}", out.stdout);
    assert!(
        dir.path()
            .join("qs/lake/flights/_terrace/versions")
            .is_dir()
    );
}

#[test]
fn added_columns_overwrite_time_travel_and_output_formats() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let csv = |name: &str, header: &str, rows: std::ops::Range<u32>, extra: bool| {
        let mut text = format!("{header}\n");
        for i in rows {
            let origin = ["EWR", "JFK", "LGA"][(i % 3) as usize];
            if extra {
                text.push_str(&format!("{i},{origin},{},x{i}\n", i * 10));
            } else {
                text.push_str(&format!("{i},{origin},{}\n", i * 10));
            }
        }
        std::fs::write(cwd.join(name), text).unwrap();
    };
    csv("a.csv", "id,origin,v", 0..30, false);
    csv("b.csv", "id,origin,v,extra", 30..60, true);
    terrace(
        cwd,
        &[],
        &[
            "ingest",
            "a.csv",
            "--into",
            "lake",
            "--partition-on",
            "origin",
        ],
    )
    .ok();
    terrace(cwd, &[], &["ingest", "b.csv", "--into", "lake"]).fails_with("extra");
    terrace(
        cwd,
        &[],
        &["ingest", "b.csv", "--into", "lake", "--add-columns"],
    )
    .ok();

    let jsonl = terrace(cwd, &[], &["query", "lake", "--format", "jsonl"]).ok();
    let rows: Vec<serde_json::Value> = jsonl
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 60);
    assert_eq!(
        rows.iter()
            .filter(|r| r.get("extra").is_some_and(|e| !e.is_null()))
            .count(),
        30,
        "old rows read the added column as null"
    );

    // Overwrite replaces only the partitions written (JFK).
    std::fs::write(cwd.join("c.csv"), "id,origin,v,extra\n100,JFK,1,new\n").unwrap();
    terrace(
        cwd,
        &[],
        &["ingest", "c.csv", "--into", "lake", "--mode", "overwrite"],
    )
    .ok();
    let out = terrace(
        cwd,
        &[],
        &[
            "query",
            "lake",
            "--where",
            "origin = 'JFK'",
            "--columns",
            "id",
            "--format",
            "csv",
        ],
    )
    .ok();
    assert_eq!(out.stdout.trim(), "id\n100");

    // Time travel to the version before the overwrite, written as Parquet.
    terrace(
        cwd,
        &[],
        &["query", "lake", "--version", "2", "--output", "v2.parquet"],
    )
    .ok();
    let parquet_rows = |name: &str| {
        let file = std::fs::File::open(cwd.join(name)).unwrap();
        let builder =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                file,
            )
            .unwrap();
        let columns = builder.schema().fields().len();
        let rows: usize = builder
            .build()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        (columns, rows)
    };
    assert_eq!(parquet_rows("v2.parquet").1, 60);
    // No matching row still gives a Parquet file, with the columns.
    let out = terrace(
        cwd,
        &[],
        &[
            "query",
            "lake",
            "--where",
            "id < 0",
            "--output",
            "none.parquet",
        ],
    )
    .ok();
    assert!(out.stderr.contains("wrote 0 rows"), "{}", out.stderr);
    let (columns, rows) = parquet_rows("none.parquet");
    assert_eq!(rows, 0);
    assert!(columns > 1, "{columns} columns");
    assert_eq!(
        count_rows(cwd, &[], "lake"),
        "n\n41",
        "60 rows minus 20 JFK rows plus 1"
    );
}

#[test]
fn the_same_commands_work_on_an_s3_store() {
    let server = terrace_tests::MotoServer::start();
    server.create_bucket("lake");
    let env: Vec<(&str, String)> = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let rows = write_flights_csv(&cwd.join("flights"), 3, 1_000);
    let dataset = "s3://lake/flights";
    let out = terrace(
        cwd,
        &env,
        &[
            "ingest",
            "flights/*.csv",
            "--into",
            dataset,
            "--partition-on",
            "origin",
            "--bucket-by",
            "tailnum",
            "--buckets",
            "4",
            "--shuffle",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains(&format!("ingested {rows} rows")),
        "{}",
        out.stdout
    );
    assert_eq!(count_rows(cwd, &env, dataset), format!("n\n{rows}"));
    // Results can go to the store too.
    terrace(
        cwd,
        &env,
        &[
            "query",
            dataset,
            "--where",
            "origin = 'JFK'",
            "--output",
            "s3://lake/out/jfk.csv",
        ],
    )
    .ok();
    let inspect = terrace(cwd, &env, &["inspect", dataset, "--json"]).ok();
    let json: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(json["rows"].as_u64(), Some(rows as u64));
    assert!(
        json["files"].as_u64().unwrap() <= 12,
        "shuffle: one file per (origin, bucket)"
    );
}

/// `ingest --explain` shows the path the plan picks and why, and the tasks of each stage,
/// as text and as JSON, and writes nothing: no dataset, no job. The ingest itself then
/// takes that path and says so.
#[test]
fn ingest_explain_shows_the_path_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let rows = write_flights_csv(&cwd.join("flights"), 3, 2_000);
    let ingest = [
        "ingest",
        "flights/*.csv",
        "--into",
        "lake/f",
        "--partition-on",
        "origin",
        "--split-size",
        "1B",
    ];
    let text = terrace(cwd, &[], &[&ingest[..], &["--explain"]].concat()).ok();
    assert!(
        text.stdout
            .contains("path: shuffle through pieces: 3 direct write tasks"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("stages: map 3 tasks, reduce 3 tasks, commit 1 task"),
        "{}",
        text.stdout
    );
    let json = terrace(cwd, &[], &[&ingest[..], &["--explain", "--json"]].concat()).ok();
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plan["path"], serde_json::json!({"shuffle": "pieces"}));
    assert_eq!(plan["splits"], 3);
    assert_eq!(
        plan["stages"][0],
        serde_json::json!({"stage": "map", "tasks": 3})
    );
    let direct = terrace(
        cwd,
        &[],
        &[&ingest[..], &["--no-shuffle", "--explain", "--json"]].concat(),
    )
    .ok();
    let plan: serde_json::Value = serde_json::from_str(&direct.stdout).unwrap();
    assert_eq!(plan["path"], "direct", "{plan}");
    assert!(!cwd.join("lake").exists(), "--explain wrote a dataset");
    assert!(
        std::fs::read_dir(cwd)
            .unwrap()
            .all(|e| e.unwrap().file_name() == "flights"),
        "--explain left something beside the inputs"
    );

    let out = terrace(cwd, &[], &ingest).ok();
    assert!(
        out.stdout
            .contains(&format!("ingested {rows} rows (3 files"))
            && out.stdout.contains("(shuffle through pieces)"),
        "{}",
        out.stdout
    );
}

#[test]
fn row_group_statistics_let_queries_skip_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    write_flights_csv(&cwd.join("flights"), 4, 3_000);
    terrace(
        cwd,
        &[],
        &[
            "ingest",
            "flights/*.csv",
            "--into",
            "lake/rg",
            "--partition-on",
            "origin",
            "--row-group-rows",
            "250",
        ],
    )
    .ok();
    // The four small files make one split, read in order: each file's row groups hold
    // one month after another, while every file spans all four months.
    let predicate = "month = 3 AND carrier = 'AA'";
    let plan = explain_json(cwd, "lake/rg", predicate, &[]);
    let step = explain_step(&plan, "row_groups");
    let (before, after) = step_counts(&plan, "row_groups", "row_groups");
    assert!(
        after > 0 && after * 2 <= before,
        "row groups {before} -> {after}"
    );
    let statistics = explain_step(&plan, "statistics");
    assert_eq!(
        statistics["files_after"], statistics["files_before"],
        "file statistics alone cannot prune here"
    );
    assert!(step["bytes_after"].as_u64() < step["bytes_before"].as_u64());
    let planned: u64 = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["row_groups"].as_u64().unwrap())
        .sum();
    assert_eq!(planned, after);
    let text = terrace(cwd, &[], &["explain", "lake/rg", "--where", predicate])
        .ok()
        .stdout;
    assert!(
        text.contains(&format!("{before:>9} -> {after} row groups")),
        "{text}"
    );

    terrace(
        cwd,
        &[],
        &[
            "query", "lake/rg", "--where", predicate, "--output", "far.csv",
        ],
    )
    .ok();
    let checked = run_python(
        r#"
import duckdb, sys
d = sys.argv[1]
con = duckdb.connect()
src = f"read_csv('{d}/flights/*.csv', header=true, union_by_name=true)"
want = sorted(map(str, con.sql(f"SELECT * FROM {src} WHERE month = 3 AND carrier = 'AA'").fetchall()))
got = sorted(map(str, con.sql(f"SELECT * FROM read_csv('{d}/far.csv', header=true)").fetchall()))
assert want == got, (len(want), len(got), want[:3], got[:3])
# The data files really hold many row groups, readable by any Parquet reader.
import pyarrow.parquet as pq, glob
files = glob.glob(f"{d}/lake/rg/origin=*/*.parquet")
assert all(pq.ParquetFile(f).metadata.num_row_groups > 3 for f in files), files
print(len(want))
"#,
        &[cwd.to_str().unwrap()],
    );
    assert!(checked.trim().parse::<u64>().unwrap() > 0, "{checked}");

    // The same query as one task per origin, and as one task for everything.
    let tasks = |extra: &[&str]| {
        explain_json(cwd, "lake/rg", predicate, extra)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["label"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tasks(&["--dispatch-by", "origin"]),
        ["origin=EWR", "origin=JFK", "origin=LGA"]
    );
    assert_eq!(tasks(&["--task-size", "1GiB"]), ["3 files"]);
    // By default these small files share one task; `--task-size 0` gives one per file.
    assert_eq!(tasks(&[]), ["3 files"]);
    let per_file = tasks(&["--task-size", "0"]);
    assert_eq!(per_file.len(), 3, "{per_file:?}");
    assert!(
        per_file.iter().all(|l| l.ends_with(".parquet")),
        "{per_file:?}"
    );
    for extra in [
        &["--dispatch-by", "origin"][..],
        &["--task-size", "1GiB"][..],
        &["--task-size", "0"][..],
    ] {
        let mut args = vec![
            "query",
            "lake/rg",
            "--where",
            predicate,
            "--output",
            "again.csv",
        ];
        args.extend(extra);
        terrace(cwd, &[], &args).ok();
        assert_eq!(
            sorted_csv_rows(&cwd.join("again.csv")),
            sorted_csv_rows(&cwd.join("far.csv")),
            "{extra:?}"
        );
    }
    terrace(cwd, &[], &["query", "lake/rg", "--dispatch-by", "carrier"])
        .fails_with("\"carrier\" is not a partition column");
    let both = terrace(
        cwd,
        &[],
        &[
            "query",
            "lake/rg",
            "--dispatch-by",
            "origin",
            "--task-size",
            "1GiB",
        ],
    );
    assert_eq!(both.code, 2, "{}", both.stderr);
}

/// `terrace explain DATASET --where PREDICATE --json EXTRA…`, parsed.
fn explain_json(
    cwd: &std::path::Path,
    dataset: &str,
    predicate: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec!["explain", dataset, "--where", predicate, "--json"];
    args.extend(extra);
    serde_json::from_str(&terrace(cwd, &[], &args).ok().stdout).unwrap()
}

/// `(before, after)` of one step's `files` or `row_groups`.
fn step_counts(plan: &serde_json::Value, name: &str, what: &str) -> (u64, u64) {
    let step = explain_step(plan, name);
    let count = |when: &str| {
        step[format!("{what}_{when}")]
            .as_u64()
            .unwrap_or_else(|| panic!("no {what}_{when} in {step}"))
    };
    (count("before"), count("after"))
}

/// One pruning step of `explain --json` output, by name.
fn explain_step<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    plan["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no {name} step in {plan}"))
}

/// The dataset's row count as CSV (`n` and the count), by map/reduce SQL.
fn count_rows(cwd: &std::path::Path, env: &[(&str, &str)], dataset: &str) -> String {
    let out = terrace(
        cwd,
        env,
        &[
            "query",
            dataset,
            "--map",
            "SELECT count(*) AS n FROM part",
            "--reduce",
            "SELECT sum(n) AS n FROM parts",
            "--format",
            "csv",
        ],
    )
    .ok();
    out.stdout.trim().to_owned()
}
