//! A task that crashes its worker process every time is dead after its attempts, not a
//! poison pill that kills every worker that ever claims it.
//!
//! The fault campaign found a `--where` that overflowed a worker's stack: the process
//! aborted, the lease expired, the next worker claimed the task and aborted too, and so
//! did the in-process workers of later, unrelated commands on the embedded SQLite queue.
//! Here real processes (this test binary, re-run as a child whose handler calls
//! `std::process::abort()` on the poison task) are started in a loop: each claim counts
//! an attempt, the expired lease on the last one fails the task and its job with an error
//! saying the worker was lost that many times, and workers started afterwards claim
//! nothing of it.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rstest::rstest;
use serde_json::json;
use terrace_jobs::{
    JobId, JobState, NewJob, NewTask, Queue, QueueOptions, TaskOutput, TaskState, Worker,
    WorkerConfig, handler_fn,
};

mod common;
use common::{Kind, TestDb};

/// Leases of the child workers: short, so that a crashed one is noticed quickly.
const LEASE: Duration = Duration::from_millis(600);

/// Attempts the poison task gets.
const ATTEMPTS: i32 = 3;

// ---- the child processes ------------------------------------------------------------

const CHILD_URL: &str = "TERRACE_POISON_TEST_URL";
const CHILD_ROLE: &str = "TERRACE_POISON_TEST_ROLE";

fn child_config() -> WorkerConfig {
    WorkerConfig::default()
        .with_concurrency(2)
        .with_batch_size(2)
        .with_lease(LEASE)
        .with_poll_interval(Duration::from_millis(50))
}

