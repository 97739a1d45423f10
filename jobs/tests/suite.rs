//! One suite, run over both backends: every test takes the backend as an rstest value.
//! PostgreSQL tests each create their own database on 127.0.0.1:5432 and drop it after,
//! so they run in parallel; SQLite tests use a file in a temp dir.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use rstest::rstest;
use serde_json::{Value, json};
use terrace_jobs::{
    Ack, Attempt, CancelOutcome, Completion, Error, FailOutcome, JobId, JobState, ManualClock,
    NewJob, NewTask, Queue, QueueOptions, TaskError, TaskOutput, TaskState, Worker, WorkerConfig,
    handler_fn,
};

mod common;
use common::{Kind, TestDb};

fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("time"),
    ))
}

fn done(t: &terrace_jobs::ClaimedTask, result: Value) -> Completion {
    Completion {
        attempt: Attempt::from(t),
        output: TaskOutput::new(result),
    }
}

const LEASE: Duration = Duration::from_secs(10);

async fn wait_for_state(q: &Queue, id: JobId, state: JobState, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let job = q.job(id).await.expect("job");
        if job.state == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} still {:?} ({}/{} tasks) after {within:?}",
            job.state,
            job.tasks_done,
            job.tasks_total
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_claim_complete_advances_stages(#[values(Kind::Sqlite, Kind::Postgres)] kind: Kind) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    let job = NewJob::new("ingest", json!({"path": "in/"}))
        .with_tasks((0..3).map(|i| NewTask::new(0, json!({"file": i}))))
        .with_task(NewTask::new(1, json!("commit")));
    let id = q.submit(job).await.expect("submit");

    let rec = q.job(id).await.expect("job");
    assert_eq!(
        (rec.state, rec.tasks_total, rec.tasks_done),
        (JobState::Queued, 4, 0)
    );

    let claimed = q.claim("w1", 10, LEASE).await.expect("claim");
    assert_eq!(claimed.len(), 3, "the commit stage is blocked");
    assert!(
        claimed
            .iter()
            .all(|t| t.stage == 0 && t.attempt == 1 && t.kind == "ingest")
    );
    assert_eq!(q.job(id).await.expect("job").state, JobState::Running);

    let batch: Vec<Completion> = claimed
        .iter()
        .map(|t| Completion {
            attempt: Attempt::from(t),
            output: TaskOutput::new(json!({"wrote": t.payload().expect("payload")}))
                .with_progress(10, 100),
        })
        .collect();
    let acks = q.complete(&batch).await.expect("complete");
    assert_eq!(acks, vec![Ack::Accepted; 3]);

    let rec = q.job(id).await.expect("job");
    assert_eq!(
        (rec.tasks_done, rec.rows, rec.bytes, rec.current_stage),
        (3, 30, 300, 1)
    );
    let results = q.stage_results(id, 0).await.expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].1, json!({"wrote": {"file": 0}}));

    let commit = q.claim("w1", 10, LEASE).await.expect("claim");
    assert_eq!(commit.len(), 1);
    assert_eq!(commit[0].stage, 1);
    q.complete(&[done(&commit[0], json!({"version": 7}))])
        .await
        .expect("complete");
    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.state, JobState::Succeeded);
    assert_eq!(rec.result, Some(json!({"version": 7})));
    assert!(rec.finished_at.is_some());
    assert!(q.claim("w1", 10, LEASE).await.expect("claim").is_empty());
}

