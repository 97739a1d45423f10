//! The real `terrace` binary on real datasets: inspect, history, errors and exit codes.

use std::process::Command;
use std::sync::Arc;

use terrace_format::{Dataset, Layout};

fn terrace(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_terrace"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn inspect_and_history_describe_a_dataset() {
    use arrow::datatypes::{DataType, Field, Schema};
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("lake").display().to_string();
    let schema = Arc::new(Schema::new(vec![
        Field::new("origin", DataType::Utf8, true),
        Field::new("tailnum", DataType::Utf8, true),
    ]));
    let layout = Layout {
        partition_on: vec!["origin".into()],
        bucket_by: vec!["tailnum".into()],
        num_buckets: Some(8),
    };
    Dataset::create(&location, schema, layout).await.unwrap();

    let (code, out, err) = terrace(&["inspect", &location]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("partition  origin"), "{out}");
    assert!(out.contains("buckets    8 by tailnum"), "{out}");
    assert!(out.contains("versions   1 retained (0)"), "{out}");

    let (code, out, _) = terrace(&["inspect", &location, "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["version"], 0);
    assert_eq!(json["num_buckets"], 8);
    assert_eq!(json["versions_retained"], 1);

    let (code, out, _) = terrace(&["history", &location, "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["operation"], "Create");
}

#[test]
fn a_missing_dataset_is_one_clear_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("nothing").display().to_string();
    let (code, out, err) = terrace(&["inspect", &location]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("terrace: cannot open "), "{err}");
    assert!(err.contains("no terrace dataset at"), "{err}");
}

#[test]
fn a_collected_or_unknown_version_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("lake").display().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("a", arrow::datatypes::DataType::Int64, false),
        ]));
        Dataset::create(&location, schema, Layout::default())
            .await
            .unwrap();
    });
    let (code, _, err) = terrace(&["inspect", &location, "--version", "7"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("version 7") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, err) = terrace(&["inspect"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = terrace(&["frobnicate"]);
    assert_eq!(code, 2);
}

#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("lake").display().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        Dataset::create(&location, schema, Layout::default())
            .await
            .unwrap();
    });
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_terrace"))
            .args(["inspect", &location])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before (or while) terrace writes, as with `| head -0`.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
}
