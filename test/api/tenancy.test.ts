// Auth and tenancy over real HTTP: a key sees only its tenant's threads, runs, messages and events;
// another tenant's id is a 404, never a 403 that would confirm it exists.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertSafeBind } from '../../src/server.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { openSse, payloads } from '../../testkit/sse.js';
import { eventually, startStack, uniqueId, type Stack } from '../stack.js';
import { EMAIL_TOOL, errorCode, rawRequest, rowCounts, runDone, runStatus } from './helpers.js';

// Tenant names of their own: the database is shared with the suite's other files.
const tenantA = `tenantA-${randomUUID().slice(0, 8)}`;
const tenantB = `tenantB-${randomUUID().slice(0, 8)}`;
const keyA = `keyA-${randomUUID()}`;
const keyB = `keyB-${randomUUID()}`;
const asA = { authorization: `Bearer ${keyA}` };
const asB = { authorization: `Bearer ${keyB}` };

let stack: Stack;
/** A's thread: one finished run, then one waiting for an approval. */
const a = { threadId: uniqueId('shared-name'), doneRunId: '', waitingRunId: '', toolCallId: '', dispatchIds: [] as string[] };

beforeAll(async () => {
  stack = await startStack({ env: { THREADBOX_API_KEYS: `${keyA}:${tenantA},${keyB}:${tenantB}` } });
  const done = await stack.request('POST', `/v1/threads/${a.threadId}/runs`, { messages: [{ content: 'secret of A' }] }, asA);
  a.doneRunId = done.body.runId;
  await runDone(stack, a.doneRunId);
  const waiting = await stack.request('POST', `/v1/threads/${a.threadId}/runs`, { messages: [{ content: EMAIL_TOOL }] }, asA);
  a.waitingRunId = waiting.body.runId;
  // The approval event, then the status: after both, a waiting run writes nothing until it is decided.
  const requested = await eventually(async () => (await stack.store.readEvents(a.waitingRunId)).find((e) => e.type === 'tool_approval_requested'));
  a.toolCallId = (requested as { toolCallId: string }).toolCallId;
  await runStatus(stack, a.waitingRunId, 'waiting');
});
afterAll(async () => {
  await stack?.stop();
});

const json = { 'content-type': 'application/json' };

describe('auth', () => {
  it('a missing, unknown or malformed key is 401 unauthorized on every /v1 route; operations routes need none', async () => {
    // (`bearer <key>` is a valid key: the scheme is case-insensitive, RFC 7235.)
    for (const authorization of [undefined, 'Bearer', 'Bearer ', `Bearer ${keyA}x`, `bearer ${keyA}x`, `Basic ${keyA}`, keyA, `Bearer ${tenantA}`]) {
      const res = await rawRequest(stack.url, { method: 'GET', path: '/v1/threads', headers: authorization === undefined ? {} : { authorization } });
      expect(errorCode(res)).toBe('unauthorized');
    }
    expect((await stack.request('GET', '/health')).status).toBe(200);
    expect((await fetch(`${stack.url}/metrics`)).status).toBe(200);
  });

  it('without keys the server refuses a non-loopback HOST, saying why', () => {
    expect(() => assertSafeBind(loadConfig({ HOST: '0.0.0.0' }))).toThrow(ConfigError);
    expect(() => assertSafeBind(loadConfig({ HOST: '0.0.0.0' }))).toThrow(/THREADBOX_API_KEYS/);
    expect(() => assertSafeBind(loadConfig({ HOST: '0.0.0.0', THREADBOX_API_KEYS: 'k:t' }))).not.toThrow();
    expect(() => assertSafeBind(loadConfig({ HOST: '127.0.0.1' }))).not.toThrow();
  });
});

