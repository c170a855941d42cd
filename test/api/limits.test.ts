// Limits over real HTTP: the per-key rate limit, the per-key cap on SSE connections, CORS, and a
// slow SSE client that is cut off once its unsent backlog passes the per-connection limit.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventFrames, openSse, payloads, type SseConnection } from '../../testkit/sse.js';
import { eventually, uniqueId } from '../stack.js';
import { EMAIL_TOOL, errorCode, metricValue, rawRequest, rowCounts, runDone, startTenantStack, type TenantStack } from './helpers.js';

const otherKey = `k-${uniqueId('other')}`;
let stack: TenantStack;
beforeAll(async () => {
  stack = await startTenantStack({
    env: {
      THREADBOX_RATE_LIMIT_PER_MIN: '40',
      THREADBOX_SSE_MAX_PER_KEY: '2',
      THREADBOX_SSE_MAX_BUFFER_BYTES: '16384',
      THREADBOX_CORS_ORIGINS: 'https://app.example.com, https://admin.example.com',
    },
    extraKeys: `${otherKey}:${uniqueId('t-other')}`,
  });
});
afterAll(async () => {
  await stack?.stop();
});

const json = { 'content-type': 'application/json' };

describe('the per-key rate limit', () => {
  it('answers 429 rate_limited with Retry-After past the limit, writes nothing, and leaves other keys and /health alone', async () => {
    // Spend what is left of this key's minute on cheap reads; the next request, a submit, is refused.
    for (let i = 0; ; i++) {
      const res = await stack.api('GET', '/v1/threads');
      if (res.status === 429) break;
      expect(res.status).toBe(200);
      expect(i).toBeLessThan(40);
    }
    const before = await rowCounts(stack.store.pool, stack.tenant);
    const res = await rawRequest(stack.url, {
      method: 'POST',
      path: `/v1/threads/${uniqueId('limited')}/runs`,
      headers: { ...stack.auth, ...json },
      body: JSON.stringify({ messages: [{ content: 'too many' }] }),
    });
    expect(errorCode(res)).toBe('rate_limited');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(await rowCounts(stack.store.pool, stack.tenant)).toEqual(before);
    expect((await stack.request('GET', '/v1/threads', undefined, { authorization: `Bearer ${otherKey}` })).status).toBe(200);
    expect((await stack.request('GET', '/health')).status).toBe(200);
    expect((await fetch(`${stack.url}/metrics`)).status).toBe(200);
  });
});

describe('the rate limit on refused keys', () => {
  it('counts requests with an invalid or missing key per client address: past the limit 429 with Retry-After, valid keys unaffected', async () => {
    const before = await rowCounts(stack.store.pool, stack.tenant);
    for (let i = 0; i < 40; i++) {
      const res = await rawRequest(stack.url, { method: 'GET', path: '/v1/threads', headers: { authorization: `Bearer guess-${i}` } });
      expect(errorCode(res)).toBe('unauthorized');
    }
    for (const headers of [{ authorization: `Bearer guess-40` }, { authorization: `Bearer ${stack.key}x` }, {} as Record<string, string>]) {
      const res = await rawRequest(stack.url, { method: 'POST', path: `/v1/threads/${uniqueId('guess')}/runs`, headers: { ...headers, ...json }, body: JSON.stringify({ messages: [{ content: 'x' }] }) });
      expect(errorCode(res)).toBe('rate_limited');
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
    }
    expect(await rowCounts(stack.store.pool, stack.tenant)).toEqual(before);
    // A valid key from the same address spends its own quota.
    expect((await stack.request('GET', '/v1/threads', undefined, { authorization: `Bearer ${otherKey}` })).status).toBe(200);
    expect((await stack.request('GET', '/health')).status).toBe(200);
  });
});

describe('the cap on concurrent SSE connections per key', () => {
  it('refuses a third stream with 429 rate_limited (a streaming submit writes nothing), and frees the slot when a stream closes', async () => {
    const key = { authorization: `Bearer ${otherKey}` };
    const threadId = uniqueId('cap');
    const submitted = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: EMAIL_TOOL }] }, key);
    const runId = submitted.body.runId;
    const streams: SseConnection[] = [];
    for (let i = 0; i < 2; i++) {
      const sse = await openSse(`${stack.url}/v1/runs/${runId}/events`, { headers: key });
      expect(sse.status).toBe(200);
      streams.push(sse);
    }
    const third = await rawRequest(stack.url, { method: 'GET', path: `/v1/threads/${threadId}/events`, headers: { ...key, accept: 'text/event-stream' } });
    expect(errorCode(third)).toBe('rate_limited');
    expect(Number(third.headers['retry-after'])).toBeGreaterThan(0);
    const tenant = (await stack.store.getRun(runId))!;
    const { rows: before } = await stack.store.pool.query('SELECT count(*)::int AS n FROM runs WHERE thread_id = $1', [tenant.threadId]);
    const streamingSubmit = await rawRequest(stack.url, {
      method: 'POST',
      path: `/v1/threads/${threadId}/runs`,
      headers: { ...key, ...json, accept: 'text/event-stream' },
      body: JSON.stringify({ messages: [{ content: 'one more' }] }),
    });
    expect(errorCode(streamingSubmit)).toBe('rate_limited');
    const { rows: after } = await stack.store.pool.query('SELECT count(*)::int AS n FROM runs WHERE thread_id = $1', [tenant.threadId]);
    expect(after[0].n).toBe(before[0].n);
    // JSON pages are not streams, and another key has its own slots.
    expect((await stack.request('GET', `/v1/runs/${runId}/events`, undefined, key)).status).toBe(200);
    streams[0]!.close();
    const reopened = await eventually(async () => {
      const sse = await openSse(`${stack.url}/v1/runs/${runId}/events`, { headers: key });
      if (sse.status === 200) return sse;
      sse.close();
      return undefined;
    }, 5_000, 'a freed SSE slot');
    reopened.close();
    streams[1]!.close();
    await stack.request('POST', `/v1/runs/${runId}/cancel`, undefined, key);
  });
});

