-- A job's commit, once started, decides the job's outcome; a cancel cannot pre-empt it.
-- commit_task: the task that began committing (see Backend::begin_commit); NULL before.
-- cancel_requested_at: when a cancel arrived while that commit ran (it was not applied:
-- the commit's outcome stands, and `terrace cancel` reports it).
ALTER TABLE jobs ADD COLUMN commit_task INTEGER;
ALTER TABLE jobs ADD COLUMN cancel_requested_at INTEGER;
