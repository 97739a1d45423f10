-- Schedules as the scheduler uses them; see migrations/sqlite/0002_schedules.sql.
DROP TABLE schedule_runs;
DROP TABLE schedules;

CREATE TABLE schedules (
    id         BIGSERIAL   PRIMARY KEY,
    name       TEXT        NOT NULL UNIQUE,
    cron       TEXT        NOT NULL,
    timezone   TEXT        NOT NULL,
    template   JSONB       NOT NULL,
    catch_up   TEXT        NOT NULL CHECK (catch_up IN ('none', 'last', 'all')),
    paused     BOOLEAN     NOT NULL DEFAULT FALSE,
    cursor     TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE schedule_runs (
    id          BIGSERIAL   PRIMARY KEY,
    schedule_id BIGINT      NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    slot        TIMESTAMPTZ NOT NULL,
    manual      BOOLEAN     NOT NULL DEFAULT FALSE,
    job_id      BIGINT      REFERENCES jobs (id) ON DELETE SET NULL,
    error       TEXT,
    fired_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX schedule_runs_once ON schedule_runs (schedule_id, slot) WHERE NOT manual;
