// The in-process fan-out over one LISTEN connection: ordered, gap-free, duplicate-free delivery, also across a dropped connection.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { RunEvent, RunEventBody } from '../../src/contract/run-events.js';
import { createPool, migrate } from '../../src/store/db.js';
import { Store, type ThreadRef } from '../../src/store/store.js';
import { EventSubscriber } from '../../src/store/subscriber.js';

let pool: pg.Pool;
let store: Store;
const subscribers: EventSubscriber[] = [];
beforeAll(async () => {
  pool = createPool(inject('databaseUrl'), 20);
  await migrate(pool);
  store = new Store(pool);
});
afterEach(async () => {
  await Promise.all(subscribers.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await pool?.end();
});

const newThread = (): ThreadRef => ({ tenant: 'store-test', threadId: `sub-${randomUUID()}` });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const delta = (text: string): RunEventBody => ({ type: 'text_delta', step: 1, delta: text });

function newSubscriber(opts: ConstructorParameters<typeof EventSubscriber>[2] = {}) {
  const errors: unknown[] = [];
  const subscriber = new EventSubscriber(store, inject('databaseUrl'), { onError: (err) => errors.push(err), ...opts });
  subscribers.push(subscriber);
  return { subscriber, errors };
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

async function startedRun(ref: ThreadRef) {
  const runId = `run-${randomUUID()}`;
  await store.createRun(ref, { runId, dispatchId: `d-${runId}`, agentId: 'default', mode: 'queue', epoch: 0, input: [] });
  await store.startRun(runId);
  return runId;
}

/** Collects deliveries and flags any callback that overlaps another one of the same subscriber. */
function collector() {
  const events: RunEvent[] = [];
  const batches: number[] = [];
  return {
    events,
    batches,
    onEvents: (batch: RunEvent[]) => {
      batches.push(batch.length);
      events.push(...batch);
    },
  };
}

async function terminateListener(subscriber: EventSubscriber) {
  const pid = subscriber.backendPid;
  expect(pid).toBeTypeOf('number');
  const { rows } = await pool.query('SELECT pg_terminate_backend($1) AS terminated', [pid]);
  expect(rows[0].terminated).toBe(true);
}

describe('event subscriber', () => {
  it('run and thread subscribers see every event exactly once across forced drops of the LISTEN connection while events keep being appended', async () => {
    const { subscriber } = newSubscriber({ minRetryDelayMs: 20, maxRetryDelayMs: 200 });
    await subscriber.start();
    const ref = newThread();
    const runs = [await startedRun(ref), await startedRun(ref)];
    const perRun = runs.map(() => collector());
    const thread = collector();
    runs.forEach((runId, i) => subscriber.subscribeRun(runId, 0, perRun[i]!.onEvents));
    subscriber.subscribeThread(ref, 0, thread.onEvents);

    let appended = 0;
    const writer = (async () => {
      for (let i = 0; i < 300; i++) {
        const runId = runs[i % 2]!;
        await store.appendEvents(runId, 1001, Array.from({ length: 1 + (i % 3) }, (_, k) => delta(`${i}.${k}`)));
        appended += 1;
        await sleep(2);
      }
    })();
    for (const after of [60, 150, 230]) {
      await until(`${after} appends`, () => appended >= after);
      const before = subscriber.reconnects;
      await terminateListener(subscriber);
      await until('the listener is back', () => subscriber.reconnects > before && subscriber.listening);
    }
    await writer;

    for (const [i, runId] of runs.entries()) {
      const committed = (await store.readEvents(runId, 0, 10_000)).map((e) => e.seq);
      await until(`run ${i} subscriber caught up`, () => perRun[i]!.events.length >= committed.length);
      await sleep(100); // anything late would be a duplicate
      expect(perRun[i]!.events.map((e) => e.seq)).toEqual(committed);
      expect(perRun[i]!.events.every((e) => e.runId === runId)).toBe(true);
    }
    const committedIds = (await store.readThreadEvents(ref, 0, 10_000)).map((e) => e.id);
    await until('thread subscriber caught up', () => thread.events.length >= committedIds.length);
    await sleep(100);
    expect(thread.events.map((e) => e.id)).toEqual(committedIds);
    expect(subscriber.reconnects).toBe(3);
  });

  it('events committed while the listener is down are delivered after it reconnects, with no later notification to prompt them', async () => {
    const { subscriber, errors } = newSubscriber({ minRetryDelayMs: 500, maxRetryDelayMs: 500 });
    await subscriber.start();
    const ref = newThread();
    const runId = await startedRun(ref);
    const seen = collector();
    subscriber.subscribeRun(runId, 2, seen.onEvents);
    await store.appendEvents(runId, 1001, [delta('before')]);
    await until('the first event arrives', () => seen.events.length === 1);

    await terminateListener(subscriber);
    await until('the subscriber notices the drop', () => !subscriber.listening);
    await store.appendEvents(runId, 1001, [delta('while'), delta('down')]);
    await store.appendEvents(runId, 1001, [delta('still down')]);
    expect(subscriber.listening).toBe(false);

    await until('the gap is delivered', () => seen.events.length === 4);
    expect(subscriber.reconnects).toBe(1);
    expect(seen.events.map((e) => [e.seq, e.type === 'text_delta' ? e.delta : e.type])).toEqual([
      [3, 'before'],
      [4, 'while'],
      [5, 'down'],
      [6, 'still down'],
    ]);
    expect(errors.length).toBeGreaterThan(0); // the drop itself is reported, not thrown
  });

  it('a subscriber gets only what follows its cursor, in order, and nothing after it unsubscribes', async () => {
    const { subscriber } = newSubscriber();
    const ref = newThread();
    const runId = await startedRun(ref); // seqs 1, 2
    await store.appendEvents(runId, 1001, [delta('a'), delta('b'), delta('c')]); // 3..5
    const seen = collector();
    const unsubscribe = subscriber.subscribeRun(runId, 4, seen.onEvents);
    await subscriber.start();
    await until('the backlog arrives', () => seen.events.length === 1);
    await store.appendEvents(runId, 1001, [delta('d')]);
    await until('the live event arrives', () => seen.events.length === 2);
    unsubscribe();
    await store.appendEvents(runId, 1001, [delta('e')]);
    await sleep(200);
    expect(seen.events.map((e) => e.seq)).toEqual([5, 6]);
    expect(subscriber.subscriptionCount).toBe(0);
  });

  it('fans out one LISTEN connection to many subscribers, each receiving the whole stream once, even when far behind', async () => {
    const { subscriber } = newSubscriber({ pageSize: 7 });
    await subscriber.start();
    const ref = newThread();
    const runId = await startedRun(ref);
    await store.appendEvents(runId, 1001, Array.from({ length: 40 }, (_, i) => delta(`backlog ${i}`)));
    const collectors = Array.from({ length: 30 }, () => collector());
    for (const c of collectors) subscriber.subscribeRun(runId, 0, c.onEvents);
    for (let i = 0; i < 20; i++) await store.appendEvents(runId, 1001, [delta(`live ${i}`)]);
    const expected = (await store.readEvents(runId, 0, 10_000)).map((e) => e.seq);
    expect(expected).toHaveLength(62);
    for (const c of collectors) await until('every subscriber caught up', () => c.events.length >= expected.length);
    await sleep(100);
    for (const c of collectors) {
      expect(c.events.map((e) => e.seq)).toEqual(expected);
      expect(Math.max(...c.batches)).toBeLessThanOrEqual(7);
    }
    const { rows } = await pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND application_name = 'threadbox-listener'", [
      subscriber.backendPid,
    ]);
    expect(rows[0].n).toBe(1);
  });

  it("reads for one subscriber never overlap, even when notifications arrive faster than its reads", async () => {
    // A store whose reads are slow: without per-subscriber serialization every notification would start another read.
    let inFlight = 0;
    let maxInFlight = 0;
    const slowStore = new Store(pool);
    const read = slowStore.readEvents.bind(slowStore);
    slowStore.readEvents = async (...args) => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        await sleep(40);
        return await read(...args);
      } finally {
        inFlight -= 1;
      }
    };
    const subscriber = new EventSubscriber(slowStore, inject('databaseUrl'));
    subscribers.push(subscriber);
    await subscriber.start();
    const ref = newThread();
    const runId = await startedRun(ref);
    const seen = collector();
    subscriber.subscribeRun(runId, 0, seen.onEvents);
    for (let i = 0; i < 50; i++) await store.appendEvents(runId, 1001, [delta(String(i))]);
    await until('caught up', () => seen.events.length === 52);
    expect(seen.events.map((e) => e.seq)).toEqual(Array.from({ length: 52 }, (_, i) => i + 1));
    expect(maxInFlight).toBe(1);
    expect(seen.batches.length).toBeLessThan(52); // notifications that arrived mid-read were folded into the next read
  });

  it('a throwing callback does not stop delivery to it or to others', async () => {
    const { subscriber, errors } = newSubscriber();
    await subscriber.start();
    const ref = newThread();
    const runId = await startedRun(ref);
    const good = collector();
    let calls = 0;
    subscriber.subscribeRun(runId, 2, () => {
      calls += 1;
      throw new Error('consumer bug');
    });
    subscriber.subscribeRun(runId, 2, good.onEvents);
    await store.appendEvents(runId, 1001, [delta('x')]);
    await until('delivered', () => good.events.length === 1 && calls === 1);
    await store.appendEvents(runId, 1001, [delta('y')]);
    await until('delivered again', () => good.events.length === 2 && calls === 2);
    expect(errors.map((e) => (e as Error).message)).toEqual(['consumer bug', 'consumer bug']);
  });
});
