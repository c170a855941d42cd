// The mailbox at its edges: steering that races a run's end, steering pending at an interrupt, operator
// actions in the Temporal UI (terminate or cancel a run, terminate a thread), and input that reaches the
// workflows without passing the API. Each ends with nothing lost, nothing doubled and the thread moving on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideUpdate, submitSignal } from '../src/contract/messages.js';
import { postRetrying } from '../testkit/http.js';
import { tenantRunWorkflowId, threadWorkflowId } from '../src/contract/mailbox.js';
import { eventually, startStack, uniqueId, type Stack } from './stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A submit as a careful client makes it (testkit): a 429 or 503 is retried with the same Idempotency-Key after its Retry-After. */
const submit = (threadId: string, content: string, extra: Record<string, unknown> = {}) =>
  postRetrying(`${stack.url}/v1/threads/${threadId}/runs`, { messages: [{ role: 'user', content }], ...extra });

const log = async (threadId: string) => stack.store.loadCommittedMessages({ tenant: 'default', threadId });

async function runDone(runId: string, timeoutMs = 60_000) {
  return eventually(async () => {
    const run = await stack.store.getRun(runId);
    return run?.status === 'done' ? run : undefined;
  }, timeoutMs, `run ${runId} to end`);
}

/** Every run of the thread has ended and nothing is queued. */
async function threadSettled(threadId: string, timeoutMs = 90_000) {
  return eventually(async () => {
    const runs = await stack.store.listRuns({ tenant: 'default', threadId });
    const thread = await stack.store.getThread({ tenant: 'default', threadId });
    return runs.length > 0 && runs.every((r) => r.status === 'done') && thread?.queuedRunIds.length === 0 ? runs : undefined;
  }, timeoutMs, `thread ${threadId} to settle`);
}

async function waitForEvent(runId: string, type: string) {
  return eventually(async () => (await stack.store.readEvents(runId, 0, 10_000)).find((e) => e.type === type), 30_000, `${type} on ${runId}`);
}

/** How many executions the thread's workflow has had (more than one after a continue-as-new). */
async function threadExecutions(threadId: string) {
  let n = 0;
  for await (const _ of stack.temporal.workflow.list({ query: `WorkflowId = "${threadWorkflowId('default', threadId)}"` })) n++;
  return n;
}

const userContents = async (threadId: string) => (await log(threadId)).filter((m) => m.role === 'user').map((m) => m.content);

