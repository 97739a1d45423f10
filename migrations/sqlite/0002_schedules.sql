-- Schedules as the scheduler uses them. 0001's schedule tables were never written by any
-- release, so they are replaced rather than altered.
DROP TABLE schedule_runs;
DROP TABLE schedules;

CREATE TABLE schedules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    cron       TEXT    NOT NULL,
    timezone   TEXT    NOT NULL,
    -- JSON: the job template (the arguments of a terrace command, with placeholders).
    template   TEXT    NOT NULL,
    catch_up   TEXT    NOT NULL CHECK (catch_up IN ('none', 'last', 'all')),
    paused     INTEGER NOT NULL DEFAULT 0,
    -- The latest slot the scheduler has dealt with (fired or skipped); slots after it are
    -- due once the clock passes them. NULL: none yet, count from created_at.
    cursor     INTEGER,
    created_at INTEGER NOT NULL
);

-- One row per fired slot, and one per manual run. The partial UNIQUE index is what makes a
-- slot fire once however many schedulers race for it; manual runs (`schedule run --at`)
-- may repeat a slot, and the ingest's idempotency key makes the repeat a no-op.
CREATE TABLE schedule_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule_id INTEGER NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    slot        INTEGER NOT NULL,
    manual      INTEGER NOT NULL DEFAULT 0,
    job_id      INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    -- Why no job was submitted (the template could not be planned for this slot).
    error       TEXT,
    fired_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX schedule_runs_once ON schedule_runs (schedule_id, slot) WHERE manual = 0;
