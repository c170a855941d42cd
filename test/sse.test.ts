// Resumable SSE over real HTTP: frames, resume from any cursor, live resume, thread streams, two API instances.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startStack, uniqueId, type Stack } from './stack.js';
import { eventFrames, openSse, payloads } from '../testkit/sse.js';

let stack: Stack;
let second: Stack;
beforeAll(async () => {
  stack = await startStack({ env: { THREADBOX_SSE_HEARTBEAT_MS: '200' } });
  second = await startStack({ worker: false, taskQueue: stack.taskQueue }); // an API-only replica
});
afterAll(async () => {
  await second?.stop();
  await stack?.stop();
});

const runBody = (content: string) => JSON.stringify({ messages: [{ role: 'user', content }] });

async function committedAnswer(threadId: string) {
  const log = await stack.store.loadCommittedMessages({ tenant: 'default', threadId });
  return log.filter((m) => m.role === 'assistant').map((m) => m.content).join('');
}

describe('SSE', () => {
  it('a submit with Accept: text/event-stream streams the run from its first event and closes after run_finish', async () => {
    const threadId = uniqueId('sse');
    const sse = await openSse(`${stack.url}/v1/threads/${threadId}/runs`, { method: 'POST', body: runBody('hello there'), headers: { 'content-type': 'application/json' } });
    expect(sse.status).toBe(200);
    expect(sse.contentType).toContain('text/event-stream');
    await sse.done;
    const events = payloads(sse.frames);
    expect(events[0].type).toBe('run_queued');
    expect(events.at(-1)).toMatchObject({ type: 'run_finish', termination: { type: 'natural_end' } });
    expect(eventFrames(sse.frames).map((f) => Number(f.id))).toEqual(events.map((_, i) => i + 1));
    expect(eventFrames(sse.frames).map((f) => f.event)).toEqual(events.map((e) => e.type));
    const text = events.filter((e) => e.type === 'text_delta').map((e) => e.delta).join('');
    expect(text).toBe('Echo: hello there');
    expect(await committedAnswer(threadId)).toBe(text);
  });

  it('resuming a finished run from every cursor yields exactly the remaining events', async () => {
    const threadId = uniqueId('resume');
    const submitted = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: '/slow 20 /long 12 resume me' }] });
    const { runId } = submitted.body;
    await eventually(async () => ((await stack.store.getRun(runId))?.status === 'done' ? true : undefined));
    const all = (await stack.request('GET', `/v1/runs/${runId}/events?limit=1000`)).body.items;
    expect(all.length).toBeGreaterThan(10);
    for (let cursor = 0; cursor <= all.length; cursor++) {
      const viaHeader = cursor % 2 === 0;
      const sse = await openSse(`${stack.url}/v1/runs/${runId}/events${viaHeader ? '' : `?after=${cursor}`}`, {
        headers: viaHeader ? { 'last-event-id': String(cursor) } : {},
      });
      await sse.done;
      expect(payloads(sse.frames).map((e) => e.seq)).toEqual(all.slice(cursor).map((e: { seq: number }) => e.seq));
    }
  }, 60_000);

  it('resuming a live run mid-stream gives a gap-free, duplicate-free sequence', async () => {
    const threadId = uniqueId('live');
    const submitted = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: '/slow 20 /long 80 live' }] });
    const { runId } = submitted.body;
    const first = await openSse(`${stack.url}/v1/runs/${runId}/events`);
    const seen = await first.waitForEvents(10);
    first.close();
    const lastId = eventFrames(seen).at(-1)!.id!;
    const rest = await openSse(`${second.url}/v1/runs/${runId}/events`, { headers: { 'last-event-id': lastId } });
    await rest.done;
    const seqs = [...payloads(seen), ...payloads(rest.frames)].map((e) => e.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    const all = [...payloads(seen), ...payloads(rest.frames)];
    expect(all.at(-1).type).toBe('run_finish');
    expect(all.filter((e) => e.type === 'text_delta').map((e) => e.delta).join('')).toBe(await committedAnswer(threadId));
  });

  it('two API instances on one database: submit through one, stream through the other', async () => {
    const threadId = uniqueId('replica');
    const submitted = await second.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: '/slow 10 /long 20 across' }] });
    expect(submitted.status).toBe(202);
    const sse = await openSse(`${stack.url}/v1/runs/${submitted.body.runId}/events`);
    await sse.done;
    expect(payloads(sse.frames).at(-1)).toMatchObject({ type: 'run_finish' });
  });

  it('a client that disconnects does not cancel the run', async () => {
    const threadId = uniqueId('leave');
    const sse = await openSse(`${stack.url}/v1/threads/${threadId}/runs`, { method: 'POST', body: runBody('/slow 20 /long 30 bye'), headers: { 'content-type': 'application/json' } });
    const seen = await sse.waitForEvents(4);
    sse.close();
    const runId = payloads(seen)[0].runId;
    const run = await eventually(async () => {
      const r = await stack.store.getRun(runId);
      return r?.status === 'done' ? r : undefined;
    });
    expect(run.termination).toEqual({ type: 'natural_end' });
  });

  it('sends a keepalive comment while a run waits, and a thread stream carries every run in order', async () => {
    const threadId = uniqueId('thread-stream');
    const first = (await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: '/tool send_email {"to":"a@b.co","subject":"s","body":"b"}' }] })).body;
    const queued = (await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: 'next' }], mode: 'queue' })).body;
    const waiting = await openSse(`${stack.url}/v1/runs/${first.runId}/events`);
    const requested = await eventually(async () => payloads(waiting.frames).find((e) => e.type === 'tool_approval_requested'));
    await eventually(async () => (waiting.frames.some((f) => f.comment === 'keepalive') ? true : undefined), 5_000, 'a keepalive comment');
    await stack.request('POST', `/v1/runs/${first.runId}/decisions`, { toolCallId: requested.toolCallId, action: 'deny' });
    await waiting.done;

    await eventually(async () => ((await stack.store.getRun(queued.runId))?.status === 'done' ? true : undefined));
    const thread = await openSse(`${stack.url}/v1/threads/${threadId}/events`);
    const events = payloads(await thread.waitForEvents(5));
    await eventually(async () => (payloads(thread.frames).filter((e) => e.type === 'run_finish').length === 2 ? true : undefined));
    thread.close();
    const all = payloads(thread.frames);
    expect(all.filter((e) => e.type === 'run_queued').map((e) => e.runId)).toEqual([first.runId, queued.runId]);
    expect(all.map((e) => e.id)).toEqual([...all.map((e) => e.id)].sort((a, b) => a - b));
    const lastOfFirst = all.findLastIndex((e) => e.runId === first.runId && e.type !== 'run_queued');
    const firstOfSecond = all.findIndex((e) => e.runId === queued.runId && e.type === 'run_start');
    expect(lastOfFirst).toBeLessThan(firstOfSecond);
    expect(events.length).toBeGreaterThan(0);
    const page = await stack.request('GET', `/v1/threads/${threadId}/events?limit=3`);
    expect(page.body.items.map((e: { id: number }) => e.id)).toEqual(all.slice(0, 3).map((e) => e.id));
    expect(page.body.nextCursor).toBe(all[2].id);
  });

  it('the awaken-compatible POST /v1/runs streams a foreground run on a new thread', async () => {
    const sse = await openSse(`${stack.url}/v1/runs`, { method: 'POST', body: runBody('compat'), headers: { 'content-type': 'application/json' } });
    await sse.done;
    const events = payloads(sse.frames);
    expect(events.at(-1)).toMatchObject({ type: 'run_finish', termination: { type: 'natural_end' } });
    const threadId = events[0].threadId;
    expect(await committedAnswer(threadId)).toBe('Echo: compat');
  });
});