describe('steering', () => {
  it('steering that reaches a run as it ends is committed exactly once (30 steers 4 ms apart, 8 threads)', async () => {
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const threadId = uniqueId('late-steer');
        const first = await submit(threadId, '/slow 5 /long 4 go');
        expect(first.status).toBe(202);
        const answers = [];
        for (let i = 0; i < 30; i++) {
          answers.push(submit(threadId, `steer ${i}`, { mode: 'steer', expectedRunId: first.body.runId }));
          await sleep(4);
        }
        const statuses = (await Promise.all(answers)).map((a) => a.status);
        expect(statuses.every((s) => s === 202)).toBe(true);
        // A steer answered `steered` that reached the run as it ended is handed back to the thread and queued
        // moments after the run's record reads done: wait for every message, then for every run to end.
        await eventually(async () => ((await userContents(threadId)).length >= 31 ? true : undefined), 30_000, 'all 31 messages to be committed');
        await threadSettled(threadId);
        const users = await userContents(threadId);
        expect([...users].sort()).toEqual(['/slow 5 /long 4 go', ...Array.from({ length: 30 }, (_, i) => `steer ${i}`)].sort());
      }),
    );
  }, 240_000);

  it('steering handed back while the thread continues-as-new is committed exactly once (3 threads, 80 submits each)', async () => {
    const executions: number[] = [];
    await Promise.all(
      Array.from({ length: 3 }, async (_, t) => {
        const threadId = uniqueId('can-steer');
        const answers = [];
        for (let i = 0; i < 80; i++) {
          // A steady stream: short runs start and end while steering keeps reaching them as they end.
          answers.push(submit(threadId, i % 10 === 0 ? `/slow 5 /long 4 run ${t}.${i}` : `steer ${t}.${i}`, { mode: i % 10 === 0 ? 'queue' : 'steer' }));
          await sleep(15);
        }
        const statuses = (await Promise.all(answers)).map((a) => a.status);
        expect(statuses.every((s) => s === 202)).toBe(true);
        await eventually(async () => ((await userContents(threadId)).length >= 80 ? true : undefined), 60_000, 'all 80 messages to be committed');
        await threadSettled(threadId);
        const users = await userContents(threadId);
        expect([...users].sort()).toEqual(Array.from({ length: 80 }, (_, i) => (i % 10 === 0 ? `/slow 5 /long 4 run ${t}.${i}` : `steer ${t}.${i}`)).sort());
        executions.push(await threadExecutions(threadId));
      }),
    );
    // The suite's low continue-as-new limit (400 events) makes these threads continue-as-new amid the steering.
    console.log(`[steering across continue-as-new] thread executions: ${executions.join(', ')}`);
    expect(executions.every((n) => n > 1)).toBe(true);
  }, 300_000);

  it('steering pending when a run is interrupted is committed just ahead of the interrupting input, never run after it', async () => {
    const threadId = uniqueId('stale-steer');
    const story = (await submit(threadId, '/slow 200 /long 50 story')).body;
    await waitForEvent(story.runId, 'text_delta');
    await sleep(600);
    const steer = await submit(threadId, 'stale steer', { mode: 'steer' });
    expect(steer.body.status).toBe('steered');
    await sleep(100);
    const next = (await submit(threadId, 'NEW')).body;
    expect((await runDone(story.runId)).termination?.type).toBe('interrupted');
    expect((await runDone(next.runId)).termination?.type).toBe('natural_end');
    await threadSettled(threadId);
    const entries = (await log(threadId)).map((m) => [m.role, m.content.startsWith('Echo:') ? 'Echo' : m.content, m.status]);
    expect(entries).toEqual([
      ['user', '/slow 200 /long 50 story', 'complete'],
      ['assistant', 'Echo', 'interrupted'],
      ['user', 'stale steer', 'complete'],
      ['user', 'NEW', 'complete'],
      ['assistant', 'Echo', 'complete'],
    ]);
    expect((await log(threadId)).at(-1)!.content).toBe('Echo: NEW');
  }, 60_000);

  it('steering pending when a run is cancelled is committed, and the thread runs nothing more', async () => {
    const threadId = uniqueId('cancel-steer');
    const story = (await submit(threadId, '/slow 200 /long 50 story')).body;
    await waitForEvent(story.runId, 'text_delta');
    expect((await submit(threadId, 'kept steer', { mode: 'steer' })).body.status).toBe('steered');
    expect((await stack.request('POST', `/v1/runs/${story.runId}/cancel`)).status).toBe(202);
    expect((await runDone(story.runId)).termination?.type).toBe('cancelled');
    // The steering is committed after the run's end reached the thread: wait for it, then for every run to end.
    await eventually(async () => ((await userContents(threadId)).length === 2 ? true : undefined), 20_000, 'the steering to be committed');
    const runs = await threadSettled(threadId);
    expect(runs.filter((r) => r.termination?.type === 'natural_end')).toEqual([]);
    expect(await userContents(threadId)).toEqual(['/slow 200 /long 50 story', 'kept steer']);
    expect((await log(threadId)).filter((m) => m.role === 'assistant').map((m) => m.status)).toEqual(['interrupted']);
  }, 60_000);
});

