// Runs driven through the openai-compatible provider against a real local HTTP server speaking OpenAI's streaming protocol.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { typesCoalesced } from '../coalesced.js';
import { startFakeOpenAI, type FakeOpenAI } from '../fake-openai.js';
import { eventually, startStack, uniqueId, type Stack } from '../stack.js';

let fake: FakeOpenAI;
let stack: Stack;
let dir: string;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  dir = mkdtempSync(join(tmpdir(), 'threadbox-agents-'));
  const configPath = join(dir, 'threadbox.yaml');
  writeFileSync(
    configPath,
    [
      'agents:',
      '  - id: fake',
      `    model: "openai-compatible:${fake.baseURL}#fake-model"`,
      '    system: You are terse.',
      '    tools: [calculator, get_time]',
      '    maxSteps: 4',
      '    temperature: 0.25',
    ].join('\n'),
  );
  stack = await startStack({ env: { THREADBOX_CONFIG: configPath } });
});
afterAll(async () => {
  await stack?.stop();
  await fake?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function submit(text: string, threadId = uniqueId('provider')) {
  const res = await stack.request('POST', `/v1/threads/${threadId}/runs`, { agentId: 'fake', messages: [{ role: 'user', content: text }] });
  expect(res.status).toBe(202);
  return { threadId, runId: res.body.runId as string };
}

async function finished(runId: string, timeoutMs = 30_000) {
  return eventually(async () => {
    const r = await stack.request('GET', `/v1/runs/${runId}`);
    return r.body.status === 'done' ? r.body : undefined;
  }, timeoutMs, `run ${runId} to finish`);
}

async function messages(threadId: string) {
  return (await stack.request('GET', `/v1/threads/${threadId}/messages`)).body.items as any[];
}

/** [type, step, attempt] of the step's bookkeeping events, as the step activity wrote them. */
async function stepAttempts(runId: string) {
  const { rows } = await stack.store.pool.query(
    `SELECT type, (data->>'step')::int AS step, (data->>'attempt')::int AS attempt FROM run_events
      WHERE run_id = $1 AND type IN ('step_start', 'stream_reset') ORDER BY seq`,
    [runId],
  );
  return rows.map((r) => [r.type, r.step, r.attempt]);
}

const words = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 'w1' : ` w${i + 1}`)).join('');

