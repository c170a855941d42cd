-- Run ids are unique within a tenant, not across tenants: two tenants may both name a run `r1`, and
-- neither can learn that the other did. Everything keyed by a run id carries the tenant too.
-- The run's Temporal workflow id is recorded (runs begun before this are `run:<runId>`, later ones
-- `run:<tenant>:<runId>`), as is a hash of the request that created it, to tell a retry from a conflict.

ALTER TABLE runs ADD COLUMN workflow_id text;
ALTER TABLE runs ADD COLUMN request_hash text;

ALTER TABLE pending_input ADD COLUMN tenant text;
UPDATE pending_input p SET tenant = r.tenant FROM runs r WHERE r.run_id = p.run_id;
ALTER TABLE pending_input ALTER COLUMN tenant SET NOT NULL;
ALTER TABLE pending_input DROP CONSTRAINT pending_input_run_id_fkey;
ALTER TABLE pending_input DROP CONSTRAINT pending_input_pkey;

ALTER TABLE runs DROP CONSTRAINT runs_pkey;
ALTER TABLE runs ADD PRIMARY KEY (tenant, run_id);

ALTER TABLE pending_input ADD PRIMARY KEY (tenant, run_id, position);
ALTER TABLE pending_input ADD FOREIGN KEY (tenant, run_id) REFERENCES runs (tenant, run_id);

ALTER TABLE run_events DROP CONSTRAINT run_events_pkey;
ALTER TABLE run_events ADD PRIMARY KEY (tenant, run_id, seq);

CREATE INDEX dispatches_run ON dispatches (tenant, run_id);

-- Idempotency keys a tenant used on submits: the same key with another request is a conflict, not a replay.
CREATE TABLE submit_keys (
  tenant        text        NOT NULL,
  key           text        NOT NULL,
  thread_id     text        NOT NULL,
  request_hash  text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, key)
);
