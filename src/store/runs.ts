// Run records (each also the mailbox's dispatch of the run) and their legal transitions; each
// transition updates, in the same transaction, the run's pending input and thread, commits its input
// to the log and records its event.
import type pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import type { RunStatus, Termination, TerminationType, Usage } from '../contract/run-events.js';
import { StoreError } from './errors.js';
import { appendEventsIn, deleteRunEvents } from './events.js';
import { appendToLog, type NewMessage } from './messages.js';
import { deletePendingInput, insertPendingInput, takePendingInput } from './pending-input.js';
import { ensureThread, markRunDiscarded, markRunFinished, markRunQueued, markRunStarted, markRunWaiting, type ThreadRef } from './threads.js';
import { inTransaction, type Queryable } from './tx.js';

export interface RunRecord {
  runId: string;
  threadId: string;
  agentId: string;
  dispatchId: string;
  mode: string;
  status: RunStatus;
  termination: Termination | null;
  inputMessageIds: string[];
  waiting: unknown;
  steps: number;
  usage: Usage;
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
  /** the run's Temporal workflow id */
  workflowId: string;
  /** hash of the request that created the run: a claim of the same id with another request is a conflict */
  requestHash: string | null;
}

export interface NewRun {
  runId: string;
  dispatchId: string;
  agentId: string;
  mode: string;
  epoch: number;
  input: NewMessage[];
  /** absent: `run:<runId>`, the id of runs created before run ids were tenant-scoped */
  workflowId?: string;
  requestHash?: string;
}

export interface OperationalCounts {
  finishedByTermination: Partial<Record<TerminationType, number>>;
  running: number;
  waiting: number;
  queuedDispatches: number;
}

const LEGAL: Record<RunStatus, RunStatus[]> = {
  queued: ['running', 'done'],
  running: ['waiting', 'done'],
  waiting: ['running', 'done'],
  done: [],
};

/**
 * Records a queued run (its dispatch), its durable pending input and a `run_queued` event. The run id
 * is claimed by the primary key (tenant, run_id), so of two concurrent claims exactly one inserts.
 * A retry of the same call (same dispatch id) returns the run with `created: true`; a repeat of the same
 * claim by another request (same thread, same request hash) returns it with `created: false`;
 * a claim by another thread is `conflict`, by the same thread with another request `idempotency_conflict`.
 */
export function createRun(pool: pg.Pool, ref: ThreadRef, run: NewRun): Promise<RunRecord & { created: boolean }> {
  return inTransaction(pool, async (client) => {
    await ensureThread(client, ref);
    const input = run.input.map((m) => ({ ...m, messageId: m.messageId ?? uuidv7(), runId: run.runId }));
    const inserted = await client.query(
      `INSERT INTO runs (run_id, tenant, thread_id, agent_id, dispatch_id, mode, epoch, status, input_message_ids, workflow_id, request_hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10) ON CONFLICT (tenant, run_id) DO NOTHING`,
      [run.runId, ref.tenant, ref.threadId, run.agentId, run.dispatchId, run.mode, run.epoch, input.map((m) => m.messageId), run.workflowId ?? null, run.requestHash ?? null],
    );
    if (!inserted.rowCount) return existingClaim(client, ref, run);
    await insertPendingInput(client, ref.tenant, run.runId, input);
    await markRunQueued(client, ref, run.runId);
    await appendEventsIn(client, run.runId, 0, [{ type: 'run_queued', dispatchId: run.dispatchId, mode: run.mode }], ref.tenant);
    return { ...(await requireRun(client, run.runId, ref.tenant)), created: true };
  });
}

/** The run that already holds `run.runId`, when `run` may claim it again; `created` only for a retry of the claim that made it. */
async function existingClaim(client: pg.PoolClient, ref: ThreadRef, run: NewRun): Promise<RunRecord & { created: boolean }> {
  const existing = await requireRun(client, run.runId, ref.tenant);
  // The same dispatch: a retry of this very call whose first attempt committed (its worker died before reporting).
  if (existing.threadId === ref.threadId && existing.dispatchId === run.dispatchId) return { ...existing, created: true };
  if (existing.threadId !== ref.threadId) throw new StoreError('conflict', `run id ${run.runId} is already used by another thread`);
  if (run.requestHash && existing.requestHash && existing.requestHash !== run.requestHash) {
    throw new StoreError('idempotency_conflict', `run id ${run.runId} was already submitted with a different request`);
  }
  return { ...existing, created: false };
}

/**
 * Undoes a createRun whose submit was then rejected (the run it had to interrupt would not stop):
 * a rejected request leaves nothing behind. Only a run that never started can be discarded.
 */
