// Input Postgres cannot keep (a NUL character, an unpaired UTF-16 surrogate, bytes that are not UTF-8)
// is refused at the edge with 400 invalid_request naming the field: nothing is written, and the thread
// it was aimed at goes on working. Before, one such message wedged its thread for good.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, uniqueId } from '../stack.js';
import { EMAIL_TOOL, errorCode, rawRequest, rowCounts, runDone, runStatus, startTenantStack, type TenantStack } from './helpers.js';

let stack: TenantStack;
beforeAll(async () => {
  stack = await startTenantStack();
});
afterAll(async () => {
  await stack?.stop();
});

const json = { 'content-type': 'application/json' };
const NUL = 'a\u0000b';
const LONE_HIGH = 'a\ud800b';
const LONE_LOW = '\udc00';

/** A request that must be answered 400 invalid_request with `error` containing `says`, writing nothing, within 10 s. */
async function refused(method: string, path: string, says: string, opts: { body?: string | Buffer; headers?: Record<string, string> } = {}) {
  const before = await rowCounts(stack.store.pool, stack.tenant);
  const res = await rawRequest(stack.url, { method, path, body: opts.body, headers: { ...stack.auth, ...(opts.body !== undefined ? json : {}), ...opts.headers }, timeoutMs: 10_000 });
  expect({ path, status: res.status, error: res.json?.error }).toEqual({ path, status: 400, error: expect.stringContaining(says) });
  expect(errorCode(res)).toBe('invalid_request');
  expect(await rowCounts(stack.store.pool, stack.tenant)).toEqual(before);
}

