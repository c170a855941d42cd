-- A dispatch was 1:1 with its run: its epoch moves onto the run, and the rest of it (status, attempts,
-- last error, times) is read from the run's own record, so the mailbox keeps one row per run.

ALTER TABLE runs ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
UPDATE runs r SET epoch = d.epoch FROM dispatches d WHERE d.tenant = r.tenant AND d.run_id = r.run_id;
DROP TABLE dispatches;