export async function discardRun(pool: pg.Pool, ref: ThreadRef, runId: string): Promise<void> {
  await inTransaction(pool, async (client) => {
    const { rows } = await client.query(`SELECT status FROM runs WHERE tenant = $1 AND run_id = $2 FOR UPDATE`, [ref.tenant, runId]);
    if (!rows[0] || rows[0].status !== 'queued') return;
    await deletePendingInput(client, ref.tenant, runId);
    await deleteRunEvents(client, ref.tenant, runId);
    await client.query('DELETE FROM runs WHERE tenant = $1 AND run_id = $2', [ref.tenant, runId]);
    await markRunDiscarded(client, ref, runId);
  });
}

/**
 * queued → running: commits the pending input of `carriedRunIds` (runs this one superseded)
 * and then its own, in one transaction with the status change. A retry after success is a no-op.
 */
export function startRun(pool: pg.Pool, runId: string, carriedRunIds: string[] = [], tenant?: string): Promise<RunRecord> {
  return inTransaction(pool, async (client) => {
    const run = await lockRun(client, runId, tenant);
    // Already started (possibly already waiting for an approval): a retried activity must not rewind it.
    if (run.status === 'running' || run.status === 'waiting') return requireRun(client, runId, run.tenant);
    assertTransition(run, 'running');
    const ref = { tenant: run.tenant, threadId: run.threadId };
    const input = await takePendingInput(client, run.tenant, [...carriedRunIds.filter((id) => id !== runId), runId]);
    if (input.length > 0) await appendToLog(client, ref, input);
    await client.query(`UPDATE runs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now() WHERE tenant = $2 AND run_id = $1`, [
      runId,
      run.tenant,
    ]);
    await markRunStarted(client, ref, runId);
    await appendEventsIn(client, runId, 0, [{ type: 'run_start', dispatchId: run.dispatchId, agentId: run.agentId }], run.tenant);
    return requireRun(client, runId, run.tenant);
  });
}

/** running → waiting (`waiting` holds the approval tickets) and waiting → running (`null`). */
export function setRunWaiting(pool: pg.Pool, runId: string, waiting: unknown | null, tenant?: string): Promise<RunRecord> {
  return inTransaction(pool, async (client) => {
    const run = await lockRun(client, runId, tenant);
    const next = waiting === null ? 'running' : 'waiting';
    // queued → running is startRun's alone: only it commits the pending input.
    if (run.status === 'queued') throw new StoreError('illegal_transition', `run ${runId} cannot go from queued to ${next}: it has not started`);
    if (run.status !== next) assertTransition(run, next);
    await client.query('UPDATE runs SET status = $2, waiting = $3, updated_at = now() WHERE tenant = $4 AND run_id = $1', [runId, next, waiting, run.tenant]);
    await markRunWaiting(client, { tenant: run.tenant, threadId: run.threadId }, runId, next);
    return requireRun(client, runId, run.tenant);
  });
}

/** Records a finished step's usage on the run. */
export async function recordStep(db: Queryable, runId: string, step: number, usage: Usage, tenant?: string): Promise<void> {
  await db.query(
    `UPDATE runs SET steps = greatest(steps, $2),
       usage = jsonb_build_object(
         'inputTokens', coalesce((usage->>'inputTokens')::bigint, 0) + $3,
         'outputTokens', coalesce((usage->>'outputTokens')::bigint, 0) + $4,
         'inferenceMs', coalesce((usage->>'inferenceMs')::bigint, 0) + $5),
       updated_at = now()
     WHERE run_id = $1 AND steps < $2 AND tenant = coalesce($6::text, tenant)`,
    [runId, step, usage.inputTokens ?? 0, usage.outputTokens ?? 0, usage.inferenceMs ?? 0, tenant ?? null],
  );
}

/** → done with a termination; emits `run_finish`. Repeating the same finish is a no-op; a different one is illegal. */
export function finishRun(
  pool: pg.Pool,
  runId: string,
  termination: Termination,
  opts: { error?: string; fence?: number; tenant?: string } = {},
): Promise<RunRecord> {
  return inTransaction(pool, async (client) => {
    const run = await lockRun(client, runId, opts.tenant);
    if (run.status === 'done') {
      if (run.termination?.type === termination.type) return requireRun(client, runId, run.tenant);
      throw new StoreError('illegal_transition', `run ${runId} already ended ${run.termination?.type}; cannot end it ${termination.type}`);
    }
    // A run cancelled before it started drops its input. A superseded run's input stays
    // pending: the run that superseded it commits it ahead of its own (startRun's carriedRunIds).
    if (run.status === 'queued' && termination.type === 'cancelled') await deletePendingInput(client, run.tenant, runId);
    await client.query(
      `UPDATE runs SET status = 'done', termination = $2, error = $3, waiting = NULL, finished_at = now(), updated_at = now() WHERE tenant = $4 AND run_id = $1`,
      [runId, termination, opts.error ?? null, run.tenant],
    );
    await markRunFinished(client, { tenant: run.tenant, threadId: run.threadId }, runId);
    await appendEventsIn(client, runId, opts.fence ?? 0, [{ type: 'run_finish', termination }], run.tenant);
    return requireRun(client, runId, run.tenant);
  });
}

