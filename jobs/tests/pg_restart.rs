//! PostgreSQL restarted in the middle of a job: the workers' claims, heartbeats and
//! completions fail while it is down, they back off and reconnect, and the job completes
//! with every task done once.
//!
//! The test runs its own PostgreSQL cluster (initdb into a temp dir, a free port, run
//! as the `postgres` user when the tests run as root) so that restarting it disturbs no
//! other test; it uses the machine's PostgreSQL binaries (`/usr/lib/postgresql/*/bin`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use terrace_jobs::{
    JobState, NewJob, NewTask, Queue, QueueOptions, TaskOutput, Worker, WorkerConfig, handler_fn,
};

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("no {name} under /usr/lib/postgresql"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Run a PostgreSQL tool, as the `postgres` user when we are root (initdb refuses root).
fn pg(tool: &str, args: &[&str]) {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(tool));
        c
    } else {
        Command::new(pg_bin(tool))
    };
    let out = command.args(args).output().expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if is_root() {
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
        }
        let data = Self::data(dir.path());
        pg(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
        );
        let cluster = Cluster { dir, port };
        cluster.ctl(&["start", "-w"]);
        cluster
    }

    fn data(dir: &Path) -> String {
        dir.join("data").display().to_string()
    }

    fn ctl(&self, action: &[&str]) {
        let data = Self::data(self.dir.path());
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let mut args = vec!["-D", &data, "-o", &options, "-l", &log];
        args.extend(action);
        pg("pg_ctl", &args);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = Self::data(self.dir.path());
        let _ =
            std::panic::catch_unwind(|| pg("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_after_postgres_restarts_and_the_job_completes() {
    let cluster = Cluster::start();
    let queue = Queue::connect_with(
        &cluster.url(),
        QueueOptions::default()
            .with_retry_backoff(Duration::from_millis(50), Duration::from_millis(500)),
    )
    .await
    .expect("connect");
    const N: usize = 300;
    let job = NewJob::new("restart", json!({}))
        .with_tasks((0..N).map(|i| NewTask::new(0, json!(i))))
        .with_task(NewTask::new(1, json!("commit")));
    let id = queue.submit(job).await.expect("submit");

    let runs = Arc::new(AtomicUsize::new(0));
    let commits = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (runs, commits) = (runs.clone(), commits.clone());
        Arc::new(handler_fn(move |task, _ctx| {
            let (runs, commits) = (runs.clone(), commits.clone());
            async move {
                if task.stage == 1 {
                    commits.fetch_add(1, Ordering::SeqCst);
                } else {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(TaskOutput::new(json!(task.id.0)))
            }
        }))
    };
    let worker = Worker::new(
        queue.clone(),
        WorkerConfig::default()
            .with_concurrency(4)
            .with_lease(Duration::from_secs(3)),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(handler, async move {
        let _ = stop_rx.await;
    }));

    // Restart once a good part of the job is done.
    while runs.load(Ordering::SeqCst) < N / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let restart = tokio::task::spawn_blocking(move || {
        cluster.ctl(&["restart", "-m", "fast", "-w"]);
        cluster
    });
    let cluster = restart.await.expect("restart");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let record = loop {
        match queue.job(id).await {
            Ok(job) if job.state.is_finished() => break job,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop_tx.send(());
    running.await.expect("worker task").expect("worker");
    assert_eq!(record.state, JobState::Succeeded, "{:?}", record.error);
    assert_eq!(record.tasks_done, N as i64 + 1);
    assert!(runs.load(Ordering::SeqCst) >= N, "every task ran");
    assert_eq!(commits.load(Ordering::SeqCst), 1, "the fan-in ran once");
    drop(cluster);
}
