-- A dispatch is never dead-lettered: its statuses are the contract's (DISPATCH_STATUSES in src/contract/run-events.ts).

ALTER TABLE dispatches DROP CONSTRAINT dispatches_status_check;
ALTER TABLE dispatches ADD CONSTRAINT dispatches_status_check CHECK (status IN ('queued', 'running', 'done', 'cancelled', 'superseded'));
