// The committed log, run records, pending input, the mailbox projection and the event log.
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import type { DispatchStatus, RunEvent, RunEventBody, RunStatus, Termination, TerminationType, ThreadStatus, Usage } from '../contract/run-events.js';
import { attemptOfFence } from '../contract/mailbox.js';

export const EVENTS_CHANNEL = 'threadbox_events';
const MAX_CAS_ATTEMPTS = 8;

export interface ThreadRef {
  tenant: string;
  threadId: string;
}

export type Role = 'user' | 'assistant' | 'tool' | 'system';

export interface ToolCall {
  toolCallId: string;
  toolName: string;
  input: unknown;
}

export interface NewMessage {
  messageId?: string;
  role: Role;
  content: string;
  toolCalls?: ToolCall[];
  toolCallId?: string;
  runId?: string;
  status?: 'complete' | 'interrupted';
  metadata?: Record<string, unknown>;
}

export interface CommittedMessage {
  seq: number;
  id: string;
  role: Role;
  content: string;
  toolCalls?: ToolCall[];
  toolCallId?: string;
  runId?: string;
  status: 'complete' | 'interrupted';
  metadata: Record<string, unknown>;
  createdAt: string;
}

export interface CommitResult {
  firstSeq: number;
  lastSeq: number;
  version: number;
  messageIds: string[];
  /** every message was already committed: nothing was written */
  duplicate: boolean;
}

export type { RunStatus };

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

export interface OperationalCounts {
  finishedByTermination: Partial<Record<TerminationType, number>>;
  running: number;
  waiting: number;
  queuedDispatches: number;
}

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

export class StoreError extends Error {
  override readonly name = 'StoreError';

  constructor(
    readonly code: 'version_conflict' | 'duplicate_message_id' | 'illegal_transition' | 'stale_writer' | 'not_found' | 'conflict' | 'idempotency_conflict',
    message: string,
  ) {
    super(message);
  }
}

const LEGAL: Record<RunStatus, RunStatus[]> = {
  queued: ['running', 'done'],
  running: ['waiting', 'done'],
  waiting: ['running', 'done'],
  done: [],
};

type Queryable = pg.Pool | pg.PoolClient;

export class Store {
  /** Tail of each thread's in-process append queue (see commitMessages). */
  private readonly appendQueues = new Map<string, Promise<unknown>>();

  constructor(readonly pool: pg.Pool) {}

  // ---- committed log ------------------------------------------------------------------

  /**
   * Appends messages at version+1..version+n and returns their seq range.
   *
   * Without `expectedVersion` the thread row is locked before its version is read, so the
   * append cannot lose a race: concurrent writers queue on the lock and each lands after the
   * one before it. With `expectedVersion` the first attempt is a compare-and-swap from that
   * version; when the version has moved, every later attempt reloads the current version and
   * swaps from it, so the messages still land after whatever was committed meanwhile. After
   * 8 lost swaps it fails with `version_conflict` naming the thread.
   *
   * Idempotent on message ids: when every id is already committed it returns the original
   * range with `duplicate: true` and writes nothing; when only some are, it fails with
   * `duplicate_message_id` and writes nothing. Missing ids get UUIDv7s.
   *
   * Appends to one thread from this process run one at a time: Postgres serializes them on the
   * thread row anyway, and queueing them here keeps a hot thread from holding (or timing out
   * waiting for) every pool connection while its appends wait on each other's row lock.
   */
  async commitMessages(ref: ThreadRef, messages: NewMessage[], expectedVersion?: number): Promise<CommitResult> {
    // Ids are fixed once so that every attempt (and the result) names the same messages.
    const batch = messages.map((m) => ({ ...m, messageId: m.messageId ?? uuidv7() }));
    return this.oneAtATime(JSON.stringify([ref.tenant, ref.threadId]), () => this.commitWithRetries(ref, batch, expectedVersion));
  }