/// A job of more tasks than one INSERT statement takes: every task is stored with its own
/// stage, payload text and attempts, in submission order.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_many_tasks_stores_each_as_submitted(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    const N: usize = 25_001;
    let payload = |i: usize| json!({"file": format!("in/part \"{i}\"/ü\\✓.csv"), "n": i, "nested": [i, null, true]});
    let job = NewJob::new("ingest", json!({}))
        .with_tasks((0..N).map(|i| {
            let task = NewTask::new(0, payload(i));
            if i % 3 == 0 {
                task.with_max_attempts(7)
            } else {
                task
            }
        }))
        .with_task(NewTask::new(1, json!("commit")));
    let id = q.submit(job).await.expect("submit");
    assert_eq!(q.job(id).await.expect("job").tasks_total, N as i64 + 1);

    let records = q.tasks(id).await.expect("tasks");
    assert_eq!(records.len(), N + 1);
    let ids: Vec<_> = records.iter().map(|t| t.id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids follow submission order"
    );
    for (i, t) in records[..N].iter().enumerate() {
        let want = if i % 3 == 0 {
            7
        } else {
            QueueOptions::default().max_attempts
        };
        assert_eq!(
            (t.stage, t.state, t.max_attempts),
            (0, TaskState::Ready, want),
            "task {i}"
        );
    }
    assert_eq!(
        (records[N].stage, records[N].state),
        (1, TaskState::Blocked)
    );

    let claimed = q.claim("w1", N as u32 + 10, LEASE).await.expect("claim");
    assert_eq!(claimed.len(), N, "only stage 0 is ready");
    for t in &claimed {
        let i = usize::try_from(t.id.0 - records[0].id.0).expect("id offset");
        assert_eq!(t.payload().expect("payload"), payload(i), "task {i}");
        if kind == Kind::Sqlite {
            // SQLite keeps the submitted text itself (PostgreSQL stores jsonb).
            assert_eq!(
                t.payload_json,
                serde_json::to_string(&payload(i)).expect("json")
            );
        }
    }
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_happens_once_under_concurrent_workers(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    const N: usize = 300;
    let job = NewJob::new("ingest", json!({}))
        .with_tasks((0..N).map(|i| NewTask::new(0, json!(i))))
        .with_task(NewTask::new(1, json!("plan")))
        .with_task(NewTask::new(3, json!("commit")));
    let id = q.submit(job).await.expect("submit");

    let plan_runs = Arc::new(AtomicUsize::new(0));
    let commit_runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (plan_runs, commit_runs) = (plan_runs.clone(), commit_runs.clone());
        Arc::new(handler_fn(move |task, ctx| {
            let (plan_runs, commit_runs) = (plan_runs.clone(), commit_runs.clone());
            async move {
                match task.stage {
                    0 => Ok(TaskOutput::new(task.payload()?).with_progress(1, 8)),
                    1 => {
                        plan_runs.fetch_add(1, Ordering::SeqCst);
                        let inputs = ctx.stage_results(task.job_id, 0).await?;
                        // Dynamic fan-out: the plan adds a stage-2 task per 100 inputs.
                        let mut out = TaskOutput::new(json!({"inputs": inputs.len()}));
                        for chunk in 0..inputs.len().div_ceil(100) {
                            out = out.with_new_task(NewTask::new(2, json!(chunk)));
                        }
                        Ok(out)
                    }
                    2 => Ok(TaskOutput::new(task.payload()?)),
                    _ => {
                        commit_runs.fetch_add(1, Ordering::SeqCst);
                        let plan = ctx.stage_results(task.job_id, 1).await?;
                        let parts = ctx.stage_results(task.job_id, 2).await?;
                        Ok(TaskOutput::new(
                            json!({"plan": plan[0].1, "parts": parts.len()}),
                        ))
                    }
                }
            }
        }))
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let w = Worker::new(
            q.clone(),
            WorkerConfig::default()
                .with_concurrency(8)
                .with_batch_size(7),
        );
        let mut stop = stop_rx.clone();
        workers.push(tokio::spawn(w.run(handler.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    wait_for_state(&q, id, JobState::Succeeded, Duration::from_secs(60)).await;
    stop_tx.send(true).expect("stop");
    let mut completed = 0;
    for w in workers {
        completed += w.await.expect("join").expect("worker").completed;
    }
    assert_eq!(
        plan_runs.load(Ordering::SeqCst),
        1,
        "stage 1 unblocked once"
    );
    assert_eq!(commit_runs.load(Ordering::SeqCst), 1, "commit ran once");
    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.result, Some(json!({"plan": {"inputs": N}, "parts": 3})));
    assert_eq!(
        (rec.tasks_total, rec.tasks_done),
        (N as i64 + 5, N as i64 + 5)
    );
    assert_eq!((rec.rows, rec.bytes), (N as i64, 8 * N as i64));
    assert_eq!(completed, N as u64 + 5);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_reruns_task_and_refuses_stale_completion(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let clock = manual_clock();
    let q = db
        .queue(QueueOptions::default().with_clock(clock.clone()))
        .await;
    let id = q
        .submit(NewJob::new("query", json!({})).with_task(NewTask::new(0, json!(1))))
        .await
        .expect("submit");
    let first = q.claim("dead-worker", 10, LEASE).await.expect("claim");
    assert_eq!(first.len(), 1);
    assert!(q.claim("w2", 10, LEASE).await.expect("claim").is_empty());

    // The lease is still valid: nothing to reap; the heartbeat extends it.
    clock.advance(Duration::from_secs(8));
    assert_eq!(q.reap_expired().await.expect("reap"), 0);
    assert_eq!(q.heartbeat("dead-worker", LEASE).await.expect("renew"), 1);
    clock.advance(Duration::from_secs(8));
    assert_eq!(
        q.reap_expired().await.expect("reap"),
        0,
        "renewed lease holds"
    );

    clock.advance(Duration::from_secs(3));
    assert_eq!(q.reap_expired().await.expect("reap"), 1);
    let second = q.claim("w2", 10, LEASE).await.expect("claim");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);

    let stale = q
        .complete(&[done(&first[0], json!("from the dead worker"))])
        .await
        .expect("complete");
    assert_eq!(stale, vec![Ack::Stale]);
    assert_eq!(
        q.fail(&Attempt::from(&first[0]), "late failure", false)
            .await
            .expect("fail"),
        FailOutcome::Stale
    );
    let ok = q
        .complete(&[done(&second[0], json!("from w2"))])
        .await
        .expect("complete");
    assert_eq!(ok, vec![Ack::Accepted]);
    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.state, JobState::Succeeded);
    assert_eq!(rec.result, Some(json!("from w2")));
    assert_eq!(rec.tasks_done, 1);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_then_task_dies_and_job_fails(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let clock = manual_clock();
    let q = db
        .queue(
            QueueOptions::default()
                .with_clock(clock.clone())
                .with_max_attempts(3)
                .with_retry_backoff(Duration::from_secs(10), Duration::from_secs(60)),
        )
        .await;
    let id = q
        .submit(
            NewJob::new("compact", json!({}))
                .with_task(NewTask::new(0, json!("flaky")))
                .with_task(NewTask::new(0, json!("other"))),
        )
        .await
        .expect("submit");
    let mut waits = Vec::new();
    for attempt in 1..=3 {
        let claimed = q.claim("w", 1, LEASE).await.expect("claim");
        assert_eq!(claimed.len(), 1, "attempt {attempt} claimable");
        assert_eq!(claimed[0].attempt, attempt);
        assert_eq!(claimed[0].payload().expect("payload"), json!("flaky"));
        let t0 = q.now();
        match q
            .fail(&Attempt::from(&claimed[0]), "store timed out", true)
            .await
            .expect("fail")
        {
            FailOutcome::RetryAt(at) => {
                assert!(attempt < 3);
                let wait = (at - t0).to_std().expect("positive");
                let full = Duration::from_secs(10 * (1 << (attempt - 1)));
                assert!(wait >= full / 2 && wait <= full, "{wait:?} for {full:?}");
                waits.push(wait);
                // Not before the backoff (the other task is taken meanwhile, once).
                let early = q.claim("w", 5, LEASE).await.expect("claim");
                assert!(
                    early
                        .iter()
                        .all(|t| t.payload().expect("p") != json!("flaky"))
                );
                if attempt == 1 {
                    assert_eq!(early.len(), 1);
                    q.complete(&[done(&early[0], json!(null))])
                        .await
                        .expect("ok");
                }
                clock.advance(wait);
            }
            FailOutcome::Dead => assert_eq!(attempt, 3),
            FailOutcome::Stale => panic!("stale"),
        }
    }
    assert!(waits[1] > waits[0] / 2, "backoff grows: {waits:?}");
    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.state, JobState::Failed);
    assert_eq!(rec.tasks_failed, 1);
    let err = rec.error.expect("error kept");
    assert!(
        err.contains("store timed out") && err.contains("attempt 3"),
        "{err}"
    );
    let tasks = q.tasks(id).await.expect("tasks");
    assert_eq!(tasks[0].state, TaskState::Dead);
    assert_eq!(tasks[0].error.as_deref(), Some("store timed out"));
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_error_kills_at_once_and_retry_requeues(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    let id = q
        .submit(
            NewJob::new("ingest", json!({}))
                .with_task(NewTask::new(0, json!("bad")))
                .with_task(NewTask::new(0, json!("good")))
                .with_task(NewTask::new(1, json!("commit"))),
        )
        .await
        .expect("submit");
    let claimed = q.claim("w", 1, LEASE).await.expect("claim");
    let outcome = q
        .fail(&Attempt::from(&claimed[0]), "column x missing", false)
        .await
        .expect("fail");
    assert_eq!(outcome, FailOutcome::Dead);
    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.state, JobState::Failed);
    assert!(
        q.claim("w", 10, LEASE).await.expect("claim").is_empty(),
        "job stopped"
    );
    assert!(matches!(
        q.cancel(id).await,
        Err(Error::InvalidState {
            operation: "cancel",
            ..
        })
    ));

    assert_eq!(q.retry(id).await.expect("retry"), 2, "dead + stopped task");
    let rec = q.job(id).await.expect("job");
    assert_eq!(
        (rec.state, rec.error.as_deref(), rec.tasks_failed),
        (JobState::Running, None, 0)
    );
    let again = q.claim("w", 10, LEASE).await.expect("claim");
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|t| t.attempt == 1));
    q.complete(&again.iter().map(|t| done(t, json!(1))).collect::<Vec<_>>())
        .await
        .expect("complete");
    let commit = q.claim("w", 10, LEASE).await.expect("claim");
    q.complete(&[done(&commit[0], json!("v1"))])
        .await
        .expect("complete");
    assert_eq!(q.job(id).await.expect("job").state, JobState::Succeeded);
    assert!(matches!(
        q.retry(id).await,
        Err(Error::InvalidState {
            operation: "retry",
            ..
        })
    ));
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_job_and_refuses_its_running_tasks(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    let id = q
        .submit(
            NewJob::new("query", json!({}))
                .with_tasks((0..5).map(|i| NewTask::new(0, json!(i))))
                .with_task(NewTask::new(1, json!("merge"))),
        )
        .await
        .expect("submit");
    let running = q.claim("w", 2, LEASE).await.expect("claim");
    q.cancel(id).await.expect("cancel");
    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.state, JobState::Cancelled);
    assert!(q.claim("w", 10, LEASE).await.expect("claim").is_empty());
    let acks = q
        .complete(
            &running
                .iter()
                .map(|t| done(t, json!(0)))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("complete");
    assert_eq!(acks, vec![Ack::Stale, Ack::Stale]);
    let tasks = q.tasks(id).await.expect("tasks");
    assert!(tasks.iter().all(|t| t.state == TaskState::Cancelled));
    assert_eq!(q.job(id).await.expect("job").tasks_done, 0);
}

