// threadbox/client, imported by its package name (the built module), against the running API.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ThreadboxClient, ThreadboxError, type RunEvent } from 'threadbox/client';
import { startTenantStack, type TenantStack } from '../api/helpers.js';
import { uniqueId } from '../stack.js';

let stack: TenantStack;
let client: ThreadboxClient;
beforeAll(async () => {
  stack = await startTenantStack();
  client = new ThreadboxClient({ baseUrl: stack.url, apiKey: stack.key });
});
afterAll(() => stack?.stop());

async function collect(events: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

const textOf = (events: RunEvent[]) => events.flatMap((e) => (e.type === 'text_delta' ? [e.delta] : [])).join('');

/** A fetch whose first event-stream response breaks after `frames` reads, as a dropped connection does. */
function cuttingFetch(frames: number) {
  let cut = false;
  const streams: string[] = [];
  const fetchImpl: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    const headers = new Headers(init?.headers);
    if (headers.get('accept') !== 'text/event-stream') return response;
    streams.push(headers.get('last-event-id') ?? 'start');
    if (cut) return response;
    cut = true;
    const reader = response.body!.getReader();
    let reads = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (reads++ >= frames) {
          await reader.cancel();
          return controller.error(new TypeError('network error: connection reset'));
        }
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  return { fetchImpl, streams };
}

describe('threadbox/client', () => {
  it('submits and streams the run to its finish', async () => {
    const threadId = uniqueId('client');
    const submitted = await client.submit(threadId, { messages: [{ content: 'typed client' }] });
    expect(submitted).toMatchObject({ threadId, status: 'running' });
    const events = await collect(client.streamRun(submitted.runId));
    expect(events.map((e) => e.type).slice(0, 2)).toEqual(['run_queued', 'run_start']);
    expect(events.at(-1)).toMatchObject({ type: 'run_finish', termination: { type: 'natural_end' } });
    expect(textOf(events)).toBe('Echo: typed client');
    expect((await client.getRun(submitted.runId)).status).toBe('done');
    expect((await client.listMessages(threadId)).items.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect((await client.listThreads()).map((t) => t.threadId)).toContain(threadId);
  });

  it('resumes a stream whose connection dropped from its last event id: no gap, no repeat', async () => {
    const { fetchImpl, streams } = cuttingFetch(3);
    const cutting = new ThreadboxClient({ baseUrl: stack.url, apiKey: stack.key, fetch: fetchImpl });
    const reconnects: number[] = [];
    const { runId } = await cutting.submit(uniqueId('client'), { messages: [{ content: '/slow 60 a b c d e f g h' }] });
    const events = await collect(cutting.streamRun(runId, { onReconnect: (after) => reconnects.push(after) }));
    expect(reconnects).toHaveLength(1);
    expect(reconnects[0]).toBeGreaterThan(0);
    expect(streams).toEqual(['start', String(reconnects[0])]);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(textOf(events)).toBe('Echo: a b c d e f g h');
    expect(events.at(-1)!.type).toBe('run_finish');
  });

  it("follows a thread's runs live until aborted", async () => {
    const threadId = uniqueId('client');
    await client.submit(threadId, { messages: [{ content: 'first' }] });
    const abort = new AbortController();
    const finished: string[] = [];
    const following = (async () => {
      for await (const event of client.streamThread(threadId, { signal: abort.signal })) {
        if (event.type === 'run_finish') finished.push(event.runId);
        if (finished.length === 2) abort.abort();
      }
    })();
    const second = await client.submit(threadId, { messages: [{ content: 'second' }], mode: 'queue' });
    await expect(following).rejects.toThrow();
    expect(finished).toHaveLength(2);
    expect(finished[1]).toBe(second.runId);
  });

  it('refusals are ThreadboxErrors with the status and the contract code', async () => {
    const refused = async (work: Promise<unknown>) => {
      const err = await work.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ThreadboxError);
      const { status, code } = err as ThreadboxError;
      return { status, code };
    };
    expect(await refused(client.getRun(uniqueId('missing')))).toEqual({ status: 404, code: 'not_found' });
    expect(await refused(client.submit(uniqueId('t'), { messages: [] }))).toEqual({ status: 400, code: 'invalid_request' });
    const threadId = uniqueId('client');
    const { runId } = await client.submit(threadId, { messages: [{ content: 'quick' }] });
    await collect(client.streamRun(runId));
    expect(await refused(client.cancel(runId))).toEqual({ status: 409, code: 'run_not_active' });
    expect(await refused(client.decide(runId, { toolCallId: 'nope', action: 'approve' }))).toEqual({ status: 409, code: 'no_pending_approval' });
    const stranger = new ThreadboxClient({ baseUrl: stack.url, apiKey: 'not-a-key' });
    expect(await refused(stranger.listThreads())).toEqual({ status: 401, code: 'unauthorized' });
    await expect(collect(client.streamRun(uniqueId('missing')))).rejects.toMatchObject({ status: 404, code: 'not_found' });
  });
});
