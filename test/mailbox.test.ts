// The mailbox on the real Temporal dev server and Postgres: interrupt, queue, steer, cancel, approvals,
// durable messages, continue-as-new, and a replay of every history it produced.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { readFileSync } from 'node:fs';
import { inject } from 'vitest';
import type { RunEvent } from '../src/contract/run-events.js';
import { eventually, startStack, uniqueId, type Stack } from './stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

type Msg = { seq: number; id: string; role: string; content: string; runId?: string; status: string; toolCallId?: string; toolCalls?: unknown[] };

const submit = (threadId: string, content: string | string[], extra: Record<string, unknown> = {}, headers?: Record<string, string>) =>
  stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [content].flat().map((c) => ({ role: 'user', content: c })), ...extra }, headers);

async function messages(threadId: string): Promise<Msg[]> {
  return (await stack.store.loadCommittedMessages({ tenant: 'default', threadId })) as Msg[];
}

async function runDone(runId: string, timeoutMs = 30_000) {
  return eventually(async () => {
    const run = await stack.store.getRun(runId);
    return run?.status === 'done' ? run : undefined;
  }, timeoutMs, `run ${runId} to end`);
}

async function eventsOf(runId: string): Promise<RunEvent[]> {
  return stack.store.readEvents(runId, 0, 10_000);
}

async function waitForEvent(runId: string, type: string, timeoutMs = 20_000) {
  return eventually(async () => (await eventsOf(runId)).find((e) => e.type === type), timeoutMs, `${type} on ${runId}`);
}

/** Every user message exactly once, in any order: the invariant of the whole mailbox. */
async function expectEachUserMessageOnce(threadId: string, contents: string[]) {
  const users = (await messages(threadId)).filter((m) => m.role === 'user').map((m) => m.content);
  expect([...users].sort()).toEqual([...contents].sort());
}

