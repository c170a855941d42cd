// The committed log: concurrent appends from many processes, idempotent retries, the compare-and-swap.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createPool, migrate } from '../../src/store/db.js';
import { Store, type ThreadRef } from '../../src/store/store.js';

let pool: pg.Pool;
let store: Store;
beforeAll(async () => {
  pool = createPool(inject('databaseUrl'), 40);
  await migrate(pool);
  store = new Store(pool);
});
afterAll(async () => {
  await pool?.end();
});

const newThread = (): ThreadRef => ({ tenant: 'store-test', threadId: `log-${randomUUID()}` });

async function committedRows(ref: ThreadRef) {
  const { rows } = await pool.query<{ seq: string; message_id: string }>(
    'SELECT seq, message_id FROM messages WHERE tenant = $1 AND thread_id = $2 ORDER BY seq',
    [ref.tenant, ref.threadId],
  );
  return rows.map((r) => ({ seq: Number(r.seq), messageId: r.message_id }));
}

async function threadVersion(ref: ThreadRef) {
  return (await store.getThread(ref))?.version;
}

interface WorkerReport {
  worker: string;
  committed?: { messageId: string; seq: number }[];
  errors?: string[];
  fatal?: string;
}

function runAppendWorker(ref: ThreadRef, worker: number, count: number): Promise<{ code: number | null; report: WorkerReport; stderr: string }> {
  const script = fileURLToPath(new URL('./append-worker.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, inject('databaseUrl'), ref.tenant, ref.threadId, String(worker), String(count)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve({ code, report: JSON.parse(last) as WorkerReport, stderr });
      } catch {
        reject(new Error(`worker ${worker} exited ${code} without a report; stdout: ${stdout} stderr: ${stderr}`));
      }
    });
  });
}

describe('committed append', () => {
  it('8 processes × 200 concurrent appends to one thread commit versions 1..1600, every message exactly once', async () => {
    const ref = newThread();
    const processes = 8;
    const perProcess = 200;
    const results = await Promise.all(Array.from({ length: processes }, (_, w) => runAppendWorker(ref, w, perProcess)));

    for (const { code, report, stderr } of results) {
      expect(report.fatal, `worker ${report.worker} stderr: ${stderr}`).toBeUndefined();
      expect(report.errors).toEqual([]);
      expect(code).toBe(0);
      expect(report.committed).toHaveLength(perProcess);
    }

    const rows = await committedRows(ref);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: processes * perProcess }, (_, i) => i + 1));
    const expectedIds = Array.from({ length: processes }, (_, w) => Array.from({ length: perProcess }, (_, i) => `w${w}-m${i}`)).flat();
    expect(rows.map((r) => r.messageId).sort()).toEqual(expectedIds.sort());
    expect(await threadVersion(ref)).toBe(processes * perProcess);

    // What each process was told matches what was committed.
    const committedSeqById = new Map(rows.map((r) => [r.messageId, r.seq]));
    for (const { report } of results) {
      for (const c of report.committed!) expect(c.seq).toBe(committedSeqById.get(c.messageId));
    }
  }, 120_000);

  it('a committed message keeps every field, and a message without an id gets a UUIDv7', async () => {
    const ref = newThread();
    const result = await store.commitMessages(ref, [
      { role: 'user', content: 'what time is it?', metadata: { senderAgentId: 'agent-7' } },
      { messageId: 'asst', role: 'assistant', content: '', runId: 'run-1', toolCalls: [{ toolCallId: 'call-1', toolName: 'get_time', input: {} }] },
      { messageId: 'tool', role: 'tool', content: '{"now":"noon"}', toolCallId: 'call-1', runId: 'run-1', status: 'interrupted' },
    ]);
    expect(result.messageIds[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
    const [user, assistant, tool] = await store.loadCommittedMessages(ref);
    expect(user).toMatchObject({ seq: 1, id: result.messageIds[0], role: 'user', status: 'complete', metadata: { senderAgentId: 'agent-7' } });
    expect(user).not.toHaveProperty('toolCalls');
    expect(assistant).toMatchObject({ seq: 2, id: 'asst', content: '', runId: 'run-1', toolCalls: [{ toolCallId: 'call-1', toolName: 'get_time', input: {} }] });
    expect(tool).toMatchObject({ seq: 3, role: 'tool', toolCallId: 'call-1', status: 'interrupted', metadata: {} });
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM messages WHERE tenant = $1 AND thread_id = $2 AND tool_calls IS NULL', [ref.tenant, ref.threadId]);
    expect(rows[0].n).toBe(2);
  });

  it('a retried append with the same message ids returns the same seq range and writes nothing', async () => {
    const ref = newThread();
    await store.commitMessages(ref, [{ messageId: 'before', role: 'system', content: 'be brief' }]);
    const first = await store.commitMessages(ref, [
      { messageId: 'a', role: 'user', content: 'hello' },
      { messageId: 'b', role: 'assistant', content: 'hi' },
    ]);
    expect(first).toMatchObject({ firstSeq: 2, lastSeq: 3, version: 3, messageIds: ['a', 'b'], duplicate: false });
    await store.commitMessages(ref, [{ messageId: 'after', role: 'user', content: 'more' }]);

    const retried = await store.commitMessages(ref, [
      { messageId: 'a', role: 'user', content: 'hello' },
      { messageId: 'b', role: 'assistant', content: 'hi' },
    ]);
    expect(retried).toMatchObject({ firstSeq: 2, lastSeq: 3, version: 4, messageIds: ['a', 'b'], duplicate: true });
    expect(await committedRows(ref)).toEqual([
      { seq: 1, messageId: 'before' },
      { seq: 2, messageId: 'a' },
      { seq: 3, messageId: 'b' },
      { seq: 4, messageId: 'after' },
    ]);
    expect(await threadVersion(ref)).toBe(4);
  });

  it('concurrent retries of one append commit it once and all report the same range', async () => {
    const ref = newThread();
    const append = () => store.commitMessages(ref, [{ messageId: 'x', role: 'user', content: 'once' }, { messageId: 'y', role: 'user', content: 'twice?' }]);
    const results = await Promise.all(Array.from({ length: 10 }, append));
    expect(new Set(results.map((r) => `${r.firstSeq}..${r.lastSeq}`))).toEqual(new Set(['1..2']));
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(await committedRows(ref)).toEqual([
      { seq: 1, messageId: 'x' },
      { seq: 2, messageId: 'y' },
    ]);
  });

  it('an append that partly overlaps committed message ids fails with duplicate_message_id and writes nothing', async () => {
    const ref = newThread();
    await store.commitMessages(ref, [{ messageId: 'a', role: 'user', content: '1' }, { messageId: 'b', role: 'user', content: '2' }]);
    const overlap = store.commitMessages(ref, [{ messageId: 'b', role: 'user', content: '2' }, { messageId: 'c', role: 'user', content: '3' }]);
    await expect(overlap).rejects.toMatchObject({ code: 'duplicate_message_id' });
    await expect(overlap).rejects.toThrow(/message id b in thread/);
    const inOneBatch = store.commitMessages(ref, [{ messageId: 'd', role: 'user', content: '4' }, { messageId: 'd', role: 'user', content: '4' }]);
    await expect(inOneBatch).rejects.toMatchObject({ code: 'duplicate_message_id' });
    expect(await committedRows(ref)).toEqual([
      { seq: 1, messageId: 'a' },
      { seq: 2, messageId: 'b' },
    ]);
    expect(await threadVersion(ref)).toBe(2);
  });
});
