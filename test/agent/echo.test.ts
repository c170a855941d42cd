// Drives the echo model through the AI SDK's own streamText, as the model-step activity does.
import { describe, it, expect } from 'vitest';
import { streamText, type ModelMessage, type TextStreamPart, type ToolSet } from 'ai';
import { APICallError, type LanguageModelV3StreamPart } from '@ai-sdk/provider';
import { createEchoModel, parseDirectives } from '../../src/agent/echo.js';
import { toAiSdkTools } from '../../src/agent/tools.js';

type Run = { parts: TextStreamPart<ToolSet>[]; text: string };

async function run(
  input: string | ModelMessage[],
  opts: { attempt?: number; abortSignal?: AbortSignal; onPart?: (p: TextStreamPart<ToolSet>) => void } = {},
): Promise<Run> {
  const result = streamText({
    model: createEchoModel(),
    messages: typeof input === 'string' ? [{ role: 'user', content: input }] : input,
    tools: toAiSdkTools(['calculator', 'get_time', 'sleep', 'send_email']),
    maxRetries: 0,
    abortSignal: opts.abortSignal,
    providerOptions: opts.attempt === undefined ? undefined : { echo: { attempt: opts.attempt } },
    onError: () => {},
  });
  const parts: TextStreamPart<ToolSet>[] = [];
  let text = '';
  for await (const part of result.fullStream) {
    parts.push(part);
    if (part.type === 'text-delta') text += part.text;
    opts.onPart?.(part);
  }
  return { parts, text };
}

const deltas = (r: Run) => r.parts.flatMap((p) => (p.type === 'text-delta' ? [p.text] : []));
const finishStep = (r: Run) => {
  const f = r.parts.find((p) => p.type === 'finish-step');
  if (f?.type !== 'finish-step') throw new Error('no finish-step part');
  return f;
};

