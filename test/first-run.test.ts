import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startStack, uniqueId, type Stack } from './stack.js';
import { typesCoalesced } from './coalesced.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe('a first run end to end', () => {
  it('commits the user message and the echo reply through the thread and run workflows', async () => {
    const threadId = uniqueId('first');
    const submitted = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ role: 'user', content: 'hi' }] });
    expect(submitted.status).toBe(202);
    expect(submitted.body).toMatchObject({ threadId, status: 'running' });
    const { runId, dispatchId } = submitted.body;

    const run = await eventually(async () => {
      const r = await stack.request('GET', `/v1/runs/${runId}`);
      return r.body.status === 'done' ? r.body : undefined;
    });
    expect(run).toMatchObject({ runId, dispatchId, threadId, status: 'done', termination: { type: 'natural_end' }, steps: 1 });

    const messages = await stack.request('GET', `/v1/threads/${threadId}/messages`);
    expect(messages.status).toBe(200);
    expect(messages.body.items.map((m: any) => [m.seq, m.role, m.content, m.runId])).toEqual([
      [1, 'user', 'hi', runId],
      [2, 'assistant', 'Echo: hi', runId],
    ]);

    // The committed rows themselves, not just the API's view of them.
    const rows = await stack.store.pool.query('SELECT seq, role, content FROM messages WHERE tenant = $1 AND thread_id = $2 ORDER BY seq', ['default', threadId]);
    expect(rows.rows).toEqual([
      { seq: '1', role: 'user', content: 'hi' },
      { seq: '2', role: 'assistant', content: 'Echo: hi' },
    ]);
    const thread = await stack.request('GET', `/v1/threads/${threadId}`);
    expect(thread.body).toMatchObject({ threadId, status: 'idle', version: 2, activeRunId: null, latestRunId: runId });

    const events = await stack.store.readEvents(runId);
    expect(typesCoalesced(events)).toEqual(['run_queued', 'run_start', 'step_start', 'text_delta', 'step_end', 'run_finish']);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.flatMap((e) => (e.type === 'text_delta' ? [e.delta] : [])).join('')).toBe('Echo: hi');
  });

  it('makes thread and run workflows findable by ThreadId, as the Temporal UI searches them', async () => {
    const threadId = uniqueId('ui');
    const submitted = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: 'find me' }] });
    const { runId } = submitted.body;
    const found = await eventually(async () => {
      const ids: string[] = [];
      for await (const wf of stack.temporal.workflow.list({ query: `ThreadId = "${threadId}"` })) ids.push(wf.workflowId);
      return ids.length === 2 ? ids.sort() : undefined;
    }, 30_000, 'visibility');
    expect(found).toEqual([`run:default:${runId}`, `thread:default:${threadId}`]);
    const run = await stack.temporal.workflow.getHandle(`run:default:${runId}`).describe();
    expect(await run.staticSummary()).toBe(`run ${runId} for agent default`);
    const thread = await stack.temporal.workflow.getHandle(`thread:default:${threadId}`).describe();
    expect(await thread.staticSummary()).toBe(`thread ${threadId}`);
    // Activity summaries, as the UI lists them on the run's timeline.
    await stack.temporal.workflow.getHandle(`run:default:${runId}`).result();
    const history = await stack.temporal.workflow.getHandle(`run:default:${runId}`).fetchHistory();
    const summaries = (history.events ?? [])
      .filter((e) => e.activityTaskScheduledEventAttributes && e.userMetadata?.summary?.data)
      .map((e) => JSON.parse(Buffer.from(e.userMetadata!.summary!.data!).toString()));
    expect(summaries).toContain('model step 1');
  });

  it('reports Postgres and Temporal in /health and answers /health/live', async () => {
    const health = await stack.request('GET', '/health');
    expect(health).toEqual({ status: 200, body: { status: 'ok', postgres: 'ok', temporal: 'ok' } });
    expect((await stack.request('GET', '/health/live')).status).toBe(200);
  });

  it('rejects a malformed submit with invalid_request and writes nothing', async () => {
    const threadId = uniqueId('bad');
    const res = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [] });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('invalid_request');
    expect((await stack.request('GET', `/v1/threads/${threadId}`)).status).toBe(404);
  });
});
