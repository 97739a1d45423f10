//! Helpers shared by terrace's end-to-end tests: a Python with pyarrow and DuckDB for
//! interop checks, an S3 API server (moto) on loopback, and sample data.
//!
//! The Python virtualenv is created on first use under `target/terrace-venv` (kept
//! between builds, never committed), so `cargo test --workspace` works on a fresh
//! machine with nothing but `python3`; `.ci/run` creates it up front.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Python packages the interop tests use.
pub const PYTHON_PACKAGES: &[&str] = &["pyarrow", "duckdb", "moto[server]"];

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// A Python interpreter with [`PYTHON_PACKAGES`] installed, creating the virtualenv if
/// needed. Panics with the installer's output when that fails: the tests need it.
pub fn python() -> PathBuf {
    if let Ok(python) = std::env::var("TERRACE_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = workspace_root().join("target").join("terrace-venv");
    let python = venv.join("bin").join("python");
    let marker = venv.join(".terrace-ready");
    if marker.exists() {
        return python;
    }
    std::fs::create_dir_all(workspace_root().join("target")).expect("create target/");
    let lock = std::fs::File::create(workspace_root().join("target").join("terrace-venv.lock"))
        .expect("create the venv lock file");
    lock.lock().expect("lock the venv");
    if !marker.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PYTHON_PACKAGES));
        std::fs::write(&marker, b"ok").expect("write the venv marker");
    }
    python
}

fn run(command: &mut Command) {
    let output = command.output().expect("start a setup command");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Run a Python script with the interop interpreter and return its stdout.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("start python");
    assert!(
        output.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// An S3 API server (moto) on loopback, stopped on drop.
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl MotoServer {
    /// Start moto and wait until it answers.
    pub fn start() -> MotoServer {
        let port = free_port();
        let mut child = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let stderr = child.stderr.take().map(|s| {
                    BufReader::new(s)
                        .lines()
                        .map_while(Result::ok)
                        .collect::<Vec<_>>()
                        .join("\n")
                });
                panic!("moto did not start on {endpoint}: {stderr:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        MotoServer { child, endpoint }
    }

    /// Create a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        let script = "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], \
            aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')\
            .create_bucket(Bucket=sys.argv[2])";
        run_python(script, &[&self.endpoint, bucket]);
    }

    /// Environment for object_store's S3 builder to talk to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every row of the dataset's loaded version as `col1|col2|…` strings (columns sorted by
/// name, values displayed), sorted: a multiset that is easy to compare.
pub async fn read_rows(dataset: &terrace_format::Dataset) -> Vec<String> {
    use futures::TryStreamExt;
    let files = dataset.files().await.expect("list files");
    let snapshot = dataset.current();
    let stream = terrace_format::read_data_files(
        dataset.store(),
        dataset.root().clone(),
        snapshot.schema(),
        snapshot.layout(),
        terrace_format::ScanRequest {
            files,
            projection: None,
            predicate: None,
            batch_size: 8192,
        },
    )
    .await
    .expect("scan");
    let batches: Vec<arrow::record_batch::RecordBatch> = stream.try_collect().await.expect("read");
    let mut rows = Vec::new();
    for batch in batches {
        rows.extend(batch_rows(&batch));
    }
    rows.sort();
    rows
}

/// The rows of a batch as `col1|col2|…` strings, columns sorted by name.
pub fn batch_rows(batch: &arrow::record_batch::RecordBatch) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let schema = batch.schema();
    let mut order: Vec<usize> = (0..schema.fields().len()).collect();
    order.sort_by_key(|&i| schema.field(i).name().clone());
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<_> = order
        .iter()
        .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options).expect("formatter"))
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}
