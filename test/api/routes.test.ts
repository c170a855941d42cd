// Every route of the HTTP contract over real HTTP: its happy path and each error code it can return;
// a rejected request writes nothing.
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AgentRegistry } from '../../src/agent/agents.js';
import { buildApp } from '../../src/api/app.js';
import { ThreadboxService } from '../../src/api/service.js';
import { loadConfig } from '../../src/config.js';
import { createPool } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { EventSubscriber } from '../../src/store/subscriber.js';
import { freePort } from '../../src/infra/ports.js';
import { eventFrames, openSse, payloads } from '../../testkit/sse.js';
import { eventually, uniqueId } from '../stack.js';
import {
  CONTRACT_ROUTES,
  EMAIL_TOOL,
  errorCode,
  fillPath,
  metricValue,
  rawRequest,
  rowCounts,
  runDone,
  runStatus,
  startTenantStack,
  type TenantStack,
} from './helpers.js';

let stack: TenantStack;
beforeAll(async () => {
  stack = await startTenantStack({ env: { THREADBOX_SSE_HEARTBEAT_MS: '200' } });
});
afterAll(async () => {
  await stack?.stop();
});

const json = { 'content-type': 'application/json' };

/** Sends a request that must be rejected with `code`, and proves it wrote nothing. */
async function rejected(code: string, method: string, path: string, opts: { body?: string; headers?: Record<string, string>; auth?: boolean } = {}) {
  const before = await rowCounts(stack.store.pool, stack.tenant);
  const res = await rawRequest(stack.url, { method, path, body: opts.body, headers: { ...(opts.auth === false ? {} : stack.auth), ...opts.headers } });
  expect({ path, status: res.status, code: res.json?.code }).toEqual({ path, status: res.status, code });
  expect(errorCode(res)).toBe(code);
  expect(await rowCounts(stack.store.pool, stack.tenant)).toEqual(before);
  return res;
}

async function submit(threadId: string, content: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  const res = await stack.api('POST', `/v1/threads/${threadId}/runs`, { messages: [{ role: 'user', content }], ...extra }, headers);
  return res;
}

/** Waits for the run to ask for an approval and to have written all it writes before it waits. */
async function approvalRequested(runId: string) {
  const event = await eventually(async () => (await stack.store.readEvents(runId)).find((e) => e.type === 'tool_approval_requested'));
  await runStatus(stack, runId, 'waiting');
  return (event as { toolCallId: string }).toolCallId;
}

async function waitingRun(threadId = uniqueId('wait')) {
  const { runId } = (await submit(threadId, EMAIL_TOOL)).body;
  return { threadId, runId, toolCallId: await approvalRequested(runId) };
}

