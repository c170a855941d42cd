// Store benchmarks: committed-append latency alone and against 8 writers on one thread, event
// append throughput, and commit-to-subscriber latency through EventSubscriber.
// Alone: `npx tsx bench/store.ts` (DATABASE_URL, or an embedded Postgres in a temp dir).
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RunEvent, RunEventBody } from '../src/contract/run-events.js';
import { freePort } from '../src/infra/ports.js';
import { startEmbeddedPostgres } from '../src/infra/postgres.js';
import { createPool, migrate } from '../src/store/db.js';
import { Store, type ThreadRef } from '../src/store/store.js';
import { EventSubscriber } from '../src/store/subscriber.js';
import { scratchDir } from '../testkit/services.js';
import { p50p99 } from './stats.js';

const TENANT = 'bench';
const UNCONTENDED_APPENDS = 400;
const CONTENDING_WRITERS = 8;
const APPENDS_PER_WRITER = 150;
const EVENT_BATCH = 20;
const EVENT_BATCHES = 250;
const PARALLEL_RUNS = 8;
const NOTIFY_SAMPLES = 300;

export async function benchStore(databaseUrl: string): Promise<Record<string, number>> {
  const pool = createPool(databaseUrl, 20);
  await migrate(pool);
  const store = new Store(pool);
  try {
    return {
      ...(await appendUncontended(store)),
      ...(await appendContended(databaseUrl)),
      ...(await eventThroughput(store)),
      ...(await notifyLatency(store, databaseUrl)),
    };
  } finally {
    await pool.end();
  }
}

async function appendUncontended(store: Store) {
  const ref = newThread();
  await store.commitMessages(ref, [{ role: 'user', content: 'warm-up' }]);
  const latencies: number[] = [];
  for (let i = 0; i < UNCONTENDED_APPENDS; i++) {
    const t0 = performance.now();
    await store.commitMessages(ref, [{ role: 'user', content: `message ${i}` }]);
    latencies.push(performance.now() - t0);
  }
  return p50p99('store_append_uncontended', latencies);
}

/** 8 writers on one thread, each with its own pool and Store as 8 processes would have (one Store queues its own appends to a thread). */
async function appendContended(databaseUrl: string) {
  const ref = newThread();
  const pools = Array.from({ length: CONTENDING_WRITERS }, () => createPool(databaseUrl, 2));
  try {
    const stores = pools.map((p) => new Store(p));
    await Promise.all(stores.map((s) => s.commitMessages(ref, [{ role: 'user', content: 'warm-up' }])));
    const latencies: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      stores.map(async (s, w) => {
        for (let i = 0; i < APPENDS_PER_WRITER; i++) {
          const start = performance.now();
          await s.commitMessages(ref, [{ role: 'user', content: `writer ${w} message ${i}` }]);
          latencies.push(performance.now() - start);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return {
      ...p50p99('store_append_contended8', latencies),
      store_append_contended8_per_sec: Math.round(latencies.length / seconds),
    };
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
}

async function eventThroughput(store: Store) {
  const batch: RunEventBody[] = Array.from({ length: EVENT_BATCH }, (_, i) => ({ type: 'text_delta', step: 1, delta: `token${i} ` }));
  const ref = newThread();
  const runId = await startedRun(store, ref);
  let t0 = performance.now();
  for (let i = 0; i < EVENT_BATCHES; i++) await store.appendEvents(runId, 1001, batch);
  const oneWriter = (EVENT_BATCHES * EVENT_BATCH) / ((performance.now() - t0) / 1000);

  // Separate threads, as concurrent runs usually are; runs of one thread also serialize on the thread's id order.
  const runIds = await Promise.all(Array.from({ length: PARALLEL_RUNS }, () => startedRun(store, newThread())));
  const perRun = Math.ceil(EVENT_BATCHES / PARALLEL_RUNS) * 2;
  t0 = performance.now();
  await Promise.all(runIds.map(async (id) => {
    for (let i = 0; i < perRun; i++) await store.appendEvents(id, 1001, batch);
  }));
  const parallel = (PARALLEL_RUNS * perRun * EVENT_BATCH) / ((performance.now() - t0) / 1000);
  return { store_events_per_sec_1_writer: Math.round(oneWriter), store_events_per_sec_8_runs: Math.round(parallel) };
}

/** From the writer's commit acknowledgement (and from its append call) to the subscriber's callback. */
async function notifyLatency(store: Store, databaseUrl: string) {
  const subscriber = new EventSubscriber(store, databaseUrl);
  try {
    await subscriber.start();
    const runId = await startedRun(store, newThread());
    const delivered = new Map<number, number>();
    const waiting = new Map<number, () => void>();
    subscriber.subscribeRun(runId, 2, (events: RunEvent[]) => {
      const now = performance.now();
      for (const e of events) {
        delivered.set(e.seq, now);
        waiting.get(e.seq)?.();
      }
    });
    const fromCommit: number[] = [];
    const fromCall: number[] = [];
    for (let i = 0; i < NOTIFY_SAMPLES + 10; i++) {
      const t0 = performance.now();
      const { lastSeq } = await store.appendEvents(runId, 1001, [{ type: 'text_delta', step: 1, delta: `sample ${i}` }]);
      const acked = performance.now();
      if (!delivered.has(lastSeq)) await new Promise<void>((resolve) => waiting.set(lastSeq, resolve));
      if (i < 10) continue; // warm-up
      const at = delivered.get(lastSeq)!;
      fromCommit.push(Math.max(0, at - acked));
      fromCall.push(at - t0);
    }
    return {
      ...p50p99('store_notify', fromCommit),
      ...p50p99('store_append_to_subscriber', fromCall),
    };
  } finally {
    await subscriber.close();
  }
}

async function startedRun(store: Store, ref: ThreadRef): Promise<string> {
  const runId = `bench-${randomUUID()}`;
  await store.createRun(ref, { runId, dispatchId: `d-${runId}`, agentId: 'bench', mode: 'queue', epoch: 0, input: [] });
  await store.startRun(runId); // seqs 1 and 2
  return runId;
}

const newThread = (): ThreadRef => ({ tenant: TENANT, threadId: `bench-${randomUUID()}` });

async function main() {
  let databaseUrl = process.env.DATABASE_URL;
  let cleanup = async () => {};
  if (!databaseUrl) {
    const dir = scratchDir('threadbox-bench-');
    const pg = await startEmbeddedPostgres({ dataDir: join(dir, 'postgres'), port: await freePort() });
    databaseUrl = pg.url;
    cleanup = async () => {
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    };
  }
  try {
    const results = await benchStore(databaseUrl);
    const width = Math.max(...Object.keys(results).map((k) => k.length));
    for (const [name, value] of Object.entries(results)) console.log(`${name.padEnd(width)}  ${value}`);
    console.log(JSON.stringify(results));
  } finally {
    await cleanup();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
