// Client-chosen ids (runId, durable messageId, Idempotency-Key) are scoped to the tenant and unique by
// constraint: two concurrent claims give exactly one winner and one 409, the loser writes nothing, and
// another tenant's ids are invisible.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startStack, uniqueId, type Stack } from '../stack.js';
import { rowCounts, runDone } from './helpers.js';

const tenantA = `idsA-${randomUUID().slice(0, 8)}`;
const tenantB = `idsB-${randomUUID().slice(0, 8)}`;
const keyA = `keyA-${randomUUID()}`;
const keyB = `keyB-${randomUUID()}`;
const asA = { authorization: `Bearer ${keyA}` };
const asB = { authorization: `Bearer ${keyB}` };

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ env: { THREADBOX_API_KEYS: `${keyA}:${tenantA},${keyB}:${tenantB}` } });
});
afterAll(async () => {
  await stack?.stop();
});

const submit = (as: Record<string, string>, threadId: string, content: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content }], ...extra }, { ...as, ...headers });
const deliver = (as: Record<string, string>, threadId: string, messageId: string, text: string) =>
  stack.request('POST', `/v1/threads/${threadId}/mailbox`, { messageId, text }, as);
const doneFor = (tenant: string, runId: string) =>
  eventually(async () => {
    const run = await stack.store.getRun(runId, tenant);
    return run?.status === 'done' ? run : undefined;
  }, 30_000, `run ${runId} of ${tenant} to end`);
const userMessages = async (tenant: string, threadId: string) =>
  (await stack.store.loadCommittedMessages({ tenant, threadId })).filter((m) => m.role === 'user').map((m) => m.content);

describe('run ids', () => {
  it('one runId claimed by two threads at once: exactly one 202 and one 409 conflict, and the loser wrote nothing', async () => {
    for (let round = 0; round < 5; round++) {
      const runId = uniqueId('contested');
      const [t1, t2] = [uniqueId('claim-1'), uniqueId('claim-2')];
      const answers = await Promise.all([submit(asA, t1, 'from one', { runId }), submit(asA, t2, 'from two', { runId })]);
      expect(answers.map((a) => a.status).sort()).toEqual([202, 409]);
      const loser = answers.findIndex((a) => a.status === 409);
      expect(answers[loser]!.body.code).toBe('conflict');
      const [winnerThread, loserThread] = loser === 1 ? [t1, t2] : [t2, t1];
      expect((await runDone(stack, runId)).termination?.type).toBe('natural_end');
      expect((await stack.request('GET', `/v1/runs/${runId}`, undefined, asA)).body.threadId).toBe(winnerThread);
      expect(await userMessages(tenantA, winnerThread)).toEqual([loser === 1 ? 'from one' : 'from two']);
      expect(await userMessages(tenantA, loserThread)).toEqual([]);
      expect((await stack.request('GET', `/v1/threads/${loserThread}/runs`, undefined, asA)).status).toBe(404);
    }
  }, 120_000);

  it('two tenants may use the same runId at the same time; each sees only its own run', async () => {
    const runId = uniqueId('shared-id');
    const threadId = uniqueId('same-thread-name');
    const [a, b] = await Promise.all([submit(asA, threadId, 'A says', { runId }), submit(asB, threadId, 'B says', { runId })]);
    expect([a.status, b.status]).toEqual([202, 202]);
    await doneFor(tenantA, runId);
    await doneFor(tenantB, runId);
    expect(await userMessages(tenantA, threadId)).toEqual(['A says']);
    expect(await userMessages(tenantB, threadId)).toEqual(['B says']);
    const seenByA = await stack.request('GET', `/v1/runs/${runId}/events`, undefined, asA);
    const seenByB = await stack.request('GET', `/v1/runs/${runId}/events`, undefined, asB);
    const text = (page: { items: { type: string; delta?: string }[] }) => page.items.filter((e) => e.type === 'text_delta').map((e) => e.delta).join('');
    expect(text(seenByA.body)).toBe('Echo: A says');
    expect(text(seenByB.body)).toBe('Echo: B says');
  }, 60_000);
});

