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
        terrace_format::ScanRequest::new(files),
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

/// The `terrace` binary of this build (`target/<profile>/terrace`, next to the test
/// binary's `deps/` directory). `cargo test --workspace` builds it.
pub fn terrace_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let bin = dir.join(format!("terrace{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p terrace-cli`) first",
        bin.display()
    );
    bin
}

/// What a `terrace` run printed and how it exited.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Panic with both streams unless the command succeeded.
    pub fn ok(self) -> Output {
        assert_eq!(
            self.code, 0,
            "terrace failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panic unless the command failed with exit code 1 and `needle` in stderr.
    pub fn fails_with(self, needle: &str) -> Output {
        assert_eq!(
            self.code, 1,
            "expected a failure mentioning {needle:?}:\n{}\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in stderr:\n{}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "a panic reached the user:\n{}",
            self.stderr
        );
        self
    }
}

/// Run `terrace args…` in `cwd` with extra environment variables.
pub fn terrace(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let out = Command::new(terrace_bin())
        .current_dir(cwd)
        .env_remove("TERRACE_DB")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .args(args)
        .output()
        .expect("start terrace");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Start `terrace args…` in `cwd` in the background (a worker), output to files in cwd.
pub fn spawn_terrace(cwd: &Path, args: &[&str], log: &str) -> Child {
    spawn_terrace_with(cwd, &[], args, log)
}

/// [`spawn_terrace`] with extra environment variables.
pub fn spawn_terrace_with(cwd: &Path, env: &[(&str, &str)], args: &[&str], log: &str) -> Child {
    let out = std::fs::File::create(cwd.join(log)).expect("create a log file");
    let err = out.try_clone().expect("clone the log file");
    Command::new(terrace_bin())
        .current_dir(cwd)
        .env_remove("TERRACE_DB")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .args(args)
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start terrace")
}

/// Stop a background terrace (a worker) with SIGTERM, as an operator would, and reap it.
pub fn stop_terrace(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The administrative URL of this machine's PostgreSQL.
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh PostgreSQL database for one test on 127.0.0.1:5432, dropped on drop.
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
    name: String,
}

impl PgDatabase {
    /// Create it (with `psql`, so tests need no driver of their own).
    pub fn create() -> PgDatabase {
        let name = format!("terrace_e2e_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}"));
        PgDatabase {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([PG_ADMIN, "-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

fn psql(sql: &str) {
    run(Command::new("psql").args([PG_ADMIN, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]));
}

/// Poll `f` every 100 ms until it returns `Some`, panicking after `within`.
pub fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Write nycflights13-shaped CSV files, one per month (`flights-MM.csv`), into `dir`:
/// three origins, a handful of carriers, tail numbers (some empty, i.e. null), delays
/// (some empty). Deterministic. Returns the number of rows.
pub fn write_flights_csv(dir: &Path, months: u32, rows_per_month: usize) -> usize {
    std::fs::create_dir_all(dir).expect("create the flights directory");
    let origins = ["EWR", "JFK", "LGA"];
    let carriers = ["AA", "B6", "DL", "UA", "EV", "MQ"];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut rows = 0;
    for month in 1..=months {
        let mut text = String::from(
            "year,month,day,dep_delay,arr_delay,carrier,flight,tailnum,origin,dest,distance\n",
        );
        for _ in 0..rows_per_month {
            let tail = match next(40) {
                0 => String::new(),
                n => format!("N{}", 14_200 + n * 3 + next(3)),
            };
            let delay = if next(30) == 0 {
                String::new()
            } else {
                (next(120) as i64 - 20).to_string()
            };
            text.push_str(&format!(
                "2013,{month},{},{delay},{},{},{},{tail},{},{},{}\n",
                1 + next(28),
                next(90) as i64 - 30,
                carriers[next(carriers.len() as u64) as usize],
                1 + next(3000),
                origins[next(3) as usize],
                ["ATL", "ORD", "LAX", "BOS"][next(4) as usize],
                100 + next(2500),
            ));
            rows += 1;
        }
        std::fs::write(dir.join(format!("flights-{month:02}.csv")), text)
            .expect("write a flights file");
    }
    rows
}

/// The data lines of a CSV file (header dropped), sorted, for comparing results as
/// multisets.
pub fn sorted_csv_rows(path: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut rows: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    rows.sort();
    rows
}

/// `terrace ingest ARGS…` in `cwd`.
pub fn ingest(cwd: &Path, args: &[&str]) -> Output {
    let mut all = vec!["ingest"];
    all.extend(args);
    terrace(cwd, &[], &all)
}

/// How many jobs `terrace jobs` lists in `cwd`'s queue.
pub fn job_count(cwd: &Path) -> usize {
    let out = terrace(cwd, &[], &["jobs", "--json"]).ok();
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

/// The version `terrace inspect` reports for `dataset`.
pub fn dataset_version(cwd: &Path, dataset: &str) -> u64 {
    let out = terrace(cwd, &[], &["inspect", dataset, "--json"]).ok();
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["version"]
        .as_u64()
        .unwrap()
}

/// Every file below `dir` (none if it does not exist) with its size and modification
/// time, sorted: a tree that did not change lists the same.
pub fn files_below(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len(), meta.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}