describe('a run on an openai-compatible provider', () => {
  it('commits streamed text and a tool call, and sends the agent settings to the provider', async () => {
    const marker = uniqueId('calc');
    fake.script(marker, { toolCalls: [{ name: 'calculator', arguments: '{"expression": "2+3"}' }], argumentChunks: 3 }, { text: 'The sum is 5.' });
    const { threadId, runId } = await submit(`${marker} what is 2+3?`);
    const run = await finished(runId);
    expect(run).toMatchObject({ termination: { type: 'natural_end' }, steps: 2 });

    const log = await messages(threadId);
    const callId = log[1].toolCalls[0].toolCallId;
    expect(log.map((m) => [m.role, m.content, m.toolCalls, m.toolCallId])).toEqual([
      ['user', `${marker} what is 2+3?`, undefined, undefined],
      ['assistant', '', [{ toolCallId: callId, toolName: 'calculator', input: { expression: '2+3' } }], undefined],
      ['tool', '{"result":5}', undefined, callId],
      ['assistant', 'The sum is 5.', undefined, undefined],
    ]);

    const events = await stack.store.readEvents(runId);
    expect(typesCoalesced(events)).toEqual([
      'run_queued', 'run_start',
      'step_start', 'tool_call_start', 'tool_call_delta', 'tool_call_ready', 'step_end',
      'tool_call_done',
      'step_start', 'text_delta', 'step_end',
      'run_finish',
    ]);
    const byType = (type: string) => events.filter((e) => e.type === type) as any[];
    expect(byType('tool_call_delta').map((e) => e.delta).join('')).toBe('{"expression": "2+3"}');
    expect(byType('tool_call_ready')[0]).toMatchObject({ toolCallId: callId, toolName: 'calculator', input: { expression: '2+3' } });
    expect(byType('tool_call_done')[0]).toMatchObject({ toolCallId: callId, outcome: 'ok', output: { result: 5 } });
    expect(byType('text_delta').map((e) => e.delta).join('')).toBe('The sum is 5.');
    expect(byType('step_end').map((e) => e.finishReason)).toEqual(['tool-calls', 'stop']);
    expect(byType('step_end')[1].usage).toMatchObject({ outputTokens: 4, inferenceMs: expect.any(Number) });

    // Token counts come from the usage chunk the provider sends last, summed over both steps.
    expect(run.usage.outputTokens).toBe(3 + 4);
    expect(run.usage.inputTokens).toBeGreaterThan(0);

    const [first, second] = fake.requestsFor(marker);
    expect(fake.requestsFor(marker)).toHaveLength(2);
    expect(first!.body).toMatchObject({ model: 'fake-model', stream: true, stream_options: { include_usage: true }, temperature: 0.25 });
    expect(first!.body.messages[0]).toEqual({ role: 'system', content: 'You are terse.' });
    expect(first!.body.tools.map((t: any) => t.function.name)).toEqual(['calculator', 'get_time']);
    expect(second!.body.messages.slice(-2)).toEqual([
      { role: 'assistant', content: null, tool_calls: [{ id: callId, type: 'function', function: { name: 'calculator', arguments: '{"expression":"2+3"}' } }] },
      { role: 'tool', tool_call_id: callId, content: '{"result":5}' },
    ]);
  });

  it('gives a malformed tool call a failed result the model reads, and carries on', async () => {
    const marker = uniqueId('badargs');
    fake.script(marker, { toolCalls: [{ name: 'calculator', arguments: '{"expression": 42}' }] }, { text: 'Sorry.' });
    const { threadId, runId } = await submit(marker);
    expect(await finished(runId)).toMatchObject({ termination: { type: 'natural_end' }, steps: 2 });
    const log = await messages(threadId);
    expect(log.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant']);
    expect(JSON.parse(log[2].content).error).toContain('invalid input for calculator');
    expect(fake.requestsFor(marker)[1]!.body.messages.at(-1).content).toContain('invalid input for calculator');
  });

  it('retries 429 twice, then completes, announcing each retry with stream_reset', async () => {
    const marker = uniqueId('ratelimit');
    fake.script(
      marker,
      { status: 429, message: 'Rate limit reached', headers: { 'retry-after-ms': '20' } },
      { status: 429, message: 'Rate limit reached' },
      { text: 'finally through' },
    );
    const { threadId, runId } = await submit(marker);
    expect(await finished(runId)).toMatchObject({ termination: { type: 'natural_end' }, steps: 1 });
    expect(fake.requestsFor(marker)).toHaveLength(3);
    expect(await stepAttempts(runId)).toEqual([
      ['step_start', 1, 1],
      ['stream_reset', 1, 2],
      ['step_start', 1, 2],
      ['stream_reset', 1, 3],
      ['step_start', 1, 3],
    ]);
    expect((await messages(threadId)).at(-1)).toMatchObject({ role: 'assistant', content: 'finally through' });
  });

  it('retries a connection dropped mid-stream and commits only the retry', async () => {
    const marker = uniqueId('reset');
    fake.script(marker, { text: 'lost in transit forever', cutAfterTokens: 2 }, { text: 'second time lucky' });
    const { threadId, runId } = await submit(marker);
    expect(await finished(runId)).toMatchObject({ termination: { type: 'natural_end' } });
    expect(fake.requestsFor(marker)).toHaveLength(2);
    const events = await stack.store.readEvents(runId);
    const reset = events.findIndex((e) => e.type === 'stream_reset');
    expect(reset).toBeGreaterThan(0);
    expect(events.slice(reset + 1).filter((e) => e.type === 'text_delta').map((e: any) => e.delta).join('')).toBe('second time lucky');
    expect((await messages(threadId)).at(-1)).toMatchObject({ role: 'assistant', content: 'second time lucky', status: 'complete' });
  });

  it.each([
    [401, 'Incorrect API key provided: sk-fake.', 'invalid_api_key'],
    [403, 'Project does not have access to model fake-model', undefined],
    [404, 'The model `fake-model` does not exist or you do not have access to it.', 'model_not_found'],
    [400, "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens.", 'context_length_exceeded'],
  ])('ends the run with error after exactly one request when the provider answers %i', async (status, message, code) => {
    const marker = uniqueId(`perm${status}`);
    fake.script(marker, { status, message, code }, { text: 'a retry must never get here' });
    const { threadId, runId } = await submit(marker);
    const run = await finished(runId);
    expect(run.termination.type).toBe('error');
    expect(run.termination.detail).toContain(message);
    expect(run.termination.detail).toContain(`HTTP ${status}`);
    const events = await stack.store.readEvents(runId);
    expect(events.some((e) => e.type === 'stream_reset')).toBe(false);
    await new Promise((r) => setTimeout(r, 500)); // a retry would have been scheduled well within this
    expect(fake.requestsFor(marker)).toHaveLength(1);
    expect((await messages(threadId)).map((m) => m.role)).toEqual(['user']);
  });

  it('closes the provider connection within 1 s of a cancel, mid-stream and before the first byte', async () => {
    const latencies: { when: string; ms: number }[] = [];
    const cancelAndMeasure = async (when: 'mid-stream' | 'before first byte') => {
      const marker = uniqueId('cancel');
      const full = words(400);
      fake.script(marker, when === 'mid-stream' ? { text: full, tokenDelayMs: 40 } : { text: full, firstByteDelayMs: 60_000 });
      const { threadId, runId } = await submit(marker);
      if (when === 'mid-stream') {
        await eventually(async () => ((await stack.store.readEvents(runId)).filter((e) => e.type === 'text_delta').length >= 3 ? true : undefined));
      } else {
        await eventually(async () => (fake.requestsFor(marker).length > 0 ? true : undefined));
        await new Promise((r) => setTimeout(r, 300)); // well into the wait for headers
      }
      const signalledAt = performance.now();
      await stack.temporal.workflow.getHandle(`run:default:${runId}`).signal('stop', { reason: 'cancelled' });
      const request = fake.requestsFor(marker)[0]!;
      const closedAt = await eventually(async () => request.socketClosedAt, 5_000, 'the provider socket to close');
      latencies.push({ when, ms: Math.round(closedAt - signalledAt) });
      expect(request.finishedAt).toBeUndefined();

      const run = await finished(runId);
      expect(run.termination).toEqual({ type: 'cancelled' });
      const log = await messages(threadId);
      if (when === 'mid-stream') {
        // Whatever reached the event log before the cancel is kept, marked interrupted.
        expect(log.at(-1)).toMatchObject({ role: 'assistant', status: 'interrupted' });
        expect(full.startsWith(log.at(-1).content)).toBe(true);
        expect(log.at(-1).content.length).toBeGreaterThan(0);
      } else {
        expect(log.map((m) => m.role)).toEqual(['user']);
      }
      expect(fake.requestsFor(marker)).toHaveLength(1);
    };
    for (let i = 0; i < 5; i++) await cancelAndMeasure('mid-stream');
    for (let i = 0; i < 3; i++) await cancelAndMeasure('before first byte');
    console.log(`cancel → provider socket closed (ms): ${JSON.stringify(latencies)}`);
    for (const { ms } of latencies) expect(ms).toBeLessThan(1000);
  });
});