describe('durable message ids', () => {
  it("are the tenant's own: B using invoice-1 first neither blocks A nor learns that A used it", async () => {
    const messageId = uniqueId('invoice');
    const byB = await deliver(asB, uniqueId('b-inbox'), messageId, 'B pays');
    expect(byB.status).toBe(201);
    const aInbox = uniqueId('a-inbox');
    const byA = await deliver(asA, aInbox, messageId, 'A pays');
    expect(byA.status).toBe(201);
    expect(byA.body).toMatchObject({ runId: `durable-msg-${messageId}`, duplicate: false });
    await doneFor(tenantA, byA.body.runId);
    expect(await userMessages(tenantA, aInbox)).toEqual(['A pays']);
  }, 60_000);

  it('a redelivery with the same text is 200 duplicate; with another text 409 idempotency_conflict, writing nothing', async () => {
    const messageId = uniqueId('once');
    const threadId = uniqueId('inbox');
    const first = await deliver(asA, threadId, messageId, 'the text');
    expect(first.status).toBe(201);
    await doneFor(tenantA, first.body.runId);
    expect(await deliver(asA, threadId, messageId, 'the text')).toEqual({ status: 200, body: { ...first.body, duplicate: true } });
    const before = await rowCounts(stack.store.pool, tenantA);
    const changed = await deliver(asA, threadId, messageId, 'another text');
    expect(changed.status).toBe(409);
    expect(changed.body.code).toBe('idempotency_conflict');
    expect(await rowCounts(stack.store.pool, tenantA)).toEqual(before);
    expect(await userMessages(tenantA, threadId)).toEqual(['the text']);
  }, 60_000);

  it('one messageId delivered to two threads at once: one 201 and one 409 conflict', async () => {
    const messageId = uniqueId('race');
    const answers = await Promise.all([deliver(asA, uniqueId('inbox-1'), messageId, 'hi'), deliver(asA, uniqueId('inbox-2'), messageId, 'hi')]);
    expect(answers.map((a) => a.status).sort()).toEqual([201, 409]);
    expect(answers.find((a) => a.status === 409)!.body.code).toBe('conflict');
  }, 60_000);
});

describe('Idempotency-Key', () => {
  it('a replay with the same request gets the first answer; with another request 409 idempotency_conflict, writing nothing', async () => {
    const threadId = uniqueId('idem');
    const key = { 'idempotency-key': uniqueId('key') };
    const first = await submit(asA, threadId, 'pay 10', {}, key);
    expect(first.status).toBe(202);
    await doneFor(tenantA, first.body.runId);
    expect(await submit(asA, threadId, 'pay 10', {}, key)).toEqual(first);
    const before = await rowCounts(stack.store.pool, tenantA);
    const other = await submit(asA, threadId, 'pay 1000', {}, key);
    expect(other.status).toBe(409);
    expect(other.body.code).toBe('idempotency_conflict');
    expect(await rowCounts(stack.store.pool, tenantA)).toEqual(before);
    // Keys are per tenant: B may use the same key for its own request.
    expect((await submit(asB, threadId, 'pay 1000', {}, key)).status).toBe(202);
  }, 60_000);
});

describe('message ids', () => {
  it('a submit naming one message id twice is 400; one naming a message the thread already has is 409 conflict; neither writes', async () => {
    const threadId = uniqueId('msg-ids');
    const first = await submit(asA, threadId, 'one', { messages: [{ id: 'm-1', content: 'one' }] });
    expect(first.status).toBe(202);
    await doneFor(tenantA, first.body.runId);
    const before = await rowCounts(stack.store.pool, tenantA);
    const twice = await submit(asA, threadId, 'x', { messages: [{ id: 'm-2', content: 'a' }, { id: 'm-2', content: 'b' }] });
    expect([twice.status, twice.body.code]).toEqual([400, 'invalid_request']);
    const reused = await submit(asA, threadId, 'x', { mode: 'queue', messages: [{ id: 'm-1', content: 'another one' }] });
    expect([reused.status, reused.body.code]).toEqual([409, 'conflict']);
    expect(await rowCounts(stack.store.pool, tenantA)).toEqual(before);
    const next = await submit(asA, threadId, 'two', { messages: [{ id: 'm-2', content: 'two' }] });
    expect((await doneFor(tenantA, next.body.runId)).termination?.type).toBe('natural_end');
    expect(await userMessages(tenantA, threadId)).toEqual(['one', 'two']);
  }, 60_000);
});

describe('POST /v1/runs without a threadId', () => {
  it('a retry with the same Idempotency-Key reaches the first thread and run, not a new one', async () => {
    const key = { 'idempotency-key': uniqueId('awaken') };
    const stream = async () => {
      const res = await fetch(`${stack.url}/v1/runs`, { method: 'POST', headers: { ...asA, ...key, 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ content: 'hello' }] }) });
      expect(res.status).toBe(200);
      const text = await res.text();
      return { runId: /"runId":"([^"]+)"/.exec(text)![1], threadId: /"threadId":"([^"]+)"/.exec(text)![1], text };
    };
    const first = await stream();
    const again = await stream();
    expect(again.runId).toBe(first.runId);
    expect(again.threadId).toBe(first.threadId);
    expect(first.text).toContain('Echo: hello'.split(' ')[0]);
    expect(await userMessages(tenantA, first.threadId!)).toEqual(['hello']);
  }, 60_000);
});