describe('every /v1 route', () => {
  it('answers 401 without a valid key, 400 for a malformed id and 404 for an unknown one, writing nothing', async () => {
    const threadId = uniqueId('known');
    const { runId } = (await submit(threadId, 'hello')).body;
    await runDone(stack, runId);
    for (const route of CONTRACT_ROUTES) {
      const path = fillPath(route.path, { threadId, runId });
      const body = route.body === undefined ? undefined : JSON.stringify(route.body);
      const headers = { ...(body ? json : {}), ...(route.accept ? { accept: route.accept } : {}) };
      await rejected('unauthorized', route.method, path, { body, headers, auth: false });
      await rejected('unauthorized', route.method, path, { body, headers: { ...headers, authorization: 'Bearer not-a-key' } });
      await rejected('unauthorized', route.method, path, { body, headers: { ...headers, authorization: `Basic ${stack.key}` } });
      if (!route.id) continue;
      for (const bad of ['bad%20id', 'semi;colon', 'x'.repeat(129), '%C3%A9t%C3%A9', 'a%2Fb']) {
        await rejected('invalid_request', route.method, fillPath(route.path, { [route.id]: bad }), { body, headers });
      }
      if (!route.creates) await rejected('not_found', route.method, fillPath(route.path, { [route.id]: uniqueId('nobody') }), { body, headers });
    }
  });

  it('take the Bearer scheme in any letter case (RFC 7235); the key itself is exact', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      const res = await rawRequest(stack.url, { method: 'GET', path: '/v1/threads', headers: { authorization: `${scheme} ${stack.key}` } });
      expect({ scheme, status: res.status }).toEqual({ scheme, status: 200 });
    }
    const threadId = uniqueId('lower-bearer');
    const res = await rawRequest(stack.url, {
      method: 'POST',
      path: `/v1/threads/${threadId}/runs`,
      headers: { authorization: `bearer ${stack.key}`, ...json },
      body: JSON.stringify({ messages: [{ content: 'hi' }] }),
    });
    expect(res.status).toBe(202);
    await runDone(stack, res.json.runId);
    await rejected('unauthorized', 'GET', '/v1/threads', { headers: { authorization: `bearer ${stack.key.toUpperCase()}` } });
  });

  it('accept an id of exactly 128 characters', async () => {
    const threadId = 'a'.repeat(120) + uniqueId('').slice(1, 9);
    expect(threadId).toHaveLength(128);
    const res = await submit(threadId, 'long id');
    expect(res.status).toBe(202);
    await runDone(stack, res.body.runId);
    expect((await stack.api('GET', `/v1/threads/${threadId}`)).body.threadId).toBe(threadId);
  });

  it('answer an unknown route or method with 404 not_found', async () => {
    await rejected('not_found', 'GET', '/v1/nothing-here');
    await rejected('not_found', 'DELETE', '/v1/threads/x');
    await rejected('not_found', 'PUT', '/v1/runs/x/cancel');
  });
});