describe('CORS and security headers', () => {
  it('answers a preflight from an allowed origin, and gives no CORS headers to any other origin', async () => {
    const preflight = await fetch(`${stack.url}/v1/threads/x/runs`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    // (The first test spent this file's main key: the other one is still within its limit.)
    const auth = { authorization: `Bearer ${otherKey}` };
    const actual = await fetch(`${stack.url}/v1/threads`, { headers: { ...auth, origin: 'https://admin.example.com' } });
    expect(actual.headers.get('access-control-allow-origin')).toBe('https://admin.example.com');
    expect(actual.headers.get('access-control-expose-headers')).toContain('retry-after');
    const foreign = await fetch(`${stack.url}/v1/threads`, { headers: { ...auth, origin: 'https://evil.example.com' } });
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
    expect(foreign.headers.get('x-content-type-options')).toBe('nosniff');
  });
});

describe('a slow SSE client', () => {
  it('is disconnected once its unsent backlog passes THREADBOX_SSE_MAX_BUFFER_BYTES; the server stays healthy and the client can resume', async () => {
    // A thread whose history is 5 MiB: a step's tokens are coalesced into few events, so it takes bytes,
    // not many events, to outgrow what the kernel buffers for a client that does not read. Each reply
    // echoes 250 words of 1,000 characters (250 KB in 250 tokens, so each run is quick).
    const threadId = uniqueId('slow');
    const words = Array.from({ length: 250 }, (_, i) => String(i % 10).repeat(1000)).join(' ');
    const runIds: string[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: `flood ${i} ${words}` }], mode: 'queue' }, { authorization: `Bearer ${otherKey}` });
      expect(res.status).toBe(202);
      runIds.push(res.body.runId);
    }
    for (const runId of runIds) await runDone(stack, runId, 60_000);
    const { port } = new URL(stack.url);
    const socket = connect(Number(port), '127.0.0.1');
    const received: Buffer[] = [];
    // A paused socket still learns that it was reset: listen from the start.
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    // Ask for the stream and never read it: the kernel buffers fill, then the server's own backlog grows.
    socket.pause();
    socket.write(`GET /v1/threads/${threadId}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${otherKey}\r\nAccept: text/event-stream\r\n\r\n`);
    const cutOff = await eventually(async () => {
      const text = await (await fetch(`${stack.url}/metrics`)).text();
      return (metricValue(text, 'threadbox_sse_slow_client_disconnects_total') ?? 0) >= 1 ? text : undefined;
    }, 60_000, 'the slow client to be cut off');
    expect(metricValue(cutOff, 'threadbox_sse_connections')).toBe(0);
    socket.resume();
    await closed;
    const text = Buffer.concat(received).toString('utf8');
    expect(text.match(/event: run_finish/g)?.length ?? 0).toBeLessThan(runIds.length);
    expect((await stack.request('GET', '/health')).status).toBe(200);
    // It resumes where it got to, with no gap, to the end: the ids are the thread's, in commit order.
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    const lastId = ids.at(-1) ?? 0;
    const auth = { authorization: `Bearer ${otherKey}` };
    const rest = await openSse(`${stack.url}/v1/threads/${threadId}/events`, { headers: { ...auth, 'last-event-id': String(lastId) } });
    const expected = (await stack.request('GET', `/v1/threads/${threadId}/events?after=${lastId}&limit=1000`, undefined, auth)).body.items.map((e: { id: number }) => e.id);
    await eventually(async () => (payloads(rest.frames).length >= expected.length ? true : undefined), 30_000, 'the rest of the thread');
    rest.close();
    expect(payloads(rest.frames).map((e) => e.id)).toEqual(expected);
    expect(eventFrames(rest.frames).filter((f) => f.event === 'run_finish').length + (text.match(/event: run_finish/g)?.length ?? 0)).toBe(runIds.length);
  }, 240_000);
});
