// The committed log, run records, pending input, the mailbox projection and the event log.
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import type { RunEvent, RunEventBody, Termination, Usage } from '../events.js';

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

export type RunStatus = 'queued' | 'running' | 'waiting' | 'done';

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
}

export interface ThreadRecord {
  threadId: string;
  status: 'idle' | 'running' | 'waiting';
  version: number;
  activeRunId: string | null;
  queuedRunIds: string[];
  latestRunId: string | null;
  metadata: Record<string, unknown>;
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
}

export class StoreError extends Error {
  constructor(
    readonly code: 'version_conflict' | 'duplicate_message_id' | 'illegal_transition' | 'stale_writer' | 'not_found',
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
  constructor(readonly pool: pg.Pool) {}

  // ---- committed log ------------------------------------------------------------------

  /**
   * Appends messages at version+1..version+n. With `expectedVersion` the append is a
   * compare-and-swap that reloads and retries when the version moved; without it the
   * version row lock orders concurrent writers. Idempotent on message ids.
   */
  async commitMessages(ref: ThreadRef, messages: NewMessage[], expectedVersion?: number): Promise<CommitResult> {
    return this.inTransaction((client) => this.commitInTransaction(client, ref, messages, expectedVersion), ref);
  }

  async loadCommittedMessages(ref: ThreadRef, afterSeq = 0, limit = 10_000): Promise<CommittedMessage[]> {
    const { rows } = await this.pool.query(
      `SELECT seq, message_id, role, content, tool_calls, tool_call_id, run_id, status, metadata, created_at
         FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
      [ref.tenant, ref.threadId, afterSeq, limit],
    );
    return rows.map(toMessage);
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

  /** Records a queued run, its durable pending input, its dispatch and a `run_queued` event. Idempotent on runId. */
  async createRun(ref: ThreadRef, run: NewRun): Promise<RunRecord> {
    return this.inTransaction(async (client) => {
      await ensureThread(client, ref);
      const input = run.input.map((m) => ({ ...m, messageId: m.messageId ?? uuidv7(), runId: run.runId }));
      const inserted = await client.query(
        `INSERT INTO runs (run_id, tenant, thread_id, agent_id, dispatch_id, mode, status, input_message_ids)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7) ON CONFLICT (run_id) DO NOTHING`,
        [run.runId, ref.tenant, ref.threadId, run.agentId, run.dispatchId, run.mode, input.map((m) => m.messageId)],
      );
      if (inserted.rowCount) {
        for (const [position, message] of input.entries()) {
          await client.query('INSERT INTO pending_input (run_id, position, message) VALUES ($1, $2, $3)', [run.runId, position, message]);
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
        await this.appendEventsWith(client, run.runId, 0, [{ type: 'run_queued', dispatchId: run.dispatchId, mode: run.mode }]);
      }
      return this.requireRun(client, run.runId);
    }, ref);
  }

  /**
   * queued → running: commits the pending input of `carriedRunIds` (runs this one superseded)
   * and then its own, in one transaction with the status change. A retry after success is a no-op.
   */
  async startRun(runId: string, carriedRunIds: string[] = []): Promise<RunRecord> {
    return this.inTransaction(async (client) => {
      const run = await this.lockRun(client, runId);
      if (run.status === 'running') return this.requireRun(client, runId);
      assertTransition(run, 'running');
      const ref = { tenant: run.tenant, threadId: run.threadId };
      const input: NewMessage[] = [];
      for (const id of [...carriedRunIds, runId]) input.push(...(await takePendingInput(client, id)));
      if (input.length > 0) await this.commitInTransaction(client, ref, input);
      await client.query(
        `UPDATE runs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now() WHERE run_id = $1`,
        [runId],
      );
      await client.query(`UPDATE dispatches SET status = 'running', attempts = attempts + 1, updated_at = now() WHERE run_id = $1`, [runId]);
      await client.query(
        `UPDATE threads SET status = 'running', active_run_id = $3, queued_run_ids = array_remove(queued_run_ids, $3), updated_at = now()
          WHERE tenant = $1 AND thread_id = $2`,
        [ref.tenant, ref.threadId, runId],
      );
      await this.appendEventsWith(client, runId, 0, [{ type: 'run_start', dispatchId: run.dispatchId, agentId: run.agentId }]);
      return this.requireRun(client, runId);
    });
  }

  /** running ⇄ waiting; `waiting` holds the approval tickets. */
  async setRunWaiting(runId: string, waiting: unknown | null): Promise<RunRecord> {
    return this.inTransaction(async (client) => {
      const run = await this.lockRun(client, runId);
      const next: RunStatus = waiting === null ? 'running' : 'waiting';
      if (run.status !== next) assertTransition(run, next);
      await client.query('UPDATE runs SET status = $2, waiting = $3, updated_at = now() WHERE run_id = $1', [runId, next, waiting]);
      await client.query(
        `UPDATE threads SET status = $3, updated_at = now() WHERE tenant = $1 AND thread_id = $2 AND active_run_id = $4`,
        [run.tenant, run.threadId, next, runId],
      );
      return this.requireRun(client, runId);
    });
  }

  /** Records a finished step's usage on the run. */
  async recordStep(runId: string, step: number, usage: Usage): Promise<void> {
    await this.pool.query(
      `UPDATE runs SET steps = greatest(steps, $2),
         usage = jsonb_build_object(
           'inputTokens', coalesce((usage->>'inputTokens')::bigint, 0) + $3,
           'outputTokens', coalesce((usage->>'outputTokens')::bigint, 0) + $4),
         updated_at = now()
       WHERE run_id = $1 AND steps < $2`,
      [runId, step, usage.inputTokens ?? 0, usage.outputTokens ?? 0],
    );
  }

  /** → done with a termination; emits `run_finish`. Repeating the same finish is a no-op; a different one is illegal. */
  async finishRun(runId: string, termination: Termination, opts: { error?: string; fence?: number } = {}): Promise<RunRecord> {
    return this.inTransaction(async (client) => {
      const run = await this.lockRun(client, runId);
      if (run.status === 'done') {
        if (run.termination?.type === termination.type) return this.requireRun(client, runId);
        throw new StoreError('illegal_transition', `run ${runId} already ended ${run.termination?.type}; cannot end it ${termination.type}`);
      }
      if (termination.type === 'superseded' || (run.status === 'queued' && termination.type === 'cancelled')) {
        // A superseded run's input stays pending: the superseding run commits it ahead of its own.
        if (termination.type === 'cancelled') await client.query('DELETE FROM pending_input WHERE run_id = $1', [runId]);
      }
      await client.query(
        `UPDATE runs SET status = 'done', termination = $2, error = $3, waiting = NULL, finished_at = now(), updated_at = now() WHERE run_id = $1`,
        [runId, termination, opts.error ?? null],
      );
      const dispatchStatus = termination.type === 'superseded' ? 'superseded' : termination.type === 'cancelled' ? 'cancelled' : 'done';
      await client.query(
        `UPDATE dispatches SET status = $2, last_error = $3, updated_at = now() WHERE run_id = $1`,
        [runId, dispatchStatus, opts.error ?? null],
      );
      await client.query(
        `UPDATE threads SET
           status = CASE WHEN active_run_id = $3 THEN 'idle' ELSE status END,
           active_run_id = CASE WHEN active_run_id = $3 THEN NULL ELSE active_run_id END,
           queued_run_ids = array_remove(queued_run_ids, $3), updated_at = now()
         WHERE tenant = $1 AND thread_id = $2`,
        [run.tenant, run.threadId, runId],
      );
      await this.appendEventsWith(client, runId, opts.fence ?? 0, [{ type: 'run_finish', termination }]);
      return this.requireRun(client, runId);
    });
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

  // ---- event log ----------------------------------------------------------------------

  /**
   * Appends events at the run's next seqs. `fence` is the writer's token (step × 1000 +
   * attempt for step activities): a writer below the run's current fence is a zombie and is
   * rejected. Notifies after commit with ids only.
   */
  async appendEvents(runId: string, fence: number, events: RunEventBody[]): Promise<{ firstSeq: number; lastSeq: number }> {
    return this.inTransaction((client) => this.appendEventsWith(client, runId, fence, events));
  }

  async readEvents(runId: string, afterSeq = 0, limit = 1000): Promise<RunEvent[]> {
    const { rows } = await this.pool.query(
      'SELECT * FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [runId, afterSeq, limit],
    );
    return rows.map(toEvent);
  }

  async readThreadEvents(ref: ThreadRef, afterId = 0, limit = 1000): Promise<RunEvent[]> {
    const { rows } = await this.pool.query(
      'SELECT * FROM run_events WHERE tenant = $1 AND thread_id = $2 AND id > $3 ORDER BY id LIMIT $4',
      [ref.tenant, ref.threadId, afterId, limit],
    );
    return rows.map(toEvent);
  }

  // ---- internals ----------------------------------------------------------------------

  private async appendEventsWith(client: pg.PoolClient, runId: string, fence: number, events: RunEventBody[]) {
    const { rows } = await client.query(
      'SELECT tenant, thread_id, event_fence, last_event_seq FROM runs WHERE run_id = $1 FOR UPDATE',
      [runId],
    );
    const run = rows[0];
    if (!run) throw new StoreError('not_found', `run ${runId} does not exist`);
    if (fence < Number(run.event_fence)) {
      throw new StoreError('stale_writer', `writer ${fence} of run ${runId} is stale (current ${run.event_fence})`);
    }
    const firstSeq = Number(run.last_event_seq) + 1;
    const lastSeq = firstSeq + events.length - 1;
    if (events.length === 0) return { firstSeq, lastSeq };
    await client.query('UPDATE runs SET event_fence = $2, last_event_seq = $3 WHERE run_id = $1', [runId, fence, lastSeq]);
    const inserted = await client.query<{ id: string }>(
      `INSERT INTO run_events (run_id, seq, tenant, thread_id, type, data, attempt)
       SELECT $1, $2 + i - 1, $3, $4, e->>'type', e, $6 FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY AS t(e, i)
       RETURNING id`,
      [runId, firstSeq, run.tenant, run.thread_id, JSON.stringify(events), fence],
    );
    const lastId = Math.max(...inserted.rows.map((r) => Number(r.id)));
    const payload = JSON.stringify({ tenant: run.tenant, threadId: run.thread_id, runId, seq: lastSeq, id: lastId });
    await client.query('SELECT pg_notify($1, $2)', [EVENTS_CHANNEL, payload]);
    return { firstSeq, lastSeq };
  }

  private async commitInTransaction(
    client: pg.PoolClient,
    ref: ThreadRef,
    messages: NewMessage[],
    expectedVersion?: number,
  ): Promise<CommitResult> {
    const withIds = messages.map((m) => ({ ...m, messageId: m.messageId ?? uuidv7() }));
    const ids = withIds.map((m) => m.messageId);
    if (new Set(ids).size !== ids.length) throw new StoreError('duplicate_message_id', `duplicate message id within one append to thread ${ref.threadId}`);
    await ensureThread(client, ref);
    const existing = await client.query<{ seq: string; message_id: string }>(
      'SELECT seq, message_id FROM messages WHERE tenant = $1 AND thread_id = $2 AND message_id = ANY($3)',
      [ref.tenant, ref.threadId, ids],
    );
    if (existing.rowCount === ids.length && ids.length > 0) {
      const seqs = existing.rows.map((r) => Number(r.seq));
      const version = await currentVersion(client, ref);
      return { firstSeq: Math.min(...seqs), lastSeq: Math.max(...seqs), version, messageIds: ids, duplicate: true };
    }
    if (existing.rowCount) {
      throw new StoreError('duplicate_message_id', `duplicate message id ${existing.rows[0]!.message_id} in thread ${ref.threadId}`);
    }
    const n = withIds.length;
    const bumped = await client.query<{ version: string }>(
      `UPDATE threads SET version = version + $3, updated_at = now()
        WHERE tenant = $1 AND thread_id = $2 AND ($4::bigint IS NULL OR version = $4) RETURNING version`,
      [ref.tenant, ref.threadId, n, expectedVersion ?? null],
    );
    if (!bumped.rowCount) {
      throw new StoreError('version_conflict', `thread ${ref.threadId} moved past version ${expectedVersion}`);
    }
    const version = Number(bumped.rows[0]!.version);
    const firstSeq = version - n + 1;
    for (const [i, m] of withIds.entries()) {
      await client.query(
        `INSERT INTO messages (tenant, thread_id, seq, message_id, role, content, tool_calls, tool_call_id, run_id, status, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [
          ref.tenant,
          ref.threadId,
          firstSeq + i,
          m.messageId,
          m.role,
          m.content,
          m.toolCalls ? JSON.stringify(m.toolCalls) : null,
          m.toolCallId ?? null,
          m.runId ?? null,
          m.status ?? 'complete',
          m.metadata ?? {},
        ],
      );
    }
    return { firstSeq, lastSeq: version, version, messageIds: ids, duplicate: false };
  }

