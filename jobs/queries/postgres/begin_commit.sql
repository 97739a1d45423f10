-- A task passes its point of no return: from now on its outcome, not a cancel, decides the
-- job. Only while the job is unfinished and the attempt still holds the task. The job row's
-- lock orders this against cancel (which locks it first): a cancel committed before leaves
-- the job 'cancelled', which the re-checked WHERE refuses.
UPDATE jobs SET commit_task = $4
WHERE id = $1 AND state IN ('queued', 'running')
  AND EXISTS (SELECT 1 FROM tasks
              WHERE id = $4 AND job_id = $1 AND attempts = $2 AND lease_owner = $3
                AND state = 'running')
