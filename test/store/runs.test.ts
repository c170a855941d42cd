// Run records: legal and illegal transitions, pending input committed when a run starts.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createPool, migrate } from '../../src/store/db.js';
import { Store, type NewMessage, type ThreadRef } from '../../src/store/store.js';

let pool: pg.Pool;
let store: Store;
beforeAll(async () => {
  pool = createPool(inject('databaseUrl'));
  await migrate(pool);
  store = new Store(pool);
});
afterAll(async () => {
  await pool?.end();
});

const newThread = (): ThreadRef => ({ tenant: 'store-test', threadId: `runs-${randomUUID()}` });

function queueRun(ref: ThreadRef, runId: string, input: NewMessage[] = []) {
  return store.createRun(ref, { runId, dispatchId: `d-${runId}`, agentId: 'default', mode: 'queue', epoch: 0, input });
}

async function committedLog(ref: ThreadRef) {
  const { rows } = await pool.query('SELECT seq, message_id, content, run_id FROM messages WHERE tenant = $1 AND thread_id = $2 ORDER BY seq', [
    ref.tenant,
    ref.threadId,
  ]);
  return rows.map((r) => [Number(r.seq), r.message_id, r.content, r.run_id]);
}

async function runRow(runId: string) {
  const { rows } = await pool.query(
    `SELECT r.tenant, r.thread_id, r.status, r.termination, (SELECT count(*)::int FROM pending_input p WHERE p.run_id = r.run_id) AS pending
       FROM runs r WHERE r.run_id = $1`,
    [runId],
  );
  const dispatch = (await store.listDispatches({ tenant: rows[0].tenant, threadId: rows[0].thread_id })).find((d) => d.runId === runId);
  return { ...rows[0], dispatch_status: dispatch?.status };
}

async function eventTypes(runId: string) {
  return (await store.readEvents(runId)).map((e) => [e.seq, e.type]);
}

