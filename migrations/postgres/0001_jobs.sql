-- terrace job queue (PostgreSQL). Same tables, names and meaning as migrations/sqlite.
-- Times are TIMESTAMPTZ here and integer milliseconds since the Unix epoch in SQLite.

CREATE TABLE jobs (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT        NOT NULL,
    spec          JSONB       NOT NULL,
    state         TEXT        NOT NULL
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    current_stage INTEGER     NOT NULL DEFAULT 0,
    tasks_total   BIGINT      NOT NULL DEFAULT 0,
    tasks_done    BIGINT      NOT NULL DEFAULT 0,
    tasks_failed  BIGINT      NOT NULL DEFAULT 0,
    rows          BIGINT      NOT NULL DEFAULT 0,
    bytes         BIGINT      NOT NULL DEFAULT 0,
    result        JSONB,
    error         TEXT,
    origin        TEXT        NOT NULL CHECK (origin IN ('cli', 'schedule')),
    origin_detail TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ
);
-- Pruning looks finished jobs up by age.
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- One row per (job, stage): the counters that decide fan-in with one guarded UPDATE instead
-- of counting the stage's tasks on every completion (which is quadratic in the task count).
CREATE TABLE job_stages (
    job_id BIGINT  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    stage  INTEGER NOT NULL,
    total  BIGINT  NOT NULL DEFAULT 0,
    done   BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, stage)
);

CREATE TABLE tasks (
    id               BIGSERIAL PRIMARY KEY,
    job_id           BIGINT      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- Copied from the job so that a claim needs no join.
    kind             TEXT        NOT NULL,
    stage            INTEGER     NOT NULL,
    payload          JSONB       NOT NULL,
    state            TEXT        NOT NULL
                     CHECK (state IN ('blocked', 'ready', 'running', 'done', 'dead', 'cancelled')),
    attempts         INTEGER     NOT NULL DEFAULT 0,
    max_attempts     INTEGER     NOT NULL,
    run_after        TIMESTAMPTZ NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    result           JSONB,
    error            TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ
);
-- The claim reads only this (small) partial index.
CREATE INDEX tasks_ready ON tasks (run_after, id) WHERE state = 'ready';
-- Lease renewal and reaping of expired leases.
CREATE INDEX tasks_running ON tasks (lease_owner, lease_expires_at) WHERE state = 'running';
CREATE INDEX tasks_job_stage ON tasks (job_id, stage);

CREATE TABLE workers (
    id           TEXT        PRIMARY KEY,
    host         TEXT        NOT NULL,
    pid          BIGINT      NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE schedules (
    id         BIGSERIAL   PRIMARY KEY,
    name       TEXT        NOT NULL UNIQUE,
    cron       TEXT        NOT NULL,
    timezone   TEXT        NOT NULL DEFAULT 'UTC',
    template   JSONB       NOT NULL,
    catch_up   BOOLEAN     NOT NULL DEFAULT FALSE,
    paused     BOOLEAN     NOT NULL DEFAULT FALSE,
    last_slot  TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);

-- One row per fired slot: the UNIQUE key is what makes a tick fire once across replicas.
CREATE TABLE schedule_runs (
    schedule_id BIGINT      NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    slot        TIMESTAMPTZ NOT NULL,
    job_id      BIGINT      REFERENCES jobs (id) ON DELETE SET NULL,
    UNIQUE (schedule_id, slot)
);