/** The thread still takes input: "hello" runs to its natural end with the echo committed. */
async function stillWorks(threadId: string) {
  const res = await stack.api('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: 'hello' }] });
  expect(res.status).toBe(202);
  expect((await runDone(stack, res.body.runId)).termination?.type).toBe('natural_end');
  const messages = (await stack.api('GET', `/v1/threads/${threadId}/messages`)).body.items.map((m: { content: string }) => m.content);
  expect(messages.slice(-2)).toEqual(['hello', 'Echo: hello']);
}

/** `prefix` + bytes + `suffix` as one body: bytes a JSON string cannot carry. */
const rawBody = (prefix: string, bytes: number[], suffix: string) => Buffer.concat([Buffer.from(prefix), Buffer.from(bytes), Buffer.from(suffix)]);

describe('strings the store cannot keep', () => {
  it('a submit with NUL or an unpaired surrogate in any string field is 400 naming the field; the thread then runs normally', async () => {
    const threadId = uniqueId('poison');
    const runs = `/v1/threads/${threadId}/runs`;
    const message = { content: 'x' };
    for (const [bad, says] of [
      [NUL, 'contains a NUL character'],
      [LONE_HIGH, 'contains an unpaired UTF-16 surrogate'],
      [LONE_LOW, 'contains an unpaired UTF-16 surrogate'],
    ] as const) {
      await refused('POST', runs, `messages.0.content ${says}`, { body: JSON.stringify({ messages: [{ content: bad }] }) });
      await refused('POST', runs, `messages.1.content ${says}`, { body: JSON.stringify({ messages: [message, { content: `tail ${bad}` }] }) });
      await refused('POST', runs, `messages.0.id ${says}`, { body: JSON.stringify({ messages: [{ ...message, id: bad }] }) });
      for (const field of ['agentId', 'runId', 'expectedRunId']) {
        await refused('POST', runs, `${field} ${says}`, { body: JSON.stringify({ messages: [message], mode: field === 'expectedRunId' ? 'steer' : 'queue', [field]: bad }) });
      }
      await refused('POST', '/v1/runs', `messages.0.content ${says}`, { body: JSON.stringify({ threadId, messages: [{ content: bad }] }) });
      await refused('POST', '/v1/runs', `threadId ${says}`, { body: JSON.stringify({ threadId: bad, messages: [message] }) });
    }
    // Raw bytes that are not UTF-8: an over-long NUL, an encoded surrogate, a stray continuation byte.
    for (const bytes of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0x80], [0xff]]) {
      await refused('POST', runs, 'the body is not valid UTF-8', { body: rawBody('{"messages":[{"content":"a', bytes, 'b"}]}') });
    }
    await refused('POST', `/v1/threads/a%00b/runs`, 'threadId contains a NUL character', { body: JSON.stringify({ messages: [message] }) });
    await refused('POST', runs, 'header idempotency-key', { body: JSON.stringify({ messages: [message] }), headers: { 'idempotency-key': Buffer.from([0xc0, 0x80]).toString('latin1') } });
    expect((await stack.api('GET', `/v1/threads/${threadId}`)).status).toBe(404);
    await stillWorks(threadId);
  });

  it('a well-formed surrogate pair (an emoji) is stored as sent', async () => {
    const threadId = uniqueId('emoji');
    const res = await stack.api('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: 'ok 😀 \ud83d\ude00' }] });
    expect(res.status).toBe(202);
    await runDone(stack, res.body.runId);
    expect((await stack.api('GET', `/v1/threads/${threadId}/messages`)).body.items[0].content).toBe('ok 😀 😀');
  });

  it('a durable mailbox message with NUL or a lone surrogate in text, messageId, senderAgentId or agentId is 400 naming the field', async () => {
    const threadId = uniqueId('poison-mail');
    const path = `/v1/threads/${threadId}/mailbox`;
    const valid = { messageId: uniqueId('m'), text: 'hi' };
    for (const [bad, says] of [
      [NUL, 'contains a NUL character'],
      [LONE_HIGH, 'contains an unpaired UTF-16 surrogate'],
    ] as const) {
      for (const field of ['text', 'messageId', 'senderAgentId', 'agentId']) {
        await refused('POST', path, `${field} ${says}`, { body: JSON.stringify({ ...valid, [field]: bad }) });
      }
    }
    await refused('POST', path, 'the body is not valid UTF-8', { body: rawBody(`{"messageId":"${valid.messageId}","text":"`, [0xed, 0xb0, 0x80], '"}') });
    expect((await stack.api('GET', `/v1/threads/${threadId}`)).status).toBe(404);
    const delivered = await stack.api('POST', path, valid);
    expect(delivered.status).toBe(201);
    expect((await runDone(stack, delivered.body.runId)).termination?.type).toBe('natural_end');
    await stillWorks(threadId);
  });

  it('a decision whose reason has NUL or a lone surrogate is 400; the run keeps waiting, and a clean decision finishes it', async () => {
    const threadId = uniqueId('poison-decision');
    const { runId } = (await stack.api('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: EMAIL_TOOL }] })).body;
    const requested = await eventually(async () => (await stack.store.readEvents(runId)).find((e) => e.type === 'tool_approval_requested'));
    const toolCallId = (requested as { toolCallId: string }).toolCallId;
    await runStatus(stack, runId, 'waiting');
    const path = `/v1/runs/${runId}/decisions`;
    await refused('POST', path, 'reason contains a NUL character', { body: JSON.stringify({ toolCallId, action: 'deny', reason: `x${NUL}` }) });
    await refused('POST', path, 'reason contains an unpaired UTF-16 surrogate', { body: JSON.stringify({ toolCallId, action: 'deny', reason: LONE_HIGH }) });
    await refused('POST', path, 'toolCallId contains a NUL character', { body: JSON.stringify({ toolCallId: NUL, action: 'approve' }) });
    await refused('POST', path, 'the body is not valid UTF-8', { body: rawBody(`{"toolCallId":"${toolCallId}","action":"deny","reason":"`, [0xc0, 0x80], '"}') });
    expect((await stack.store.getRun(runId))?.status).toBe('waiting');
    const decided = await stack.api('POST', path, { toolCallId, action: 'deny', reason: 'not now' });
    expect(decided.status).toBe(202);
    expect((await runDone(stack, runId)).termination?.type).toBe('natural_end');
    await stillWorks(threadId);
  });

  it('query strings and path ids with NUL or an encoded surrogate are 400 naming the parameter', async () => {
    const threadId = uniqueId('poison-query');
    await stillWorks(threadId);
    await refused('GET', `/v1/threads/${threadId}/messages?after=%00`, 'query after contains a NUL character');
    await refused('GET', `/v1/threads/${threadId}/messages?limit=1%00`, 'query limit contains a NUL character');
    await refused('GET', `/v1/threads/${threadId}/events?after=%ED%A0%80`, 'query after');
    await refused('GET', `/v1/threads/${threadId}/messages?after=0&x%00=1`, 'query');
    await refused('GET', `/v1/threads/a%00/messages`, 'threadId contains a NUL character');
    await refused('POST', `/v1/runs/r%00/cancel`, 'runId contains a NUL character');
    await refused('POST', `/v1/threads/t%00/interrupt`, 'threadId contains a NUL character');
  });
});