describe('echo model', () => {
  it('echoes the last user text one word per token and finishes with stop', async () => {
    const r = await run([
      { role: 'user', content: 'earlier message' },
      { role: 'assistant', content: 'Echo: earlier message' },
      { role: 'user', content: 'hello   brave\nnew world' },
    ]);
    expect(r.text).toBe('Echo: hello brave new world');
    expect(deltas(r)).toEqual(['Echo:', ' hello', ' brave', ' new', ' world']);
    expect(r.parts.map((p) => p.type)).toEqual([
      'start', 'start-step', 'text-start', 'text-delta', 'text-delta', 'text-delta', 'text-delta', 'text-delta', 'text-end', 'finish-step', 'finish',
    ]);
    const f = finishStep(r);
    expect(f.finishReason).toBe('stop');
    // 2 + 3 + 4 words across the whole prompt; 5 tokens out.
    expect(f.usage.inputTokens).toBe(9);
    expect(f.usage.outputTokens).toBe(5);
  });

  it('replies just "Echo:" to an empty prompt', async () => {
    const r = await run('   ');
    expect(deltas(r)).toEqual(['Echo:']);
    expect(finishStep(r).usage.outputTokens).toBe(1);
  });

  it('leaves text that merely looks like a directive alone', async () => {
    expect((await run('/slowly going /slow 5')).text).toBe('Echo: /slowly going /slow 5');
    expect((await run('hi /long 3')).text).toBe('Echo: hi /long 3');
  });

  it('/long pads with positional words to exactly n tokens', async () => {
    const r = await run('/long 6 one two');
    expect(deltas(r)).toEqual(['Echo:', ' one', ' two', ' w4', ' w5', ' w6']);
    expect(finishStep(r).usage.outputTokens).toBe(6);
  });

  it('/long truncates a longer text to n tokens', async () => {
    expect(deltas(await run('/long 2 one two three'))).toEqual(['Echo:', ' one']);
    expect(deltas(await run('/long 1 one'))).toEqual(['Echo:']);
  });

  it('/long is capped at 100000 tokens', async () => {
    // Straight from doStream: streamText spends ~50µs per part, too slow for 100k in a unit test.
    const { stream } = await createEchoModel().doStream({ prompt: [{ role: 'user', content: [{ type: 'text', text: '/long 250000' }] }] });
    const d: string[] = [];
    for await (const p of stream as unknown as AsyncIterable<LanguageModelV3StreamPart>) if (p.type === 'text-delta') d.push(p.delta);
    expect(d).toHaveLength(100_000);
    expect(d.at(-1)).toBe(' w100000');
  });

  it('/slow delays each token by the given milliseconds', async () => {
    const started = Date.now();
    const r = await run('/slow 40 a b c');
    expect(r.text).toBe('Echo: a b c');
    expect(Date.now() - started).toBeGreaterThanOrEqual(4 * 40 - 10);
  });

  it('/slow stops promptly when the call is aborted mid-stream', async () => {
    const controller = new AbortController();
    let abortedAt = 0;
    const r = await run('/slow 500 a b c', {
      abortSignal: controller.signal,
      onPart: (p) => {
        if (p.type === 'text-delta' && abortedAt === 0) {
          abortedAt = Date.now();
          controller.abort();
        }
      },
    });
    expect(Date.now() - abortedAt).toBeLessThan(250);
    expect(deltas(r)).toEqual(['Echo:']);
    expect(r.parts.at(-1)?.type).toBe('abort');
  });

  it('/slow delay rejects with the abort reason when driven directly', async () => {
    const controller = new AbortController();
    const { stream } = await createEchoModel().doStream({
      prompt: [{ role: 'user', content: [{ type: 'text', text: '/slow 5000 x' }] }],
      abortSignal: controller.signal,
    });
    const reader = stream.getReader();
    expect((await reader.read()).value?.type).toBe('stream-start');
    const pending = reader.read();
    const reason = new Error('cancelled by user');
    const started = Date.now();
    setTimeout(() => controller.abort(reason), 20);
    await expect(pending).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('refuses to start when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(
      createEchoModel().doStream({ prompt: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], abortSignal: controller.signal }),
    ).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('/tool emits one tool call with the JSON args and finishes with tool-calls', async () => {
    const r = await run('/tool calculator {"expression": "1 + 2 * 3"} ignored text');
    const calls = r.parts.filter((p) => p.type === 'tool-call');
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ toolCallId: 'call_1', toolName: 'calculator', input: { expression: '1 + 2 * 3' } });
    expect(r.parts.map((p) => p.type)).toContain('tool-input-delta');
    expect(r.text).toBe('');
    expect(finishStep(r).finishReason).toBe('tool-calls');
  });

  it('/tool numbers call ids after the calls already in the conversation', async () => {
    const r = await run([
      { role: 'user', content: 'first' },
      { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'call_1', toolName: 'get_time', input: {} }] },
      { role: 'tool', content: [{ type: 'tool-result', toolCallId: 'call_1', toolName: 'get_time', output: { type: 'json', value: { iso: 'x' } } }] },
      { role: 'user', content: '/tool get_time {}' },
    ]);
    expect(r.parts.find((p) => p.type === 'tool-call')).toMatchObject({ toolCallId: 'call_2', toolName: 'get_time', input: {} });
  });

  it('/tool replies with the compact tool result once the result is the last message', async () => {
    const r = await run([
      { role: 'user', content: '/tool calculator {"expression":"1+2"}' },
      { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'call_1', toolName: 'calculator', input: { expression: '1+2' } }] },
      {
        role: 'tool',
        content: [{ type: 'tool-result', toolCallId: 'call_1', toolName: 'calculator', output: { type: 'json', value: { result: 3, note: 'a b' } } }],
      },
    ]);
    expect(r.text).toBe('Echo: {"result":3,"note":"a b"}');
    expect(r.parts.some((p) => p.type === 'tool-call')).toBe(false);
    expect(finishStep(r).finishReason).toBe('stop');
  });

  it('/tool replies with text and error results as text', async () => {
    const history = (output: { type: 'text' | 'error-text'; value: string }): ModelMessage[] => [
      { role: 'user', content: '/tool sleep {"ms":1}' },
      { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'call_1', toolName: 'sleep', input: { ms: 1 } }] },
      { role: 'tool', content: [{ type: 'tool-result', toolCallId: 'call_1', toolName: 'sleep', output }] },
    ];
    expect((await run(history({ type: 'text', value: 'done now' }))).text).toBe('Echo: done now');
    expect((await run(history({ type: 'error-text', value: 'sleep failed' }))).text).toBe('Echo: sleep failed');
  });

  it('/fail fails the first n attempts with a retryable 503, then succeeds', async () => {
    for (const attempt of [1, 2]) {
      const r = await run('/fail 2 hi there', { attempt });
      const error = r.parts.find((p) => p.type === 'error');
      expect(error?.type).toBe('error');
      const e = error?.type === 'error' ? error.error : undefined;
      expect(APICallError.isInstance(e)).toBe(true);
      expect(e).toMatchObject({ statusCode: 503, isRetryable: true });
      expect(r.text).toBe('');
    }
    expect((await run('/fail 2 hi there', { attempt: 3 })).text).toBe('Echo: hi there');
  });

  it('/fail counts a missing attempt as the first', async () => {
    expect((await run('/fail 1 hi')).parts.some((p) => p.type === 'error')).toBe(true);
    expect((await run('/fail 0 hi')).text).toBe('Echo: hi');
  });

  it('/fail applies through streamText retries, which reuse the same attempt number', async () => {
    const result = streamText({
      model: createEchoModel(),
      prompt: '/fail 1 hi',
      maxRetries: 2,
      providerOptions: { echo: { attempt: 2 } },
    });
    expect(await result.text).toBe('Echo: hi');
  });

  it('combines directives in any order and strips them from the echo', async () => {
    const started = Date.now();
    const r = await run('/long 4 /fail 1 /slow 10 keep this text please', { attempt: 2 });
    expect(deltas(r)).toEqual(['Echo:', ' keep', ' this', ' text']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(30);
    const t = await run('/slow 1 /tool calculator {"expression":"2^3"} /long 2');
    expect(t.parts.find((p) => p.type === 'tool-call')).toMatchObject({ toolName: 'calculator', input: { expression: '2^3' } });
  });

  it('answers invalid directives with a readable reply instead of throwing', async () => {
    const cases: [string, string][] = [
      ['/slow abc hi', 'Echo: invalid directive: /slow expects a whole number of milliseconds, got "abc"'],
      ['/slow', 'Echo: invalid directive: /slow expects a whole number of milliseconds, got ""'],
      ['/long 0', 'Echo: invalid directive: /long expects a positive number of tokens, got "0"'],
      ['/fail -1', 'Echo: invalid directive: /fail expects a whole number of attempts, got "-1"'],
      ['/tool calculator {"expression": 1', 'Echo: invalid directive: /tool calculator expects JSON object arguments, got "{"expression": 1"'],
      ['/tool calculator [1,2]', 'Echo: invalid directive: /tool calculator expects JSON object arguments, got "[1,2]"'],
      ['/tool {"a":1}', 'Echo: invalid directive: /tool expects a tool name, got "{"a":1}"'],
    ];
    for (const [input, reply] of cases) {
      const r = await run(input);
      expect(r.text).toBe(reply);
      expect(finishStep(r).finishReason).toBe('stop');
    }
  });

  it('caps /slow at 60 seconds per token', () => {
    // Waiting out a real minute per token is not a unit test; the parsed delay is what the stream sleeps for.
    expect(parseDirectives('/slow 600000 x')).toEqual({ ok: true, directives: { slowMs: 60_000, failAttempts: 0 }, text: 'x' });
  });

  it('doGenerate collects the same reply as the stream', async () => {
    const model = createEchoModel();
    const text = await model.doGenerate({ prompt: [{ role: 'user', content: [{ type: 'text', text: '/long 3 a b c d' }] }] });
    expect(text.content).toEqual([{ type: 'text', text: 'Echo: a b' }]);
    expect(text.finishReason).toEqual({ unified: 'stop', raw: 'stop' });
    expect(text.usage.outputTokens.total).toBe(3);
    const call = await model.doGenerate({ prompt: [{ role: 'user', content: [{ type: 'text', text: '/tool get_time {}' }] }] });
    expect(call.content).toEqual([{ type: 'tool-call', toolCallId: 'call_1', toolName: 'get_time', input: '{}' }]);
    expect(call.finishReason.unified).toBe('tool-calls');
    expect(model).toMatchObject({ specificationVersion: 'v3', provider: 'threadbox', modelId: 'echo' });
  });
});