/// Once a job's commit task has begun its commit, a cancel no longer stops the job: the
/// commit's completion decides it. A cancel that came first makes `begin_commit` refuse,
/// so the task commits nothing and the job stays cancelled.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begun_commit_decides_its_job_and_an_earlier_cancel_stops_it(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    let two_stages = || {
        NewJob::new("ingest", json!({}))
            .with_task(NewTask::new(0, json!("write")))
            .with_task(NewTask::new(1, json!("commit")))
    };
    let to_commit = |q: Queue, id: JobId| async move {
        let write = q.claim("w", 1, LEASE).await.expect("claim");
        q.complete(&[done(&write[0], json!(1))])
            .await
            .expect("complete");
        let commit = q.claim("w", 1, LEASE).await.expect("claim");
        assert_eq!((commit[0].job_id, commit[0].stage), (id, 1));
        commit.into_iter().next().unwrap()
    };

    // The commit begins, then a cancel arrives: it is recorded, not applied.
    let id = q.submit(two_stages()).await.expect("submit");
    let commit = to_commit(q.clone(), id).await;
    let attempt = Attempt::from(&commit);
    assert!(q.begin_commit(&attempt).await.expect("begin"));
    assert!(
        q.begin_commit(&attempt).await.expect("begin again"),
        "idempotent"
    );
    assert_eq!(
        q.cancel(id).await.expect("cancel"),
        CancelOutcome::Committing
    );
    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.state, JobState::Running);
    assert!(rec.commit_started && rec.cancel_requested_at.is_some());
    let acks = q
        .complete(&[done(&commit, json!({"committed": true, "version": 1}))])
        .await
        .expect("complete");
    assert_eq!(acks, vec![Ack::Accepted]);
    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.state, JobState::Succeeded);
    assert_eq!(rec.result, Some(json!({"committed": true, "version": 1})));

    // A cancel first: the commit task is refused its commit.
    let id = q.submit(two_stages()).await.expect("submit");
    let commit = to_commit(q.clone(), id).await;
    assert_eq!(
        q.cancel(id).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
    assert!(
        !q.begin_commit(&Attempt::from(&commit))
            .await
            .expect("begin")
    );
    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.state, JobState::Cancelled);
    assert!(!rec.commit_started);

    // A stale attempt (its lease lost and the task claimed again) is refused too.
    let id = q.submit(two_stages()).await.expect("submit");
    let mut stale = Attempt::from(&to_commit(q.clone(), id).await);
    stale.attempt += 1;
    assert!(!q.begin_commit(&stale).await.expect("begin"));
    assert_eq!(
        q.cancel(id).await.expect("cancel"),
        CancelOutcome::Cancelled
    );
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_job_id_is_job_not_found(#[values(Kind::Sqlite, Kind::Postgres)] kind: Kind) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    let missing = JobId(4242);
    let errors = [
        q.job(missing).await.err(),
        q.tasks(missing).await.err(),
        q.cancel(missing).await.err(),
        q.retry(missing).await.err(),
        q.stage_results(missing, 0).await.err(),
    ];
    for e in errors {
        let e = e.expect("an error");
        assert!(
            matches!(e, Error::JobNotFound { id } if id == missing),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "job 4242 not found");
        assert!(!e.is_retryable());
    }
    let empty = q.submit(NewJob::new("ingest", json!({}))).await;
    assert!(matches!(empty, Err(Error::InvalidJob { .. })), "{empty:?}");
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct IngestSpec {
    path: String,
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_spec_and_payload_name_the_row(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    let id = q
        .submit(
            NewJob::new("ingest", json!({"path": "in/"}))
                .with_task(NewTask::new(0, json!({"file": "a"}))),
        )
        .await
        .expect("submit");
    q.job(id)
        .await
        .expect("job")
        .spec_as::<IngestSpec>()
        .expect("good spec decodes");

    db.exec(format!(
        "UPDATE jobs SET spec = '{{\"path\": 5}}' WHERE id = {}",
        id.0
    ))
    .await;
    let err = q
        .job(id)
        .await
        .expect("job")
        .spec_as::<IngestSpec>()
        .unwrap_err();
    assert!(
        matches!(err, Error::MalformedSpec { id: i, .. } if i == id),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("malformed spec of job {id}"));

    if kind == Kind::Sqlite {
        // Only SQLite can hold text that is not JSON at all (Postgres has JSONB).
        db.exec(format!(
            "UPDATE jobs SET spec = 'not json{{' WHERE id = {}",
            id.0
        ))
        .await;
        let err = q.job(id).await.unwrap_err();
        assert!(
            matches!(err, Error::MalformedSpec { id: i, .. } if i == id),
            "{err:?}"
        );
        db.exec(format!("UPDATE jobs SET spec = '{{}}' WHERE id = {}", id.0))
            .await;
        db.exec(format!(
            "UPDATE tasks SET payload = '{{oops' WHERE job_id = {}",
            id.0
        ))
        .await;
    } else {
        db.exec(format!(
            "UPDATE tasks SET payload = '[1]' WHERE job_id = {}",
            id.0
        ))
        .await;
    }

    // A worker whose handler decodes the payload kills the task with an error naming it.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct FilePayload {
        file: String,
    }
    let handler = Arc::new(handler_fn(|task, _ctx| async move {
        let _p: FilePayload = task.payload_as()?;
        Ok(TaskOutput::default())
    }));
    let worker = Worker::new(q.clone(), WorkerConfig::default());
    let q2 = q.clone();
    let report = worker
        .run(handler, async move {
            wait_for_state(&q2, id, JobState::Failed, Duration::from_secs(20)).await;
        })
        .await
        .expect("worker");
    assert_eq!(report.failed, 1);
    let err = q.job(id).await.expect("job").error.expect("job error");
    assert!(
        err.contains("malformed payload of task") && err.contains(&format!("(job {id})")),
        "{err}"
    );
    let tasks = q.tasks(id).await.expect("tasks");
    assert_eq!(tasks[0].attempts, 1, "a malformed payload is not retried");
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_fails_clearly_after_retries(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let options = QueueOptions::default().with_connect_retries(3, Duration::from_millis(20));
    let started = std::time::Instant::now();
    match kind {
        // A refused connection may pass (the server starting): tried 3 times.
        Kind::Postgres => {
            let url = "postgres://postgres@127.0.0.1:1/x";
            let err = Queue::connect_with(url, options).await.unwrap_err();
            assert!(
                matches!(&err, Error::Connect { url: u, attempts: 3, .. } if u == url),
                "{err:?}"
            );
            assert!(err.to_string().contains(url), "{err}");
            assert!(
                started.elapsed() >= Duration::from_millis(60),
                "backed off 20 + 40 ms"
            );
            assert!(err.is_retryable());
        }
        // A file that cannot be opened will not open by waiting: it fails at once,
        // named by its path.
        Kind::Sqlite => {
            let url = "sqlite:///nonexistent-dir/terrace/q.db?mode=rwc";
            let err = Queue::connect_with(url, options).await.unwrap_err();
            assert!(
                matches!(&err, Error::Connect { url: u, attempts: 1, .. }
                    if u == "/nonexistent-dir/terrace/q.db"),
                "{err:?}"
            );
            assert!(started.elapsed() < Duration::from_millis(20), "no backoff");
            assert!(!err.is_retryable());
        }
    }

    let err = Queue::connect("mysql://h/db").await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedUrl { .. }), "{err:?}");
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_tasks(#[values(Kind::Sqlite, Kind::Postgres)] kind: Kind) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    let id = q
        .submit(
            NewJob::new("ingest", json!({})).with_tasks((0..20).map(|i| NewTask::new(0, json!(i)))),
        )
        .await
        .expect("submit");
    let started = Arc::new(AtomicUsize::new(0));
    let handler = {
        let started = started.clone();
        Arc::new(handler_fn(move |_task, _ctx| {
            let started = started.clone();
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(TaskOutput::default())
            }
        }))
    };
    let worker = Worker::new(
        q.clone(),
        WorkerConfig::default()
            .with_concurrency(4)
            .with_batch_size(4),
    );
    let worker_id = worker.id().to_owned();
    assert!(
        worker_id.contains(&format!("-{}-", std::process::id())),
        "{worker_id}"
    );
    let seen = started.clone();
    let report = worker
        .run(handler, async move {
            while seen.load(Ordering::SeqCst) < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("worker");
    let ran = started.load(Ordering::SeqCst) as u64;
    assert!(ran >= 4);
    assert_eq!(
        report.completed, ran,
        "every started task completed before exit"
    );
    let tasks = q.tasks(id).await.expect("tasks");
    assert_eq!(
        tasks.iter().filter(|t| t.state == TaskState::Done).count() as u64,
        ran
    );
    assert!(
        tasks.iter().all(|t| t.state != TaskState::Running),
        "no lease left behind"
    );
    assert_eq!(q.job(id).await.expect("job").tasks_done as u64, ran);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_finished_jobs_after_retention(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let clock = manual_clock();
    let q = db
        .queue(QueueOptions::default().with_clock(clock.clone()))
        .await;
    let finished = q
        .submit(NewJob::new("gc", json!({})).with_task(NewTask::new(0, json!(0))))
        .await
        .expect("submit");
    let open = q
        .submit(NewJob::new("gc", json!({})).with_task(NewTask::new(0, json!(0))))
        .await
        .expect("submit");
    let t = q.claim("w", 1, LEASE).await.expect("claim");
    q.complete(&[done(&t[0], json!(0))])
        .await
        .expect("complete");
    let day = Duration::from_secs(86_400);
    clock.advance(day / 2);
    assert_eq!(q.prune(day).await.expect("prune"), 0, "within retention");
    clock.advance(day);
    assert_eq!(q.prune(day).await.expect("prune"), 1);
    assert!(matches!(
        q.job(finished).await,
        Err(Error::JobNotFound { .. })
    ));
    assert_eq!(
        q.job(open).await.expect("open job kept").state,
        JobState::Queued
    );
}

// ---- worker processes -------------------------------------------------------------

const CHILD_URL: &str = "TERRACE_JOBS_TEST_WORKER_URL";

/// Not a test on its own: the body of the worker processes the multi-process test starts
/// (it re-runs this test binary with `CHILD_URL` set). Without it, it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_worker_process() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let q = Queue::connect(&url).await.expect("child connect");
    let config = WorkerConfig::default()
        .with_concurrency(4)
        .with_batch_size(4)
        .with_lease(Duration::from_millis(1500));
    let handler = Arc::new(handler_fn(|task, ctx| async move {
        if task.stage == 0 {
            // Long enough that a task seen running is still running when the test kills.
            tokio::time::sleep(Duration::from_millis(40)).await;
            return Ok(TaskOutput::new(json!({"worker": ctx.worker_id()})));
        }
        let inputs = ctx.stage_results(task.job_id, 0).await?;
        Ok(TaskOutput::new(json!({"committed": inputs.len()})))
    }));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    Worker::new(q, config)
        .run(handler, async move {
            term.recv().await;
        })
        .await
        .expect("child worker");
}

fn spawn_child(url: &str) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    let dir = tempfile::tempdir().expect("dir").keep();
    Command::new(exe)
        .args([
            "--exact",
            "child_worker_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, url)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker process")
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_finish_a_job_despite_kill_9(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    const N: usize = 200;
    let id = q
        .submit(
            NewJob::new("ingest", json!({}))
                .with_tasks((0..N).map(|i| NewTask::new(0, json!(i))))
                .with_task(NewTask::new(1, json!("commit"))),
        )
        .await
        .expect("submit");
    let mut a = spawn_child(&db.url);
    let mut b = spawn_child(&db.url);

    // Let both make progress, then SIGKILL one while it holds leases (worker ids are
    // `{host}-{pid}-{n}`, so the task rows say which process holds what).
    let a_marker = format!("-{}-", a.id());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        if q.job(id).await.expect("job").tasks_done >= 40 {
            let tasks = q.tasks(id).await.expect("tasks");
            if tasks.iter().any(|t| {
                t.state == TaskState::Running
                    && t.lease_owner
                        .as_deref()
                        .is_some_and(|o| o.contains(&a_marker))
            }) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    a.kill().expect("kill -9");
    a.wait().expect("reap child");

    wait_for_state(&q, id, JobState::Succeeded, Duration::from_secs(90)).await;
    let status = Command::new("kill")
        .args(["-TERM", &b.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    assert!(
        b.wait().expect("wait").success(),
        "SIGTERM drains and exits 0"
    );

    let rec = q.job(id).await.expect("job");
    assert_eq!(rec.result, Some(json!({"committed": N})));
    assert_eq!(rec.tasks_done, N as i64 + 1);
    let workers: HashSet<String> = q
        .stage_results(id, 0)
        .await
        .expect("results")
        .into_iter()
        .filter_map(|(_, v)| v["worker"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        workers.len(),
        2,
        "both processes completed tasks: {workers:?}"
    );
    let tasks = q.tasks(id).await.expect("tasks");
    assert!(
        tasks.iter().any(|t| t.attempts > 1),
        "the killed worker's leased tasks ran again"
    );
    assert!(tasks.iter().all(|t| t.state == TaskState::Done));
}

// Keeps TaskError in the public-API surface exercised by the suite.
#[test]
fn task_errors_carry_retryability() {
    assert!(TaskError::retryable("x").retryable);
    assert!(!TaskError::permanent("x").retryable);
    let e: TaskError = Error::JobNotFound { id: JobId(1) }.into();
    assert!(!e.retryable);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_newest_first_and_filtered_by_state(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let q = db.queue(QueueOptions::default()).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let job = NewJob::new("query", json!({"n": i})).with_task(NewTask::new(0, json!(i)));
        ids.push(q.submit(job).await.expect("submit"));
    }
    q.cancel(ids[1]).await.expect("cancel");
    let all = q.list_jobs(None, 10).await.expect("list");
    let listed: Vec<JobId> = all.iter().map(|j| j.id).collect();
    assert_eq!(listed, vec![ids[2], ids[1], ids[0]]);
    assert_eq!(all[0].spec, json!({"n": 2}));
    let cancelled = q
        .list_jobs(Some(JobState::Cancelled), 10)
        .await
        .expect("list");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].id, ids[1]);
    assert_eq!(q.list_jobs(None, 2).await.expect("list").len(), 2);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_prunes_finished_jobs_past_its_retention(
    #[values(Kind::Sqlite, Kind::Postgres)] kind: Kind,
) {
    let db = TestDb::new(kind).await;
    let clock = manual_clock();
    let q = db
        .queue(QueueOptions::default().with_clock(clock.clone()))
        .await;
    let old = q
        .submit(NewJob::new("gc", json!({})).with_task(NewTask::new(0, json!(0))))
        .await
        .expect("submit");
    let t = q.claim("w", 1, LEASE).await.expect("claim");
    q.complete(&[done(&t[0], json!(0))])
        .await
        .expect("complete");
    clock.advance(Duration::from_secs(8 * 86_400));

    let worker = Worker::new(
        q.clone(),
        WorkerConfig::default().with_retention(Some(Duration::from_secs(7 * 86_400))),
    );
    let handler = Arc::new(handler_fn(|_task, _ctx| async {
        Ok(TaskOutput::new(json!(0)))
    }));
    let probe = q.clone();
    let shutdown = async move {
        while probe.job(old).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), worker.run(handler, shutdown))
        .await
        .expect("the worker prunes the old job on its first housekeeping tick")
        .expect("worker");
    assert!(matches!(q.job(old).await, Err(Error::JobNotFound { .. })));
}

/// A worker claims a job's next stage as soon as its own completion made it ready, not
/// after its idle back-off. SQLite only: it has no push notification, so before the
/// wake-up a slot that had polled through a 3 s task slept ~1 s past its end (back-off
/// 2, 4, ... 2048 ms); PostgreSQL's NOTIFY already woke it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_starts_the_next_stage_right_after_its_own_completion() {
    let db = TestDb::new(Kind::Sqlite).await;
    let q = db.queue(QueueOptions::default()).await;
    let id = q
        .submit(
            NewJob::new("ingest", json!({}))
                .with_task(NewTask::new(0, json!("map")))
                .with_task(NewTask::new(1, json!("commit"))),
        )
        .await
        .expect("submit");
    let marks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = {
        let marks = marks.clone();
        Arc::new(handler_fn(move |task, _ctx| {
            let marks = marks.clone();
            let stage = task.stage;
            async move {
                marks
                    .lock()
                    .unwrap()
                    .push(("start", stage, std::time::Instant::now()));
                if stage == 0 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                marks
                    .lock()
                    .unwrap()
                    .push(("end", stage, std::time::Instant::now()));
                Ok(TaskOutput::default())
            }
        }))
    };
    let worker = Worker::new(
        q.clone(),
        WorkerConfig::default()
            .with_concurrency(2)
            .with_poll_interval(Duration::from_secs(30)),
    );
    let watcher = q.clone();
    worker
        .run(handler, async move {
            wait_for_state(&watcher, id, JobState::Succeeded, Duration::from_secs(60)).await;
        })
        .await
        .expect("worker");
    let marks = marks.lock().unwrap().clone();
    let at = |what: &str, stage: i32| {
        marks
            .iter()
            .find(|(w, s, _)| *w == what && *s == stage)
            .map(|m| m.2)
            .expect("mark")
    };
    let gap = at("start", 1).duration_since(at("end", 0));
    assert!(
        gap < Duration::from_millis(500),
        "the commit stage started {gap:?} after the map task ended"
    );
}
