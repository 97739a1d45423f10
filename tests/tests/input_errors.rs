//! Bad input files through the `terrace` binary: each is refused with exit code 1 and
//! one line naming the file and where in it, and leaves no dataset, version or file
//! behind and no job running. The input campaign of issue 31 found these accepted:
//! CSV headers with empty or repeated names, quotes that never close or stand inside
//! an unquoted field, empty files, header-only files that created a dataset, and
//! partition values too long for a directory name (retried five times).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;
use terrace_tests::{Output, dataset_version, files_below, ingest, terrace};

/// Every file under `dir` with its size, sorted.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    files_below(dir)
        .into_iter()
        .map(|(p, n, _)| (p, n))
        .collect()
}

fn jobs(cwd: &Path) -> Vec<Value> {
    // A command refused before it queued anything leaves no queue behind: no jobs.
    if !cwd.join(".terrace/queue.db").exists() {
        return Vec::new();
    }
    let out = terrace(cwd, &[], &["jobs", "--json"]).ok();
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// No job of the queue is still queued or running.
fn no_job_running(cwd: &Path) {
    for job in jobs(cwd) {
        let state = job["state"].as_str().unwrap_or("");
        assert!(
            matches!(state, "succeeded" | "failed" | "cancelled"),
            "job {} is {state}",
            job["id"]
        );
    }
}

/// The failure's message is one line holding every one of `needles` (after the job's
/// progress line when the failure came from a job).
fn one_line_with(out: Output, needles: &[&str]) -> Output {
    let out = out.fails_with(needles[0]);
    let text = out.stderr.trim();
    let mut lines: Vec<&str> = text.lines().collect();
    let message = lines.pop().unwrap_or("");
    assert!(message.starts_with("terrace: "), "{text}");
    assert!(
        lines.iter().all(|l| l.starts_with("ingest job ")),
        "more than the message and a progress line:\n{text}"
    );
    for needle in needles {
        assert!(message.contains(needle), "expected {needle:?} in:\n{text}");
    }
    out
}

/// A small dataset `lake/f` partitioned on origin, at version 1.
fn flights_lake(cwd: &Path) {
    std::fs::write(
        cwd.join("seed.csv"),
        "origin,n,note\nJFK,1,a\nLGA,2,b\nEWR,3,c\n",
    )
    .unwrap();
    ingest(
        cwd,
        &["seed.csv", "--into", "lake/f", "--partition-on", "origin"],
    )
    .ok();
}

#[test]
fn csv_headers_with_empty_or_repeated_names_are_refused_at_their_column() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for (name, text, column, what) in [
        ("dup.csv", "a,a\n1,2\n", "column 2", "names column 1 too"),
        ("dup3.csv", "a,b,a\n1,2,3\n", "column 3", "\"a\""),
        ("gap.csv", "a,,c\n1,2,3\n", "column 2", "no name"),
        ("trailing.csv", "a,b,\n1,2,3\n", "column 3", "no name"),
        ("commas.csv", ",,\n1,2,3\n", "column 1", "names no column"),
    ] {
        std::fs::write(cwd.join(name), text).unwrap();
        let out = ingest(cwd, &[name, "--into", "lake/x"]);
        one_line_with(out, &[name, "line 1", column, what]);
    }
    assert!(!cwd.join("lake").exists(), "nothing is created");
    assert!(jobs(cwd).is_empty(), "refused when planned: no job queued");

    // A given schema with a repeated name is refused too (it would read `a,a` as two
    // columns of one name).
    std::fs::write(cwd.join("ok.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(
        cwd.join("schema.json"),
        r#"[{"name": "a", "type": "Int64", "nullable": true},
            {"name": "a", "type": "Int64", "nullable": true}]"#,
    )
    .unwrap();
    let out = ingest(
        cwd,
        &["ok.csv", "--into", "lake/x", "--schema", "schema.json"],
    );
    one_line_with(out, &["columns 1 and 2 are both named \"a\""]);
    assert!(!cwd.join("lake").exists());
}

