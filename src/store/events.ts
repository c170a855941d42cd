// The event log: run_events appended at a run's next seqs behind its writer fence, announced by
// NOTIFY, and read back by run or by thread. A run's fence and last seq live on its runs row.
import type pg from 'pg';
import { attemptOfFence } from '../contract/mailbox.js';
import type { RunEvent, RunEventBody } from '../contract/run-events.js';
import { StoreError } from './errors.js';
import type { ThreadRef } from './threads.js';
import { inTransaction, type Queryable } from './tx.js';

export const EVENTS_CHANNEL = 'threadbox_events';

/** Per-thread advisory lock namespace (the two-key form never collides with single-key locks such as the migration lock). */
const THREAD_EVENTS_LOCK = 7_400_002;

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

/**
 * Appends events at the run's next seqs. `fence` is the writer's token (the fences are defined in
 * src/contract/mailbox.ts): a writer below the run's current fence is a zombie and is rejected
 * with `stale_writer`. An empty append only raises the fence, which is how a newer writer shuts
 * out an older one before it writes anything. Notifies after commit with ids only.
 */
export function appendEvents(pool: pg.Pool, runId: string, fence: number, events: RunEventBody[], tenant?: string): Promise<{ firstSeq: number; lastSeq: number }> {
  return inTransaction(pool, (client) => appendEventsIn(client, runId, fence, events, tenant));
}

/** appendEvents inside the caller's transaction. */
export async function appendEventsIn(client: pg.PoolClient, runId: string, fence: number, events: RunEventBody[], tenant?: string) {
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

/** Removes a discarded run's events (see discardRun). */
export async function deleteRunEvents(client: pg.PoolClient, tenant: string, runId: string): Promise<void> {
  await client.query('DELETE FROM run_events WHERE tenant = $1 AND run_id = $2', [tenant, runId]);
}

export async function readEvents(db: Queryable, runId: string, afterSeq = 0, limit = 1000, tenant?: string): Promise<RunEvent[]> {
  const { rows } = await db.query('SELECT * FROM run_events WHERE run_id = $1 AND seq > $2 AND tenant = coalesce($4::text, tenant) ORDER BY seq LIMIT $3', [
    runId,
    afterSeq,
    limit,
    tenant ?? null,
  ]);
  return rows.map(toEvent);
}

/** The seq of a run's last event of a type (0 when it has none): where a stream that continues after it starts. */
export async function lastEventSeq(db: Queryable, runId: string, type: RunEvent['type'], tenant: string): Promise<number> {
  const { rows } = await db.query('SELECT max(seq) AS seq FROM run_events WHERE tenant = $1 AND run_id = $2 AND type = $3', [tenant, runId, type]);
  return Number(rows[0]?.seq ?? 0);
}

/** A thread's events in global id order; `afterId` is a safe cursor (see appendEventsIn). */
export async function readThreadEvents(db: Queryable, ref: ThreadRef, afterId = 0, limit = 1000): Promise<RunEvent[]> {
  const { rows } = await db.query('SELECT * FROM run_events WHERE tenant = $1 AND thread_id = $2 AND id > $3 ORDER BY id LIMIT $4', [
    ref.tenant,
    ref.threadId,
    afterId,
    limit,
  ]);
  return rows.map(toEvent);
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
