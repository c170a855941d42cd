// The hot path's shortcuts keep every guarantee: group commit of a step's tokens (fast models batched,
// slow ones token by token), the first model step starting its run (a run stopped or failed before that
// still commits its input, once), and a small workflow cache (idle threads evicted, replayed on their next
// message, nothing lost).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postRetrying } from '../testkit/http.js';
import { eventually, startStack, uniqueId, type Stack } from './stack.js';

const stacks: Stack[] = [];
let stack: Stack;
const dir = mkdtempSync(join(tmpdir(), 'threadbox-hot-path-'));
beforeAll(async () => {
  stack = await startStack();
  stacks.push(stack);
});
afterAll(async () => {
  for (const s of stacks.reverse()) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

const submit = (s: Stack, threadId: string, content: string, extra: Record<string, unknown> = {}) =>
  postRetrying(`${s.url}/v1/threads/${threadId}/runs`, { messages: [{ role: 'user', content }], ...extra });

async function runDone(s: Stack, runId: string, timeoutMs = 60_000) {
  return eventually(async () => {
    const run = await s.store.getRun(runId);
    return run?.status === 'done' ? run : undefined;
  }, timeoutMs, `run ${runId} to end`);
}

describe('group commit of a step', () => {
  it("a fast model's 20,000 tokens are stored in at most 2,000 events, the text exact and the seqs gap-free", async () => {
    const { body } = await submit(stack, uniqueId('fast'), '/long 20000 fast');
    expect((await runDone(stack, body.runId)).termination).toEqual({ type: 'natural_end' });
    const events = await stack.store.readEvents(body.runId, 0, 100_000);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    const deltas = events.flatMap((e) => (e.type === 'text_delta' ? [e.delta] : []));
    expect(events.length).toBeLessThanOrEqual(2000);
    expect(deltas.join('')).toBe(['Echo:', ' fast', ...Array.from({ length: 19_998 }, (_, i) => ` w${i + 3}`)].join(''));
    // A coalesced delta stops growing at 16 KiB (and the token that crosses it).
    expect(Math.max(...deltas.map((d) => d.length))).toBeLessThan(16_384 + 16);
  });

  it("a slow model's tokens are each written as they come, not held for a batch", async () => {
    const { body } = await submit(stack, uniqueId('slow'), '/slow 150 /long 6 slow');
    await runDone(stack, body.runId);
    const { rows } = await stack.store.pool.query<{ type: string; data: { delta?: string }; created_at: Date }>(
      `SELECT type, data, created_at FROM run_events WHERE run_id = $1 AND type IN ('text_delta', 'step_end') ORDER BY seq`,
      [body.runId],
    );
    const deltas = rows.filter((r) => r.type === 'text_delta');
    expect(deltas.map((r) => r.data.delta).join('')).toBe('Echo: slow w3 w4 w5 w6');
    // One write is in flight at a time: a token waits only for a write still under way (far below 150 ms
    // unless the machine is very busy), so most tokens get a write of their own, spread over the step.
    expect(deltas.length).toBeGreaterThanOrEqual(4);
    const stepEnd = rows.find((r) => r.type === 'step_end')!;
    expect(stepEnd.created_at.getTime() - deltas[0]!.created_at.getTime()).toBeGreaterThanOrEqual(500);
  });
});

describe('the first model step starts the run', () => {
  it("a run whose first step fails before it starts (the worker does not know the agent) still commits its input, once", async () => {
    // The API knows agent `ghost`; the worker on the same task queue does not, so step 1 fails before it starts the run.
    const taskQueue = `ghost-${randomUUID()}`;
    const agentsFile = join(dir, 'ghost-agents.json');
    writeFileSync(agentsFile, JSON.stringify({ agents: [{ id: 'default', model: 'echo' }, { id: 'ghost', model: 'echo' }] }));
    const api = await startStack({ worker: false, taskQueue, env: { THREADBOX_CONFIG: agentsFile } });
    stacks.push(api);
    stacks.push(await startStack({ taskQueue }));
    const threadId = uniqueId('ghost');
    const { status, body } = await submit(api, threadId, 'for a ghost', { agentId: 'ghost' });
    expect(status).toBe(202);
    const run = await runDone(api, body.runId);
    expect(run.termination).toMatchObject({ type: 'error', detail: expect.stringContaining('unknown agent ghost') });
    const log = await api.store.loadCommittedMessages({ tenant: 'default', threadId });
    expect(log.map((m) => [m.role, m.content, m.runId])).toEqual([['user', 'for a ghost', body.runId]]);
    // The thread moves on: the next run (of an agent the worker knows) sees the message and answers.
    const next = await submit(api, threadId, 'and now you', { mode: 'queue' });
    expect((await runDone(api, next.body.runId)).termination).toEqual({ type: 'natural_end' });
    expect((await api.store.loadCommittedMessages({ tenant: 'default', threadId })).map((m) => m.content)).toEqual(['for a ghost', 'and now you', 'Echo: and now you']);
  });

  it('runs interrupted right as they start, on 10 threads at once, each commit their input exactly once', async () => {
    const threads = Array.from({ length: 10 }, () => uniqueId('early'));
    await Promise.all(
      threads.map(async (threadId) => {
        // Sent together: the second (an interrupt) lands before, as, or just after the first run starts.
        const [first, second] = await Promise.all([submit(stack, threadId, `/slow 50 /long 10 first ${threadId}`), submit(stack, threadId, `second ${threadId}`)]);
        for (const r of [first, second]) await runDone(stack, r.body.runId);
      }),
    );
    for (const threadId of threads) {
      const users = (await stack.store.loadCommittedMessages({ tenant: 'default', threadId })).filter((m) => m.role === 'user').map((m) => m.content);
      expect(users.sort()).toEqual([`/slow 50 /long 10 first ${threadId}`, `second ${threadId}`]);
      const runs = await stack.store.listRuns({ tenant: 'default', threadId });
      expect(runs.every((r) => r.status === 'done')).toBe(true);
      // The later run ends naturally; the earlier one was interrupted or superseded, or had already ended
      // when the other came in (a submit answered 429 is retried after its Retry-After).
      const ends = runs.map((r) => r.termination?.type);
      expect(ends).toHaveLength(2);
      expect(ends).toContain('natural_end');
      for (const end of ends) expect(['natural_end', 'interrupted', 'superseded']).toContain(end);
    }
  }, 120_000);
});

describe('a worker whose workflow cache holds 2 workflows', () => {
  it('evicts idle threads and replays them on their next message, each log intact', async () => {
    const small = await startStack({ env: { THREADBOX_WORKFLOW_CACHE_SIZE: '2' } });
    stacks.push(small);
    const threads = Array.from({ length: 6 }, () => uniqueId('evicted'));
    for (const round of [1, 2, 3]) {
      for (const threadId of threads) {
        const { body } = await submit(small, threadId, `round ${round}`);
        expect((await runDone(small, body.runId)).termination).toEqual({ type: 'natural_end' });
      }
    }
    for (const threadId of threads) {
      const log = await small.store.loadCommittedMessages({ tenant: 'default', threadId });
      expect(log.map((m) => m.content)).toEqual(['round 1', 'Echo: round 1', 'round 2', 'Echo: round 2', 'round 3', 'Echo: round 3']);
    }
  }, 120_000);
});