describe('interrupt (foreground submit)', () => {
  it('supersedes 3 queued runs, interrupts the active one keeping its partial text, and runs the new one', async () => {
    const threadId = uniqueId('interrupt');
    const first = (await submit(threadId, '/slow 100 /long 200 first')).body;
    await waitForEvent(first.runId, 'text_delta');
    const queued = [];
    for (const text of ['q1', 'q2', 'q3']) queued.push((await submit(threadId, text, { mode: 'queue' })).body);
    expect(queued.map((q) => q.status)).toEqual(['queued', 'queued', 'queued']);

    const last = await submit(threadId, 'last');
    expect(last.status).toBe(202);
    expect(last.body.status).toBe('running');

    expect((await runDone(first.runId)).termination).toEqual({ type: 'interrupted' });
    for (const q of queued) expect((await runDone(q.runId)).termination?.type).toBe('superseded');
    expect((await runDone(last.body.runId)).termination).toEqual({ type: 'natural_end' });

    const log = await messages(threadId);
    expect(log.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
      ['user', 'complete'],
      ['user', 'complete'],
      ['user', 'complete'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(log[1]!.content).toMatch(/^Echo: /);
    expect(log.slice(2, 6).map((m) => m.content)).toEqual(['q1', 'q2', 'q3', 'last']);
    expect(log[6]!.content).toBe('Echo: last');
    const dispatches = await stack.request('GET', `/v1/threads/${threadId}/mailbox`);
    const byRun = Object.fromEntries(dispatches.body.items.map((d: { runId: string; status: string }) => [d.runId, d.status]));
    expect(queued.map((q) => byRun[q.runId])).toEqual(['superseded', 'superseded', 'superseded']);
  });

  it('20 concurrent foreground submits: one ends naturally, the rest interrupted or superseded, every message once', async () => {
    const threadId = uniqueId('race');
    // Each run streams for ~9 s, so only the last accepted one can finish before the next submit interrupts it.
    const contents = Array.from({ length: 20 }, (_, i) => `/slow 300 /long 30 m${i}`);
    const results = await Promise.all(contents.map((c) => submit(threadId, c)));
    const accepted = results.filter((r) => r.status === 202);
    // A submit may lose the race to settle the run before it (409), or find the thread busy with too
    // many submits in flight (429 thread_busy); either writes nothing. All others are accepted.
    for (const r of results) expect([202, 409, 429]).toContain(r.status);
    const runs = await Promise.all(accepted.map((r) => runDone(r.body.runId, 60_000)));
    const terminations = runs.map((r) => r.termination?.type);
    expect(terminations.filter((t) => t === 'natural_end')).toHaveLength(1);
    for (const t of terminations) expect(['natural_end', 'interrupted', 'superseded']).toContain(t);
    await expectEachUserMessageOnce(threadId, accepted.map((r) => contents[results.indexOf(r)]!));
  }, 120_000);
});

describe('queue (background submit)', () => {
  it('50 background submits run in submit order and the log alternates user and assistant', async () => {
    const threadId = uniqueId('fifo');
    const runIds: string[] = [];
    const refusals: string[] = [];
    for (let i = 0; i < 50; i++) {
      // A submit that arrives while the thread continues as new is refused 429 thread_busy (nothing admitted);
      // the client retries it with the same Idempotency-Key, as the contract says.
      const key = { 'idempotency-key': `${threadId}-${i}` };
      let res = await submit(threadId, `n${i}`, { mode: 'queue' }, key);
      while (res.status === 429) {
        refusals.push(res.body.code);
        await new Promise((r) => setTimeout(r, 100));
        res = await submit(threadId, `n${i}`, { mode: 'queue' }, key);
      }
      expect(res.status).toBe(202);
      runIds.push(res.body.runId);
    }
    expect(refusals.every((code) => code === 'thread_busy')).toBe(true);
    await runDone(runIds[49]!, 120_000);
    const runs = await Promise.all(runIds.map((id) => runDone(id)));
    expect(runs.every((r) => r.termination?.type === 'natural_end')).toBe(true);
    const log = await messages(threadId);
    expect(log).toHaveLength(100);
    log.forEach((m, i) => {
      const n = Math.floor(i / 2);
      expect([m.role, m.content, m.runId]).toEqual(i % 2 === 0 ? ['user', `n${n}`, runIds[n]] : ['assistant', `Echo: n${n}`, runIds[n]]);
    });
    // Enough history to make the thread continue-as-new (the suite lowers the limit): nothing was lost across it.
    const executions = [];
    for await (const wf of stack.temporal.workflow.list({ query: `WorkflowId = "thread:default:${threadId}"` })) executions.push(wf.runId);
    expect(executions.length).toBeGreaterThan(1);
  }, 180_000);
});

describe('steer (live then queue)', () => {
  it('delivers to the active run at its next step boundary, and the run takes one more step', async () => {
    const threadId = uniqueId('steer');
    const first = (await submit(threadId, '/slow 50 /long 30 go')).body;
    await waitForEvent(first.runId, 'text_delta');
    const steered = await submit(threadId, 'and also this', { mode: 'steer' });
    expect(steered.body).toMatchObject({ status: 'steered', runId: first.runId });
    expect((await runDone(first.runId)).termination?.type).toBe('natural_end');
    const log = await messages(threadId);
    expect(log.map((m) => [m.role, m.runId])).toEqual([
      ['user', first.runId],
      ['assistant', first.runId],
      ['user', first.runId],
      ['assistant', first.runId],
    ]);
    expect(log[3]!.content).toBe('Echo: and also this');
    const applied = (await eventsOf(first.runId)).find((e) => e.type === 'steering_applied');
    expect(applied).toMatchObject({ messageIds: [log[2]!.id] });
  });

  it('becomes a queued run when nothing runs or the expected run does not match', async () => {
    const threadId = uniqueId('steer-q');
    const idle = await submit(threadId, 'nobody home', { mode: 'steer' });
    expect(idle.body.status).toBe('queued');
    await runDone(idle.body.runId);
    const active = (await submit(threadId, '/slow 50 /long 40 busy')).body;
    await waitForEvent(active.runId, 'text_delta');
    const mismatch = await submit(threadId, 'for another run', { mode: 'steer', expectedRunId: 'not-this-one' });
    expect(mismatch.body.status).toBe('queued');
    expect(mismatch.body.runId).not.toBe(active.runId);
    expect((await runDone(mismatch.body.runId)).termination?.type).toBe('natural_end');
    await expectEachUserMessageOnce(threadId, ['nobody home', '/slow 50 /long 40 busy', 'for another run']);
  });
});

describe('cancel and interrupt', () => {
  it('cancels an active run, removes a queued one, and refuses a finished one', async () => {
    const threadId = uniqueId('cancel');
    const active = (await submit(threadId, '/slow 100 /long 100 long')).body;
    const queued = (await submit(threadId, 'later', { mode: 'queue' })).body;
    await waitForEvent(active.runId, 'text_delta');
    const cancelQueued = await stack.request('POST', `/v1/runs/${queued.runId}/cancel`);
    expect(cancelQueued).toEqual({ status: 202, body: { runId: queued.runId, status: 'cancel_requested' } });
    expect((await runDone(queued.runId)).termination?.type).toBe('cancelled');
    const cancelActive = await stack.request('POST', `/v1/runs/${active.runId}/cancel`);
    expect(cancelActive.status).toBe(202);
    expect((await runDone(active.runId)).termination?.type).toBe('cancelled');
    const again = await stack.request('POST', `/v1/runs/${active.runId}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('run_not_active');
    // The queued run was cancelled before it started: its input is not committed.
    const users = (await messages(threadId)).filter((m) => m.role === 'user').map((m) => m.content);
    expect(users).toEqual(['/slow 100 /long 100 long']);
  });

  it('interrupting a thread cancels the active run and supersedes the queue, keeping their input', async () => {
    const threadId = uniqueId('int-thread');
    const active = (await submit(threadId, '/slow 100 /long 100 busy')).body;
    const q = (await submit(threadId, 'queued one', { mode: 'queue' })).body;
    await waitForEvent(active.runId, 'text_delta');
    const res = await stack.request('POST', `/v1/threads/${threadId}/interrupt`);
    expect(res).toEqual({ status: 202, body: { threadId, cancelledRunId: active.runId, supersededRunIds: [q.runId] } });
    expect((await runDone(active.runId)).termination?.type).toBe('interrupted');
    expect((await runDone(q.runId)).termination?.type).toBe('superseded');
    await expectEachUserMessageOnce(threadId, ['/slow 100 /long 100 busy', 'queued one']);
  });
});

describe('approvals', () => {
  const email = '/tool send_email {"to":"a@example.com","subject":"hi","body":"hello"}';

  async function waitingRun(threadId: string) {
    const run = (await submit(threadId, email)).body;
    const requested = await waitForEvent(run.runId, 'tool_approval_requested');
    const record = await eventually(async () => {
      const r = await stack.store.getRun(run.runId);
      return r?.status === 'waiting' ? r : undefined;
    });
    expect((await stack.request('GET', `/v1/threads/${threadId}`)).body.status).toBe('waiting');
    return { runId: run.runId as string, toolCallId: (requested as { toolCallId: string }).toolCallId, record };
  }

  it('approve runs the tool and the run continues; the same decision twice is accepted once', async () => {
    const threadId = uniqueId('approve');
    const { runId, toolCallId, record } = await waitingRun(threadId);
    expect(record.waiting).toMatchObject({ tickets: [{ toolCallId, toolName: 'send_email' }] });
    const wrong = await stack.request('POST', `/v1/runs/${runId}/decisions`, { toolCallId: 'call_nope', action: 'approve' });
    expect(wrong.status).toBe(409);
    expect(wrong.body.code).toBe('no_pending_approval');
    const ok = await stack.request('POST', `/v1/runs/${runId}/decisions`, { toolCallId, action: 'approve' });
    expect(ok).toEqual({ status: 202, body: { runId, toolCallId, duplicate: false } });
    const twice = await stack.request('POST', `/v1/runs/${runId}/decisions`, { toolCallId, action: 'approve' });
    expect(twice.status === 202 ? twice.body.duplicate : twice.body.code).toBe(twice.status === 202 ? true : 'no_pending_approval');
    expect((await runDone(runId)).termination?.type).toBe('natural_end');
    const log = await messages(threadId);
    expect(log.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant']);
    expect(JSON.parse(log[2]!.content)).toMatchObject({ sent: true });
    const events = await eventsOf(runId);
    expect(events.filter((e) => e.type === 'tool_call_done')).toMatchObject([{ toolCallId, outcome: 'ok' }]);
  });

  it('deny gives the tool a denied result and the model continues', async () => {
    const threadId = uniqueId('deny');
    const { runId, toolCallId } = await waitingRun(threadId);
    const res = await stack.request('POST', `/v1/runs/${runId}/decisions`, { toolCallId, action: 'deny', reason: 'not today' });
    expect(res.status).toBe(202);
    const conflicting = await stack.request('POST', `/v1/runs/${runId}/decisions`, { toolCallId, action: 'approve' });
    expect(conflicting.status).toBe(409);
    expect((await runDone(runId)).termination?.type).toBe('natural_end');
    const log = await messages(threadId);
    expect(log.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant']);
    expect(log[2]!.content).toContain('not today');
    expect((await eventsOf(runId)).find((e) => e.type === 'tool_call_done')).toMatchObject({ outcome: 'denied' });
  });

  it('steering a waiting run cancels its pending tool call and continues with the new input', async () => {
    const threadId = uniqueId('steer-wait');
    const { runId, toolCallId } = await waitingRun(threadId);
    const steered = await submit(threadId, 'never mind', { mode: 'steer' });
    expect(steered.body).toMatchObject({ status: 'steered', runId });
    expect((await runDone(runId)).termination?.type).toBe('natural_end');
    const log = await messages(threadId);
    expect(log.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'user', 'assistant']);
    expect(log[2]).toMatchObject({ toolCallId });
    expect(log[4]!.content).toBe('Echo: never mind');
    expect((await eventsOf(runId)).find((e) => e.type === 'tool_call_done')).toMatchObject({ outcome: 'cancelled' });
    const late = await stack.request('POST', `/v1/runs/${runId}/decisions`, { toolCallId, action: 'approve' });
    expect(late.body.code).toBe('no_pending_approval');
  });
});

describe('durable cross-thread messages', () => {
  it('a message redelivered 3 times (twice concurrently) makes one run and is committed once', async () => {
    const threadId = uniqueId('durable');
    const body = { messageId: uniqueId('msg'), text: 'from afar', senderAgentId: 'planner' };
    const [a, b] = await Promise.all([
      stack.request('POST', `/v1/threads/${threadId}/mailbox`, body),
      stack.request('POST', `/v1/threads/${threadId}/mailbox`, body),
    ]);
    const c = await stack.request('POST', `/v1/threads/${threadId}/mailbox`, body);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([200, 201]);
    expect(c.status).toBe(200);
    const runId = `durable-msg-${body.messageId}`;
    for (const r of [a, b, c]) expect(r.body.runId).toBe(runId);
    expect(c.body.duplicate).toBe(true);
    await runDone(runId);
    const log = await messages(threadId);
    expect(log.map((m) => [m.id, m.role])).toEqual([
      [body.messageId, 'user'],
      [`${runId}:1:assistant`, 'assistant'],
    ]);
    const [row] = (await stack.store.pool.query('SELECT metadata FROM messages WHERE thread_id = $1 AND seq = 1', [threadId])).rows;
    expect(row.metadata).toEqual({ senderAgentId: 'planner' });
  });
});

describe('idempotency', () => {
  it('a retried submit with the same Idempotency-Key returns the same run and makes no second one', async () => {
    const threadId = uniqueId('idem');
    const key = uniqueId('key');
    const first = await submit(threadId, 'once', {}, { 'idempotency-key': key });
    const again = await submit(threadId, 'once', {}, { 'idempotency-key': key });
    expect(again.body.runId).toBe(first.body.runId);
    await runDone(first.body.runId);
    await expectEachUserMessageOnce(threadId, ['once']);
    expect((await stack.request('GET', `/v1/threads/${threadId}/runs`)).body.items).toHaveLength(1);
  });
});

describe('signals', () => {
  it('submit and interrupt also arrive as signals, with the same logic, and show in events and the mailbox', async () => {
    const threadId = uniqueId('signals');
    const first = (await submit(threadId, '/slow 100 /long 100 started by update')).body;
    await waitForEvent(first.runId, 'text_delta');
    const handle = stack.temporal.workflow.getHandle(`thread:default:${threadId}`);
    const agent = { agentId: 'default', maxSteps: 10, approvalTools: ['send_email'] };
    const queuedRunId = uniqueId('sig-run');
    await handle.signal('submit', {
      runId: queuedRunId,
      dispatchId: uniqueId('sig-dispatch'),
      mode: 'queue',
      agent,
      messages: [{ messageId: uniqueId('sig-msg'), role: 'user', content: 'by signal' }],
    });
    const queuedEvent = await eventually(async () => {
      const events = await stack.store.readThreadEvents({ tenant: 'default', threadId });
      return events.find((e) => e.runId === queuedRunId && e.type === 'run_queued');
    });
    expect(queuedEvent).toMatchObject({ mode: 'queue' });
    await handle.signal('interrupt');
    expect((await runDone(first.runId)).termination?.type).toBe('interrupted');
    expect((await runDone(queuedRunId)).termination?.type).toBe('superseded');
    const dispatches = (await stack.request('GET', `/v1/threads/${threadId}/mailbox`)).body.items;
    expect(dispatches.find((d: { runId: string }) => d.runId === queuedRunId)).toMatchObject({ status: 'superseded', mode: 'queue' });
    await expectEachUserMessageOnce(threadId, ['/slow 100 /long 100 started by update', 'by signal']);
  });
});

describe('continue-as-new', () => {
  it('a thread that continues-as-new while a run waits for approval loses neither the approval nor the queue', async () => {
    const threadId = uniqueId('can');
    const waiting = (await submit(threadId, '/tool send_email {"to":"a@example.com","subject":"s","body":"b"}')).body;
    const requested = (await waitForEvent(waiting.runId, 'tool_approval_requested')) as { toolCallId: string };
    const queued: string[] = [];
    for (let i = 0; i < 60; i++) queued.push((await submit(threadId, `behind ${i}`, { mode: 'queue' })).body.runId);
    const executions = async () => {
      const ids = [];
      for await (const wf of stack.temporal.workflow.list({ query: `WorkflowId = "thread:default:${threadId}"` })) ids.push(wf.runId);
      return ids.length;
    };
    expect(await eventually(async () => ((await executions()) > 1 ? true : undefined), 20_000, 'continue-as-new')).toBe(true);
    expect((await stack.store.getRun(waiting.runId))?.status).toBe('waiting');

    const decided = await stack.request('POST', `/v1/runs/${waiting.runId}/decisions`, { toolCallId: requested.toolCallId, action: 'approve' });
    expect(decided.status).toBe(202);
    expect((await runDone(waiting.runId)).termination?.type).toBe('natural_end');
    const runs = await Promise.all(queued.map((id) => runDone(id, 120_000)));
    expect(runs.every((r) => r.termination?.type === 'natural_end')).toBe(true);
    const users = (await messages(threadId)).filter((m) => m.role === 'user').map((m) => m.content);
    expect(users.slice(1)).toEqual(queued.map((_, i) => `behind ${i}`));
  }, 180_000);
});

describe('replay', () => {
  it('every history these scenarios produced replays without a determinism error', async () => {
    const histories = [];
    for await (const wf of stack.temporal.workflow.list({ query: `TaskQueue = "${stack.taskQueue}"` })) {
      histories.push({ workflowId: wf.workflowId, history: await stack.temporal.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory() });
    }
    expect(histories.length).toBeGreaterThan(20);
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle: { code: readFileSync(inject('workflowBundlePath'), 'utf8') } }, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  }, 120_000);
});
