// useChat's own code (AbstractChat with DefaultChatTransport from `ai`) against the running API: send, stream,
// approvals, regenerate, resume after a cut connection, 204 when idle; every chunk valid by the AI SDK's schema.
import type { DynamicToolUIPart, UIMessage } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowCounts, startTenantStack, type TenantStack } from '../api/helpers.js';
import { uniqueId } from '../stack.js';
import { invalidChunks, NodeChat, textOf, until } from './node-chat.js';

let stack: TenantStack;
const OTHER_KEY = uniqueId('other-key');
beforeAll(async () => {
  stack = await startTenantStack({ extraKeys: `${OTHER_KEY}:${uniqueId('other')}` });
});
afterAll(() => stack?.stop());

const chatOn = (threadId: string, messages?: UIMessage[], body?: Record<string, unknown>) => new NodeChat({ url: stack.url, threadId, headers: stack.auth, messages, body });
const toolPart = (message: UIMessage) => message.parts.find((p): p is DynamicToolUIPart => p.type === 'dynamic-tool');
/** The text of the chat's last assistant message so far ('' before it has one). */
const answerOf = (chat: NodeChat) => (chat.last.role === 'assistant' ? textOf(chat.last) : '');
const SEND_EMAIL = '/tool send_email {"to":"a@example.com","subject":"hi","body":"b"}';

