// Every echo directive through a real run: HTTP submit, thread and run workflows, step and tool activities, Postgres.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { typesCoalesced } from '../coalesced.js';
import { eventually, startStack, uniqueId, type Stack } from '../stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

async function run(text: string, timeoutMs = 30_000) {
  const threadId = uniqueId('echo');
  const submitted = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ role: 'user', content: text }] });
  expect(submitted.status).toBe(202);
  const runId: string = submitted.body.runId;
  const record = await eventually(async () => {
    const r = await stack.request('GET', `/v1/runs/${runId}`);
    return r.body.status === 'done' ? r.body : undefined;
  }, timeoutMs, `run ${runId} to finish`);
  const log = (await stack.request('GET', `/v1/threads/${threadId}/messages`)).body.items as any[];
  const events = await stack.store.readEvents(runId, 0, 10_000);
  return { runId, record, log, events, of: (type: string) => events.filter((e) => e.type === type) as any[] };
}

describe('echo directives in a real run', () => {
  it('/tool calls the tool as its own step, then answers with the result', async () => {
    const r = await run('/tool calculator {"expression":"2+3"}');
    expect(r.record).toMatchObject({ termination: { type: 'natural_end' }, steps: 2 });
    expect(r.log.map((m) => [m.role, m.content, m.toolCalls, m.toolCallId])).toEqual([
      ['user', '/tool calculator {"expression":"2+3"}', undefined, undefined],
      ['assistant', '', [{ toolCallId: 'call_1', toolName: 'calculator', input: { expression: '2+3' } }], undefined],
      ['tool', '{"result":5}', undefined, 'call_1'],
      ['assistant', 'Echo: {"result":5}', undefined, undefined],
    ]);
    expect(typesCoalesced(r.events)).toEqual([
      'run_queued', 'run_start',
      'step_start', 'tool_call_start', 'tool_call_delta', 'tool_call_ready', 'step_end',
      'tool_call_done',
      'step_start', 'text_delta', 'step_end',
      'run_finish',
    ]);
    expect(r.of('tool_call_done')[0]).toMatchObject({ toolCallId: 'call_1', toolName: 'calculator', outcome: 'ok', output: { result: 5 } });
  });

  it('/tool with a tool that does not exist becomes an error result the model reads', async () => {
    const r = await run('/tool teleport {"to":"mars"}');
    expect(r.record.termination).toEqual({ type: 'natural_end' });
    expect(r.log.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant']);
    expect(JSON.parse(r.log[2].content)).toEqual({ error: expect.stringContaining('unknown tool "teleport"') });
    expect(r.of('tool_call_done')[0]).toMatchObject({ outcome: 'error' });
    expect(r.log[3].content).toContain('unknown tool');
  });

  it('/tool sleep heartbeats through a sleep and completes', async () => {
    const started = Date.now();
    const r = await run('/tool sleep {"ms":1200}');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1200);
    expect(r.log[2]).toMatchObject({ role: 'tool', content: '{"slept":1200}' });
    expect(r.log[3].content).toBe('Echo: {"slept":1200}');
  });

  it('/fail 2 fails two attempts, announces both retries with stream_reset, and completes', async () => {
    const r = await run('/fail 2 hello again');
    expect(r.record).toMatchObject({ termination: { type: 'natural_end' }, steps: 1 });
    expect(r.of('stream_reset')).toHaveLength(2);
    expect(r.of('step_start')).toHaveLength(3);
    expect(r.log.at(-1)).toMatchObject({ role: 'assistant', content: 'Echo: hello again' });
    // The retries come after the resets, each starting the step over.
    expect(r.events.map((e) => e.type).filter((t) => t === 'stream_reset' || t === 'step_start')).toEqual([
      'step_start', 'stream_reset', 'step_start', 'stream_reset', 'step_start',
    ]);
  });

  it('/fail beyond the retry budget ends the run with error, with the transient message', async () => {
    const r = await run('/fail 50 never', 60_000);
    expect(r.record.termination.type).toBe('error');
    expect(r.record.termination.detail).toContain('simulated transient failure');
    expect(r.of('stream_reset').length).toBe(r.of('step_start').length - 1);
    expect(r.log.map((m) => m.role)).toEqual(['user']);
  }, 60_000);

  it('/slow spaces the tokens out, each reaching the event log as it is produced', async () => {
    const r = await run('/slow 150 one two three');
    expect(r.log.at(-1).content).toBe('Echo: one two three');
    const deltas = r.of('text_delta');
    expect(deltas.map((e) => e.delta)).toEqual(['Echo:', ' one', ' two', ' three']);
    // Committed at the pace of the tokens rather than in one batch at the end of the step.
    const spread = Date.parse(deltas.at(-1).ts) - Date.parse(deltas[0].ts);
    expect(spread).toBeGreaterThanOrEqual(3 * 150 - 50);
    expect(new Set(deltas.map((e) => e.ts)).size).toBe(4);
  });

  it('/long streams exactly n tokens and commits them as one message', async () => {
    const r = await run('/long 500 start');
    const deltas = r.of('text_delta');
    // Group commit: the tokens a fast model sends during one write go into the next, as one delta.
    expect(deltas.length).toBeGreaterThanOrEqual(1);
    expect(deltas.length).toBeLessThanOrEqual(500);
    expect(deltas.map((e) => e.seq)).toEqual(deltas.map((_, i) => deltas[0].seq + i));
    const expected = ['Echo:', ' start', ...Array.from({ length: 498 }, (_, i) => ` w${i + 3}`)].join('');
    expect(deltas.map((e) => e.delta).join('')).toBe(expected);
    expect(r.log.at(-1)).toMatchObject({ role: 'assistant', content: expected });
    expect(r.of('step_end')[0].usage).toMatchObject({ outputTokens: 500 });
    expect(r.record.usage.outputTokens).toBe(500);
  });

  it('answers a malformed directive with a readable reply', async () => {
    const r = await run('/slow soon hi');
    expect(r.record.termination).toEqual({ type: 'natural_end' });
    expect(r.log.at(-1).content).toBe('Echo: invalid directive: /slow expects a whole number of milliseconds, got "soon"');
  });
});