  /**
   * Runs `work` in a transaction, retrying (at most 8 times) when a concurrent writer won:
   * a moved version, a message id inserted meanwhile, or a serialization failure.
   */
  private async inTransaction<T>(work: (client: pg.PoolClient) => Promise<T>, ref?: ThreadRef): Promise<T> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const client = await this.pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        if (!isRetryable(err)) throw err;
        lastError = err;
      } finally {
        client.release(broken);
      }
    }
    const where = ref ? `thread ${ref.threadId}` : 'the store';
    throw new StoreError('version_conflict', `append to ${where} failed after ${MAX_CAS_ATTEMPTS} attempts: ${(lastError as Error).message}`);
  }

  private async lockRun(client: Queryable, runId: string) {
    const { rows } = await client.query('SELECT * FROM runs WHERE run_id = $1 FOR UPDATE', [runId]);
    if (!rows[0]) throw new StoreError('not_found', `run ${runId} does not exist`);
    return { ...toRun(rows[0]), tenant: rows[0].tenant as string };
  }

  private async requireRun(client: Queryable, runId: string): Promise<RunRecord> {
    const { rows } = await client.query('SELECT * FROM runs WHERE run_id = $1', [runId]);
    if (!rows[0]) throw new StoreError('not_found', `run ${runId} does not exist`);
    return toRun(rows[0]);
  }
}

