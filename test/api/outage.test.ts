// Temporal stops and comes back under a running API and worker: submits answer a fast 503 with
// Retry-After and write nothing, /health sees the return within 2 s, and a client retrying with its
// Idempotency-Key gets its message committed exactly once.
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startTemporalDevServer, type RunningTemporal } from '../../src/infra/temporal-server.js';
import { startThreadbox, type Running } from '../../src/server.js';
import { createPool } from '../../src/store/db.js';
import { freePort } from '../../src/infra/ports.js';
import { eventually, uniqueId } from '../stack.js';
import { errorCode, rawRequest, rowCounts } from './helpers.js';
import { plainTarget } from '../../src/temporal/connection.js';

const tenant = `t-${randomUUID().slice(0, 8)}`;
const key = `k-${randomUUID()}`;
const auth = { authorization: `Bearer ${key}` };
const pool = createPool(inject('databaseUrl'));
const dir = mkdtempSync(join(tmpdir(), 'threadbox-outage-'));
let temporalPort = 0;
let temporal: RunningTemporal | undefined;
let threadbox: Running;

/** This file's own Temporal dev server, its history in a file so that it restarts where it stopped. */
const startTemporal = async () => {
  temporal = await startTemporalDevServer({ port: temporalPort, dbFile: join(dir, 'temporal.db') });
};

beforeAll(async () => {
  chmodSync(dir, 0o755);
  temporalPort = await freePort();
  await startTemporal();
  const config = loadConfig({ PORT: '0', LOG_LEVEL: 'warn', THREADBOX_API_KEYS: `${key}:${tenant}`, TEMPORAL_TASK_QUEUE: `outage-${tenant}` });
  threadbox = await startThreadbox(config, {
    databaseUrl: inject('databaseUrl'),
    temporal: plainTarget(temporal!.address),
    api: true,
    worker: true,
    workflowBundle: { code: readFileSync(inject('workflowBundlePath'), 'utf8') },
  });
}, 120_000);

afterAll(async () => {
  await threadbox?.stop();
  await temporal?.stop();
  await pool.end();
  rmSync(dir, { recursive: true, force: true });
});

const url = () => threadbox.url!;

async function timed(method: string, path: string, opts: { body?: unknown; headers?: Record<string, string> } = {}) {
  const started = Date.now();
  const res = await rawRequest(url(), {
    method,
    path,
    headers: { ...auth, ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
  });
  return { ...res, ms: Date.now() - started };
}

const submit = (threadId: string, content: string, idempotencyKey: string) =>
  timed('POST', `/v1/threads/${threadId}/runs`, { body: { messages: [{ role: 'user', content }], mode: 'queue' }, headers: { 'idempotency-key': idempotencyKey } });

/**
 * When Temporal answers again, as a fresh connection sees it: one with a subchannel of its own, since
 * grpc shares subchannels between connections with the same options, reconnect backoff included.
 */
async function firstAnswer(address: string): Promise<number> {
  for (;;) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: 500, channelArgs: { 'grpc.use_local_subchannel_pool': 1 } });
      await connection.close();
      return Date.now();
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function runEnded(runId: string) {
  return eventually(async () => {
    const res = await timed('GET', `/v1/runs/${runId}`);
    return res.status === 200 && res.json.status === 'done' ? res.json : undefined;
  }, 30_000, `run ${runId} to end`);
}

async function userMessages(threadId: string): Promise<string[]> {
  const res = await timed('GET', `/v1/threads/${threadId}/messages?limit=1000`);
  expect(res.status).toBe(200);
  return res.json.items.filter((m: { role: string }) => m.role === 'user').map((m: { content: unknown }) => m.content);
}

