-- The committed log, run records, pending input, the mailbox projection and the event log.

CREATE TABLE threads (
  tenant          text        NOT NULL,
  thread_id       text        NOT NULL,
  version         bigint      NOT NULL DEFAULT 0,      -- committed message count
  status          text        NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'running', 'waiting')),
  active_run_id   text,
  queued_run_ids  text[]      NOT NULL DEFAULT '{}',
  latest_run_id   text,
  metadata        jsonb       NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, thread_id)
);

CREATE TABLE messages (
  tenant        text        NOT NULL,
  thread_id     text        NOT NULL,
  seq           bigint      NOT NULL,
  message_id    text        NOT NULL,
  role          text        NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system')),
  content       text        NOT NULL DEFAULT '',
  tool_calls    jsonb,
  tool_call_id  text,
  run_id        text,
  status        text        NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'interrupted')),
  metadata      jsonb       NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, thread_id, seq),
  UNIQUE (tenant, thread_id, message_id),
  FOREIGN KEY (tenant, thread_id) REFERENCES threads (tenant, thread_id)
);

CREATE TABLE runs (
  run_id            text        PRIMARY KEY,
  tenant            text        NOT NULL,
  thread_id         text        NOT NULL,
  agent_id          text        NOT NULL,
  dispatch_id       text        NOT NULL,
  mode              text        NOT NULL,
  status            text        NOT NULL CHECK (status IN ('queued', 'running', 'waiting', 'done')),
  termination       jsonb,
  input_message_ids text[]      NOT NULL DEFAULT '{}',
  waiting           jsonb,
  steps             integer     NOT NULL DEFAULT 0,
  usage             jsonb       NOT NULL DEFAULT '{}',
  error             text,
  event_fence       bigint      NOT NULL DEFAULT 0,   -- writers below this are stale and fenced out
  last_event_seq    bigint      NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant, thread_id) REFERENCES threads (tenant, thread_id)
);
CREATE INDEX runs_thread ON runs (tenant, thread_id, created_at);

-- A run's input, durable from submit until the run commits it.
CREATE TABLE pending_input (
  run_id      text        NOT NULL REFERENCES runs (run_id),
  position    integer     NOT NULL,
  message     jsonb       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, position)
);

CREATE TABLE dispatches (
  dispatch_id  text        PRIMARY KEY,
  tenant       text        NOT NULL,
  thread_id    text        NOT NULL,
  run_id       text        NOT NULL,
  mode         text        NOT NULL,
  status       text        NOT NULL CHECK (status IN ('queued', 'running', 'done', 'cancelled', 'superseded', 'dead_letter')),
  epoch        bigint      NOT NULL DEFAULT 0,
  attempts     integer     NOT NULL DEFAULT 0,
  last_error   text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dispatches_thread ON dispatches (tenant, thread_id, created_at);

CREATE TABLE run_events (
  id          bigserial   UNIQUE NOT NULL,            -- global order, the cursor of thread-wide streams
  run_id      text        NOT NULL,
  seq         bigint      NOT NULL,
  tenant      text        NOT NULL,
  thread_id   text        NOT NULL,
  type        text        NOT NULL,
  data        jsonb       NOT NULL DEFAULT '{}',
  attempt     bigint      NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, seq)
);
CREATE INDEX run_events_thread ON run_events (tenant, thread_id, id);