function isRetryable(err: unknown): boolean {
  if (err instanceof StoreError) return err.code === 'version_conflict';
  const code = (err as { code?: string }).code;
  return code === '23505' || code === '40001' || code === '40P01';
}

function assertTransition(run: RunRecord, next: RunStatus) {
  if (!LEGAL[run.status].includes(next)) {
    throw new StoreError('illegal_transition', `run ${run.runId} cannot go from ${run.status} to ${next}`);
  }
}

async function ensureThread(client: Queryable, ref: ThreadRef) {
  await client.query('INSERT INTO threads (tenant, thread_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [ref.tenant, ref.threadId]);
}

async function currentVersion(client: Queryable, ref: ThreadRef): Promise<number> {
  const { rows } = await client.query('SELECT version FROM threads WHERE tenant = $1 AND thread_id = $2', [ref.tenant, ref.threadId]);
  return Number(rows[0]?.version ?? 0);
}

async function takePendingInput(client: pg.PoolClient, runId: string): Promise<NewMessage[]> {
  const { rows } = await client.query('DELETE FROM pending_input WHERE run_id = $1 RETURNING position, message', [runId]);
  return rows.sort((a, b) => a.position - b.position).map((r) => r.message as NewMessage);
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
    status: r.status,
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
  };
}

function toEvent(r: Record<string, any>): RunEvent {
  return { ...r.data, id: Number(r.id), runId: r.run_id, threadId: r.thread_id, seq: Number(r.seq), ts: r.created_at.toISOString(), attempt: Number(r.attempt) };
}
