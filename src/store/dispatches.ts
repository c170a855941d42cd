// Dispatches: the mailbox's view of each run it was handed (mode, epoch, attempts), read from the runs
// table, listed per thread and read back to rebuild a thread workflow from Postgres.
import type { DispatchStatus, RunStatus, TerminationType } from '../contract/run-events.js';
import type { ThreadRef } from './threads.js';
import type { Queryable } from './tx.js';

export interface DispatchRecord {
  dispatchId: string;
  runId: string;
  status: DispatchStatus;
  mode: string;
  epoch: number;
  attempts: number;
  lastError: string | null;
  createdAt: string;
  updatedAt: string;
}

/** What Postgres knows of a thread's mailbox (see loadMailboxRows). */
export interface MailboxRows {
  open: { runId: string; dispatchId: string; mode: string; agentId: string; status: RunStatus; epoch: number; workflowId: string }[];
  pendingOfEnded: string[];
  epoch: number;
}

/** The mailbox projection: a thread's dispatches, oldest first. */
export async function listDispatches(db: Queryable, ref: ThreadRef): Promise<DispatchRecord[]> {
  const { rows } = await db.query('SELECT * FROM runs WHERE tenant = $1 AND thread_id = $2 ORDER BY created_at, dispatch_id', [ref.tenant, ref.threadId]);
  return rows.map((r) => ({
    dispatchId: r.dispatch_id,
    runId: r.run_id,
    status: dispatchStatus(r.status, r.termination?.type),
    mode: r.mode,
    epoch: Number(r.epoch),
    // a run starts once (startRun is a no-op on a started run)
    attempts: r.started_at ? 1 : 0,
    lastError: r.error,
    createdAt: r.created_at.toISOString(),
    // a dispatch changes when its run starts and when it ends
    updatedAt: (r.finished_at ?? r.started_at ?? r.created_at).toISOString(),
  }));
}

/** A dispatch is running while its run is in progress (waiting included), and ends as its run's termination says. */
function dispatchStatus(status: RunStatus, termination: TerminationType | undefined): DispatchStatus {
  if (status === 'queued') return 'queued';
  if (status !== 'done') return 'running';
  return termination === 'superseded' || termination === 'cancelled' ? termination : 'done';
}

/**
 * What Postgres knows of a thread's mailbox, to rebuild a thread workflow that was terminated: the
 * runs not yet done (oldest first, with their dispatch and epoch), and the runs that ended without
 * starting whose input is still pending (superseded runs whose heir's workflow state was lost).
 */
export async function loadMailboxRows(db: Queryable, ref: ThreadRef): Promise<MailboxRows> {
  const open = await db.query(
    `SELECT r.run_id, r.dispatch_id, r.mode, r.agent_id, r.status, r.workflow_id, r.epoch
       FROM runs r
      WHERE r.tenant = $1 AND r.thread_id = $2 AND r.status <> 'done'
      ORDER BY r.created_at, r.run_id`,
    [ref.tenant, ref.threadId],
  );
  const ended = await db.query(
    `SELECT r.run_id FROM runs r
      WHERE r.tenant = $1 AND r.thread_id = $2 AND r.status = 'done'
        AND EXISTS (SELECT 1 FROM pending_input p WHERE p.tenant = r.tenant AND p.run_id = r.run_id)
      ORDER BY r.created_at, r.run_id`,
    [ref.tenant, ref.threadId],
  );
  const epoch = await db.query('SELECT coalesce(max(epoch), 0) AS epoch FROM runs WHERE tenant = $1 AND thread_id = $2', [ref.tenant, ref.threadId]);
  return {
    open: open.rows.map((r) => ({
      runId: r.run_id,
      dispatchId: r.dispatch_id,
      mode: r.mode,
      agentId: r.agent_id,
      status: r.status,
      epoch: Number(r.epoch),
      workflowId: r.workflow_id ?? `run:${r.run_id}`,
    })),
    pendingOfEnded: ended.rows.map((r) => r.run_id),
    epoch: Number(epoch.rows[0].epoch),
  };
}