it('with Temporal down a submit answers 503 unavailable with Retry-After within 5 s and writes nothing; /health sees Temporal back within 2 s; the retried key commits once', async () => {
  // A thread that ran before the outage, so the worker and the API's connection are warm.
  const before = uniqueId('before');
  const warm = await submit(before, 'before the outage', randomUUID());
  expect(warm.status).toBe(202);
  expect((await runEnded(warm.json.runId)).termination.type).toBe('natural_end');
  const written = await rowCounts(pool, tenant);

  await temporal!.stop();
  temporal = undefined;
  const down = Date.now();

  const threadId = uniqueId('during');
  const idempotencyKey = randomUUID();
  const content = `sent while Temporal was down ${randomUUID()}`;
  // The first finds out by trying (its deadline); the next ones are told at once.
  const first = await submit(threadId, content, idempotencyKey);
  const second = await submit(threadId, content, idempotencyKey);
  const interrupt = await timed('POST', `/v1/threads/${before}/interrupt`);
  const health = await timed('GET', '/health');
  console.log(`[outage] Temporal down: submit 503 in ${first.ms} ms, again in ${second.ms} ms, interrupt in ${interrupt.ms} ms, /health ${health.status} in ${health.ms} ms`);
  // Soft: every broken promise of the outage is reported, not only the first.
  for (const res of [first, second, interrupt]) {
    expect.soft(errorCode(res)).toBe('unavailable');
    expect.soft(res.json.error).toMatch(/^temporal unavailable: /);
    expect.soft(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect.soft(res.ms).toBeLessThan(5000);
  }
  expect.soft(second.ms).toBeLessThan(1000);
  expect.soft(interrupt.ms).toBeLessThan(1000);
  expect.soft(health.status).toBe(503);
  expect.soft(health.json).toMatchObject({ status: 'unavailable', postgres: 'ok', temporal: expect.stringMatching(/^down: /), error: 'temporal unavailable' });
  expect.soft(Number(health.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  expect.soft(await rowCounts(pool, tenant)).toEqual(written);

  // A load balancer probes /health from now on, as it would: the API's connection keeps trying Temporal.
  let probing = true;
  const probes = (async () => {
    while (probing) {
      await timed('GET', '/health');
      await new Promise((r) => setTimeout(r, 200));
    }
  })();

  // Down for about 8 s in all, then back on the same port and history.
  await new Promise((r) => setTimeout(r, Math.max(0, 8000 - (Date.now() - down))));
  const restarted = startTemporal();
  const back = await firstAnswer(`127.0.0.1:${temporalPort}`);
  let healthyAfter: number | undefined;
  while (Date.now() - back < 30_000) {
    const res = await timed('GET', '/health');
    if (res.status === 200) {
      healthyAfter = Date.now() - back;
      break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  probing = false;
  await probes;
  await restarted;
  console.log(`[outage] /health ok ${healthyAfter} ms after Temporal answered again`);
  expect.soft(healthyAfter ?? Infinity).toBeLessThanOrEqual(2000);

  // The client retries with its key, waiting as told, until the submit is accepted.
  let accepted: Awaited<ReturnType<typeof submit>> | undefined;
  for (let attempt = 0; attempt < 20 && !accepted; attempt++) {
    const res = await submit(threadId, content, idempotencyKey);
    if (res.status === 202) accepted = res;
    else {
      expect(errorCode(res)).toBe('unavailable');
      await new Promise((r) => setTimeout(r, Number(res.headers['retry-after']) * 1000));
    }
  }
  expect(accepted).toBeDefined();
  expect((await runEnded(accepted!.json.runId)).termination.type).toBe('natural_end');
  // One more retry of the same key is answered with the first answer and adds nothing.
  const replay = await submit(threadId, content, idempotencyKey);
  expect(replay.status).toBe(202);
  expect(replay.json.runId).toBe(accepted!.json.runId);
  expect(await userMessages(threadId)).toEqual([content]);
  const runs = await timed('GET', `/v1/threads/${threadId}/runs`);
  expect(runs.json.items).toHaveLength(1);
}, 180_000);
