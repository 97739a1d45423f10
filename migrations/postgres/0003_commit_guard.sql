-- A job's commit, once started, decides the job's outcome; see
-- migrations/sqlite/0003_commit_guard.sql.
ALTER TABLE jobs ADD COLUMN commit_task BIGINT;
ALTER TABLE jobs ADD COLUMN cancel_requested_at TIMESTAMPTZ;