#[test]
fn csv_quotes_that_never_close_or_stray_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    flights_lake(cwd);
    let before = (dataset_version(cwd, "lake/f"), files(&cwd.join("lake")));
    for (name, text, line, what) in [
        (
            "open.csv",
            "origin,n,note\nJFK,1,a\nLGA,2,\"never closed\nEWR,3,c\n",
            "line 3",
            "never closed",
        ),
        (
            "stray.csv",
            "origin,n,note\nJFK,1,a\nLGA,2,ab\"c\n",
            "line 3",
            "inside a field that does not start with one",
        ),
        (
            "after.csv",
            "origin,n,note\nJFK,1,\"two\nlines\"\nLGA,2,\"ab\"c\n",
            "line 4",
            "after the closing quote",
        ),
    ] {
        std::fs::write(cwd.join(name), text).unwrap();
        // Into a new dataset and into the existing one.
        for into in ["lake/new", "lake/f"] {
            let out = ingest(cwd, &[name, "--into", into]);
            one_line_with(out, &[name, line, what]);
        }
    }
    assert!(!cwd.join("lake/new").exists());
    assert_eq!(
        (dataset_version(cwd, "lake/f"), files(&cwd.join("lake"))),
        before
    );

    // Past the 4 MiB that planning reads, the quote is found as the file is read: the
    // job fails (once: bad input is not retried) with the file and line.
    let mut big = String::from("origin,n,note\n");
    for i in 0..300_000 {
        big.push_str(&format!("JFK,{i},\"note {i}, quoted\"\n"));
    }
    assert!(big.len() > 5 << 20);
    let line = big.lines().count() + 1;
    for (name, bad, what) in [
        (
            "big-open.csv",
            "LGA,1,\"never closed\nEWR,2,x\n",
            "never closed",
        ),
        (
            "big-stray.csv",
            "LGA,1,x\"y\nEWR,2,x\n",
            "inside a field that does not start with one",
        ),
    ] {
        std::fs::write(cwd.join(name), format!("{big}{bad}")).unwrap();
        for into in ["lake/new", "lake/f"] {
            let out = ingest(cwd, &[name, "--into", into]);
            one_line_with(out, &[name, &format!("line {line}"), what, "attempt 1)"]);
        }
        // A map task of the shuffle through sorted runs fails the same way, and its
        // runs go with it.
        let runs = ["--shuffle", "--shuffle-method", "runs"];
        let out = ingest(cwd, &[&[name, "--into", "lake/f"][..], &runs].concat());
        one_line_with(out, &[name, &format!("line {line}"), what, "attempt 1)"]);
    }
    assert!(!cwd.join("lake/new").exists());
    assert_eq!(
        (dataset_version(cwd, "lake/f"), files(&cwd.join("lake"))),
        before
    );
    no_job_running(cwd);
}

#[test]
fn empty_files_are_refused_and_inputs_without_rows_commit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::create_dir_all(cwd.join("in")).unwrap();
    std::fs::write(cwd.join("in/a.csv"), "origin,n\nJFK,1\n").unwrap();
    for name in ["empty.csv", "empty.jsonl", "empty.parquet", "empty.arrow"] {
        std::fs::write(cwd.join(name), "").unwrap();
        let out = ingest(cwd, &[name, "--into", "lake/x"]);
        let out = one_line_with(out, &[name, "is empty"]);
        assert!(!out.stderr.contains("Range"), "{}", out.stderr);
    }
    // Among other files too: an empty file is not a part with no rows.
    std::fs::write(cwd.join("in/b.csv"), "").unwrap();
    one_line_with(
        ingest(cwd, &["in/*.csv", "--into", "lake/x"]),
        &["b.csv", "is empty"],
    );
    std::fs::remove_file(cwd.join("in/b.csv")).unwrap();
    assert!(!cwd.join("lake").exists());
    assert!(jobs(cwd).is_empty(), "refused when planned: no job queued");

    // Header-only files: nothing is committed, no dataset is created, and the command
    // says why and succeeds.
    std::fs::write(cwd.join("header.csv"), "origin,n\n").unwrap();
    std::fs::write(cwd.join("header2.csv"), "origin,n").unwrap();
    let out = ingest(
        cwd,
        &[
            "header.csv",
            "header2.csv",
            "--into",
            "lake/h",
            "--partition-on",
            "origin",
        ],
    )
    .ok();
    assert!(
        out.stdout
            .contains("nothing ingested: the inputs have no rows"),
        "{}",
        out.stdout
    );
    assert!(!cwd.join("lake").exists(), "no dataset at version 0");
    let out = ingest(cwd, &["header.csv", "--into", "lake/h", "--json"]).ok();
    let result: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(result["committed"], false);
    assert_eq!(result["version"], Value::Null);
    terrace(cwd, &[], &["inspect", "lake/h"]).fails_with("no terrace dataset");

    // Into an existing dataset: no new version.
    ingest(cwd, &["in/a.csv", "--into", "lake/h"]).ok();
    let before = (dataset_version(cwd, "lake/h"), files(&cwd.join("lake")));
    let out = ingest(cwd, &["header.csv", "--into", "lake/h"]).ok();
    assert!(out.stdout.contains("nothing ingested"), "{}", out.stdout);
    assert_eq!(
        (dataset_version(cwd, "lake/h"), files(&cwd.join("lake"))),
        before
    );
    no_job_running(cwd);
}