/// Not a test on its own: the body of the child processes (this binary re-run with
/// `CHILD_URL` set). Role `worker` is a `terrace worker`: it runs tasks until SIGTERM.
/// Role `command` is a later, unrelated command on the embedded queue: it submits a
/// job of its own and runs an in-process worker until that job is finished, as
/// `terrace query` does. Either aborts the process on a task whose payload is
/// `"poison"`; other tasks succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_child_process() {
    let (Ok(url), Ok(role)) = (std::env::var(CHILD_URL), std::env::var(CHILD_ROLE)) else {
        return;
    };
    let queue = Queue::connect(&url).await.expect("child connect");
    let handler = Arc::new(handler_fn(|task, _ctx| async move {
        if task.payload()? == json!("poison") {
            // What a stack overflow does (SIGSEGV handler, then abort): no unwinding, no
            // error recorded, the lease simply stops being renewed.
            std::process::abort();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(TaskOutput::new(json!({"ok": true})))
    }));
    let worker = Worker::new(queue.clone(), child_config());
    match role.as_str() {
        "worker" => {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            worker
                .run(handler, async move {
                    term.recv().await;
                })
                .await
                .expect("worker");
        }
        "command" => {
            let id = queue
                .submit(
                    NewJob::new("unrelated", json!({}))
                        .with_tasks((0..2).map(|i| NewTask::new(0, json!(i)))),
                )
                .await
                .expect("submit");
            let q = queue.clone();
            worker
                .run(handler, async move {
                    while !q.job(id).await.expect("job").state.is_finished() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await
                .expect("worker");
            let job = queue.job(id).await.expect("job");
            assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn_child(url: &str, role: &str) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    Command::new(exe)
        .args([
            "--exact",
            "poison_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, url)
        .env(CHILD_ROLE, role)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn a child process")
}

fn aborted(status: ExitStatus) -> bool {
    status.signal() == Some(6)
}

/// The poison job: the poison task, and a second stage that must never run.
async fn submit_poison(queue: &Queue) -> JobId {
    queue
        .submit(
            NewJob::new("poison", json!({}))
                .with_task(NewTask::new(0, json!("poison")))
                .with_task(NewTask::new(1, json!("after"))),
        )
        .await
        .expect("submit")
}

/// Check what the poison job ended as: failed, its error saying the worker was lost on
/// every attempt, the task dead after exactly its attempts, the next stage never run.
async fn assert_dead_after_its_attempts(queue: &Queue, id: JobId) {
    let job = queue.job(id).await.expect("job");
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let error = job.error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "its worker was lost {ATTEMPTS} times, on every attempt"
        )),
        "{error}"
    );
    assert!(error.contains("is not tried again"), "{error}");
    let tasks = queue.tasks(id).await.expect("tasks");
    assert_eq!(tasks[0].state, TaskState::Dead, "{tasks:?}");
    assert_eq!(tasks[0].attempts, ATTEMPTS, "{tasks:?}");
    assert_eq!(tasks[1].state, TaskState::Blocked, "{tasks:?}");
    assert_eq!(tasks[1].attempts, 0, "{tasks:?}");
}

fn stop(mut child: Child) -> ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    child.wait().expect("wait")
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_aborts_its_worker_is_dead_after_its_attempts(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let queue = Queue::connect_with(&db.url, QueueOptions::default().with_max_attempts(ATTEMPTS))
        .await
        .expect("connect");
    let id = submit_poison(&queue).await;

    // Start a worker, let it claim the poison and die, start the next: each claim is an
    // attempt. Once the lease of the last attempt has expired, a live worker's heartbeat
    // fails the task, and that worker goes on living.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut crashes = 0;
    let survivor = loop {
        let mut child = spawn_child(&db.url, "worker");
        let survived = loop {
            assert!(Instant::now() < deadline, "the poison job never died");
            if let Some(status) = child.try_wait().expect("try_wait") {
                assert!(aborted(status), "a worker exited otherwise: {status:?}");
                crashes += 1;
                break false;
            }
            if queue.job(id).await.expect("job").state.is_finished() {
                break true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if survived {
            break child;
        }
    };
    assert_eq!(crashes, ATTEMPTS, "one crash per attempt");
    assert_dead_after_its_attempts(&queue, id).await;

    // The worker that failed it, and a fresh one, claim nothing of it.
    let fresh = spawn_child(&db.url, "worker");
    tokio::time::sleep(LEASE * 4).await;
    let mut survivor = survivor;
    let mut fresh = fresh;
    assert!(survivor.try_wait().expect("try_wait").is_none(), "alive");
    assert!(fresh.try_wait().expect("try_wait").is_none(), "alive");
    assert_dead_after_its_attempts(&queue, id).await;
    assert!(stop(survivor).success(), "SIGTERM drains and exits 0");
    assert!(stop(fresh).success(), "SIGTERM drains and exits 0");
}

/// The embedded queue has no dedicated workers: every command runs workers in-process,
/// and they claim whatever is ready, a poison task of another job too. At most its
/// attempts' worth of them die; every command after that (and their jobs, and the jobs
/// of the commands that died) succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_unrelated_commands_outlive_a_poison_task() {
    let db = TestDb::new(Kind::Sqlite).await;
    let queue = Queue::connect_with(&db.url, QueueOptions::default().with_max_attempts(ATTEMPTS))
        .await
        .expect("connect");
    // As a detached `terrace query` would leave it.
    let poison = submit_poison(&queue).await;

    let (mut crashed, mut succeeded_after) = (0, 0);
    for _ in 0..40 {
        let mut child = spawn_child(&db.url, "command");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "a command hung"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let poison_done = queue.job(poison).await.expect("job").state.is_finished();
        if aborted(status) {
            assert!(
                !poison_done,
                "a command died after the poison task was dead"
            );
            crashed += 1;
        } else {
            assert!(status.success(), "a command failed: {status:?}");
            if poison_done {
                succeeded_after += 1;
            }
        }
        let unrelated = queue.list_jobs(None, 1000).await.expect("jobs");
        let all_done = unrelated
            .iter()
            .filter(|j| j.kind == "unrelated")
            .all(|j| j.state.is_finished());
        if poison_done && succeeded_after >= 3 && all_done {
            break;
        }
        // Let a crashed command's leases expire, so that the next one reaps them.
        tokio::time::sleep(LEASE).await;
    }
    assert_eq!(crashed, ATTEMPTS, "one command died per attempt, no more");
    assert!(
        succeeded_after >= 3,
        "commands after the poison died succeed"
    );
    assert_dead_after_its_attempts(&queue, poison).await;
    let jobs = queue.list_jobs(None, 1000).await.expect("jobs");
    let unrelated: Vec<_> = jobs.iter().filter(|j| j.kind == "unrelated").collect();
    assert!(unrelated.len() >= ATTEMPTS as usize + 3);
    for job in unrelated {
        assert_eq!(
            job.state,
            JobState::Succeeded,
            "job {} of a command: {:?}",
            job.id,
            job.error
        );
    }
}