describe('operator actions in the Temporal UI', () => {
  it('terminating a running run: the run ends error "terminated", its partial text is kept, the queue drains, interrupts work again', async () => {
    const threadId = uniqueId('term-run');
    const a = (await submit(threadId, '/slow 100 /long 100 a')).body;
    await waitForEvent(a.runId, 'text_delta');
    const b = (await submit(threadId, 'b', { mode: 'queue' })).body;
    expect(b.status).toBe('queued');
    await stack.temporal.workflow.getHandle(tenantRunWorkflowId('default', a.runId)).terminate('operator says stop');

    const ended = await runDone(a.runId);
    expect(ended.termination?.type).toBe('error');
    expect(ended.termination?.detail).toMatch(/terminated/);
    expect((await runDone(b.runId)).termination?.type).toBe('natural_end');
    const entries = (await log(threadId)).map((m) => [m.role, m.status]);
    expect(entries).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);

    // The thread is not wedged: an interrupt of a new run is accepted and the run after it completes.
    const c = (await submit(threadId, '/slow 100 /long 100 c')).body;
    await waitForEvent(c.runId, 'text_delta');
    const interrupt = await stack.request('POST', `/v1/threads/${threadId}/interrupt`);
    expect(interrupt.status).toBe(202);
    expect(interrupt.body.cancelledRunId).toBe(c.runId);
    expect((await runDone(c.runId)).termination?.type).toBe('interrupted');
  }, 90_000);

  it('cancelling a run in Temporal ends it cancelled and the next run starts', async () => {
    const threadId = uniqueId('cancel-run');
    const a = (await submit(threadId, '/slow 100 /long 100 a')).body;
    await waitForEvent(a.runId, 'text_delta');
    const b = (await submit(threadId, 'b', { mode: 'queue' })).body;
    await stack.temporal.workflow.getHandle(tenantRunWorkflowId('default', a.runId)).cancel();
    expect((await runDone(a.runId)).termination?.type).toBe('cancelled');
    expect((await runDone(b.runId)).termination?.type).toBe('natural_end');
    expect((await log(threadId)).at(-1)!.content).toBe('Echo: b');
  }, 60_000);

  it('terminating a run that waits for an approval closes its tool call, so the next run is valid', async () => {
    const threadId = uniqueId('term-waiting');
    const a = (await submit(threadId, '/tool send_email {"to":"a@example.com","subject":"s","body":"b"}')).body;
    await waitForEvent(a.runId, 'tool_approval_requested');
    await stack.temporal.workflow.getHandle(tenantRunWorkflowId('default', a.runId)).terminate();
    expect((await runDone(a.runId)).termination?.type).toBe('error');
    const b = (await submit(threadId, 'after')).body;
    expect((await runDone(b.runId)).termination?.type).toBe('natural_end');
    const tool = (await log(threadId)).find((m) => m.role === 'tool');
    expect(tool?.metadata).toMatchObject({ outcome: 'cancelled' });
    expect((await log(threadId)).at(-1)!.content).toBe('Echo: after');
  }, 60_000);

  it('terminating a thread workflow with 3 queued runs: the next submit rebuilds it from Postgres and every run completes', async () => {
    const threadId = uniqueId('term-thread');
    const a = (await submit(threadId, '/slow 50 /long 40 a')).body;
    await waitForEvent(a.runId, 'text_delta');
    const queued = [];
    for (const text of ['q1', 'q2', 'q3']) queued.push((await submit(threadId, text, { mode: 'queue' })).body);
    await stack.temporal.workflow.getHandle(threadWorkflowId('default', threadId)).terminate('operator');
    // The active run outlives its thread and ends; the queue waits in Postgres, and the thread says so.
    expect((await runDone(a.runId)).termination?.type).toBe('natural_end');
    const thread = await stack.request('GET', `/v1/threads/${threadId}`);
    expect(thread.body.status).toBe('queued');
    expect(thread.body.queuedRunIds).toEqual(queued.map((q) => q.runId));

    // A cancel reaches the rebuilt thread too (it is started on demand), not a `409 run_not_active`.
    const cancel = await stack.request('POST', `/v1/runs/${queued[2]!.runId}/cancel`);
    expect(cancel.status).toBe(202);
    const after = await submit(threadId, 'after', { mode: 'queue' });
    expect(after.status).toBe(202);
    for (const run of [queued[0]!, queued[1]!, after.body]) expect((await runDone(run.runId, 90_000)).termination?.type).toBe('natural_end');
    expect((await runDone(queued[2]!.runId)).termination?.type).toBe('cancelled');
    await threadSettled(threadId);
    expect(await userContents(threadId)).toEqual(['/slow 50 /long 40 a', 'q1', 'q2', 'after']);
    const answers = (await log(threadId)).filter((m) => m.role === 'assistant').map((m) => m.content);
    expect(answers.slice(1)).toEqual(['Echo: q1', 'Echo: q2', 'Echo: after']);
  }, 120_000);
});

describe('input that bypasses the API', () => {
  it('a signalled submit with a NUL byte is dropped by the thread, which keeps working', async () => {
    const threadId = uniqueId('poison-signal');
    const first = (await submit(threadId, 'hello')).body;
    await runDone(first.runId);
    const handle = stack.temporal.workflow.getHandle(threadWorkflowId('default', threadId));
    await handle.signal(submitSignal, {
      runId: uniqueId('poison'),
      dispatchId: uniqueId('d'),
      mode: 'queue',
      agent: { agentId: 'default', maxSteps: 10, approvalTools: ['send_email'] },
      messages: [{ messageId: uniqueId('m'), role: 'user', content: 'a\u0000' }],
    });
    const next = (await submit(threadId, 'still here')).body;
    expect((await runDone(next.runId)).termination?.type).toBe('natural_end');
    expect(await userContents(threadId)).toEqual(['hello', 'still here']);
  }, 60_000);

  it('a decision whose reason Postgres cannot store is kept sanitised: the run and the next one end normally', async () => {
    const threadId = uniqueId('poison-reason');
    const a = (await submit(threadId, '/tool send_email {"to":"a@example.com","subject":"s","body":"b"}')).body;
    const requested = (await waitForEvent(a.runId, 'tool_approval_requested')) as unknown as { toolCallId: string };
    await stack.temporal.workflow.getHandle(tenantRunWorkflowId('default', a.runId)).executeUpdate(decideUpdate, { args: [{ toolCallId: requested.toolCallId, action: 'deny', reason: 'x\u0000\ud800' }] });
    expect((await runDone(a.runId)).termination?.type).toBe('natural_end');
    const tool = (await log(threadId)).find((m) => m.role === 'tool')!;
    expect(tool.content).toBe('denied: x\ufffd');
    const b = (await submit(threadId, 'next')).body;
    expect((await runDone(b.runId)).termination?.type).toBe('natural_end');
  }, 60_000);
});