/** Commits the pending input of runs that ended without starting (superseded by an interrupt), in their order. */
export async function commitPendingInput(pool: pg.Pool, ref: ThreadRef, runIds: string[]): Promise<void> {
  await inTransaction(pool, async (client) => {
    const input = await takePendingInput(client, ref.tenant, runIds);
    if (input.length > 0) await appendToLog(client, ref, input);
  });
}

export async function getRun(db: Queryable, runId: string, tenant?: string): Promise<RunRecord | undefined> {
  const { rows } = await db.query('SELECT * FROM runs WHERE run_id = $1 AND ($2::text IS NULL OR tenant = $2)', [runId, tenant ?? null]);
  return rows[0] ? toRun(rows[0]) : undefined;
}

export async function listRuns(db: Queryable, ref: ThreadRef): Promise<RunRecord[]> {
  const { rows } = await db.query('SELECT * FROM runs WHERE tenant = $1 AND thread_id = $2 ORDER BY created_at, run_id', [ref.tenant, ref.threadId]);
  return rows.map(toRun);
}

/** Counts for /metrics that only Postgres knows, so every API replica reports the same numbers. */
export async function readOperationalCounts(db: Queryable): Promise<OperationalCounts> {
  const { rows } = await db.query<{ finished: Record<string, string> | null; running: string; waiting: string; queued_dispatches: string }>(
    `SELECT
       (SELECT json_object_agg(t, n) FROM (SELECT termination->>'type' AS t, count(*) AS n FROM runs WHERE status = 'done' GROUP BY 1) f) AS finished,
       (SELECT count(*) FROM runs WHERE status = 'running') AS running,
       (SELECT count(*) FROM runs WHERE status = 'waiting') AS waiting,
       (SELECT count(*) FROM runs WHERE status = 'queued') AS queued_dispatches`,
  );
  const row = rows[0]!;
  const finishedByTermination: OperationalCounts['finishedByTermination'] = {};
  for (const [type, n] of Object.entries(row.finished ?? {})) finishedByTermination[type as TerminationType] = Number(n);
  return { finishedByTermination, running: Number(row.running), waiting: Number(row.waiting), queuedDispatches: Number(row.queued_dispatches) };
}

function assertTransition(run: RunRecord, next: RunStatus) {
  if (!LEGAL[run.status].includes(next)) {
    throw new StoreError('illegal_transition', `run ${run.runId} cannot go from ${run.status} to ${next}`);
  }
}

/** Locks a run. Without a tenant (tests, tools) the id must be unique across tenants. */
async function lockRun(client: pg.PoolClient, runId: string, tenant?: string) {
  const { rows } = await client.query('SELECT * FROM runs WHERE run_id = $1 AND tenant = coalesce($2::text, tenant) FOR UPDATE', [runId, tenant ?? null]);
  if (!rows[0]) throw new StoreError('not_found', `run ${runId} does not exist`);
  return { ...toRun(rows[0]), tenant: rows[0].tenant as string };
}

async function requireRun(client: pg.PoolClient, runId: string, tenant: string): Promise<RunRecord> {
  const { rows } = await client.query('SELECT * FROM runs WHERE tenant = $2 AND run_id = $1', [runId, tenant]);
  if (!rows[0]) throw new StoreError('not_found', `run ${runId} does not exist`);
  return toRun(rows[0]);
}

const iso = (v: Date | null) => (v ? v.toISOString() : null);

function toRun(r: Record<string, any>): RunRecord {
  return {
    runId: r.run_id,
    threadId: r.thread_id,
    agentId: r.agent_id,
    dispatchId: r.dispatch_id,
    mode: r.mode,
    status: r.status,
    termination: r.termination,
    inputMessageIds: r.input_message_ids,
    waiting: r.waiting,
    steps: r.steps,
    usage: r.usage,
    error: r.error,
    createdAt: r.created_at.toISOString(),
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    updatedAt: r.updated_at.toISOString(),
    workflowId: r.workflow_id ?? `run:${r.run_id}`,
    requestHash: r.request_hash,
  };
}
