//! How a job's commit is recorded in its dataset, and found there again.
//!
//! A commit records `<queue job id>:<run id>` as its job id: the queue's id says which job
//! committed (what `terrace status N` and a no-op re-run show), the run id (a UUID planned
//! with the job) keeps it unambiguous when several queues write one dataset. Releases
//! before this recorded the bare run id, which is still recognised.
//!
//! With this a job's state can be checked against the dataset: a job whose commit is in
//! the history committed, whatever the queue says.

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde::Deserialize;
use terrace_format::{CommitInfo, Dataset};

use super::{KIND_DELETE, KIND_INGEST};
use crate::error::{Error, Result};
use crate::model::{JobId, JobRecord};

/// The job id a commit of queue job `job` (run `run_id`) records.
pub(crate) fn commit_job_id(job: JobId, run_id: &str) -> String {
    format!("{job}:{run_id}")
}

/// Whether a commit's recorded job id is run `run_id`'s.
pub(crate) fn is_run(recorded: Option<&str>, run_id: &str) -> bool {
    recorded.is_some_and(|r| r == run_id || r.split_once(':').is_some_and(|(_, run)| run == run_id))
}

/// The queue job that made a commit, when it recorded one.
pub fn committing_job(commit: &CommitInfo) -> Option<JobId> {
    let (job, _) = commit.job_id.as_deref()?.split_once(':')?;
    job.parse::<i64>().ok().map(JobId)
}

/// A job's commit as found in its dataset's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCommit {
    /// The dataset (absolute path or URL).
    pub dataset: String,
    /// The version the job committed.
    pub version: u64,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// Rows its files added.
    pub rows_added: u64,
    /// Rows it removed (a delete, an overwrite).
    pub rows_removed: u64,
}

/// What the dataset history says about a job that commits (an ingest or a delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitLookup {
    /// The job's kind commits nothing (a query, gc).
    NotApplicable,
    /// The history holds the job's commit.
    Committed(JobCommit),
    /// No retained version is the job's (it has not committed, or gc removed the
    /// version, which it does only for versions past the retention).
    NotCommitted {
        /// The dataset.
        dataset: String,
    },
}

#[derive(Deserialize)]
struct CommittingSpec {
    dataset: String,
    run_id: String,
}

/// How far a commit's timestamp (the committing machine's clock) may lag behind the
/// job's creation (the client's) and still be looked at.
const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(10);

/// Looks up `job`'s commit in its dataset's history, newest version first, down to the
/// versions committed before the job was created. A version that cannot be read is
/// skipped: one bad file must not hide the answer.
pub async fn find_job_commit(job: &JobRecord) -> Result<CommitLookup> {
    if job.kind != KIND_INGEST && job.kind != KIND_DELETE {
        return Ok(CommitLookup::NotApplicable);
    }
    let spec: CommittingSpec = job.spec_as()?;
    let dataset = match Dataset::open(&spec.dataset).await {
        Ok(d) => d,
        Err(terrace_format::Error::DatasetNotFound { .. }) => {
            return Ok(CommitLookup::NotCommitted {
                dataset: spec.dataset,
            });
        }
        Err(e) => return Err(Error::format(format!("opening {}", spec.dataset))(e)),
    };
    let versions = dataset.versions().await.map_err(Error::format(format!(
        "listing the versions of {}",
        spec.dataset
    )))?;
    let since = job.created_at - CLOCK_SKEW;
    let opened = &dataset;
    let mut snapshots = futures::stream::iter(versions.into_iter().rev())
        .map(move |v| async move { (v, opened.snapshot(v).await) })
        .buffered(8);
    while let Some((version, snapshot)) = snapshots.next().await {
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(version, error = %e, "skipping a version that cannot be read");
                continue;
            }
        };
        if snapshot.timestamp() < since {
            break;
        }
        let commit = snapshot.commit();
        if is_run(commit.job_id.as_deref(), &spec.run_id) {
            return Ok(CommitLookup::Committed(JobCommit {
                dataset: spec.dataset,
                version,
                timestamp: snapshot.timestamp(),
                rows_added: commit.rows_added,
                rows_removed: commit.rows_removed,
            }));
        }
    }
    Ok(CommitLookup::NotCommitted {
        dataset: spec.dataset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_names_its_queue_job_and_run() {
        let recorded = commit_job_id(JobId(12), "0190-abc");
        assert_eq!(recorded, "12:0190-abc");
        assert!(is_run(Some(&recorded), "0190-abc"));
        assert!(
            is_run(Some("0190-abc"), "0190-abc"),
            "as older releases recorded it"
        );
        assert!(!is_run(Some("12:0190-abd"), "0190-abc"));
        assert!(!is_run(None, "0190-abc"));
        let info = |job_id: Option<&str>| CommitInfo {
            operation: terrace_format::Operation::Append,
            job_id: job_id.map(str::to_owned),
            idempotency_key: None,
            rows_added: 0,
            files_added: 0,
            rows_removed: 0,
            files_removed: 0,
            partitions: Vec::new(),
        };
        assert_eq!(committing_job(&info(Some(&recorded))), Some(JobId(12)));
        assert_eq!(committing_job(&info(Some("0190-abc"))), None);
        assert_eq!(committing_job(&info(None)), None);
    }
}