describe('run records', () => {
  it('a run id is claimed once: a retry of the same createRun is still the creator, another request for it is not, another thread is refused', async () => {
    const ref = newThread();
    const runId = `run-${randomUUID()}`;
    const claim = { runId, dispatchId: `d-${runId}`, agentId: 'default', mode: 'queue', epoch: 0, input: [{ role: 'user' as const, content: 'once' }], requestHash: 'h1' };
    expect((await store.createRun(ref, claim)).created).toBe(true);
    // The activity retried after its first attempt committed (its worker was killed before reporting).
    expect((await store.createRun(ref, claim)).created).toBe(true);
    // The same request again, as a new dispatch: a duplicate, answered with the first run.
    expect((await store.createRun(ref, { ...claim, dispatchId: `d2-${runId}` })).created).toBe(false);
    await expect(store.createRun(ref, { ...claim, dispatchId: `d3-${runId}`, requestHash: 'h2' })).rejects.toMatchObject({ code: 'idempotency_conflict' });
    await expect(store.createRun(newThread(), { ...claim, dispatchId: `d4-${runId}` })).rejects.toMatchObject({ code: 'conflict' });
    expect((await store.listRuns(ref)).length).toBe(1);
    expect((await store.listDispatches(ref)).length).toBe(1);
  });

  it('a run goes queued → running → waiting → running → done, and the thread projection follows', async () => {
    const ref = newThread();
    const runId = `run-${randomUUID()}`;
    expect(await queueRun(ref, runId)).toMatchObject({ status: 'queued' });
    expect(await store.getThread(ref)).toMatchObject({ status: 'queued', queuedRunIds: [runId], latestRunId: runId });

    expect(await store.startRun(runId)).toMatchObject({ status: 'running' });
    expect(await store.getThread(ref)).toMatchObject({ status: 'running', activeRunId: runId, queuedRunIds: [] });

    const tickets = { toolCallIds: ['call-1'] };
    expect(await store.setRunWaiting(runId, tickets)).toMatchObject({ status: 'waiting', waiting: tickets });
    expect(await store.getThread(ref)).toMatchObject({ status: 'waiting' });
    expect(await store.setRunWaiting(runId, null)).toMatchObject({ status: 'running', waiting: null });

    const done = await store.finishRun(runId, { type: 'natural_end' });
    expect(done).toMatchObject({ status: 'done', termination: { type: 'natural_end' } });
    expect(done.finishedAt).not.toBeNull();
    expect(await store.getThread(ref)).toMatchObject({ status: 'idle', activeRunId: null });
    expect(await runRow(runId)).toMatchObject({ status: 'done', dispatch_status: 'done' });
    expect(await eventTypes(runId)).toEqual([
      [1, 'run_queued'],
      [2, 'run_start'],
      [3, 'run_finish'],
    ]);
  });

  it('done is final: every transition out of it is rejected and changes nothing', async () => {
    const ref = newThread();
    const runId = `run-${randomUUID()}`;
    await queueRun(ref, runId);
    await store.startRun(runId);
    await store.finishRun(runId, { type: 'cancelled' });

    await expect(store.startRun(runId)).rejects.toMatchObject({ code: 'illegal_transition' });
    await expect(store.setRunWaiting(runId, { toolCallIds: ['x'] })).rejects.toMatchObject({ code: 'illegal_transition' });
    await expect(store.setRunWaiting(runId, null)).rejects.toMatchObject({ code: 'illegal_transition' });
    await expect(store.finishRun(runId, { type: 'natural_end' })).rejects.toThrow(/already ended cancelled/);
    // Repeating the same finish is the retry of an activity that already succeeded.
    expect(await store.finishRun(runId, { type: 'cancelled' })).toMatchObject({ status: 'done', termination: { type: 'cancelled' } });

    expect(await runRow(runId)).toMatchObject({ status: 'done', termination: { type: 'cancelled' }, dispatch_status: 'cancelled' });
    expect((await eventTypes(runId)).filter(([, type]) => type === 'run_finish')).toHaveLength(1);
  });

  it('a queued run cannot wait or resume: only startRun takes it to running', async () => {
    const ref = newThread();
    const runId = `run-${randomUUID()}`;
    await queueRun(ref, runId, [{ messageId: `${runId}:in`, role: 'user', content: 'hi' }]);
    await expect(store.setRunWaiting(runId, { toolCallIds: ['x'] })).rejects.toMatchObject({ code: 'illegal_transition' });
    await expect(store.setRunWaiting(runId, null)).rejects.toMatchObject({ code: 'illegal_transition' });
    expect(await runRow(runId)).toMatchObject({ status: 'queued', pending: 1 });
    expect(await committedLog(ref)).toEqual([]);
  });

  it('an unknown run is not_found', async () => {
    await expect(store.startRun(`missing-${randomUUID()}`)).rejects.toMatchObject({ code: 'not_found' });
    await expect(store.finishRun(`missing-${randomUUID()}`, { type: 'natural_end' })).rejects.toMatchObject({ code: 'not_found' });
  });

  it('startRun commits the pending input after what is already committed, once, even when retried', async () => {
    const ref = newThread();
    await store.commitMessages(ref, [{ messageId: 'earlier', role: 'user', content: 'earlier' }]);
    const runId = `run-${randomUUID()}`;
    const run = await queueRun(ref, runId, [
      { messageId: `${runId}:1`, role: 'user', content: 'first' },
      { messageId: `${runId}:2`, role: 'user', content: 'second' },
    ]);
    expect(run.inputMessageIds).toEqual([`${runId}:1`, `${runId}:2`]);
    expect(await runRow(runId)).toMatchObject({ pending: 2 });
    expect(await committedLog(ref)).toEqual([[1, 'earlier', 'earlier', null]]);

    await store.startRun(runId);
    await store.startRun(runId); // the retry of an activity whose first attempt committed
    expect(await committedLog(ref)).toEqual([
      [1, 'earlier', 'earlier', null],
      [2, `${runId}:1`, 'first', runId],
      [3, `${runId}:2`, 'second', runId],
    ]);
    expect(await runRow(runId)).toMatchObject({ status: 'running', pending: 0 });
    expect((await store.getThread(ref))?.version).toBe(3);
  });

  it("a retried startRun does not rewind a run that is already waiting", async () => {
    const ref = newThread();
    const runId = `run-${randomUUID()}`;
    await queueRun(ref, runId);
    await store.startRun(runId);
    await store.setRunWaiting(runId, { toolCallIds: ['c'] });
    expect(await store.startRun(runId)).toMatchObject({ status: 'waiting' });
  });

  it("a superseded run's input is committed just ahead of the superseding run's input; a cancelled queued run's input is dropped", async () => {
    const ref = newThread();
    const [superseded, cancelled, next] = [`sup-${randomUUID()}`, `can-${randomUUID()}`, `next-${randomUUID()}`];
    await queueRun(ref, superseded, [{ messageId: `${superseded}:in`, role: 'user', content: 'queued first' }]);
    await queueRun(ref, cancelled, [{ messageId: `${cancelled}:in`, role: 'user', content: 'cancelled before it started' }]);
    await store.finishRun(superseded, { type: 'superseded', detail: `superseded by ${next}` });
    await store.finishRun(cancelled, { type: 'cancelled' });
    expect(await runRow(superseded)).toMatchObject({ status: 'done', dispatch_status: 'superseded', pending: 1 });
    expect(await runRow(cancelled)).toMatchObject({ status: 'done', dispatch_status: 'cancelled', pending: 0 });
    expect(await committedLog(ref)).toEqual([]);

    await queueRun(ref, next, [{ messageId: `${next}:in`, role: 'user', content: 'the interrupting message' }]);
    await store.startRun(next, [superseded]);
    expect(await committedLog(ref)).toEqual([
      [1, `${superseded}:in`, 'queued first', superseded],
      [2, `${next}:in`, 'the interrupting message', next],
    ]);
    expect(await runRow(superseded)).toMatchObject({ pending: 0 });
  });

  it('commitPendingInput commits the input of runs that never started, in the given order, once', async () => {
    const ref = newThread();
    const [a, b] = [`a-${randomUUID()}`, `b-${randomUUID()}`];
    await queueRun(ref, a, [{ messageId: `${a}:in`, role: 'user', content: 'a' }]);
    await queueRun(ref, b, [{ messageId: `${b}:in`, role: 'user', content: 'b' }]);
    await store.finishRun(a, { type: 'superseded' });
    await store.finishRun(b, { type: 'superseded' });
    await store.commitPendingInput(ref, [b, a]);
    await store.commitPendingInput(ref, [b, a]);
    expect(await committedLog(ref)).toEqual([
      [1, `${b}:in`, 'b', b],
      [2, `${a}:in`, 'a', a],
    ]);
  });

  it('createRun is idempotent on the run id', async () => {
    const ref = newThread();
    const runId = `run-${randomUUID()}`;
    await queueRun(ref, runId, [{ messageId: `${runId}:in`, role: 'user', content: 'hi' }]);
    await queueRun(ref, runId, [{ messageId: `${runId}:in`, role: 'user', content: 'hi' }]);
    expect(await runRow(runId)).toMatchObject({ status: 'queued', pending: 1 });
    expect(await eventTypes(runId)).toEqual([[1, 'run_queued']]);
    expect((await store.getThread(ref))?.queuedRunIds).toEqual([runId]);
  });

  it("a run's dispatch is read from the run: queued, running (also while it waits), then its termination, with epoch, attempts, error and times", async () => {
    const ref = newThread();
    const [first, second] = [`run-${randomUUID()}`, `run-${randomUUID()}`];
    await store.createRun(ref, { runId: first, dispatchId: `d-${first}`, agentId: 'default', mode: 'interrupt', epoch: 3, input: [] });
    await store.createRun(ref, { runId: second, dispatchId: `d-${second}`, agentId: 'default', mode: 'queue', epoch: 3, input: [] });
    const dispatchOf = async (runId: string) => (await store.listDispatches(ref)).find((d) => d.runId === runId)!;

    const queued = await dispatchOf(first);
    expect(queued).toMatchObject({ dispatchId: `d-${first}`, status: 'queued', mode: 'interrupt', epoch: 3, attempts: 0, lastError: null });
    expect(queued.updatedAt).toBe(queued.createdAt);
    const started = await store.startRun(first);
    await store.setRunWaiting(first, { toolCallIds: ['call-1'] });
    expect(await dispatchOf(first)).toMatchObject({ status: 'running', attempts: 1, updatedAt: started.startedAt });
    const finished = await store.finishRun(first, { type: 'error', detail: 'model refused' }, { error: 'model refused' });
    expect(await dispatchOf(first)).toMatchObject({ status: 'done', attempts: 1, lastError: 'model refused', updatedAt: finished.finishedAt });
    await store.finishRun(second, { type: 'superseded' });
    expect(await dispatchOf(second)).toMatchObject({ status: 'superseded', attempts: 0 });
    expect((await store.listDispatches(ref)).map((d) => d.runId)).toEqual([first, second]);
    expect((await store.loadMailboxRows(ref)).epoch).toBe(3);
  });
});
