// Thread rows: the mailbox projection (active and queued runs), the derived status, listing. The
// committed version is the log's (messages.ts swaps it with each append).
import type { ThreadStatus } from '../contract/run-events.js';
import type { Queryable } from './tx.js';

export interface ThreadRef {
  tenant: string;
  threadId: string;
}

export interface ThreadRecord {
  threadId: string;
  /** `queued`: no run is active but some wait to start (between two runs, or before the first) */
  status: ThreadStatus;
  version: number;
  activeRunId: string | null;
  queuedRunIds: string[];
  latestRunId: string | null;
  metadata: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

export async function getThread(db: Queryable, ref: ThreadRef): Promise<ThreadRecord | undefined> {
  const { rows } = await db.query('SELECT * FROM threads WHERE tenant = $1 AND thread_id = $2', [ref.tenant, ref.threadId]);
  return rows[0] ? toThread(rows[0]) : undefined;
}

export async function listThreads(db: Queryable, tenant: string, limit = 100, afterThreadId = ''): Promise<ThreadRecord[]> {
  const { rows } = await db.query('SELECT * FROM threads WHERE tenant = $1 AND thread_id > $2 ORDER BY thread_id LIMIT $3', [tenant, afterThreadId, limit]);
  return rows.map(toThread);
}

export async function ensureThread(db: Queryable, ref: ThreadRef): Promise<void> {
  await db.query('INSERT INTO threads (tenant, thread_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [ref.tenant, ref.threadId]);
}

/** A run was queued: it joins the queue and is the thread's latest. */
export async function markRunQueued(db: Queryable, ref: ThreadRef, runId: string): Promise<void> {
  await db.query(
    `UPDATE threads SET queued_run_ids = array_append(queued_run_ids, $3), latest_run_id = $3, updated_at = now()
      WHERE tenant = $1 AND thread_id = $2`,
    [ref.tenant, ref.threadId, runId],
  );
}

/** A queued run was discarded: it leaves the queue, and the latest run is the newest left. */
export async function markRunDiscarded(db: Queryable, ref: ThreadRef, runId: string): Promise<void> {
  await db.query(
    `UPDATE threads SET queued_run_ids = array_remove(queued_run_ids, $3),
       latest_run_id = (SELECT run_id FROM runs WHERE tenant = $1 AND thread_id = $2 ORDER BY created_at DESC, run_id DESC LIMIT 1)
     WHERE tenant = $1 AND thread_id = $2`,
    [ref.tenant, ref.threadId, runId],
  );
}

/** A run started: it leaves the queue and is the thread's active run. */
export async function markRunStarted(db: Queryable, ref: ThreadRef, runId: string): Promise<void> {
  await db.query(
    `UPDATE threads SET status = 'running', active_run_id = $3, queued_run_ids = array_remove(queued_run_ids, $3), updated_at = now()
      WHERE tenant = $1 AND thread_id = $2`,
    [ref.tenant, ref.threadId, runId],
  );
}

/** The active run began or stopped waiting for a decision: the thread shows it (a run no longer active changes nothing). */
export async function markRunWaiting(db: Queryable, ref: ThreadRef, runId: string, status: 'running' | 'waiting'): Promise<void> {
  await db.query(`UPDATE threads SET status = $3, updated_at = now() WHERE tenant = $1 AND thread_id = $2 AND active_run_id = $4`, [
    ref.tenant,
    ref.threadId,
    status,
    runId,
  ]);
}

/** A run ended: it leaves the queue, and if it was the active run the thread is idle. */
export async function markRunFinished(db: Queryable, ref: ThreadRef, runId: string): Promise<void> {
  await db.query(
    `UPDATE threads SET
       status = CASE WHEN active_run_id = $3 THEN 'idle' ELSE status END,
       active_run_id = CASE WHEN active_run_id = $3 THEN NULL ELSE active_run_id END,
       queued_run_ids = array_remove(queued_run_ids, $3), updated_at = now()
     WHERE tenant = $1 AND thread_id = $2`,
    [ref.tenant, ref.threadId, runId],
  );
}

function toThread(r: Record<string, any>): ThreadRecord {
  return {
    threadId: r.thread_id,
    status: r.status === 'idle' && r.queued_run_ids.length > 0 ? 'queued' : r.status,
    version: Number(r.version),
    activeRunId: r.active_run_id,
    queuedRunIds: r.queued_run_ids,
    latestRunId: r.latest_run_id,
    metadata: r.metadata,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}