/// `pyarrow` writes Parquet and Arrow files whose schema names two columns alike; a
/// dataset made of one could not tell them apart. A JSON key `""` is refused too (JSON
/// inference merges a key seen twice into one column).
#[test]
fn json_parquet_and_arrow_inputs_with_empty_or_repeated_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("a", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["x"])),
        ],
    )
    .unwrap();
    let mut parquet = datafusion::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(cwd.join("dup.parquet")).unwrap(),
        schema.clone(),
        None,
    )
    .unwrap();
    parquet.write(&batch).unwrap();
    parquet.close().unwrap();
    let mut arrow = arrow::ipc::writer::StreamWriter::try_new(
        std::fs::File::create(cwd.join("dup.arrow")).unwrap(),
        &schema,
    )
    .unwrap();
    arrow.write(&batch).unwrap();
    arrow.finish().unwrap();
    for name in ["dup.parquet", "dup.arrow"] {
        let out = ingest(cwd, &[name, "--into", "lake/x"]);
        one_line_with(out, &[name, "columns 1 and 2 are both named \"a\""]);
    }
    std::fs::write(cwd.join("empty-key.jsonl"), "{\"a\": 1, \"\": 2}\n").unwrap();
    let out = ingest(cwd, &["empty-key.jsonl", "--into", "lake/x"]);
    one_line_with(out, &["empty-key.jsonl", "has an empty name"]);
    assert!(!cwd.join("lake").exists());
    assert!(jobs(cwd).is_empty());
}

#[test]
fn partition_values_too_long_for_a_directory_name_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let long = format!("{}{}", "x".repeat(296), "tail");
    assert_eq!(long.len(), 300);

    // In the rows planning reads: refused before a job is queued.
    std::fs::write(
        cwd.join("long.csv"),
        format!("origin,n\nJFK,1\n{long},2\nLGA,3\n"),
    )
    .unwrap();
    let started = Instant::now();
    let out = ingest(
        cwd,
        &["long.csv", "--into", "lake/x", "--partition-on", "origin"],
    );
    one_line_with(out, &["long.csv", "line 3", "\"origin\"", &"x".repeat(40)]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!cwd.join("lake").exists());
    assert!(jobs(cwd).is_empty(), "refused when planned: no job queued");

    // Past what planning reads (the first MiB), and in a Parquet file: the write task
    // refuses the value before writing it, and is not retried (five attempts with
    // backoff took over 15 s). No version, no file is left behind.
    flights_lake(cwd);
    let before = (dataset_version(cwd, "lake/f"), files(&cwd.join("lake")));
    let mut text = String::from("origin,n,note\n");
    for i in 0..100_000 {
        text.push_str(&format!("{},{i},note\n", ["JFK", "LGA", "EWR"][i % 3]));
    }
    assert!(text.len() > 1 << 20);
    text.push_str(&format!("{long},1,note\n"));
    std::fs::write(cwd.join("late.csv"), &text).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("origin", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["JFK", long.as_str()])),
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["a", "b"])),
        ],
    )
    .unwrap();
    let mut parquet = datafusion::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(cwd.join("long.parquet")).unwrap(),
        schema,
        None,
    )
    .unwrap();
    parquet.write(&batch).unwrap();
    parquet.close().unwrap();
    // Written directly, and through either shuffle's map tasks.
    for (input, path) in [
        ("late.csv", &["--no-shuffle"][..]),
        ("late.csv", &["--shuffle", "--shuffle-method", "pieces"]),
        ("late.csv", &["--shuffle", "--shuffle-method", "runs"]),
        ("long.parquet", &[]),
    ] {
        let args = [&[input, "--into", "lake/f"][..], path].concat();
        let started = Instant::now();
        let out = ingest(cwd, &args);
        let elapsed = started.elapsed();
        // Attempt 1 failed the job: the error is not one to retry.
        one_line_with(
            out,
            &["\"origin\"", "too long", &"x".repeat(40), "attempt 1)"],
        );
        assert!(elapsed < Duration::from_secs(30), "{input}: {elapsed:?}");
        assert_eq!(
            (dataset_version(cwd, "lake/f"), files(&cwd.join("lake"))),
            before,
            "{input}: a new version or an orphan file"
        );
    }
    no_job_running(cwd);
}
