-- terrace job queue (SQLite). Same tables, names and meaning as migrations/postgres.
-- Times are INTEGER milliseconds since the Unix epoch (they compare correctly as numbers;
-- chrono's TEXT encoding has a variable number of fraction digits and would not).
-- JSON columns are TEXT holding JSON.

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    spec          TEXT    NOT NULL,
    state         TEXT    NOT NULL
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    current_stage INTEGER NOT NULL DEFAULT 0,
    tasks_total   INTEGER NOT NULL DEFAULT 0,
    tasks_done    INTEGER NOT NULL DEFAULT 0,
    tasks_failed  INTEGER NOT NULL DEFAULT 0,
    rows          INTEGER NOT NULL DEFAULT 0,
    bytes         INTEGER NOT NULL DEFAULT 0,
    result        TEXT,
    error         TEXT,
    origin        TEXT    NOT NULL CHECK (origin IN ('cli', 'schedule')),
    origin_detail TEXT,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER
);
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Fan-in counters, see migrations/postgres.
CREATE TABLE job_stages (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stage  INTEGER NOT NULL,
    total  INTEGER NOT NULL DEFAULT 0,
    done   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, stage)
);

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind             TEXT    NOT NULL,
    stage            INTEGER NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL
                     CHECK (state IN ('blocked', 'ready', 'running', 'done', 'dead', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_after        INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    result           TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
CREATE INDEX tasks_ready ON tasks (run_after, id) WHERE state = 'ready';
CREATE INDEX tasks_running ON tasks (lease_owner, lease_expires_at) WHERE state = 'running';
CREATE INDEX tasks_job_stage ON tasks (job_id, stage);

CREATE TABLE workers (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

CREATE TABLE schedules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    cron       TEXT    NOT NULL,
    timezone   TEXT    NOT NULL DEFAULT 'UTC',
    template   TEXT    NOT NULL,
    catch_up   INTEGER NOT NULL DEFAULT 0,
    paused     INTEGER NOT NULL DEFAULT 0,
    last_slot  INTEGER,
    created_at INTEGER NOT NULL
);

CREATE TABLE schedule_runs (
    schedule_id INTEGER NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    slot        INTEGER NOT NULL,
    job_id      INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    UNIQUE (schedule_id, slot)
);
