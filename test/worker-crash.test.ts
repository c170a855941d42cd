// A worker process killed with SIGKILL mid-stream: a new worker finishes the run, every message committed once.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { spawnThreadbox, type ThreadboxProcess } from '../testkit/processes.js';
import { eventually, startStack, uniqueId, type Stack } from './stack.js';

let stack: Stack;
const workers: ThreadboxProcess[] = [];

beforeAll(async () => {
  stack = await startStack({ worker: false });
});
afterAll(async () => {
  for (const w of workers) await w.kill();
  await stack?.stop();
});

/** `npm run worker` as its own OS process, on this test's task queue. */
async function startWorkerProcess(): Promise<ThreadboxProcess> {
  const worker = await spawnThreadbox('worker', {
    DATABASE_URL: inject('databaseUrl'),
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_TASK_QUEUE: stack.taskQueue,
  });
  workers.push(worker);
  return worker;
}

describe('worker crash', () => {
  it('SIGKILL of the worker mid-stream: a new worker finishes the run and every message is committed once', async () => {
    const first = await startWorkerProcess();
    const threadId = uniqueId('crash');
    const submitted = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: '/slow 50 /long 120 survive this' }] });
    const { runId } = submitted.body;
    await eventually(async () => {
      const deltas = (await stack.store.readEvents(runId, 0, 10_000)).filter((e) => e.type === 'text_delta');
      return deltas.length >= 10 ? true : undefined;
    }, 30_000, 'streaming to be under way');
    await first.kill();

    await startWorkerProcess();
    const run = await eventually(async () => {
      const r = await stack.store.getRun(runId);
      return r?.status === 'done' ? r : undefined;
    }, 90_000, 'the run to finish on the new worker');
    expect(run.termination).toEqual({ type: 'natural_end' });

    const log = await stack.store.loadCommittedMessages({ tenant: 'default', threadId });
    expect(log.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(log[1]!.content.split(' ')).toHaveLength(120);

    // A client that drops everything before the last stream_reset reassembles exactly the committed text.
    const events = await stack.store.readEvents(runId, 0, 10_000);
    const resets = events.filter((e) => e.type === 'stream_reset');
    expect(resets.length).toBeGreaterThanOrEqual(1);
    const afterReset = events.slice(events.lastIndexOf(resets[resets.length - 1]!) + 1);
    const text = afterReset.flatMap((e) => (e.type === 'text_delta' ? [e.delta] : [])).join('');
    expect(text).toBe(log[1]!.content);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  }, 180_000);

  it('a run waiting for an approval survives a worker SIGKILL, and the decision reaches it on the new worker', async () => {
    const worker = await startWorkerProcess();
    const threadId = uniqueId('waiting');
    const submitted = await stack.request('POST', `/v1/threads/${threadId}/runs`, {
      messages: [{ content: '/tool send_email {"to":"a@example.com","subject":"later","body":"after the crash"}' }],
    });
    const { runId } = submitted.body;
    const requested = await eventually(async () => (await stack.store.readEvents(runId, 0, 1000)).find((e) => e.type === 'tool_approval_requested'), 30_000, 'the approval request');
    await eventually(async () => ((await stack.store.getRun(runId))?.status === 'waiting' ? true : undefined));
    await worker.kill();

    await startWorkerProcess();
    const decided = await stack.request('POST', `/v1/runs/${runId}/decisions`, { toolCallId: (requested as { toolCallId: string }).toolCallId, action: 'approve' });
    expect(decided.status).toBe(202);
    const run = await eventually(async () => {
      const r = await stack.store.getRun(runId);
      return r?.status === 'done' ? r : undefined;
    }, 90_000, 'the approved run to finish');
    expect(run.termination).toEqual({ type: 'natural_end' });
    const log = await stack.store.loadCommittedMessages({ tenant: 'default', threadId });
    expect(log.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant']);
    expect(JSON.parse(log[2]!.content)).toMatchObject({ sent: true });
  }, 180_000);
});
