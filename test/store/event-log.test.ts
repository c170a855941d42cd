// The event log: contiguous seqs, fencing out stale writers, thread-wide reads that never skip.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunEventBody } from '../../src/contract/run-events.js';
import { createPool, migrate } from '../../src/store/db.js';
import { Store, StoreError, type ThreadRef } from '../../src/store/store.js';

let pool: pg.Pool;
let store: Store;
beforeAll(async () => {
  pool = createPool(inject('databaseUrl'), 20);
  await migrate(pool);
  store = new Store(pool);
});
afterAll(async () => {
  await pool?.end();
});

const newThread = (): ThreadRef => ({ tenant: 'store-test', threadId: `events-${randomUUID()}` });

async function startedRun(ref: ThreadRef) {
  const runId = `run-${randomUUID()}`;
  await store.createRun(ref, { runId, dispatchId: `d-${runId}`, agentId: 'default', mode: 'queue', epoch: 0, input: [] });
  await store.startRun(runId);
  return runId;
}

const delta = (step: number, text: string): RunEventBody => ({ type: 'text_delta', step, delta: text });

describe('event log', () => {
  it('a writer with a stale fence is rejected and the fresh writer continues with no gap', async () => {
    const ref = newThread();
    const runId = await startedRun(ref); // seqs 1 run_queued, 2 run_start
    const attempt1 = 1 * 1000 + 1;
    const attempt2 = 1 * 1000 + 2;

    expect(await store.appendEvents(runId, attempt1, [{ type: 'step_start', step: 1, attempt: 1 }, delta(1, 'Echo:')])).toEqual({ firstSeq: 3, lastSeq: 4 });
    expect(await store.appendEvents(runId, attempt2, [{ type: 'stream_reset', step: 1, attempt: 2 }])).toEqual({ firstSeq: 5, lastSeq: 5 });

    // The first attempt is a zombie now: whatever it still flushes is refused.
    const zombie = store.appendEvents(runId, attempt1, [delta(1, ' zombie')]);
    await expect(zombie).rejects.toBeInstanceOf(StoreError);
    await expect(zombie).rejects.toMatchObject({ code: 'stale_writer' });
    await expect(zombie).rejects.toThrow(new RegExp(`run ${runId} is stale`));

    expect(await store.appendEvents(runId, attempt2, [delta(1, 'Echo:'), delta(1, ' hi')])).toEqual({ firstSeq: 6, lastSeq: 7 });
    const events = await store.readEvents(runId);
    // Clients see the step's attempt, not the writer's fence (step × 1000 + attempt).
    expect(events.map((e) => [e.seq, e.type, e.attempt])).toEqual([
      [1, 'run_queued', 1],
      [2, 'run_start', 1],
      [3, 'step_start', 1],
      [4, 'text_delta', 1],
      [5, 'stream_reset', 2],
      [6, 'text_delta', 2],
      [7, 'text_delta', 2],
    ]);
    expect(events.some((e) => e.type === 'text_delta' && e.delta === ' zombie')).toBe(false);
    const { rows } = await pool.query('SELECT event_fence, last_event_seq FROM runs WHERE run_id = $1', [runId]);
    expect(rows[0]).toEqual({ event_fence: String(attempt2), last_event_seq: '7' });
  });

  it('an empty append raises the fence, shutting out the older writer before the newer one writes anything', async () => {
    const ref = newThread();
    const runId = await startedRun(ref);
    await store.appendEvents(runId, 1001, [delta(1, 'a')]);
    expect(await store.appendEvents(runId, 2000, [])).toEqual({ firstSeq: 4, lastSeq: 3 });
    await expect(store.appendEvents(runId, 1001, [delta(1, 'late')])).rejects.toMatchObject({ code: 'stale_writer' });
    await expect(store.finishRun(runId, { type: 'cancelled' }, { fence: 1001 })).rejects.toMatchObject({ code: 'stale_writer' });
    expect((await store.finishRun(runId, { type: 'cancelled' }, { fence: 2000 })).status).toBe('done');
    expect((await store.readEvents(runId)).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
  });

  it('concurrent writers of one run get contiguous seqs, each batch in one piece', async () => {
    const ref = newThread();
    const runId = await startedRun(ref);
    const batches = await Promise.all(
      Array.from({ length: 20 }, (_, b) => store.appendEvents(runId, 1001, Array.from({ length: 5 }, (_, i) => delta(1, `${b}.${i}`)))),
    );
    const events = await store.readEvents(runId);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 102 }, (_, i) => i + 1));
    for (const [b, { firstSeq, lastSeq }] of batches.entries()) {
      expect(lastSeq - firstSeq).toBe(4);
      expect(events.slice(firstSeq - 1, lastSeq).map((e) => (e.type === 'text_delta' ? e.delta : ''))).toEqual(
        Array.from({ length: 5 }, (_, i) => `${b}.${i}`),
      );
    }
  });

  it('a thread-wide reader following ids never skips an event of a run that committed later than a higher id', async () => {
    // Two runs of one thread write at once; a reader pages by global id as an SSE resume would.
    const ref = newThread();
    const runs = [await startedRun(ref), await startedRun(ref)];
    let writing = true;
    const writers = runs.map(async (runId) => {
      for (let i = 0; i < 150; i++) await store.appendEvents(runId, 1001, Array.from({ length: 3 }, (_, k) => delta(1, `${i}.${k}`)));
    });
    const seen: number[] = [];
    const reader = (async () => {
      let cursor = 0;
      for (;;) {
        const done = !writing;
        const page = await store.readThreadEvents(ref, cursor, 50);
        for (const e of page) seen.push(e.id);
        if (page.length) cursor = page[page.length - 1]!.id;
        else if (done) return;
      }
    })();
    await Promise.all(writers);
    writing = false;
    await reader;
    const all = (await store.readThreadEvents(ref, 0, 10_000)).map((e) => e.id);
    expect(all).toHaveLength(2 * (2 + 150 * 3));
    expect(seen).toEqual(all);
  });

  it('an event for an unknown run is not_found', async () => {
    await expect(store.appendEvents(`missing-${randomUUID()}`, 0, [delta(1, 'x')])).rejects.toMatchObject({ code: 'not_found' });
  });
});
