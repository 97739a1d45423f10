-- How many of a task's attempts ended with their worker lost (its lease expired: the
-- process crashed, was killed, or froze). A task that loses its worker on every attempt
-- dies saying so, rather than being claimed again by every worker that comes along.
ALTER TABLE tasks ADD COLUMN lost_workers INTEGER NOT NULL DEFAULT 0;
