-- A task passes its point of no return: from now on its outcome, not a cancel, decides the
-- job. Only while the job is unfinished and the attempt still holds the task; one
-- statement, so a cancel is either wholly before it (no row matches) or sees commit_task.
UPDATE jobs SET commit_task = ?4
WHERE id = ?1 AND state IN ('queued', 'running')
  AND EXISTS (SELECT 1 FROM tasks
              WHERE id = ?4 AND job_id = ?1 AND attempts = ?2 AND lease_owner = ?3
                AND state = 'running')