describe("tenant B and tenant A's thread and runs", () => {
  it('B cannot read, stream, cancel, decide or interrupt anything of A: 404 each time, and nothing of A changes', async () => {
    const before = await rowCounts(stack.store.pool, tenantA);
    const thread = `/v1/threads/${a.threadId}`;
    const attempts: [string, string, unknown?, Record<string, string>?][] = [
      ['GET', thread],
      ['GET', `${thread}/messages`],
      ['GET', `${thread}/runs`],
      ['GET', `${thread}/mailbox`],
      ['GET', `${thread}/events`],
      ['GET', `${thread}/events`, undefined, { accept: 'text/event-stream' }],
      ['POST', `${thread}/interrupt`],
      ['GET', `/v1/runs/${a.doneRunId}`],
      ['GET', `/v1/runs/${a.waitingRunId}`],
      ['GET', `/v1/runs/${a.doneRunId}/events`],
      ['GET', `/v1/runs/${a.waitingRunId}/events`, undefined, { accept: 'text/event-stream' }],
      ['GET', `/v1/runs/${a.waitingRunId}/events?after=1`, undefined, { accept: 'text/event-stream', 'last-event-id': '2' }],
      ['POST', `/v1/runs/${a.waitingRunId}/cancel`],
      ['POST', `/v1/runs/${a.doneRunId}/cancel`],
      ['POST', `/v1/runs/${a.waitingRunId}/decisions`, { toolCallId: a.toolCallId, action: 'approve' }],
    ];
    for (const [method, path, body, headers] of attempts) {
      const res = await rawRequest(stack.url, {
        method,
        path,
        headers: { ...asB, ...headers, ...(body ? json : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      expect({ method, path, code: res.json?.code }).toEqual({ method, path, code: 'not_found' });
      expect(errorCode(res)).toBe('not_found');
      // The answer is the one an id that exists nowhere gets: it confirms nothing.
      expect(res.json.error).not.toMatch(new RegExp(tenantA));
    }
    expect(await rowCounts(stack.store.pool, tenantA)).toEqual(before);
    expect((await stack.store.getRun(a.waitingRunId))?.status).toBe('waiting');
  });

  it("B submitting to the same threadId creates B's own thread, which never sees A's messages or events", async () => {
    const aBefore = await stack.request('GET', `/v1/threads/${a.threadId}`, undefined, asA);
    const sse = await openSse(`${stack.url}/v1/threads/${a.threadId}/runs`, { method: 'POST', headers: { ...asB, ...json }, body: JSON.stringify({ messages: [{ content: 'from B' }] }) });
    expect(sse.status).toBe(200);
    await sse.done;
    const streamed = payloads(sse.frames);
    expect(streamed.at(-1)).toMatchObject({ type: 'run_finish', threadId: a.threadId });
    const mailbox = await stack.request('POST', `/v1/threads/${a.threadId}/mailbox`, { messageId: uniqueId('b-msg'), text: 'B mail' }, asB);
    expect(mailbox.status).toBe(201);
    await runDone(stack, mailbox.body.runId);

    const bMessages = await stack.request('GET', `/v1/threads/${a.threadId}/messages`, undefined, asB);
    expect(bMessages.body.items.map((m: { content: string }) => m.content)).toEqual(['from B', 'Echo: from B', 'B mail', 'Echo: B mail']);
    const bRuns = (await stack.request('GET', `/v1/threads/${a.threadId}/runs`, undefined, asB)).body.items.map((r: { runId: string }) => r.runId);
    expect(bRuns).not.toContain(a.doneRunId);
    expect(bRuns).not.toContain(a.waitingRunId);
    const bEvents = (await stack.request('GET', `/v1/threads/${a.threadId}/events?limit=1000`, undefined, asB)).body.items;
    expect(new Set(bEvents.map((e: { runId: string }) => e.runId))).toEqual(new Set(bRuns));
    const bDispatches = (await stack.request('GET', `/v1/threads/${a.threadId}/mailbox`, undefined, asB)).body.items;
    expect(bDispatches.map((d: { runId: string }) => d.runId).sort()).toEqual([...bRuns].sort());

    // A's thread is as it was: same version, its run still waiting, no message of B.
    const aAfter = await stack.request('GET', `/v1/threads/${a.threadId}`, undefined, asA);
    expect(aAfter.body).toEqual(aBefore.body);
    const aMessages = (await stack.request('GET', `/v1/threads/${a.threadId}/messages`, undefined, asA)).body.items.map((m: { content: string }) => m.content);
    expect(aMessages).not.toContain('from B');
    expect(aMessages).toContain('secret of A');
  });

  it("B using A's run id or durable message id gets runs of its own: A's stay untouched, and B learns nothing of them", async () => {
    const before = await rowCounts(stack.store.pool, tenantA);
    const aMail = await stack.request('POST', `/v1/threads/${a.threadId}/mailbox`, { messageId: uniqueId('a-msg'), text: 'A mail' }, asA);
    await eventually(async () => ((await stack.store.getRun(aMail.body.runId, tenantA))?.status === 'queued' ? true : undefined));
    const messageId = aMail.body.runId.replace(/^durable-msg-/, '');
    const beforeMail = await rowCounts(stack.store.pool, tenantA);
    const takeMail = await stack.request('POST', `/v1/threads/${a.threadId}/mailbox`, { messageId, text: 'B pretends' }, asB);
    expect(takeMail.status).toBe(201);
    expect(takeMail.body.duplicate).toBe(false);
    expect(JSON.stringify(takeMail.body)).not.toContain(aMail.body.dispatchId);
    const takeRun = await stack.request('POST', `/v1/threads/${a.threadId}/runs`, { messages: [{ content: 'x' }], mode: 'queue', runId: a.doneRunId }, asB);
    expect(takeRun.status).toBe(202);
    expect(takeRun.body.runId).toBe(a.doneRunId);
    expect(await rowCounts(stack.store.pool, tenantA)).toEqual(beforeMail);
    expect(beforeMail.runs).toBe(before.runs + 1);
    expect((await stack.store.getRun(a.doneRunId, tenantB))?.threadId).toBe(a.threadId);
    expect((await stack.request('GET', `/v1/runs/${a.doneRunId}`, undefined, asA)).body).toMatchObject({ threadId: a.threadId, termination: { type: 'natural_end' } });
  });

  it('lists show each tenant only its own threads', async () => {
    const onlyB = uniqueId('only-b');
    await runDone(stack, (await stack.request('POST', `/v1/threads/${onlyB}/runs`, { messages: [{ content: 'b' }] }, asB)).body.runId);
    const listA = (await stack.request('GET', '/v1/threads', undefined, asA)).body.items;
    const listB = (await stack.request('GET', '/v1/threads', undefined, asB)).body.items;
    expect(listA.map((t: { threadId: string }) => t.threadId)).toEqual([a.threadId]);
    expect(listB.map((t: { threadId: string }) => t.threadId).sort()).toEqual([a.threadId, onlyB].sort());
    const bShared = listB.find((t: { threadId: string }) => t.threadId === a.threadId);
    const aShared = listA[0];
    expect(bShared.latestRunId).not.toBe(aShared.latestRunId);
  });

  it("A still decides its own run after all of B's attempts", async () => {
    const res = await stack.request('POST', `/v1/runs/${a.waitingRunId}/decisions`, { toolCallId: a.toolCallId, action: 'deny' }, asA);
    expect(res.status).toBe(202);
    expect((await runDone(stack, a.waitingRunId)).termination?.type).toBe('natural_end');
  });
});
