// The model step in real runs: what part of a long thread the model sees, model text that Postgres cannot keep, and an interrupted step's record.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_CONTEXT_MESSAGES } from '../../src/agent/context.js';
import type { NewMessage } from '../../src/store/store.js';
import { startFakeOpenAI, type FakeOpenAI } from '../fake-openai.js';
import { eventually, startStack, uniqueId, type Stack } from '../stack.js';

let fake: FakeOpenAI;
let stack: Stack;
let dir: string;

beforeAll(async () => {
  fake = await startFakeOpenAI();
  dir = mkdtempSync(join(tmpdir(), 'threadbox-context-'));
  const configPath = join(dir, 'threadbox.yaml');
  writeFileSync(
    configPath,
    [
      'agents:',
      '  - id: default',
      '    model: echo',
      '  - id: narrow',
      `    model: "openai-compatible:${fake.baseURL}#fake-model"`,
      '    system: You are terse.',
      '    tools: [calculator]',
      '    maxContextMessages: 7',
      '    maxContextTokens: 50000',
    ].join('\n'),
  );
  stack = await startStack({ env: { THREADBOX_CONFIG: configPath } });
});
afterAll(async () => {
  await stack?.stop();
  await fake?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function submit(threadId: string, content: string, agentId = 'default') {
  const res = await stack.request('POST', `/v1/threads/${threadId}/runs`, { agentId, messages: [{ role: 'user', content }] });
  expect(res.status).toBe(202);
  return res.body.runId as string;
}

async function finished(runId: string, timeoutMs = 30_000) {
  return eventually(async () => {
    const r = await stack.request('GET', `/v1/runs/${runId}`);
    return r.body.status === 'done' ? r.body : undefined;
  }, timeoutMs, `run ${runId} to finish`);
}

async function messages(threadId: string) {
  const items: any[] = [];
  let after = 0;
  for (;;) {
    const page = (await stack.request('GET', `/v1/threads/${threadId}/messages?after=${after}&limit=1000`)).body;
    items.push(...page.items);
    if (!page.nextCursor) return items;
    after = items.at(-1).seq;
  }
}

const toolCall = (id: string) => ({ toolCallId: id, toolName: 'calculator', input: { expression: '1+1' } });
const toolResult = (id: string): NewMessage => ({ role: 'tool', content: '{"result":2}', toolCallId: id, metadata: { toolName: 'calculator', outcome: 'ok' } });

describe('the context a model call sees', () => {
  it("a 12,000-message thread's newest user turn reaches the model", async () => {
    const threadId = uniqueId('long');
    const ref = { tenant: 'default', threadId };
    for (let batch = 0; batch < 12; batch++) {
      const filler = Array.from({ length: 1000 }, (_, i): NewMessage => {
        const n = batch * 1000 + i + 1;
        return n % 2 ? { role: 'user', content: `filler ${n}` } : { role: 'assistant', content: `Echo: filler ${n - 1}` };
      });
      await stack.store.commitMessages(ref, filler);
    }
    const runId = await submit(threadId, 'needle');
    const run = await finished(runId);
    expect(run.termination).toEqual({ type: 'natural_end' });
    const log = await messages(threadId);
    expect(log).toHaveLength(12_002);
    expect(log.slice(-2).map((m) => [m.role, m.content])).toEqual([
      ['user', 'needle'],
      ['assistant', 'Echo: needle'],
    ]);
    // The echo model counts the words it was sent: the newest window of the default budget, not the thread.
    expect(run.usage.inputTokens).toBeGreaterThan(DEFAULT_MAX_CONTEXT_MESSAGES);
    expect(run.usage.inputTokens).toBeLessThanOrEqual(3 * DEFAULT_MAX_CONTEXT_MESSAGES);
  });

  it('the store reads the newest messages within a count and a size, oldest first', async () => {
    const ref = { tenant: 'default', threadId: uniqueId('recent') };
    await stack.store.commitMessages(ref, Array.from({ length: 10 }, (_, i): NewMessage => ({ role: 'user', content: `${i + 1}`.padEnd(1000, '.') })));
    const seqs = async (limit: number, maxContentBytes: number) => (await stack.store.loadRecentMessages(ref, { limit, maxContentBytes })).map((m) => m.seq);
    expect(await seqs(100, 1_000_000)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(await seqs(4, 1_000_000)).toEqual([7, 8, 9, 10]);
    expect(await seqs(100, 2_500)).toEqual([8, 9, 10]); // the one that crosses the size is read too: the caller decides
    expect(await seqs(100, 1)).toEqual([10]);
  });

  it("an agent's maxContextMessages sends the provider the newest turns, system prompt first, tool pairs whole", async () => {
    const threadId = uniqueId('window');
    await stack.store.commitMessages({ tenant: 'default', threadId }, [
      { role: 'user', content: 'u1' },
      { role: 'assistant', content: '', toolCalls: [toolCall('c1')] },
      toolResult('c1'),
      { role: 'assistant', content: 'a1' },
      { role: 'user', content: 'u2' },
      { role: 'assistant', content: '', toolCalls: [toolCall('c2')] },
      toolResult('c2'),
      { role: 'assistant', content: 'a2' },
    ]);
    const marker = uniqueId('u3');
    fake.script(marker, { text: 'ok' });
    const run = await finished(await submit(threadId, marker, 'narrow'));
    expect(run.termination).toEqual({ type: 'natural_end' });

    const [request] = fake.requestsFor(marker);
    // The newest 7 begin with c1's result, whose call is older: it is dropped, and so is a1, the tail of that turn.
    expect(request!.body.messages.map((m: any) => [m.role, m.content ?? null, m.tool_calls?.map((c: any) => c.id) ?? m.tool_call_id ?? null])).toEqual([
      ['system', 'You are terse.', null],
      ['user', 'u2', null],
      ['assistant', null, ['c2']],
      ['tool', '{"result":2}', 'c2'],
      ['assistant', 'a2', null],
      ['user', marker, null],
    ]);
    // The attempt number is the echo model's business: no provider is sent our `echo` options.
    expect(JSON.stringify(request!.body)).not.toContain('"echo"');
  });
});

describe('model output Postgres cannot keep', () => {
  it('NUL and a lone surrogate in streamed text and tool input are sanitised, and the run ends normally', async () => {
    const threadId = uniqueId('poison');
    const marker = uniqueId('poison');
    fake.script(marker, { toolCalls: [{ name: 'calculator', arguments: '{"expression": "6*7\\u0000"}' }] }, { text: 'six\u0000 times \ud800 seven' });
    const runId = await submit(threadId, marker, 'narrow');
    const run = await finished(runId);
    expect(run.termination).toEqual({ type: 'natural_end' });
    expect(run.steps).toBe(2);

    const log = await messages(threadId);
    expect(log.map((m) => [m.role, m.content])).toEqual([
      ['user', marker],
      ['assistant', ''],
      ['tool', '{"result":42}'],
      ['assistant', 'six times \ufffd seven'],
    ]);
    expect(log[1].toolCalls[0].input).toEqual({ expression: '6*7' });
    const events = await stack.store.readEvents(runId);
    expect(events.some((e) => e.type === 'stream_reset')).toBe(false);
    expect(events.filter((e) => e.type === 'text_delta').map((e: any) => e.delta).join('')).toBe('six times \ufffd seven');
    expect(events.find((e) => e.type === 'tool_call_ready')).toMatchObject({ input: { expression: '6*7' } });
  });
});

describe('an interrupted step', () => {
  it('still counts on the run record: its step and the time it spent', async () => {
    const threadId = uniqueId('stopped');
    const runId = await submit(threadId, '/slow 50 /long 100 x');
    await eventually(async () => ((await stack.store.readEvents(runId)).filter((e) => e.type === 'text_delta').length >= 5 ? true : undefined));
    expect((await stack.request('POST', `/v1/threads/${threadId}/interrupt`)).status).toBe(202);
    const run = await finished(runId);
    expect(['interrupted', 'cancelled']).toContain(run.termination.type);
    // The step writes its record as it unwinds from the cancel, which may land just after the run's finish.
    const recorded = await eventually(async () => {
      const r = (await stack.request('GET', `/v1/runs/${runId}`)).body;
      return r.steps >= 1 ? r : undefined;
    }, 5_000, 'the interrupted step to be recorded');
    expect(recorded.steps).toBe(1);
    expect(recorded.usage.inferenceMs).toBeGreaterThanOrEqual(5 * 50 - 50);
  });
});
