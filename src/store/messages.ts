// The committed log: messages appended by compare-and-swap on the thread's version, and read back.
import type pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import type { MESSAGE_STATUSES } from '../contract/run-events.js';
import { StoreError } from './errors.js';
import { ensureThread, type ThreadRef } from './threads.js';
import { inTransaction, retryLostRaces, type Queryable } from './tx.js';

/** Appends that lost a race (see isLostRace) are tried again, at most this many times in all. */
const MAX_COMMIT_ATTEMPTS = 8;

export type Role = 'user' | 'assistant' | 'tool' | 'system';
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

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
  status?: MessageStatus;
  metadata?: Record<string, unknown>;
}

/** A message whose id is fixed: every attempt of an append (and its result) names the same messages. */
export type PendingMessage = NewMessage & { messageId: string };

export interface CommittedMessage {
  seq: number;
  id: string;
  role: Role;
  content: string;
  toolCalls?: ToolCall[];
  toolCallId?: string;
  runId?: string;
  status: MessageStatus;
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

/**
 * Appends from this process to one thread, one at a time: Postgres serializes them on the thread
 * row anyway, and queueing them here keeps a hot thread from holding (or timing out waiting for)
 * every pool connection while its appends wait on each other's row lock.
 */
export class AppendQueues {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(ref: ThreadRef, work: () => Promise<T>): Promise<T> {
    const key = JSON.stringify([ref.tenant, ref.threadId]);
    const result = (this.tails.get(key) ?? Promise.resolve()).then(work);
    const tail = result.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}

/**
 * Appends messages at version+1..version+n and returns their seq range. The thread row is locked
 * before its version is read, so concurrent writers queue on the lock and each lands after the one
 * before it; an append that still loses a race (see isLostRace) is tried again, and after 8 losses
 * fails with `version_conflict` naming the thread.
 *
 * Idempotent on message ids: when every id is already committed it returns the original range with
 * `duplicate: true` and writes nothing; when only some are, it fails with `duplicate_message_id`
 * and writes nothing. Missing ids get UUIDv7s.
 */
export function commitMessages(pool: pg.Pool, ref: ThreadRef, messages: NewMessage[]): Promise<CommitResult> {
  const batch = messages.map((m) => ({ ...m, messageId: m.messageId ?? uuidv7() }));
  return retryLostRaces(() => inTransaction(pool, (client) => appendToLog(client, ref, batch)), {
    attempts: MAX_COMMIT_ATTEMPTS,
    lost: isLostRace,
    pauseMs: (attempt) => Math.random() * Math.min(50, 2 ** attempt),
    exhausted: (lastLoss) =>
      new StoreError(
        'version_conflict',
        `append to thread ${ref.threadId} (tenant ${ref.tenant}) lost to concurrent writers ${MAX_COMMIT_ATTEMPTS} times: ${(lastLoss as Error).message}`,
      ),
  });
}

/** The append itself, inside the caller's transaction (which then holds the thread row until it commits). */
export async function appendToLog(client: pg.PoolClient, ref: ThreadRef, batch: PendingMessage[]): Promise<CommitResult> {
  const ids = batch.map((m) => m.messageId);
  if (new Set(ids).size !== ids.length) {
    throw new StoreError('duplicate_message_id', `duplicate message id within one append to thread ${ref.threadId}`);
  }
  // The thread row lock is the hot spot of a busy thread: from here to COMMIT the append
  // takes two round trips, the version read with the id check, then the swap with the insert.
  const head = await lockThreadHead(client, ref, ids);
  if (ids.length > 0 && head.existing.length === ids.length) {
    const seqs = head.existing.map((r) => r.seq);
    return { firstSeq: Math.min(...seqs), lastSeq: Math.max(...seqs), version: head.version, messageIds: ids, duplicate: true };
  }
  if (head.existing.length > 0) {
    throw new StoreError('duplicate_message_id', `duplicate message id ${head.existing[0]!.id} in thread ${ref.threadId}`);
  }
  const from = head.version;
  const n = batch.length;
  if (n === 0) return { firstSeq: from + 1, lastSeq: from, version: from, messageIds: [], duplicate: false };
  if ((await swapAndInsert(client, ref, from, batch)) !== n) throw new LostRace(`thread ${ref.threadId} moved past version ${from}`);
  return { firstSeq: from + 1, lastSeq: from + n, version: from + n, messageIds: ids, duplicate: false };
}

/** Moves the thread's version from `from` to `from + n` and inserts the messages at the seqs between; returns the rows inserted (none when the version had moved). */
async function swapAndInsert(client: pg.PoolClient, ref: ThreadRef, from: number, batch: PendingMessage[]): Promise<number> {
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
    [ref.tenant, ref.threadId, from, batch.length, JSON.stringify(rows)],
  );
  return inserted.rowCount ?? 0;
}

/**
 * The thread's version, locked until commit, and which of `ids` it already holds, creating the
 * thread on its first append. The id check runs on the snapshot taken before any lock wait, so it
 * can miss an append of the same ids that committed meanwhile; the insert then hits the unique key
 * (23505) and commitMessages tries again, finding them.
 */
async function lockThreadHead(client: pg.PoolClient, ref: ThreadRef, ids: string[]) {
  const select = () =>
    client.query<{ version: string; existing: { seq: number; id: string }[] }>(
      `SELECT t.version,
              coalesce((SELECT json_agg(json_build_object('seq', m.seq, 'id', m.message_id))
                          FROM messages m WHERE m.tenant = $1 AND m.thread_id = $2 AND m.message_id = ANY($3)), '[]') AS existing
         FROM threads t WHERE t.tenant = $1 AND t.thread_id = $2 FOR UPDATE OF t`,
      [ref.tenant, ref.threadId, ids],
    );
  let { rows } = await select();
  if (!rows[0]) {
    await ensureThread(client, ref);
    ({ rows } = await select());
  }
  return { version: Number(rows[0]!.version), existing: rows[0]!.existing };
}

/** A compare-and-swap that found the version moved. */
class LostRace extends Error {}

function isLostRace(err: unknown): boolean {
  // 23505: a concurrent append of the same message id won; the next try finds it and answers idempotently.
  return err instanceof LostRace || (err as { code?: string }).code === '23505';
}

const MESSAGE_COLUMNS = 'seq, message_id, role, content, tool_calls, tool_call_id, run_id, status, metadata, created_at';

export async function loadCommittedMessages(db: Queryable, ref: ThreadRef, afterSeq = 0, limit = 10_000): Promise<CommittedMessage[]> {
  const { rows } = await db.query(
    `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
    [ref.tenant, ref.threadId, afterSeq, limit],
  );
  return rows.map(toMessage);
}

/**
 * The newest messages of a thread, oldest first: at most `limit`, and no older than the one
 * whose content takes the total (newest first) past `maxContentBytes`. Reads only those
 * rows, newest first by seq from the primary key, never the whole thread.
 */
export async function loadRecentMessages(db: Queryable, ref: ThreadRef, opts: { limit: number; maxContentBytes: number }): Promise<CommittedMessage[]> {
  const { rows } = await db.query(
    `SELECT ${MESSAGE_COLUMNS} FROM (
       SELECT *, sum(octet_length(content)) OVER (ORDER BY seq DESC) - octet_length(content) AS newer_bytes
         FROM messages WHERE tenant = $1 AND thread_id = $2 ORDER BY seq DESC LIMIT $3
     ) recent WHERE newer_bytes < $4 ORDER BY seq`,
    [ref.tenant, ref.threadId, opts.limit, opts.maxContentBytes],
  );
  return rows.map(toMessage);
}

/** The committed messages one run wrote (its input, steering, answers and tool results), in log order. */
export async function loadRunMessages(db: Queryable, ref: ThreadRef, runId: string): Promise<CommittedMessage[]> {
  const { rows } = await db.query(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE tenant = $1 AND thread_id = $2 AND run_id = $3 ORDER BY seq`, [
    ref.tenant,
    ref.threadId,
    runId,
  ]);
  return rows.map(toMessage);
}

/**
 * Which of `ids` the thread already holds, committed or pending in a run not yet started. One
 * statement reads both tables, so input committed by a run starting meanwhile is seen in one or the other.
 */
export async function findUsedMessageIds(db: Queryable, ref: ThreadRef, ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const { rows } = await db.query(
    `SELECT message_id AS id FROM messages WHERE tenant = $1 AND thread_id = $2 AND message_id = ANY($3)
     UNION
     SELECT p.message->>'messageId' FROM pending_input p JOIN runs r ON r.tenant = p.tenant AND r.run_id = p.run_id
      WHERE r.tenant = $1 AND r.thread_id = $2 AND p.message->>'messageId' = ANY($3)`,
    [ref.tenant, ref.threadId, ids],
  );
  return rows.map((r) => r.id);
}

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
