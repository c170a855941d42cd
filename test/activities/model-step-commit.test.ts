// The model step commits its own reply (the commit-in-step patch): once, by its message id, and a retried
// attempt of a step whose reply is committed returns that reply instead of asking the model again.
// The real activity runs in Temporal's activity test environment against the suite's Postgres.
import { randomUUID } from 'node:crypto';
import { MockActivityEnvironment } from '@temporalio/testing';
import type pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { modelStepActivities, type ModelStepInput, type ModelStepResult } from '../../activities/model-step.js';
import { AgentRegistry } from '../../src/agent/agents.js';
import { assistantMessageId } from '../../src/contract/mailbox.js';
import { createPool, migrate } from '../../src/store/db.js';
import { Store, type ThreadRef } from '../../src/store/store.js';

let pool: pg.Pool;
let store: Store;
let activities: ReturnType<typeof modelStepActivities>;
beforeAll(async () => {
  pool = createPool(inject('databaseUrl'));
  await migrate(pool);
  store = new Store(pool);
  activities = modelStepActivities({ store, agents: AgentRegistry.withDefaults('echo') });
});
afterAll(async () => {
  await pool?.end();
});

/** A queued run on a new thread whose input is one user message. */
async function queuedRun(text: string): Promise<{ ref: ThreadRef; input: ModelStepInput }> {
  const ref = { tenant: 'step-commit', threadId: `t-${randomUUID()}` };
  const runId = randomUUID();
  await store.createRun(ref, { runId, dispatchId: `d-${runId}`, agentId: 'default', mode: 'queue', epoch: 0, input: [{ messageId: `${runId}:user`, role: 'user', content: text }] });
  return { ref, input: { ...ref, runId, agentId: 'default', step: 1, start: { carriedRunIds: [] } } };
}

const step = (input: ModelStepInput, attempt: number): Promise<ModelStepResult> => new MockActivityEnvironment({ attempt }).run(activities.modelStep, input);

async function log(ref: ThreadRef) {
  const { rows } = await pool.query('SELECT message_id, role, content FROM messages WHERE tenant = $1 AND thread_id = $2 ORDER BY seq', [ref.tenant, ref.threadId]);
  return rows;
}

const eventCount = async (runId: string) => (await pool.query('SELECT count(*)::int AS n FROM run_events WHERE run_id = $1', [runId])).rows[0].n as number;

it('a step asked to commit puts its reply in the log after its input, once', async () => {
  const { ref, input } = await queuedRun('hello there');
  const result = await step({ ...input, commit: true }, 1);
  expect(result.text).toBe('Echo: hello there');
  expect(await log(ref)).toEqual([
    { message_id: `${input.runId}:user`, role: 'user', content: 'hello there' },
    { message_id: assistantMessageId(input.runId, 1), role: 'assistant', content: 'Echo: hello there' },
  ]);
});

it('a retried attempt of a step whose reply is committed returns that reply and streams nothing', async () => {
  const { ref, input } = await queuedRun('first answer');
  await step({ ...input, commit: true }, 1);
  const events = await eventCount(input.runId);
  const retried = await step({ ...input, commit: true }, 2);
  expect(retried).toMatchObject({ text: 'Echo: first answer', toolCalls: [], finishReason: 'stop' });
  expect(await eventCount(input.runId)).toBe(events);
  expect((await log(ref)).filter((m) => m.role === 'assistant')).toHaveLength(1);
});

it('a retried attempt whose predecessor committed nothing calls the model and commits', async () => {
  const { ref, input } = await queuedRun('second try');
  const retried = await step({ ...input, commit: true }, 2);
  expect(retried.text).toBe('Echo: second try');
  expect((await log(ref)).map((m) => m.content)).toEqual(['second try', 'Echo: second try']);
});

it('a step of a run from before the patch (no commit asked) leaves the commit to its workflow', async () => {
  const { ref, input } = await queuedRun('old run');
  const result = await step(input, 1);
  expect(result.text).toBe('Echo: old run');
  expect((await log(ref)).map((m) => m.role)).toEqual(['user']);
});