describe('POST /v1/threads/{threadId}/runs', () => {
  it('accepts each mode: interrupt → running, queue → queued, steer → steered', async () => {
    const threadId = uniqueId('modes');
    const first = await submit(threadId, '/slow 30 /long 60 first', {}, { 'idempotency-key': uniqueId('idem') });
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ threadId, runId: expect.any(String), dispatchId: expect.any(String), status: 'running' });
    await eventually(async () => ((await stack.store.readEvents(first.body.runId)).some((e) => e.type === 'text_delta') ? true : undefined));
    const queued = await submit(threadId, 'second', { mode: 'queue', runId: uniqueId('chosen') });
    expect(queued.status).toBe(202);
    expect(queued.body).toMatchObject({ status: 'queued', runId: expect.stringMatching(/^chosen-/) });
    const steered = await submit(threadId, 'also this', { mode: 'steer', expectedRunId: first.body.runId });
    expect(steered.body).toMatchObject({ status: 'steered', runId: first.body.runId });
    await runDone(stack, queued.body.runId, 60_000);
  });

  it('with Accept: text/event-stream answers with the run as SSE', async () => {
    const threadId = uniqueId('sse');
    const sse = await openSse(`${stack.url}/v1/threads/${threadId}/runs`, {
      method: 'POST',
      headers: { ...json, ...stack.auth },
      body: JSON.stringify({ messages: [{ content: 'stream me' }] }),
    });
    expect(sse.status).toBe(200);
    await sse.done;
    expect(payloads(sse.frames).at(-1)).toMatchObject({ type: 'run_finish', threadId });
  });

  it('rejects malformed JSON, a wrong content type, unknown fields and out-of-range values with 400', async () => {
    const threadId = uniqueId('bad-submit');
    const path = `/v1/threads/${threadId}/runs`;
    const valid = { messages: [{ content: 'x' }] };
    const cases: [string, Record<string, string>][] = [
      ['{"messages": [', json],
      ['{"messages": [{"content": "x"}]} trailing', json],
      ['', json],
      ['null', json],
      ['[]', json],
      ['"a string"', json],
      ['{"__proto__": {"polluted": true}, "messages": [{"content": "x"}]}', json],
      [JSON.stringify(valid), { 'content-type': 'text/plain' }],
      [JSON.stringify(valid), { 'content-type': 'application/xml' }],
      [JSON.stringify(valid), { 'content-type': 'application/x-www-form-urlencoded' }],
      [JSON.stringify(valid), {}],
      [JSON.stringify({ ...valid, extra: 1 }), json],
      [JSON.stringify({ messages: [{ content: 'x', extra: 1 }] }), json],
      [JSON.stringify({ messages: [] }), json],
      [JSON.stringify({ messages: Array.from({ length: 101 }, () => ({ content: 'x' })) }), json],
      [JSON.stringify({ messages: [{ content: 'x'.repeat(256 * 1024 + 1) }] }), json],
      [JSON.stringify({ messages: [{ content: 7 }] }), json],
      [JSON.stringify({ messages: [{ content: 'x', role: 'assistant' }] }), json],
      [JSON.stringify({ messages: [{ content: 'x', id: 'bad id' }] }), json],
      [JSON.stringify({ ...valid, mode: 'sometimes' }), json],
      [JSON.stringify({ ...valid, agentId: 'no-such-agent' }), json],
      [JSON.stringify({ ...valid, agentId: 'bad agent' }), json],
      [JSON.stringify({ ...valid, runId: '' }), json],
      [JSON.stringify({ ...valid, expectedRunId: 'x'.repeat(129) }), json],
    ];
    for (const [body, headers] of cases) await rejected('invalid_request', 'POST', path, { body, headers });
    await rejected('invalid_request', 'POST', path, { body: JSON.stringify(valid), headers: { ...json, 'idempotency-key': 'not valid!' } });
    expect((await stack.api('GET', `/v1/threads/${threadId}`)).status).toBe(404);
  });

  it('accepts 100 messages of 256 KiB each only within the 1 MiB body limit: a larger body is 413 payload_too_large', async () => {
    const threadId = uniqueId('big');
    const path = `/v1/threads/${threadId}/runs`;
    const atLimit = { messages: [{ content: 'y'.repeat(256 * 1024) }, ...Array.from({ length: 99 }, () => ({ content: 'z' }))] };
    const ok = await stack.api('POST', path, atLimit);
    expect(ok.status).toBe(202);
    await runDone(stack, ok.body.runId);
    const over = JSON.stringify({ messages: Array.from({ length: 5 }, () => ({ content: 'w'.repeat(250 * 1024) })) });
    expect(over.length).toBeGreaterThan(1024 * 1024);
    await rejected('payload_too_large', 'POST', path, { body: over, headers: json });
  });

  it('refuses a runId that another thread already uses (409 conflict), leaving that run alone', async () => {
    const other = uniqueId('owner');
    const { runId } = (await submit(other, 'mine')).body;
    await runDone(stack, runId);
    await rejected('conflict', 'POST', `/v1/threads/${uniqueId('thief')}/runs`, { body: JSON.stringify({ messages: [{ content: 'x' }], runId }), headers: json });
    expect((await stack.api('GET', `/v1/runs/${runId}`)).body).toMatchObject({ threadId: other, termination: { type: 'natural_end' } });
  });

  it("takes one of the thread's own run ids again only as a retry of the same request", async () => {
    const threadId = uniqueId('retry');
    const key = { 'idempotency-key': uniqueId('idem') };
    const runId = uniqueId('client-run');
    const first = await submit(threadId, 'once', { runId }, key);
    expect(first.body).toMatchObject({ runId, status: 'running' });
    await runDone(stack, runId);
    const retried = await submit(threadId, 'once', { runId }, key);
    expect(retried).toEqual(first);
    // The same run id with another request is not a retry, with or without a key.
    await rejected('idempotency_conflict', 'POST', `/v1/threads/${threadId}/runs`, { body: JSON.stringify({ messages: [{ content: 'again' }], runId }), headers: json });
    await rejected('idempotency_conflict', 'POST', `/v1/threads/${threadId}/runs`, { body: JSON.stringify({ messages: [{ content: 'again' }], runId }), headers: { ...json, ...key } });
    expect((await stack.api('GET', `/v1/threads/${threadId}/runs`)).body.items).toHaveLength(1);
  });

  it('answers 409 active_run_conflict when the active run cannot settle within 5 s, and submits nothing', async () => {
    const threadId = uniqueId('conflict');
    const { runId } = (await submit(threadId, '/slow 50 /long 400 busy')).body;
    await eventually(async () => ((await stack.store.readEvents(runId)).some((e) => e.type === 'text_delta') ? true : undefined));
    // Holding the run's row lock stalls every write of the run, its ending included: it cannot settle.
    const blocker = await stack.store.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE', [runId]);
      const runsBefore = (await stack.api('GET', `/v1/threads/${threadId}/runs`)).body.items.length;
      const res = await submit(threadId, 'replace it');
      expect(res.status).toBe(409);
      expect(errorCode(res)).toBe('active_run_conflict');
      const { rows } = await stack.store.pool.query('SELECT count(*)::int AS n FROM runs WHERE tenant = $1 AND thread_id = $2', [stack.tenant, threadId]);
      expect(rows[0].n).toBe(runsBefore);
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    expect((await runDone(stack, runId)).termination?.type).toBe('interrupted');
    expect((await stack.api('GET', `/v1/threads/${threadId}/runs`)).body.items).toHaveLength(1);
  }, 30_000);
});