describe('POST /v1/chat with useChat', () => {
  it('streams the echo into an assistant message whose id is the run id, and a retried POST commits nothing twice', async () => {
    const threadId = uniqueId('chat');
    const chat = chatOn(threadId);
    await chat.sendMessage({ text: 'hello there' });
    const [question, answer] = chat.messages;
    expect(chat.status).toBe('ready');
    expect(answer!.role).toBe('assistant');
    expect(textOf(answer!)).toBe('Echo: hello there');
    expect(answer!.id).toBe(`run-${question!.id}`);
    expect(answer!.metadata).toMatchObject({ runId: answer!.id, threadId, status: 'done', termination: { type: 'natural_end' } });
    const types = chat.recorder.chunks.map((c) => c.type);
    expect(types[0]).toBe('start');
    expect(types).toEqual(expect.arrayContaining(['start-step', 'text-start', 'text-delta', 'text-end', 'finish-step', 'finish']));
    expect(await invalidChunks(chat.recorder.chunks)).toEqual([]);

    // The same POST again (a client retry): the same run answers, the log holds the question once.
    const again = await chat.recorder.sendMessages({ chatId: threadId, messages: [question!], trigger: 'submit-message', messageId: undefined, abortSignal: undefined });
    const chunks = [];
    for await (const chunk of again as unknown as AsyncIterable<{ type: string; messageId?: string }>) chunks.push(chunk);
    expect(chunks[0]).toMatchObject({ type: 'start', messageId: answer!.id });
    const log = await stack.api('GET', `/v1/threads/${threadId}/messages`);
    expect(log.body.items.map((m: { id: string; role: string }) => m.role)).toEqual(['user', 'assistant']);
    expect(log.body.items[0].id).toBe(question!.id);
  });

  it('a tool that needs approval pauses the stream; approving posts the response and streams the tool result and the answer', async () => {
    const threadId = uniqueId('chat');
    const chat = chatOn(threadId);
    await chat.sendMessage({ text: SEND_EMAIL });
    const waiting = toolPart(chat.last)!;
    expect(waiting).toMatchObject({ toolName: 'send_email', state: 'approval-requested' });
    expect(chat.last.metadata).toMatchObject({ status: 'waiting' });
    expect(chat.status).toBe('ready');
    await chat.addToolApprovalResponse({ id: waiting.approval!.id, approved: true });
    await until(() => expect((chat.last.metadata as { status?: string }).status).toBe('done'), 20_000);
    await until(() => expect(chat.status).toBe('ready'));
    expect(chat.messages).toHaveLength(2);
    expect(toolPart(chat.last)).toMatchObject({ state: 'output-available', output: expect.objectContaining({ sent: true }) });
    expect(textOf(chat.last)).toContain('sent');
    expect(await invalidChunks(chat.recorder.chunks)).toEqual([]);
    const run = await stack.api('GET', `/v1/runs/${chat.last.id}`);
    expect(run.body.termination.type).toBe('natural_end');
  });

  it('approval responses are all or nothing: one for a call the run is not waiting on refuses the request, deciding nothing', async () => {
    const threadId = uniqueId('chat');
    const chat = chatOn(threadId);
    await chat.sendMessage({ text: SEND_EMAIL });
    const waiting = toolPart(chat.last)!;
    const responded = { ...waiting, state: 'approval-responded', approval: { id: waiting.toolCallId, approved: true } };
    const stray = { ...responded, toolCallId: 'no-such-call' };
    const answered = { ...chat.last, parts: [...chat.last.parts.map((p) => (p === waiting ? responded : p)), stray] };
    const refused = await stack.api('POST', '/v1/chat', { id: threadId, trigger: 'submit-message', messages: [chat.messages[0], answered] });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'no_pending_approval', error: expect.stringContaining('no-such-call') });
    const run = await stack.api('GET', `/v1/runs/${chat.last.id}`);
    expect(run.body.status).toBe('waiting');
    const events = await stack.api('GET', `/v1/runs/${chat.last.id}/events`);
    expect(events.body.items.map((e: { type: string }) => e.type)).not.toContain('tool_call_done');
  });

  it('denying gives the tool a denied result and the run goes on', async () => {
    const threadId = uniqueId('chat');
    const chat = chatOn(threadId);
    await chat.sendMessage({ text: SEND_EMAIL });
    const waiting = toolPart(chat.last)!;
    await chat.addToolApprovalResponse({ id: waiting.approval!.id, approved: false, reason: 'not now' });
    await until(() => expect((chat.last.metadata as { status?: string }).status).toBe('done'), 20_000);
    expect(toolPart(chat.last)).toMatchObject({ state: 'output-denied' });
    const log = await stack.api('GET', `/v1/threads/${threadId}/messages`);
    const tool = log.body.items.find((m: { role: string }) => m.role === 'tool');
    expect(tool.metadata.outcome).toBe('denied');
    expect(tool.content).toContain('not now');
  });

  it('regenerate answers the last user message again as a new run; the history then shows only the new answer', async () => {
    const threadId = uniqueId('chat');
    const chat = chatOn(threadId);
    await chat.sendMessage({ text: 'say it twice' });
    const first = chat.last.id;
    await chat.regenerate();
    expect(chat.messages).toHaveLength(2);
    expect(chat.last.id).toMatch(/^regen-/);
    expect(chat.last.id).not.toBe(first);
    expect(textOf(chat.last)).toBe('Echo: say it twice');
    const history = await stack.api('GET', `/v1/threads/${threadId}/ui-messages`);
    expect(history.body.map((m: UIMessage) => [m.role, m.id])).toEqual([
      ['user', chat.messages[0]!.id],
      ['assistant', chat.last.id],
    ]);
  });

  it('a connection cut mid-run resumes by GET /v1/chat/{id}/stream: one answer, no duplicate text', async () => {
    const threadId = uniqueId('chat');
    const chat = chatOn(threadId);
    chat.recorder.cutAfter = 6;
    await chat.sendMessage({ text: '/slow 60 one two three four five six seven eight' });
    expect(chat.status).toBe('error');
    const partial = textOf(chat.last);
    expect(partial.length).toBeGreaterThan(0);
    expect(partial.length).toBeLessThan('Echo: one two three four five six seven eight'.length);
    await chat.resumeStream();
    expect(chat.status).toBe('ready');
    expect(chat.messages.filter((m) => m.role === 'assistant')).toHaveLength(1);
    expect(textOf(chat.last)).toBe('Echo: one two three four five six seven eight');
    expect(await invalidChunks(chat.recorder.chunks)).toEqual([]);
  });

  it('a second client opening the thread mid-run (history plus resume) sees the same run streaming to its end', async () => {
    const threadId = uniqueId('chat');
    const first = chatOn(threadId);
    const sending = first.sendMessage({ text: '/slow 50 a b c d e f g h' });
    await until(() => expect(answerOf(first)).toMatch(/^Echo: a b/));
    const history = await stack.api('GET', `/v1/threads/${threadId}/ui-messages`);
    expect(history.body.map((m: UIMessage) => m.role)).toEqual(['user']);
    const second = chatOn(threadId, history.body);
    await second.resumeStream();
    await sending;
    expect(second.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(textOf(second.last)).toBe('Echo: a b c d e f g h');
    expect(second.last.id).toBe(first.last.id);
  });

  it('the resume URL answers 204 when nothing runs, also for a thread never seen', async () => {
    const threadId = uniqueId('chat');
    const none = await fetch(`${stack.url}/v1/chat/${threadId}/stream`, { headers: stack.auth });
    expect(none.status).toBe(204);
    const chat = chatOn(threadId);
    await chat.sendMessage({ text: 'done quickly' });
    const idle = await fetch(`${stack.url}/v1/chat/${threadId}/stream`, { headers: stack.auth });
    expect(idle.status).toBe(204);
    expect(await chat.recorder.reconnectToStream({ chatId: threadId })).toBeNull();
  });

  it('interrupt (the default) aborts the running answer; queue waits its turn; steer goes into the running run', async () => {
    const threadId = uniqueId('chat');
    const chat = chatOn(threadId);
    const slow = chat.sendMessage({ text: '/slow 100 a b c d e f g h i j k l' });
    await until(() => expect(answerOf(chat)).toMatch(/^Echo: a b/));
    const steer = chatOn(threadId, undefined, { mode: 'steer' });
    await steer.sendMessage({ text: 'and also this' });
    expect(steer.recorder.chunks).toEqual([{ type: 'data-steered', data: { runId: chat.last.id }, transient: true }]);
    const queued = chatOn(threadId, undefined, { mode: 'queue' });
    const queuedDone = queued.sendMessage({ text: 'after you' });
    await until(() => expect(queued.recorder.chunks[0]).toMatchObject({ type: 'start', messageMetadata: { status: 'queued' } }));
    const interrupting = chatOn(threadId);
    await interrupting.sendMessage({ text: 'stop that' });
    await slow;
    expect(chat.recorder.chunks.at(-1)).toMatchObject({ type: 'abort' });
    expect(chat.last.metadata).toMatchObject({ termination: { type: 'interrupted' } });
    await queuedDone;
    expect(queued.last.metadata).toMatchObject({ termination: { type: 'superseded' } });
    expect(textOf(interrupting.last)).toBe('Echo: stop that');
  });
});

