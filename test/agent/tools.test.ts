import { describe, it, expect } from 'vitest';
import { asSchema } from 'ai';
import { builtinTools, executeTool, toAiSdkTools, type ToolContext } from '../../src/agent/tools.js';

function context(signal = new AbortController().signal): ToolContext & { beats: unknown[] } {
  const beats: unknown[] = [];
  return { signal, heartbeat: (details) => beats.push(details), beats };
}
const calc = (expression: string) => executeTool('calculator', { expression }, context());

describe('tool registry', () => {
  it('lists the four built-ins, with only send_email needing approval', () => {
    expect(Object.keys(builtinTools).sort()).toEqual(['calculator', 'get_time', 'send_email', 'sleep']);
    expect(Object.values(builtinTools).filter((t) => t.needsApproval).map((t) => t.name)).toEqual(['send_email']);
  });

  it('reports an unknown tool as a failed result, not a throw', async () => {
    const r = await executeTool('rm_rf', {}, context());
    expect(r).toEqual({ ok: false, error: 'unknown tool "rm_rf" (available: get_time, calculator, sleep, send_email)' });
    expect((await executeTool('toString', {}, context())).ok).toBe(false);
  });

  it('reports schema-invalid input as a readable failed result', async () => {
    expect(await executeTool('calculator', { expression: 42 }, context())).toEqual({
      ok: false,
      error: 'invalid input for calculator: expression: Invalid input: expected string, received number',
    });
    expect(await executeTool('sleep', { ms: -1 }, context())).toMatchObject({ ok: false, error: expect.stringContaining('ms:') });
    expect(await executeTool('sleep', { ms: 1.5 }, context())).toMatchObject({ ok: false });
    expect(await executeTool('sleep', { ms: 600_001 }, context())).toMatchObject({ ok: false });
    expect(await executeTool('get_time', 'now', context())).toMatchObject({ ok: false, error: expect.stringContaining('invalid input for get_time') });
  });

  it('get_time returns the current instant as ISO-8601', async () => {
    const before = Date.now();
    const r = await executeTool('get_time', {}, context());
    if (!r.ok) throw new Error(r.error);
    const { iso } = r.output as { iso: string };
    expect(iso).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(iso)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(iso)).toBeLessThanOrEqual(Date.now());
  });

  it('calculator honours precedence, associativity, parentheses, unary minus and decimals', async () => {
    const cases: [string, number][] = [
      ['1 + 2 * 3', 7],
      ['(1 + 2) * 3', 9],
      ['10 - 4 - 3', 3],
      ['2 ^ 3 ^ 2', 512],
      ['-2 ^ 2', -4],
      ['2 ^ -1', 0.5],
      ['-(3 + 4) * -2', 14],
      ['--5', 5],
      ['7 % 4 + 8 / 4', 5],
      ['1.5 * .5 + 2.', 2.75],
      ['((((42))))', 42],
      ['  100 / 8 ', 12.5],
    ];
    for (const [expression, result] of cases) expect(await calc(expression), expression).toEqual({ ok: true, output: { result } });
  });

  it('calculator rejects division by zero and junk with a message', async () => {
    expect(await calc('1 / 0')).toEqual({ ok: false, error: 'calculator failed: division by zero' });
    expect(await calc('5 % (2 - 2)')).toEqual({ ok: false, error: 'calculator failed: modulo by zero' });
    expect(await calc('2 + abc')).toEqual({ ok: false, error: 'calculator failed: expected a number but found "a" at position 5' });
    expect(await calc('(1 + 2')).toEqual({ ok: false, error: 'calculator failed: expected ")" but found at end of expression' });
    expect(await calc('1 2')).toEqual({ ok: false, error: 'calculator failed: unexpected "2" at position 3' });
    expect(await calc('1..2')).toMatchObject({ ok: false });
    expect(await calc('process.exit(1)')).toMatchObject({ ok: false });
    expect(await calc('   ')).toEqual({ ok: false, error: 'calculator failed: empty expression' });
    expect(await calc('10 ^ 400')).toEqual({ ok: false, error: 'calculator failed: result is not a finite number' });
  });

  it('sleep waits the requested time in heartbeating slices of at most a second', async () => {
    const ctx = context();
    const started = Date.now();
    expect(await executeTool('sleep', { ms: 1250 }, ctx)).toEqual({ ok: true, output: { slept: 1250 } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1240);
    expect(ctx.beats).toEqual([{ slept: 1000 }, { slept: 1250 }]);
    expect(await executeTool('sleep', { ms: 0 }, context())).toEqual({ ok: true, output: { slept: 0 } });
  });

  it('sleep rejects promptly with the abort reason when cancelled', async () => {
    const controller = new AbortController();
    const reason = new Error('activity cancelled');
    const started = Date.now();
    setTimeout(() => controller.abort(reason), 30);
    await expect(executeTool('sleep', { ms: 600_000 }, context(controller.signal))).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('send_email needs a valid address and returns a simulated, content-derived message id', async () => {
    const email = { to: 'ada@example.com', subject: 'Hi', body: 'Hello there' };
    const first = await executeTool('send_email', email, context());
    expect(first).toMatchObject({ ok: true, output: { sent: true, messageId: expect.stringMatching(/^[0-9a-f]{24}@threadbox\.local$/) } });
    expect(await executeTool('send_email', email, context())).toEqual(first);
    expect(await executeTool('send_email', { ...email, to: 'not-an-email' }, context())).toMatchObject({
      ok: false,
      error: expect.stringContaining('invalid input for send_email: to:'),
    });
  });

  it('toAiSdkTools declares the chosen tools with JSON schemas and no execute', async () => {
    const tools = toAiSdkTools(['calculator', 'send_email']);
    expect(Object.keys(tools)).toEqual(['calculator', 'send_email']);
    expect(tools.calculator!.execute).toBeUndefined();
    expect(tools.calculator!.description).toBe(builtinTools.calculator!.description);
    expect(await asSchema(tools.calculator!.inputSchema).jsonSchema).toMatchObject({
      type: 'object',
      properties: { expression: { type: 'string' } },
      required: ['expression'],
    });
    expect(() => toAiSdkTools(['nope'])).toThrow('unknown tool "nope"');
  });
});