  private async commitWithRetries(ref: ThreadRef, batch: PendingMessage[], expectedVersion: number | undefined): Promise<CommitResult> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const base: CasBase = expectedVersion === undefined ? 'locked' : attempt === 1 ? expectedVersion : 'reload';
      try {
        return await this.inTransaction((client) => commitInTransaction(client, ref, batch, base));
      } catch (err) {
        if (!isLostRace(err)) throw err;
        lastError = err;
        await sleep(Math.random() * Math.min(50, 2 ** attempt));
      }
    }
    throw new StoreError(
      'version_conflict',
      `append to thread ${ref.threadId} (tenant ${ref.tenant}) lost to concurrent writers ${MAX_CAS_ATTEMPTS} times: ${(lastError as Error).message}`,
    );
  }

  async loadCommittedMessages(ref: ThreadRef, afterSeq = 0, limit = 10_000): Promise<CommittedMessage[]> {
    const { rows } = await this.pool.query(
      `SELECT seq, message_id, role, content, tool_calls, tool_call_id, run_id, status, metadata, created_at
         FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
      [ref.tenant, ref.threadId, afterSeq, limit],
    );
    return rows.map(toMessage);
  }

  /**
   * The newest messages of a thread, oldest first: at most `limit`, and no older than the one
   * whose content takes the total (newest first) past `maxContentBytes`. Reads only those
   * rows, newest first by seq from the primary key, never the whole thread.
   */
  async loadRecentMessages(ref: ThreadRef, opts: { limit: number; maxContentBytes: number }): Promise<CommittedMessage[]> {
    const { rows } = await this.pool.query(
      `SELECT seq, message_id, role, content, tool_calls, tool_call_id, run_id, status, metadata, created_at FROM (
         SELECT *, sum(octet_length(content)) OVER (ORDER BY seq DESC) - octet_length(content) AS newer_bytes
           FROM messages WHERE tenant = $1 AND thread_id = $2 ORDER BY seq DESC LIMIT $3
       ) recent WHERE newer_bytes < $4 ORDER BY seq`,
      [ref.tenant, ref.threadId, opts.limit, opts.maxContentBytes],
    );
    return rows.map(toMessage);
  }

  /** The committed messages one run wrote (its input, steering, answers and tool results), in log order. */
  async loadRunMessages(ref: ThreadRef, runId: string): Promise<CommittedMessage[]> {
    const { rows } = await this.pool.query(
      `SELECT seq, message_id, role, content, tool_calls, tool_call_id, run_id, status, metadata, created_at
         FROM messages WHERE tenant = $1 AND thread_id = $2 AND run_id = $3 ORDER BY seq`,
      [ref.tenant, ref.threadId, runId],
    );
    return rows.map(toMessage);
  }

  /** Which of `ids` the thread already holds, committed or pending in a run not yet started. */
  async findUsedMessageIds(ref: ThreadRef, ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const { rows } = await this.pool.query(
      `SELECT message_id AS id FROM messages WHERE tenant = $1 AND thread_id = $2 AND message_id = ANY($3)
       UNION
       SELECT p.message->>'messageId' FROM pending_input p JOIN runs r ON r.tenant = p.tenant AND r.run_id = p.run_id
        WHERE r.tenant = $1 AND r.thread_id = $2 AND p.message->>'messageId' = ANY($3)`,
      [ref.tenant, ref.threadId, ids],
    );
    return rows.map((r) => r.id);
  }

  // ---- threads ------------------------------------------------------------------------

  async getThread(ref: ThreadRef): Promise<ThreadRecord | undefined> {
    const { rows } = await this.pool.query('SELECT * FROM threads WHERE tenant = $1 AND thread_id = $2', [ref.tenant, ref.threadId]);
    return rows[0] ? toThread(rows[0]) : undefined;
  }

  async listThreads(tenant: string, limit = 100, afterThreadId = ''): Promise<ThreadRecord[]> {
    const { rows } = await this.pool.query(
      'SELECT * FROM threads WHERE tenant = $1 AND thread_id > $2 ORDER BY thread_id LIMIT $3',
      [tenant, afterThreadId, limit],
    );
    return rows.map(toThread);
  }

  // ---- runs ---------------------------------------------------------------------------

  /**
   * Records a queued run, its durable pending input, its dispatch and a `run_queued` event. The run id
   * is claimed by the primary key (tenant, run_id), so of two concurrent claims exactly one inserts.
   * A retry of the same call (same dispatch id) returns the run with `created: true`; a repeat of the same
   * claim by another request (same thread, same request hash) returns it with `created: false`;
   * a claim by another thread is `conflict`, by the same thread with another request `idempotency_conflict`.
   */
  async createRun(ref: ThreadRef, run: NewRun): Promise<RunRecord & { created: boolean }> {
    return this.inTransaction(async (client) => {
      await ensureThread(client, ref);
      const input = run.input.map((m) => ({ ...m, messageId: m.messageId ?? uuidv7(), runId: run.runId }));
      const inserted = await client.query(
        `INSERT INTO runs (run_id, tenant, thread_id, agent_id, dispatch_id, mode, status, input_message_ids, workflow_id, request_hash)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9) ON CONFLICT (tenant, run_id) DO NOTHING`,
        [run.runId, ref.tenant, ref.threadId, run.agentId, run.dispatchId, run.mode, input.map((m) => m.messageId), run.workflowId ?? null, run.requestHash ?? null],
      );
      if (!inserted.rowCount) {
        const existing = await requireRun(client, run.runId, ref.tenant);
        // The same dispatch: a retry of this very call whose first attempt committed (its worker died before reporting).
        if (existing.threadId === ref.threadId && existing.dispatchId === run.dispatchId) return { ...existing, created: true };
        if (existing.threadId !== ref.threadId) throw new StoreError('conflict', `run id ${run.runId} is already used by another thread`);
        if (run.requestHash && existing.requestHash && existing.requestHash !== run.requestHash) {
          throw new StoreError('idempotency_conflict', `run id ${run.runId} was already submitted with a different request`);
        }
        return { ...existing, created: false };
      }
      {
        if (input.length > 0) {
          await client.query(
            `INSERT INTO pending_input (tenant, run_id, position, message)
             SELECT $3, $1, i - 1, m FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS t(m, i)`,
            [run.runId, JSON.stringify(input), ref.tenant],
          );
        }
        await client.query(
          `INSERT INTO dispatches (dispatch_id, tenant, thread_id, run_id, mode, status, epoch) VALUES ($1, $2, $3, $4, $5, 'queued', $6)`,
          [run.dispatchId, ref.tenant, ref.threadId, run.runId, run.mode, run.epoch],
        );
        await client.query(
          `UPDATE threads SET queued_run_ids = array_append(queued_run_ids, $3), latest_run_id = $3, updated_at = now()
            WHERE tenant = $1 AND thread_id = $2`,
          [ref.tenant, ref.threadId, run.runId],
        );
        await appendEventsWith(client, run.runId, 0, [{ type: 'run_queued', dispatchId: run.dispatchId, mode: run.mode }], ref.tenant);
      }
      return { ...(await requireRun(client, run.runId, ref.tenant)), created: true };
    });
  }

  /**
   * Undoes a createRun whose submit was then rejected (the run it had to interrupt would not stop):
   * a rejected request leaves nothing behind. Only a run that never started can be discarded.
   */
  async discardRun(ref: ThreadRef, runId: string): Promise<void> {
    await this.inTransaction(async (client) => {
      const { rows } = await client.query(`SELECT status FROM runs WHERE tenant = $1 AND run_id = $2 FOR UPDATE`, [ref.tenant, runId]);
      if (!rows[0] || rows[0].status !== 'queued') return;
      await client.query('DELETE FROM pending_input WHERE tenant = $1 AND run_id = $2', [ref.tenant, runId]);
      await client.query('DELETE FROM dispatches WHERE tenant = $1 AND run_id = $2', [ref.tenant, runId]);
      await client.query('DELETE FROM run_events WHERE tenant = $1 AND run_id = $2', [ref.tenant, runId]);
      await client.query('DELETE FROM runs WHERE tenant = $1 AND run_id = $2', [ref.tenant, runId]);
      await client.query(
        `UPDATE threads SET queued_run_ids = array_remove(queued_run_ids, $3),
           latest_run_id = (SELECT run_id FROM runs WHERE tenant = $1 AND thread_id = $2 ORDER BY created_at DESC, run_id DESC LIMIT 1)
         WHERE tenant = $1 AND thread_id = $2`,
        [ref.tenant, ref.threadId, runId],
      );
    });
  }

  /**
   * queued → running: commits the pending input of `carriedRunIds` (runs this one superseded)
   * and then its own, in one transaction with the status change. A retry after success is a no-op.
   */
  async startRun(runId: string, carriedRunIds: string[] = [], tenant?: string): Promise<RunRecord> {
    return this.inTransaction(async (client) => {
      const run = await lockRun(client, runId, tenant);
      // Already started (possibly already waiting for an approval): a retried activity must not rewind it.
      if (run.status === 'running' || run.status === 'waiting') return requireRun(client, runId, run.tenant);
      assertTransition(run, 'running');
      const ref = { tenant: run.tenant, threadId: run.threadId };
      const input: PendingMessage[] = [];
      for (const id of [...carriedRunIds.filter((id) => id !== runId), runId]) input.push(...(await takePendingInput(client, run.tenant, id)));
      if (input.length > 0) await commitInTransaction(client, ref, input, 'locked');
      await client.query(
        `UPDATE runs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now() WHERE tenant = $2 AND run_id = $1`,
        [runId, run.tenant],
      );
      await client.query(`UPDATE dispatches SET status = 'running', attempts = attempts + 1, updated_at = now() WHERE tenant = $2 AND run_id = $1`, [runId, run.tenant]);
      await client.query(
        `UPDATE threads SET status = 'running', active_run_id = $3, queued_run_ids = array_remove(queued_run_ids, $3), updated_at = now()
          WHERE tenant = $1 AND thread_id = $2`,
        [ref.tenant, ref.threadId, runId],
      );
      await appendEventsWith(client, runId, 0, [{ type: 'run_start', dispatchId: run.dispatchId, agentId: run.agentId }], run.tenant);
      return requireRun(client, runId, run.tenant);
    });
  }

  /** running → waiting (`waiting` holds the approval tickets) and waiting → running (`null`). */
  async setRunWaiting(runId: string, waiting: unknown | null, tenant?: string): Promise<RunRecord> {
    return this.inTransaction(async (client) => {
      const run = await lockRun(client, runId, tenant);
      const next: RunStatus = waiting === null ? 'running' : 'waiting';
      // queued → running is startRun's alone: only it commits the pending input.
      if (run.status === 'queued') throw new StoreError('illegal_transition', `run ${runId} cannot go from queued to ${next}: it has not started`);
      if (run.status !== next) assertTransition(run, next);
      await client.query('UPDATE runs SET status = $2, waiting = $3, updated_at = now() WHERE tenant = $4 AND run_id = $1', [runId, next, waiting, run.tenant]);
      await client.query(
        `UPDATE threads SET status = $3, updated_at = now() WHERE tenant = $1 AND thread_id = $2 AND active_run_id = $4`,
        [run.tenant, run.threadId, next, runId],
      );
      return requireRun(client, runId, run.tenant);
    });
  }

  /** Records a finished step's usage on the run. */
  async recordStep(runId: string, step: number, usage: Usage, tenant?: string): Promise<void> {
    await this.pool.query(
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
  async finishRun(runId: string, termination: Termination, opts: { error?: string; fence?: number; tenant?: string } = {}): Promise<RunRecord> {
    return this.inTransaction(async (client) => {
      const run = await lockRun(client, runId, opts.tenant);
      if (run.status === 'done') {
        if (run.termination?.type === termination.type) return requireRun(client, runId, run.tenant);
        throw new StoreError('illegal_transition', `run ${runId} already ended ${run.termination?.type}; cannot end it ${termination.type}`);
      }
      // A run cancelled before it started drops its input. A superseded run's input stays
      // pending: the run that superseded it commits it ahead of its own (startRun's carriedRunIds).
      if (run.status === 'queued' && termination.type === 'cancelled') {
        await client.query('DELETE FROM pending_input WHERE tenant = $2 AND run_id = $1', [runId, run.tenant]);
      }
      await client.query(
        `UPDATE runs SET status = 'done', termination = $2, error = $3, waiting = NULL, finished_at = now(), updated_at = now() WHERE tenant = $4 AND run_id = $1`,
        [runId, termination, opts.error ?? null, run.tenant],
      );
      const dispatchStatus = termination.type === 'superseded' ? 'superseded' : termination.type === 'cancelled' ? 'cancelled' : 'done';
      await client.query(
        `UPDATE dispatches SET status = $2, last_error = $3, updated_at = now() WHERE tenant = $4 AND run_id = $1`,
        [runId, dispatchStatus, opts.error ?? null, run.tenant],
      );
      await client.query(
        `UPDATE threads SET
           status = CASE WHEN active_run_id = $3 THEN 'idle' ELSE status END,
           active_run_id = CASE WHEN active_run_id = $3 THEN NULL ELSE active_run_id END,
           queued_run_ids = array_remove(queued_run_ids, $3), updated_at = now()
         WHERE tenant = $1 AND thread_id = $2`,
        [run.tenant, run.threadId, runId],
      );
      await appendEventsWith(client, runId, opts.fence ?? 0, [{ type: 'run_finish', termination }], run.tenant);
      return requireRun(client, runId, run.tenant);
    });
  }

  /**
   * Claims an Idempotency-Key for a submit request. `claimed`: first use; `replay`: the same request
   * again; `conflict`: the key was used with another request (or thread). Keys are per tenant.
   */
  async claimSubmitKey(ref: ThreadRef, key: string, requestHash: string): Promise<'claimed' | 'replay' | 'conflict'> {
    const inserted = await this.pool.query(
      'INSERT INTO submit_keys (tenant, key, thread_id, request_hash) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
      [ref.tenant, key, ref.threadId, requestHash],
    );
    if (inserted.rowCount) return 'claimed';
    const { rows } = await this.pool.query('SELECT thread_id, request_hash FROM submit_keys WHERE tenant = $1 AND key = $2', [ref.tenant, key]);
    return rows[0] && rows[0].thread_id === ref.threadId && rows[0].request_hash === requestHash ? 'replay' : 'conflict';
  }

  async submitKeyHash(tenant: string, key: string): Promise<string | undefined> {
    const { rows } = await this.pool.query('SELECT request_hash FROM submit_keys WHERE tenant = $1 AND key = $2', [tenant, key]);
    return rows[0]?.request_hash;
  }

  async threadOfSubmitKey(tenant: string, key: string): Promise<string | undefined> {
    const { rows } = await this.pool.query('SELECT thread_id FROM submit_keys WHERE tenant = $1 AND key = $2', [tenant, key]);
    return rows[0]?.thread_id;
  }

  /** Releases a key whose submit the API turned away before Temporal saw it: the key is free again. */
  async releaseSubmitKey(tenant: string, key: string): Promise<void> {
    await this.pool.query('DELETE FROM submit_keys WHERE tenant = $1 AND key = $2', [tenant, key]);
  }

  async getRun(runId: string, tenant?: string): Promise<RunRecord | undefined> {
    const { rows } = await this.pool.query('SELECT * FROM runs WHERE run_id = $1 AND ($2::text IS NULL OR tenant = $2)', [runId, tenant ?? null]);
    return rows[0] ? toRun(rows[0]) : undefined;
  }

  async listRuns(ref: ThreadRef): Promise<RunRecord[]> {
    const { rows } = await this.pool.query('SELECT * FROM runs WHERE tenant = $1 AND thread_id = $2 ORDER BY created_at, run_id', [
      ref.tenant,
      ref.threadId,
    ]);
    return rows.map(toRun);
  }

  /** Commits the pending input of runs that ended without starting (superseded by an interrupt), in their order. */
  async commitPendingInput(ref: ThreadRef, runIds: string[]): Promise<void> {
    await this.inTransaction(async (client) => {
      const input: PendingMessage[] = [];
      for (const id of runIds) input.push(...(await takePendingInput(client, ref.tenant, id)));
      if (input.length > 0) await commitInTransaction(client, ref, input, 'locked');
    });
  }

  /**
   * What Postgres knows of a thread's mailbox, to rebuild a thread workflow that was terminated: the
   * runs not yet done (oldest first, with their dispatch and epoch), and the runs that ended without
   * starting whose input is still pending (superseded runs whose heir's workflow state was lost).
   */
  async loadMailboxRows(ref: ThreadRef): Promise<{
    open: { runId: string; dispatchId: string; mode: string; agentId: string; status: RunStatus; epoch: number; workflowId: string }[];
    pendingOfEnded: string[];
    epoch: number;
  }> {
    const open = await this.pool.query(
      `SELECT r.run_id, r.dispatch_id, r.mode, r.agent_id, r.status, r.workflow_id, coalesce(d.epoch, 0) AS epoch
         FROM runs r LEFT JOIN dispatches d ON d.tenant = r.tenant AND d.run_id = r.run_id
        WHERE r.tenant = $1 AND r.thread_id = $2 AND r.status <> 'done'
        ORDER BY r.created_at, r.run_id`,
      [ref.tenant, ref.threadId],
    );
    const ended = await this.pool.query(
      `SELECT r.run_id FROM runs r
        WHERE r.tenant = $1 AND r.thread_id = $2 AND r.status = 'done'
          AND EXISTS (SELECT 1 FROM pending_input p WHERE p.tenant = r.tenant AND p.run_id = r.run_id)
        ORDER BY r.created_at, r.run_id`,
      [ref.tenant, ref.threadId],
    );
    const epoch = await this.pool.query('SELECT coalesce(max(epoch), 0) AS epoch FROM dispatches WHERE tenant = $1 AND thread_id = $2', [ref.tenant, ref.threadId]);
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

  /** The mailbox projection: a thread's dispatches, oldest first. */
  async listDispatches(ref: ThreadRef): Promise<DispatchRecord[]> {
    const { rows } = await this.pool.query(
      'SELECT * FROM dispatches WHERE tenant = $1 AND thread_id = $2 ORDER BY created_at, dispatch_id',
      [ref.tenant, ref.threadId],
    );
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

  /** Counts for /metrics that only Postgres knows, so every API replica reports the same numbers. */
  async readOperationalCounts(): Promise<OperationalCounts> {
    const { rows } = await this.pool.query<{ finished: Record<string, string> | null; running: string; waiting: string; queued_dispatches: string }>(
      `SELECT
         (SELECT json_object_agg(t, n) FROM (SELECT termination->>'type' AS t, count(*) AS n FROM runs WHERE status = 'done' GROUP BY 1) f) AS finished,
         (SELECT count(*) FROM runs WHERE status = 'running') AS running,
         (SELECT count(*) FROM runs WHERE status = 'waiting') AS waiting,
         (SELECT count(*) FROM dispatches WHERE status = 'queued') AS queued_dispatches`,
    );
    const row = rows[0]!;
    const finishedByTermination: OperationalCounts['finishedByTermination'] = {};
    for (const [type, n] of Object.entries(row.finished ?? {})) finishedByTermination[type as TerminationType] = Number(n);
    return { finishedByTermination, running: Number(row.running), waiting: Number(row.waiting), queuedDispatches: Number(row.queued_dispatches) };
  }

  // ---- event log ----------------------------------------------------------------------

  /**
   * Appends events at the run's next seqs. `fence` is the writer's token (the fences are defined in
   * workflows/types.ts): a writer below the run's current fence is a zombie and is
   * rejected with `stale_writer`. An empty append only raises the fence, which is how a
   * newer writer shuts out an older one before it writes anything. Notifies after commit
   * with ids only.
   */
  async appendEvents(runId: string, fence: number, events: RunEventBody[], tenant?: string): Promise<{ firstSeq: number; lastSeq: number }> {
    return this.inTransaction((client) => appendEventsWith(client, runId, fence, events, tenant));
  }

  async readEvents(runId: string, afterSeq = 0, limit = 1000, tenant?: string): Promise<RunEvent[]> {
    const { rows } = await this.pool.query(
      'SELECT * FROM run_events WHERE run_id = $1 AND seq > $2 AND tenant = coalesce($4::text, tenant) ORDER BY seq LIMIT $3',
      [runId, afterSeq, limit, tenant ?? null],
    );
    return rows.map(toEvent);
  }

  /** A thread's events in global id order; `afterId` is a safe cursor (see appendEventsWith). */
  async readThreadEvents(ref: ThreadRef, afterId = 0, limit = 1000): Promise<RunEvent[]> {
    const { rows } = await this.pool.query(
      'SELECT * FROM run_events WHERE tenant = $1 AND thread_id = $2 AND id > $3 ORDER BY id LIMIT $4',
      [ref.tenant, ref.threadId, afterId, limit],
    );
    return rows.map(toEvent);
  }

  // ---- internals ----------------------------------------------------------------------

  private oneAtATime<T>(key: string, work: () => Promise<T>): Promise<T> {
    const result = (this.appendQueues.get(key) ?? Promise.resolve()).then(work);
    const tail = result.catch(() => {});
    this.appendQueues.set(key, tail);
    void tail.then(() => {
      if (this.appendQueues.get(key) === tail) this.appendQueues.delete(key);
    });
    return result;
  }

  /** Runs `work` in one transaction; retries (at most 8 times) only when Postgres aborted it for a deadlock or a serialization failure. */
  private async inTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      let broken = false;
      // pg-pool drops its error listener while a client is checked out, and pg emits 'error' on a
      // client whose connection dies (a Postgres restart): unhandled, that kills the process. The
      // query in flight fails with the same error; the dead client is discarded on release.
      const onError = () => {
        broken = true;
      };
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        if (attempt >= MAX_CAS_ATTEMPTS || !isAbortedByPostgres(err)) throw err;
      } finally {
        client.removeListener('error', onError);
        client.release(broken);
      }
    }
  }
}

/** Where a committed append takes its base version from. */
type CasBase = 'locked' | 'reload' | number;
type PendingMessage = NewMessage & { messageId: string };

async function commitInTransaction(client: pg.PoolClient, ref: ThreadRef, batch: PendingMessage[], base: CasBase): Promise<CommitResult> {
  const ids = batch.map((m) => m.messageId);
  if (new Set(ids).size !== ids.length) {
    throw new StoreError('duplicate_message_id', `duplicate message id within one append to thread ${ref.threadId}`);
  }
  // The thread row lock is the hot spot of a busy thread: from here to COMMIT the append
  // takes two round trips, the version read with the id check, then the swap with the insert.
  const head = await readThreadHead(client, ref, ids, base === 'locked');
  if (ids.length > 0 && head.existing.length === ids.length) {
    const seqs = head.existing.map((r) => r.seq);
    return { firstSeq: Math.min(...seqs), lastSeq: Math.max(...seqs), version: head.version, messageIds: ids, duplicate: true };
  }
  if (head.existing.length > 0) {
    throw new StoreError('duplicate_message_id', `duplicate message id ${head.existing[0]!.id} in thread ${ref.threadId}`);
  }
  const n = batch.length;
  if (n === 0) return { firstSeq: head.version + 1, lastSeq: head.version, version: head.version, messageIds: [], duplicate: false };
  const from = typeof base === 'number' ? base : head.version;
  const rows = batch.map((m, i) => ({
    seq: from + 1 + i,
    message_id: m.messageId,
    role: m.role,
    content: m.content,
    tool_calls: m.toolCalls ?? null,
    tool_call_id: m.toolCallId ?? null,
    run_id: m.runId ?? null,
    status: m.status ?? 'complete',
    metadata: m.metadata ?? {},
  }));
  // Under READ COMMITTED a swap that waited on the row lock re-checks `version = from` against
  // the winner's row, so a moved version inserts nothing here, never a lost update.
  const inserted = await client.query(
    `WITH swapped AS (
       UPDATE threads SET version = $3::bigint + $4::bigint, updated_at = now()
        WHERE tenant = $1 AND thread_id = $2 AND version = $3 RETURNING 1)
     INSERT INTO messages (tenant, thread_id, seq, message_id, role, content, tool_calls, tool_call_id, run_id, status, metadata)
     SELECT $1, $2, m.seq, m.message_id, m.role, m.content, m.tool_calls, m.tool_call_id, m.run_id, m.status, m.metadata
       FROM swapped, jsonb_to_recordset($5::jsonb) AS m(seq bigint, message_id text, role text, content text, tool_calls jsonb,
                                                        tool_call_id text, run_id text, status text, metadata jsonb)`,
    [ref.tenant, ref.threadId, from, n, JSON.stringify(rows)],
  );
  if (inserted.rowCount !== n) throw new LostRace(`thread ${ref.threadId} moved past version ${from}`);
  return { firstSeq: from + 1, lastSeq: from + n, version: from + n, messageIds: ids, duplicate: false };
}

/**
 * The thread's version (locked until commit when `lock`) and which of `ids` it already holds,
 * creating the thread on its first append. The id check runs on the snapshot taken before any
 * lock wait, so it can miss an append of the same ids that committed meanwhile; the insert then
 * hits the unique key (23505) and commitMessages retries, finding them.
 */
async function readThreadHead(client: Queryable, ref: ThreadRef, ids: string[], lock: boolean) {
  const select = () =>
    client.query<{ version: string; existing: { seq: number; id: string }[] }>(
      `SELECT t.version,
              coalesce((SELECT json_agg(json_build_object('seq', m.seq, 'id', m.message_id))
                          FROM messages m WHERE m.tenant = $1 AND m.thread_id = $2 AND m.message_id = ANY($3)), '[]') AS existing
         FROM threads t WHERE t.tenant = $1 AND t.thread_id = $2 ${lock ? 'FOR UPDATE OF t' : ''}`,
      [ref.tenant, ref.threadId, ids],
    );
  let { rows } = await select();
  if (!rows[0]) {
    await ensureThread(client, ref);
    ({ rows } = await select());
  }
  return { version: Number(rows[0]!.version), existing: rows[0]!.existing };
}

/** Per-thread advisory lock namespace (the two-key form never collides with single-key locks such as the migration lock). */
const THREAD_EVENTS_LOCK = 7_400_002;

async function appendEventsWith(client: pg.PoolClient, runId: string, fence: number, events: RunEventBody[], tenant?: string) {
  const { rows } = await client.query(
    'SELECT tenant, thread_id, event_fence, last_event_seq FROM runs WHERE run_id = $1 AND tenant = coalesce($2::text, tenant) FOR UPDATE',
    [runId, tenant ?? null],
  );
  const run = rows[0];
  if (!run) throw new StoreError('not_found', `run ${runId} does not exist`);
  if (fence < Number(run.event_fence)) {
    throw new StoreError('stale_writer', `writer ${fence} of run ${runId} is stale (current ${run.event_fence})`);
  }
  const firstSeq = Number(run.last_event_seq) + 1;
  const lastSeq = firstSeq + events.length - 1;
  if (events.length === 0) {
    if (fence > Number(run.event_fence)) await client.query('UPDATE runs SET event_fence = $2 WHERE tenant = $3 AND run_id = $1', [runId, fence, run.tenant]);
    return { firstSeq, lastSeq };
  }
  // Ids come from a sequence, so two runs of one thread could commit ids out of order and a
  // thread reader whose cursor passed the later id would never see the earlier one. Holding a
  // per-thread lock from nextval to commit makes a thread's ids commit in id order.
  await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [THREAD_EVENTS_LOCK, `${run.tenant}/${run.thread_id}`]);
  await client.query('UPDATE runs SET event_fence = $2, last_event_seq = $3 WHERE tenant = $4 AND run_id = $1', [runId, fence, lastSeq, run.tenant]);
  const inserted = await client.query<{ id: string }>(
    `INSERT INTO run_events (run_id, seq, tenant, thread_id, type, data, attempt)
     SELECT $1, $2 + i - 1, $3, $4, e->>'type', e, $6 FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY AS t(e, i)
     RETURNING id`,
    [runId, firstSeq, run.tenant, run.thread_id, JSON.stringify(events), fence],
  );
  const lastId = Math.max(...inserted.rows.map((r) => Number(r.id)));
  const payload: EventsNotification = { tenant: run.tenant, threadId: run.thread_id, runId, seq: lastSeq, id: lastId };
  await client.query('SELECT pg_notify($1, $2)', [EVENTS_CHANNEL, JSON.stringify(payload)]);
  return { firstSeq, lastSeq };
}

/** The `threadbox_events` NOTIFY payload: ids only, the events themselves are read from the table. */
export interface EventsNotification {
  tenant: string;
  threadId: string;
  runId: string;
  /** last seq the notifying transaction wrote for `runId` */
  seq: number;
  /** last global id it wrote */
  id: number;
}

/** A compare-and-swap that found the version moved; commitMessages reloads and retries. */
class LostRace extends Error {}

function isLostRace(err: unknown): boolean {
  // 23505: a concurrent append of the same message id won; the retry finds it and answers idempotently.
  return err instanceof LostRace || (err as { code?: string }).code === '23505';
}

function isAbortedByPostgres(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === '40001' || code === '40P01';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function assertTransition(run: RunRecord, next: RunStatus) {
  if (!LEGAL[run.status].includes(next)) {
    throw new StoreError('illegal_transition', `run ${run.runId} cannot go from ${run.status} to ${next}`);
  }
}

async function ensureThread(client: Queryable, ref: ThreadRef) {
  await client.query('INSERT INTO threads (tenant, thread_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [ref.tenant, ref.threadId]);
}

async function takePendingInput(client: pg.PoolClient, tenant: string, runId: string): Promise<PendingMessage[]> {
  const { rows } = await client.query('DELETE FROM pending_input WHERE tenant = $1 AND run_id = $2 RETURNING position, message', [tenant, runId]);
  return rows.sort((a, b) => a.position - b.position).map((r) => r.message as PendingMessage);
}

/** Locks a run. Without a tenant (tests, tools) the id must be unique across tenants. */
async function lockRun(client: Queryable, runId: string, tenant?: string) {
  const { rows } = await client.query('SELECT * FROM runs WHERE run_id = $1 AND tenant = coalesce($2::text, tenant) FOR UPDATE', [runId, tenant ?? null]);
  if (!rows[0]) throw new StoreError('not_found', `run ${runId} does not exist`);
  return { ...toRun(rows[0]), tenant: rows[0].tenant as string };
}

async function requireRun(client: Queryable, runId: string, tenant: string): Promise<RunRecord> {
  const { rows } = await client.query('SELECT * FROM runs WHERE tenant = $2 AND run_id = $1', [runId, tenant]);
  if (!rows[0]) throw new StoreError('not_found', `run ${runId} does not exist`);
  return toRun(rows[0]);
}

const iso = (v: Date | null) => (v ? v.toISOString() : null);

function toMessage(r: Record<string, any>): CommittedMessage {
  return {
    seq: Number(r.seq),
    id: r.message_id,
    role: r.role,
    content: r.content,
    ...(r.tool_calls ? { toolCalls: r.tool_calls } : {}),
    ...(r.tool_call_id ? { toolCallId: r.tool_call_id } : {}),
    ...(r.run_id ? { runId: r.run_id } : {}),
    status: r.status,
    metadata: r.metadata,
    createdAt: r.created_at.toISOString(),
  };
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

function toEvent(r: Record<string, any>): RunEvent {
  return {
    ...r.data,
    id: Number(r.id),
    runId: r.run_id,
    threadId: r.thread_id,
    seq: Number(r.seq),
    ts: r.created_at.toISOString(),
    attempt: r.data.attempt ?? attemptOfFence(Number(r.attempt)), // clients see the attempt, not the fence
  };
}