describe('POST /v1/runs (awaken-compatible)', () => {
  it('streams a foreground run on a new thread, or on the given one', async () => {
    const threadId = uniqueId('awaken');
    const sse = await openSse(`${stack.url}/v1/runs`, { method: 'POST', headers: { ...json, ...stack.auth }, body: JSON.stringify({ threadId, messages: [{ content: 'compat' }] }) });
    expect(sse.status).toBe(200);
    await sse.done;
    expect(payloads(sse.frames).at(-1)).toMatchObject({ type: 'run_finish', threadId });
  });

  it('rejects a body without messages, with unknown fields or a bad threadId, and an oversize one', async () => {
    await rejected('invalid_request', 'POST', '/v1/runs', { body: '{}', headers: json });
    await rejected('invalid_request', 'POST', '/v1/runs', { body: JSON.stringify({ messages: [{ content: 'x' }], mode: 'queue' }), headers: json });
    await rejected('invalid_request', 'POST', '/v1/runs', { body: JSON.stringify({ messages: [{ content: 'x' }], threadId: 'no spaces' }), headers: json });
    await rejected('invalid_request', 'POST', '/v1/runs', { body: '{"messages":', headers: json });
    await rejected('payload_too_large', 'POST', '/v1/runs', { body: JSON.stringify({ messages: [{ content: 'v'.repeat(1024 * 1024) }] }), headers: json });
  });
});

describe('POST /v1/threads/{threadId}/interrupt', () => {
  it('cancels the active run and supersedes the queue', async () => {
    const threadId = uniqueId('interrupt');
    const active = (await submit(threadId, '/slow 50 /long 200 long one')).body;
    const queued = (await submit(threadId, 'behind', { mode: 'queue' })).body;
    await runStatus(stack, active.runId, 'running');
    const res = await stack.api('POST', `/v1/threads/${threadId}/interrupt`);
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ threadId, cancelledRunId: active.runId, supersededRunIds: [queued.runId] });
    expect((await runDone(stack, active.runId)).termination?.type).toBe('interrupted');
    expect((await runDone(stack, queued.runId)).termination?.type).toBe('superseded');
  });

  it('takes an empty body whatever its content type (Swagger UI and generated clients send `application/json` with none)', async () => {
    for (const headers of [json, { 'content-type': 'text/plain' }, { 'content-type': 'application/xml' }, {}]) {
      const threadId = uniqueId('interrupt-empty');
      const active = (await submit(threadId, '/slow 50 /long 200 long one')).body;
      await runStatus(stack, active.runId, 'running');
      const res = await rawRequest(stack.url, { method: 'POST', path: `/v1/threads/${threadId}/interrupt`, headers: { ...stack.auth, ...headers }, body: '' });
      expect({ headers, status: res.status, body: res.json }).toEqual({ headers, status: 202, body: { threadId, cancelledRunId: active.runId, supersededRunIds: [] } });
      expect((await runDone(stack, active.runId)).termination?.type).toBe('interrupted');
    }
    const doc = (await (await fetch(`${stack.url}/openapi.json`)).json()) as any;
    expect(doc.paths['/v1/threads/{threadId}/interrupt'].post.requestBody.required).toBe(false);
  });

  it('refuses a body with fields', async () => {
    const threadId = uniqueId('interrupt-body');
    await runDone(stack, (await submit(threadId, 'hi')).body.runId);
    await rejected('invalid_request', 'POST', `/v1/threads/${threadId}/interrupt`, { body: '{"force":true}', headers: json });
  });
});

