// Dispatches: the mailbox's record of each run it was handed (mode, epoch, attempts), listed per
// thread and read back to rebuild a thread workflow from Postgres.
import type pg from 'pg';
import type { DispatchStatus, RunStatus, Termination } from '../contract/run-events.js';
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

export async function insertDispatch(
  client: pg.PoolClient,
  ref: ThreadRef,
  dispatch: { dispatchId: string; runId: string; mode: string; epoch: number },
): Promise<void> {
  await client.query(`INSERT INTO dispatches (dispatch_id, tenant, thread_id, run_id, mode, status, epoch) VALUES ($1, $2, $3, $4, $5, 'queued', $6)`, [
    dispatch.dispatchId,
    ref.tenant,
    ref.threadId,
    dispatch.runId,
    dispatch.mode,
    dispatch.epoch,
  ]);
}

export async function markDispatchRunning(client: pg.PoolClient, tenant: string, runId: string): Promise<void> {
  await client.query(`UPDATE dispatches SET status = 'running', attempts = attempts + 1, updated_at = now() WHERE tenant = $2 AND run_id = $1`, [runId, tenant]);
}

export async function markDispatchFinished(client: pg.PoolClient, tenant: string, runId: string, termination: Termination, error: string | null): Promise<void> {
  const status: DispatchStatus = termination.type === 'superseded' ? 'superseded' : termination.type === 'cancelled' ? 'cancelled' : 'done';
  await client.query(`UPDATE dispatches SET status = $2, last_error = $3, updated_at = now() WHERE tenant = $4 AND run_id = $1`, [runId, status, error, tenant]);
}

export async function deleteDispatch(client: pg.PoolClient, tenant: string, runId: string): Promise<void> {
  await client.query('DELETE FROM dispatches WHERE tenant = $1 AND run_id = $2', [tenant, runId]);
}

/** The mailbox projection: a thread's dispatches, oldest first. */
export async function listDispatches(db: Queryable, ref: ThreadRef): Promise<DispatchRecord[]> {
  const { rows } = await db.query('SELECT * FROM dispatches WHERE tenant = $1 AND thread_id = $2 ORDER BY created_at, dispatch_id', [ref.tenant, ref.threadId]);
  return rows.map((r) => ({
    dispatchId: r.dispatch_id,
    runId: r.run_id,
    status: r.status,
    mode: r.mode,
    epoch: Number(r.epoch),
    attempts: r.attempts,
    lastError: r.last_error,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  }));
}

/**
 * What Postgres knows of a thread's mailbox, to rebuild a thread workflow that was terminated: the
 * runs not yet done (oldest first, with their dispatch and epoch), and the runs that ended without
 * starting whose input is still pending (superseded runs whose heir's workflow state was lost).
 */
export async function loadMailboxRows(db: Queryable, ref: ThreadRef): Promise<MailboxRows> {
  const open = await db.query(
    `SELECT r.run_id, r.dispatch_id, r.mode, r.agent_id, r.status, r.workflow_id, coalesce(d.epoch, 0) AS epoch
       FROM runs r LEFT JOIN dispatches d ON d.tenant = r.tenant AND d.run_id = r.run_id
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
  const epoch = await db.query('SELECT coalesce(max(epoch), 0) AS epoch FROM dispatches WHERE tenant = $1 AND thread_id = $2', [ref.tenant, ref.threadId]);
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