describe('POST /v1/chat refuses what it cannot take, writing nothing', () => {
  const post = (body: unknown) => stack.api('POST', '/v1/chat', body);
  const user = (id: string, text: string) => ({ id, role: 'user', parts: [{ type: 'text', text }] });

  it('answers 400 invalid_request naming the field, for a NUL, a lone surrogate, no text, a bad id or nothing to submit', async () => {
    const before = await rowCounts(stack.store.pool, stack.tenant);
    const threadId = uniqueId('bad');
    const cases: [unknown, RegExp][] = [
      [{ id: threadId, trigger: 'submit-message', messages: [user('m1', 'a\u0000b')] }, /messages\[0\]\.parts: contains a NUL/],
      [{ id: threadId, trigger: 'submit-message', messages: [user('m1', 'a\ud800b')] }, /unpaired UTF-16 surrogate/],
      [{ id: threadId, trigger: 'submit-message', messages: [{ id: 'm1', role: 'user', parts: [{ type: 'file', url: 'x', mediaType: 'image/png' }] }] }, /has no text/],
      [{ id: threadId, trigger: 'submit-message', messages: [user('bad id!', 'hi')] }, /messages\[0\]\.id/],
      [{ id: threadId, trigger: 'submit-message', messages: [{ id: 'a1', role: 'assistant', parts: [{ type: 'text', text: 'hi' }] }] }, /nothing to submit/],
      [{ id: threadId, trigger: 'submit-message', messages: [] }, /at least one message/],
      [{ id: 'no/slash', trigger: 'submit-message', messages: [user('m1', 'hi')] }, /id/],
      [{ id: threadId, trigger: 'submit-message', messages: [user('m1', 'hi')], mode: 'shout' }, /mode/],
    ];
    for (const [body, message] of cases) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.code).toBe('invalid_request');
      expect(res.body.error).toMatch(message);
    }
    expect(await rowCounts(stack.store.pool, stack.tenant)).toEqual(before);
  });

  it("another tenant's ids are invisible: its resume is 204, its history and approvals 404", async () => {
    expect((await stack.api('GET', `/v1/threads/${uniqueId('none')}/ui-messages`)).status).toBe(404);
    const threadId = uniqueId('mine');
    const chat = chatOn(threadId);
    await chat.sendMessage({ text: SEND_EMAIL });
    const waiting = toolPart(chat.last)!;
    const other = { authorization: `Bearer ${OTHER_KEY}` };
    expect((await stack.request('GET', `/v1/chat/${threadId}/stream`, undefined, other)).status).toBe(204);
    expect((await stack.request('GET', `/v1/threads/${threadId}/ui-messages`, undefined, other)).status).toBe(404);
    const answered = { ...chat.last, parts: chat.last.parts.map((p) => (p === waiting ? { ...waiting, state: 'approval-responded', approval: { id: waiting.toolCallId, approved: true } } : p)) };
    const stolen = await stack.request('POST', '/v1/chat', { id: threadId, trigger: 'submit-message', messages: [chat.messages[0], answered] }, other);
    expect(stolen.status).toBe(404);
    expect((await stack.api('GET', `/v1/runs/${chat.last.id}`)).body.status).toBe('waiting');
  });
});
