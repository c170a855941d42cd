// The model step's policies that need no run: the context window, sanitising model text, and telling a store outage from a model error.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { APICallError } from '@ai-sdk/provider';
import { callOptionsFor } from '../../activities/model-stream.js';
import { classifyModelError } from '../../activities/model-errors.js';
import { loadAgentsConfig } from '../../src/agent/config.js';
import { contextBudget, contextWindow, DEFAULT_MAX_CONTEXT_MESSAGES, DEFAULT_MAX_CONTEXT_TOKENS, estimateMessageTokens } from '../../src/agent/context.js';
import { DeltaSanitizer, sanitizeJson, sanitizeText } from '../../src/agent/sanitize.js';
import { createPool } from '../../src/store/db.js';
import { isRejectedData, isStoreOutage } from '../../src/store/errors.js';
import { Store, type CommittedMessage, type ToolCall } from '../../src/store/store.js';

let seq = 0;
function msg(role: CommittedMessage['role'], content: string, extra: { toolCalls?: ToolCall[]; toolCallId?: string } = {}): CommittedMessage {
  seq += 1;
  return { seq, id: `m${seq}`, role, content, status: 'complete', metadata: role === 'tool' ? { toolName: 'calculator', outcome: 'ok' } : {}, createdAt: '', ...extra };
}
const call = (id: string): ToolCall => ({ toolCallId: id, toolName: 'calculator', input: { expression: '1+1' } });
const contents = (window: CommittedMessage[]) => window.map((m) => `${m.role}:${m.content || m.toolCalls?.map((c) => c.toolCallId).join(',') || ''}`);

describe('the context window', () => {
  // u1 a(c1) t1 a1 u2 a(c2) t2 a2 u3
  const thread = () => [
    msg('user', 'u1'),
    msg('assistant', '', { toolCalls: [call('c1')] }),
    msg('tool', '{"result":2}', { toolCallId: 'c1' }),
    msg('assistant', 'a1'),
    msg('user', 'u2'),
    msg('assistant', '', { toolCalls: [call('c2')] }),
    msg('tool', '{"result":2}', { toolCallId: 'c2' }),
    msg('assistant', 'a2'),
    msg('user', 'u3'),
  ];
  const wide = { maxMessages: 1000, maxTokens: 1_000_000 };

  it('keeps a thread that fits whole', () => {
    expect(contents(contextWindow(thread(), wide))).toEqual(['user:u1', 'assistant:c1', 'tool:{"result":2}', 'assistant:a1', 'user:u2', 'assistant:c2', 'tool:{"result":2}', 'assistant:a2', 'user:u3']);
  });

  it('keeps the newest messages, drops a tool result whose call was cut off, and starts at a user turn', () => {
    // The newest 7 begin with t1, whose call is outside: it goes, and so does a1, the tail of the older turn.
    expect(contents(contextWindow(thread(), { ...wide, maxMessages: 7 }))).toEqual(['user:u2', 'assistant:c2', 'tool:{"result":2}', 'assistant:a2', 'user:u3']);
  });

  it('never splits a tool call from its result, whatever the budget', () => {
    for (let maxMessages = 1; maxMessages <= 9; maxMessages++) {
      const window = contextWindow(thread(), { ...wide, maxMessages });
      const calls = new Set(window.flatMap((m) => m.toolCalls?.map((c) => c.toolCallId) ?? []));
      const results = new Set(window.flatMap((m) => (m.role === 'tool' ? [m.toolCallId] : [])));
      expect([...results].every((id) => calls.has(id!)), `maxMessages ${maxMessages}`).toBe(true);
      expect([...calls].every((id) => results.has(id)), `maxMessages ${maxMessages}`).toBe(true);
      expect(window.at(-1)!.content).toBe('u3');
    }
  });

  it('keeps the newest exchange even when it alone is over the budget: a tool result keeps its call', () => {
    const log = thread().slice(0, 7); // ends with t2, as the step after a tool call sees it
    expect(contents(contextWindow(log, { ...wide, maxMessages: 1 }))).toEqual(['assistant:c2', 'tool:{"result":2}']);
    const huge = [msg('user', 'old'), msg('user', 'x'.repeat(10_000))];
    expect(contextWindow(huge, { maxMessages: 10, maxTokens: 100 }).map((m) => m.content.length)).toEqual([10_000]);
  });

  it('spends the token budget from the newest message back, the system prompt first', () => {
    const log = Array.from({ length: 10 }, (_, i) => msg('user', `${i}`.padEnd(400, '.'))); // ~104 tokens each
    const each = estimateMessageTokens(log[0]!);
    expect(contextWindow(log, { maxMessages: 100, maxTokens: 3 * each }).map((m) => m.content[0])).toEqual(['7', '8', '9']);
    const system = 'S'.repeat(400); // the system prompt costs what one message does
    expect(contextWindow(log, { maxMessages: 100, maxTokens: 3 * each }, system).map((m) => m.content[0])).toEqual(['8', '9']);
    expect(contextWindow(log, { maxMessages: 2, maxTokens: 1_000_000 }).map((m) => m.content[0])).toEqual(['8', '9']);
  });
});