describe('POST /v1/runs/{runId}/cancel', () => {
  it('cancels an active run (202), then answers 409 run_not_active', async () => {
    const threadId = uniqueId('cancel');
    const { runId } = (await submit(threadId, '/slow 50 /long 200 cancel me')).body;
    await runStatus(stack, runId, 'running');
    const res = await stack.api('POST', `/v1/runs/${runId}/cancel`);
    expect(res).toEqual({ status: 202, body: { runId, status: 'cancel_requested' } });
    expect((await runDone(stack, runId)).termination?.type).toBe('cancelled');
    await rejected('run_not_active', 'POST', `/v1/runs/${runId}/cancel`);
    await rejected('invalid_request', 'POST', `/v1/runs/${runId}/cancel`, { body: '{"now":true}', headers: json });
  });

  it('takes an empty body whatever its content type, and still refuses a non-JSON one', async () => {
    for (const headers of [json, { 'content-type': 'application/x-www-form-urlencoded' }]) {
      const { runId } = (await submit(uniqueId('cancel-empty'), '/slow 50 /long 200 cancel me')).body;
      await runStatus(stack, runId, 'running');
      const res = await rawRequest(stack.url, { method: 'POST', path: `/v1/runs/${runId}/cancel`, headers: { ...stack.auth, ...headers }, body: '' });
      expect({ headers, status: res.status, body: res.json }).toEqual({ headers, status: 202, body: { runId, status: 'cancel_requested' } });
      expect((await runDone(stack, runId)).termination?.type).toBe('cancelled');
      await rejected('invalid_request', 'POST', `/v1/runs/${runId}/cancel`, { body: 'now=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    }
    const doc = (await (await fetch(`${stack.url}/openapi.json`)).json()) as any;
    expect(doc.paths['/v1/runs/{runId}/cancel'].post.requestBody.required).toBe(false);
  });
});

describe('POST /v1/runs/{runId}/decisions', () => {
  it('approves a pending tool call (202); a malformed decision is 400, one for an ended run 409 no_pending_approval', async () => {
    const { runId, toolCallId } = await waitingRun();
    const path = `/v1/runs/${runId}/decisions`;
    for (const body of [{ toolCallId, action: 'maybe' }, { action: 'approve' }, { toolCallId, action: 'approve', extra: true }, { toolCallId: 'bad id', action: 'deny' }, { toolCallId, action: 'deny', reason: 'r'.repeat(4097) }]) {
      await rejected('invalid_request', 'POST', path, { body: JSON.stringify(body), headers: json });
    }
    const res = await stack.api('POST', path, { toolCallId, action: 'approve' });
    expect(res).toEqual({ status: 202, body: { runId, toolCallId, duplicate: false } });
    expect((await runDone(stack, runId)).termination?.type).toBe('natural_end');
    await rejected('no_pending_approval', 'POST', path, { body: JSON.stringify({ toolCallId, action: 'deny' }), headers: json });
  });

  it('answers 409 no_pending_approval for a tool call the run does not wait on', async () => {
    const { runId, toolCallId } = await waitingRun();
    await rejected('no_pending_approval', 'POST', `/v1/runs/${runId}/decisions`, { body: JSON.stringify({ toolCallId: 'call_other', action: 'approve' }), headers: json });
    await stack.api('POST', `/v1/runs/${runId}/decisions`, { toolCallId, action: 'deny' });
    await runDone(stack, runId);
  });
});

describe('the mailbox', () => {
  it('POST delivers a durable message (201), a redelivery is 200 duplicate; GET lists the dispatches', async () => {
    const threadId = uniqueId('mail');
    const body = { messageId: uniqueId('msg'), text: 'from afar', senderAgentId: 'planner' };
    const first = await stack.api('POST', `/v1/threads/${threadId}/mailbox`, body);
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ threadId, runId: `durable-msg-${body.messageId}`, duplicate: false });
    await runDone(stack, first.body.runId);
    const again = await stack.api('POST', `/v1/threads/${threadId}/mailbox`, body);
    expect(again).toEqual({ status: 200, body: { ...first.body, duplicate: true } });
    const list = await stack.api('GET', `/v1/threads/${threadId}/mailbox`);
    expect(list.status).toBe(200);
    expect(list.body.items).toEqual([expect.objectContaining({ dispatchId: first.body.dispatchId, runId: first.body.runId, status: 'done', mode: 'queue' })]);
  });

  it('rejects a malformed durable message (400), and a messageId already delivered to another thread (409 conflict)', async () => {
    const threadId = uniqueId('mail-bad');
    const path = `/v1/threads/${threadId}/mailbox`;
    for (const body of [{ text: 'no id' }, { messageId: 'm', text: '' }, { messageId: 'm', text: 'x', extra: 1 }, { messageId: 'bad id', text: 'x' }, { messageId: 'm', text: 'x'.repeat(256 * 1024 + 1) }]) {
      await rejected('invalid_request', 'POST', path, { body: JSON.stringify(body), headers: json });
    }
    const messageId = uniqueId('once');
    const delivered = await stack.api('POST', `/v1/threads/${uniqueId('mail-first')}/mailbox`, { messageId, text: 'hi' });
    await runDone(stack, delivered.body.runId);
    await rejected('conflict', 'POST', path, { body: JSON.stringify({ messageId, text: 'hi' }), headers: json });
  });
});

describe('reads', () => {
  it('GET /v1/threads, /v1/threads/{id}, its messages (paged), its runs, and GET /v1/runs/{id}', async () => {
    const threadId = uniqueId('reads');
    const { runId } = (await submit(threadId, 'one two three')).body;
    await runDone(stack, runId);
    const list = await stack.api('GET', '/v1/threads');
    expect(list.status).toBe(200);
    expect(list.body.items.map((t: { threadId: string }) => t.threadId)).toContain(threadId);
    expect((await stack.api('GET', `/v1/threads/${threadId}`)).body).toMatchObject({ threadId, status: 'idle', version: 2, activeRunId: null, queuedRunIds: [], latestRunId: runId });
    const page1 = await stack.api('GET', `/v1/threads/${threadId}/messages?limit=1`);
    expect(page1.body.items.map((m: { seq: number; role: string }) => [m.seq, m.role])).toEqual([[1, 'user']]);
    expect(page1.body.nextCursor).toBe(1);
    const page2 = await stack.api('GET', `/v1/threads/${threadId}/messages?after=1&limit=10`);
    expect(page2.body).toMatchObject({ items: [{ seq: 2, role: 'assistant', content: 'Echo: one two three', runId }], nextCursor: null });
    const runs = await stack.api('GET', `/v1/threads/${threadId}/runs`);
    expect(runs.body.items).toEqual([expect.objectContaining({ runId, status: 'done', termination: { type: 'natural_end' } })]);
    expect((await stack.api('GET', `/v1/runs/${runId}`)).body).toMatchObject({ runId, threadId, status: 'done', steps: 1, usage: expect.any(Object) });
    for (const query of ['limit=0', 'limit=1001', 'after=-1', 'after=abc', 'limit=1.5', 'cursor=3', 'after=1&after=2']) {
      await rejected('invalid_request', 'GET', `/v1/threads/${threadId}/messages?${query}`);
    }
  });

  it('the event routes: a JSON page without the SSE Accept header; a bad cursor is 400', async () => {
    const threadId = uniqueId('events');
    const { runId } = (await submit(threadId, 'a b')).body;
    await runDone(stack, runId);
    const page = await stack.api('GET', `/v1/runs/${runId}/events?after=2&limit=2`);
    expect(page.body.items.map((e: { seq: number }) => e.seq)).toEqual([3, 4]);
    expect(page.body.nextCursor).toBe(4);
    const threadPage = await stack.api('GET', `/v1/threads/${threadId}/events?limit=1000`);
    expect(threadPage.body.items.at(-1)).toMatchObject({ type: 'run_finish', runId });
    for (const path of [`/v1/runs/${runId}/events`, `/v1/threads/${threadId}/events`]) {
      for (const accept of ['application/json', 'text/event-stream']) {
        await rejected('invalid_request', 'GET', path, { headers: { accept, 'last-event-id': 'abc' } });
        await rejected('invalid_request', 'GET', path, { headers: { accept, 'last-event-id': '-1' } });
        await rejected('invalid_request', 'GET', `${path}?after=x`, { headers: { accept } });
        await rejected('invalid_request', 'GET', `${path}?limit=5000`, { headers: { accept } });
        await rejected('invalid_request', 'GET', `${path}?since=1`, { headers: { accept } });
      }
    }
    const sse = await openSse(`${stack.url}/v1/runs/${runId}/events`, { headers: { ...stack.auth, 'last-event-id': '3' } });
    await sse.done;
    expect(eventFrames(sse.frames)[0]!.id).toBe('4');
  });
});

describe('operations', () => {
  it('GET /health is 200 with both dependencies up; /health/live is 200', async () => {
    expect(await stack.request('GET', '/health')).toEqual({ status: 200, body: { status: 'ok', postgres: 'ok', temporal: 'ok' } });
    expect(await stack.request('GET', '/health/live')).toEqual({ status: 200, body: { status: 'ok' } });
  });

  it('answers 503 unavailable when Temporal or Postgres is down (second instances pointed at a hung Temporal and no Postgres)', async () => {
    const config = loadConfig({ LOG_LEVEL: 'silent' });
    const deadPort = await freePort();
    // A Temporal that accepts connections and never answers, as a hung frontend does.
    const sockets: Socket[] = [];
    const blackHole = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
    const blackHolePort = (blackHole.address() as AddressInfo).port;
    const goodStore = new Store(createPool(inject('databaseUrl')));
    const deadStore = new Store(createPool(`postgres://postgres@127.0.0.1:${deadPort}/threadbox`));
    const deadTemporal = new Client({ connection: Connection.lazy({ address: `127.0.0.1:${blackHolePort}` }) });
    const agents = AgentRegistry.fromConfig(config);
    const apps = [];
    try {
      for (const store of [goodStore, deadStore]) {
        const service = new ThreadboxService(store, deadTemporal, agents, 'nowhere', new EventSubscriber(store, inject('databaseUrl')));
        const app = await buildApp({ service, apiKeys: new Map(), logLevel: 'silent' });
        await app.listen({ host: '127.0.0.1', port: 0 });
        apps.push(app);
      }
      const [temporalDown, bothDown] = apps.map((app) => `http://127.0.0.1:${(app.server.address() as { port: number }).port}`);
      const health = await rawRequest(temporalDown!, { method: 'GET', path: '/health' });
      expect(health.status).toBe(503);
      expect(health.json).toMatchObject({ status: 'unavailable', postgres: 'ok', temporal: expect.stringMatching(/^down: /), code: 'unavailable' });
      const both = await rawRequest(bothDown!, { method: 'GET', path: '/health' });
      expect(both.json).toMatchObject({ postgres: expect.stringMatching(/^down: /), temporal: expect.stringMatching(/^down: /), code: 'unavailable' });
      const read = await rawRequest(bothDown!, { method: 'GET', path: '/v1/threads' });
      expect(errorCode(read)).toBe('unavailable');
      expect((await rawRequest(bothDown!, { method: 'GET', path: '/health/live' })).status).toBe(200);
    } finally {
      for (const app of apps) await app.close();
      await goodStore.pool.end();
      await deadStore.pool.end();
      await deadTemporal.connection.close();
      for (const socket of sockets) socket.destroy();
      blackHole.close();
    }
  });

  it('GET /metrics: request histogram by route, runs by termination, active runs, queued dispatches, SSE connections, first event and token', async () => {
    const threadId = uniqueId('metrics');
    const sse = await openSse(`${stack.url}/v1/threads/${threadId}/runs`, { method: 'POST', headers: { ...json, ...stack.auth }, body: JSON.stringify({ messages: [{ content: EMAIL_TOOL }] }) });
    const runId = payloads(await sse.waitForEvents(1))[0].runId;
    await runStatus(stack, runId, 'waiting');
    const queued = (await submit(threadId, 'queued behind', { mode: 'queue' })).body;
    const open = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metricValue(open, 'threadbox_sse_connections')).toBeGreaterThanOrEqual(1);
    expect(metricValue(open, 'threadbox_runs_active', { status: 'waiting' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(open, 'threadbox_dispatches_queued')).toBeGreaterThanOrEqual(1);
    expect(metricValue(open, 'threadbox_submit_to_first_event_seconds_count')).toBeGreaterThanOrEqual(1);
    await stack.api('POST', `/v1/runs/${runId}/decisions`, { toolCallId: await approvalRequested(runId), action: 'approve' });
    await sse.done;
    await runDone(stack, queued.runId);
    const text = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metricValue(text, 'threadbox_http_request_duration_seconds_count', { method: 'POST', route: '/v1/threads/:threadId/runs', status_code: '202' })).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'threadbox_runs_finished', { termination: 'natural_end' })).toBeGreaterThanOrEqual(2);
    expect(metricValue(text, 'threadbox_runs_finished', { termination: 'max_steps' })).toBeGreaterThanOrEqual(0);
    expect(metricValue(text, 'threadbox_submit_to_first_token_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'threadbox_metrics_postgres_up')).toBe(1);
    expect(text).toContain('process_cpu_seconds_total');
  });

  it('GET /openapi.json validates and lists every route of the contract; /docs serves the UI', async () => {
    const doc = (await (await fetch(`${stack.url}/openapi.json`)).json()) as any;
    await SwaggerParser.validate(structuredClone(doc));
    const listed = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    const expected = [
      ...new Set(CONTRACT_ROUTES.map((r) => `${r.method} ${r.path}`)),
      'GET /health',
      'GET /health/live',
      'GET /metrics',
      'GET /openapi.json',
    ];
    for (const route of expected) expect(listed).toContain(route);
    const submitOp = doc.paths['/v1/threads/{threadId}/runs'].post;
    expect(Object.keys(submitOp.responses)).toEqual(expect.arrayContaining(['202', '400', '401', '409', '413', '429', '503']));
    const docs = await fetch(`${stack.url}/docs`);
    expect(docs.status).toBe(200);
    expect(docs.headers.get('content-type')).toContain('text/html');
    const html = await docs.text();
    expect(html).toContain('swagger-ui');
    // The docs page's own policy must let its scripts run: every one is a same-origin file that loads.
    const csp = docs.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('upgrade-insecure-requests');
    const scripts = [...html.matchAll(/<script([^>]*)>/g)].map((m) => /src="([^"]+)"/.exec(m[1]!)?.[1]);
    expect(scripts.length).toBeGreaterThan(0);
    for (const src of scripts) {
      expect(src).toBeDefined();
      expect((await fetch(new URL(src!, `${stack.url}/docs`))).status).toBe(200);
    }
    const spec = await fetch(`${stack.url}/docs/json`);
    expect(spec.status).toBe(200);
  });

  it('sets security headers on API answers', async () => {
    const res = await fetch(`${stack.url}/v1/threads`, { headers: stack.auth });
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none';frame-ancestors 'none'");
    expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });
});