describe('the context budget in the agents file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'threadbox-context-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const load = (yaml: string) => {
    const path = join(dir, `${randomUUID()}.yaml`);
    writeFileSync(path, yaml);
    return loadAgentsConfig(path, { defaultModel: 'echo' });
  };

  it('is read per agent, with defaults for an agent that sets none', () => {
    const [wide, plain] = load('agents:\n  - id: wide\n    maxContextMessages: 50\n    maxContextTokens: 8000\n  - id: plain\n');
    expect(contextBudget(wide!)).toEqual({ maxMessages: 50, maxTokens: 8000 });
    expect(contextBudget(plain!)).toEqual({ maxMessages: DEFAULT_MAX_CONTEXT_MESSAGES, maxTokens: DEFAULT_MAX_CONTEXT_TOKENS });
  });

  it.each([
    ['agents:\n  - id: a\n    maxContextMessages: 0\n', 'agents.0.maxContextMessages:'],
    ['agents:\n  - id: a\n    maxContextTokens: 1.5\n', 'agents.0.maxContextTokens:'],
    ['agents:\n  - id: a\n    maxContextTokens: "lots"\n', 'agents.0.maxContextTokens:'],
  ])('refuses a bad budget naming the field: %j', (yaml, field) => {
    expect(() => load(yaml)).toThrow(field);
  });
});

describe('sanitising model text', () => {
  it('drops NUL and replaces unpaired surrogates, leaving pairs alone', () => {
    expect(sanitizeText('a\u0000b\ud800c\udc00d 😀')).toBe('ab\ufffdc\ufffdd 😀');
    expect(sanitizeJson({ 'k\u0000': ['x\ud800', 1, null, { y: 'z\u0000' }] })).toEqual({ k: ['x\ufffd', 1, null, { y: 'z' }] });
  });

  it('keeps a surrogate pair split over two deltas whole', () => {
    const s = new DeltaSanitizer();
    const [high, low] = ['😀'.charAt(0), '😀'.charAt(1)];
    expect(s.push(`hi ${high}`)).toBe('hi ');
    expect(s.push(`${low}!`)).toBe('😀!');
    expect(s.push(`bye ${high}`)).toBe('bye ');
    expect(s.end()).toBe('\ufffd');
  });
});

describe('provider options', () => {
  it('only the echo model is sent the attempt', () => {
    expect(callOptionsFor({ model: 'echo' }, 3)).toEqual({ providerOptions: { echo: { attempt: 3 } } });
    expect(callOptionsFor({ model: 'openai:gpt-4o' }, 3)).toEqual({});
    expect(callOptionsFor({ model: 'openai-compatible:http://127.0.0.1:1/v1#m' }, 1)).toEqual({});
  });
});

describe('a store failure inside the model step', () => {
  let pool: pg.Pool;
  beforeAll(() => {
    pool = createPool(inject('databaseUrl'));
  });
  afterAll(async () => {
    await pool?.end();
  });

  function classify(err: unknown): ApplicationFailure {
    const failure = classifyModelError(err);
    if (!(failure instanceof ApplicationFailure)) throw new Error(`not an ApplicationFailure: ${String(failure)}`);
    return failure;
  }

  it('Postgres refusing connections is a retryable store outage naming the store, not a model error', async () => {
    const down = new pg.Pool({ connectionString: 'postgres://threadbox@127.0.0.1:1/threadbox', connectionTimeoutMillis: 2_000 });
    const err = await new Store(down).loadRecentMessages({ tenant: 't', threadId: 'x' }, { limit: 10, maxContentBytes: 1000 }).catch((e: unknown) => e);
    await down.end();
    expect(isStoreOutage(err)).toBe(true);
    const failure = classify(err);
    expect(failure).toMatchObject({ type: 'store_unavailable', nonRetryable: false });
    expect(failure.message).toMatch(/^store unavailable: .*ECONNREFUSED/);
  });

  it('a connection Postgres terminates (57P01 admin shutdown) is a store outage', async () => {
    const client = await pool.connect();
    client.on('error', () => {});
    try {
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const sleeping = client.query('SELECT pg_sleep(30)').catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 200));
      await pool.query('SELECT pg_terminate_backend($1)', [pid]);
      const err = await sleeping;
      expect((err as { code?: string }).code).toBe('57P01');
      expect(classify(err)).toMatchObject({ type: 'store_unavailable', nonRetryable: false });
      // The dead connection's next query fails without a code, in node-postgres' words.
      const next = await client.query('SELECT 1').catch((e: unknown) => e);
      expect(isStoreOutage(next)).toBe(true);
    } finally {
      client.release(true);
    }
  });

  it('data Postgres refuses is a non-retryable store failure, and a StoreError keeps its code', async () => {
    const err = await pool.query('SELECT $1::jsonb', ['"nul \\u0000"']).catch((e: unknown) => e);
    expect(isStoreOutage(err)).toBe(false);
    expect(isRejectedData(err)).toBe(true);
    expect(classify(err)).toMatchObject({ type: 'store_rejected', nonRetryable: true });

    const store = new Store(pool);
    const missing = await store.appendEvents(`no-such-run-${randomUUID()}`, 1, []).catch((e: unknown) => e);
    expect(classify(missing)).toMatchObject({ type: 'not_found', nonRetryable: true, message: expect.stringMatching(/^store: /) });
  });

  it('a provider that cannot be reached is still a model error', () => {
    const refused = new APICallError({
      message: 'Cannot connect to API: connect ECONNREFUSED 127.0.0.1:1',
      url: 'http://127.0.0.1:1/v1/chat/completions',
      requestBodyValues: {},
      isRetryable: true,
      cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
    });
    expect(isStoreOutage(refused)).toBe(false);
    expect(classify(refused)).toMatchObject({ type: 'model_transient' });
    const fetchFailed = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    expect(classify(fetchFailed).type).toBe('model_transient');
  });

  it('a provider message that cannot be stored is made storable', () => {
    expect(classify(new APICallError({ message: 'bad\u0000 \ud800', url: 'u', requestBodyValues: {}, statusCode: 400 })).message).toBe(
      'model call failed (HTTP 400): bad \ufffd',
    );
  });
});
