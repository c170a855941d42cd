// A fuzz test of the whole /v1 surface: hundreds of generated malformed requests, each a valid request
// of some route with one thing broken. Every answer must be a 4xx with the contract's error body, and
// nothing may be written. A seeded PRNG makes a failure reproducible (FUZZ_SEED=<n> to replay one).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, uniqueId } from '../stack.js';
import {
  CONTRACT_ROUTES,
  EMAIL_TOOL,
  fillPath,
  rawRequest,
  rowCounts,
  runDone,
  runStatus,
  STATUS_OF,
  startTenantStack,
  type ContractRoute,
  type TenantStack,
} from './helpers.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_130);
const REQUESTS = 600;

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  const pick = <T>(items: readonly T[]): T => items[int(0, items.length - 1)]!;
  const chars = (alphabet: string, length: number) => Array.from({ length }, () => alphabet[int(0, alphabet.length - 1)]).join('');
  return { next, int, pick, chars };
}

let stack: TenantStack;
const fixture = { threadId: '', runId: '', waitingThreadId: '', waitingRunId: '', toolCallId: '' };

beforeAll(async () => {
  stack = await startTenantStack({ env: { THREADBOX_RATE_LIMIT_PER_MIN: '1000000' } });
  fixture.threadId = uniqueId('fuzz-done');
  fixture.runId = (await stack.api('POST', `/v1/threads/${fixture.threadId}/runs`, { messages: [{ content: 'hello' }] })).body.runId;
  await runDone(stack, fixture.runId);
  fixture.waitingThreadId = uniqueId('fuzz-wait');
  fixture.waitingRunId = (await stack.api('POST', `/v1/threads/${fixture.waitingThreadId}/runs`, { messages: [{ content: EMAIL_TOOL }] })).body.runId;
  const requested = await eventually(async () => (await stack.store.readEvents(fixture.waitingRunId)).find((e) => e.type === 'tool_approval_requested'));
  fixture.toolCallId = (requested as { toolCallId: string }).toolCallId;
  await runStatus(stack, fixture.waitingRunId, 'waiting');
});
afterAll(async () => {
  await stack?.stop();
});

interface FuzzRequest {
  kind: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

const ID_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-';
const BAD_ID_PARTS = ['%20', '%2F', '%00', '%E2%9C%93', '!', '*', '$', '@', "'", '(', ')', ',', ';', '=', '+', '~', '%25', '%0A'];
const CONTENT_TYPES = ['text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/octet-stream', 'application/json-patch+json', 'text/event-stream'];
const JUNK = ['{', '}', '[', ']', ',', ':', '"', '\\', '\u0000', 'NaN', 'undefined', "'", '\n'];
const STRICT_QUERY = (route: ContractRoute) => route.method === 'GET' && /\/(messages|events)$/.test(route.path);

function generate(rand: ReturnType<typeof prng>): FuzzRequest {
  const route = rand.pick(CONTRACT_ROUTES);
  const waiting = rand.next() < 0.5;
  const ids = waiting ? { threadId: fixture.waitingThreadId, runId: fixture.waitingRunId } : { threadId: fixture.threadId, runId: fixture.runId };
  const validBody: Record<string, unknown> | undefined =
    route.path.endsWith('/decisions') ? { toolCallId: fixture.toolCallId, action: rand.pick(['approve', 'deny']) } : (route.body as Record<string, unknown> | undefined);
  const base = {
    method: route.method,
    path: fillPath(route.path, ids),
    headers: { ...stack.auth, ...(route.accept ? { accept: route.accept } : {}), ...(validBody ? { 'content-type': 'application/json' } : {}) } as Record<string, string>,
    body: validBody ? JSON.stringify(validBody) : undefined,
  };
  const kinds = ['auth', 'badPath', 'badMethod'];
  if (route.id) kinds.push('badId', 'badId');
  if (route.id && !route.creates) kinds.push('unknownId');
  if (route.method === 'POST') kinds.push('badJson', 'badJson', 'contentType', 'unknownField', 'unknownField');
  if (validBody && !route.path.endsWith('/decisions') && route.method === 'POST') kinds.push('fieldValue', 'fieldValue', 'fieldValue');
  if (route.path.endsWith('/decisions')) kinds.push('fieldValue', 'fieldValue');
  if (validBody && route.method === 'POST') kinds.push('oversize');
  if (STRICT_QUERY(route)) kinds.push('query', 'query');
  if (route.path.endsWith('/events')) kinds.push('lastEventId');
  if (route.path.endsWith('/runs') && route.method === 'POST') kinds.push('idempotencyKey');
  const kind = rand.pick(kinds);

  switch (kind) {
    case 'auth': {
      const { authorization: _, ...rest } = base.headers;
      const bad = rand.pick([undefined, 'Bearer', `Bearer ${stack.key}x`, `Bearer ${rand.chars(ID_CHARS, 40)}`, `Basic ${stack.key}`, stack.key, `Bearer  ${stack.key}`, `Token ${stack.key}`]);
      return { ...base, kind, headers: bad === undefined ? rest : { ...rest, authorization: bad } };
    }
    case 'badId': {
      const which = route.id!;
      const bad = rand.pick([
        () => rand.chars(ID_CHARS, rand.int(129, 400)),
        () => rand.chars(ID_CHARS, rand.int(0, 10)) + rand.pick(BAD_ID_PARTS) + rand.chars(ID_CHARS, rand.int(0, 10)),
        () => rand.pick(BAD_ID_PARTS).repeat(rand.int(1, 3)),
      ])();
      return { ...base, kind, path: fillPath(route.path, { ...ids, [which]: bad }) };
    }
    case 'unknownId':
      return { ...base, kind, path: fillPath(route.path, { ...ids, [route.id!]: `nope-${rand.chars(ID_CHARS, rand.int(1, 60))}` }) };
    case 'badPath': {
      const mangled = rand.pick([
        () => `${base.path}/${rand.chars(ID_CHARS, rand.int(1, 12))}`,
        () => `${base.path}/`,
        () => base.path.replace('/v1/', rand.pick(['/v2/', '/V1/', '/v1//', '/'])),
        () => `/v1/${rand.chars(ID_CHARS.slice(0, 26), rand.int(1, 12))}`,
      ])();
      return { ...base, kind, path: mangled };
    }
    case 'badMethod':
      return { ...base, kind, method: rand.pick(['PUT', 'DELETE', 'PATCH']) };
    case 'badJson': {
      const text = base.body ?? '{}';
      const broken = rand.pick([
        () => text.slice(0, rand.int(1, Math.max(1, text.length - 1))),
        () => {
          const at = rand.int(0, text.length);
          return text.slice(0, at) + rand.pick(JUNK) + text.slice(at);
        },
        () => `${text}${rand.pick(JUNK)}`,
        () => '[' .repeat(rand.int(1000, 20_000)),
        () => Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
        () => '',
        () => `{"messages": [{"content": "${'\\u'.repeat(3)}"}]}`,
        () => '{"__proto__": {"admin": true}}',
        () => '{"constructor": {"prototype": {"admin": true}}}',
      ])();
      if (typeof broken === 'string' && broken !== '' && isJson(broken)) return generate(rand);
      return { ...base, kind, headers: { ...base.headers, 'content-type': 'application/json' }, body: broken };
    }
    case 'contentType':
      return { ...base, kind, headers: { ...base.headers, 'content-type': rand.pick(CONTENT_TYPES) }, body: base.body ?? '{"x":1}' };
    case 'unknownField': {
      const body = { ...(validBody ?? {}), [rand.pick(['extra', 'Messages', 'message', 'thread_id', 'run_id', 'admin', 'tenant', rand.chars(ID_CHARS, 6)])]: rand.pick([1, 'x', null, true, [], {}]) };
      return { ...base, kind, headers: { ...base.headers, 'content-type': 'application/json' }, body: JSON.stringify(body) };
    }
    case 'fieldValue':
      return { ...base, kind, body: JSON.stringify(breakField(route, validBody!, rand)) };
    case 'oversize': {
      const filler = 'x'.repeat(1024 * 1024 + rand.int(1, 4096));
      return { ...base, kind, body: JSON.stringify({ ...validBody, filler }) };
    }
    case 'query': {
      const query = rand.pick(['after=-1', 'after=abc', 'after=1e999', 'after=1.5', 'limit=0', 'limit=1001', 'limit=-5', 'limit=x', 'after=1&after=2', `${rand.chars('abcdefgh', 5)}=1`, 'limit=', 'after=0x10']);
      return { ...base, kind, path: `${base.path}?${query}` };
    }
    case 'lastEventId':
      return { ...base, kind, headers: { ...base.headers, 'last-event-id': rand.pick(['abc', '-1', '1.5', '1e3', ' ', '9'.repeat(20), '0x1', '+1']) } };
    case 'idempotencyKey':
      return { ...base, kind, headers: { ...base.headers, 'idempotency-key': rand.pick(['has space', 'x'.repeat(129), 'semi;colon', 'caf%C3%A9', '']) } };
  }
  throw new Error(`no such kind ${kind}`);
}

/** A valid body with one field made invalid for its route. */
function breakField(route: ContractRoute, body: Record<string, unknown>, rand: ReturnType<typeof prng>): unknown {
  if (route.path.endsWith('/decisions')) {
    return rand.pick([
      { ...body, action: rand.pick(['yes', 'APPROVE', '', 1, null]) },
      { action: body.action },
      { toolCallId: body.toolCallId },
      { ...body, toolCallId: rand.pick(['', 'bad id', 'x'.repeat(129), 7]) },
      { ...body, reason: 'r'.repeat(4097) },
      { ...body, reason: 5 },
    ]);
  }
  if (route.path.endsWith('/mailbox')) {
    return rand.pick([
      { text: 'no id' },
      { messageId: 'm-1' },
      { ...body, text: '' },
      { ...body, text: 1 },
      { ...body, messageId: rand.pick(['', 'bad id', 'x'.repeat(129)]) },
      { ...body, senderAgentId: 'no spaces allowed' },
      { ...body, agentId: rand.pick(['unknown-agent', 'bad agent']) },
      { ...body, text: 't'.repeat(256 * 1024 + 1) },
    ]);
  }
  const message = { content: 'x' };
  return rand.pick([
    { ...body, messages: [] },
    { ...body, messages: 'hello' },
    { ...body, messages: null },
    { ...body, messages: Array.from({ length: rand.int(101, 150) }, () => message) },
    { ...body, messages: [{ content: 'c'.repeat(256 * 1024 + 1) }] },
    { ...body, messages: [{ content: rand.pick([1, null, [], {}]) }] },
    { ...body, messages: [{ content: 'x', role: rand.pick(['assistant', 'tool', 'root', '']) }] },
    { ...body, messages: [{ content: 'x', id: rand.pick(['', 'bad id', 'x'.repeat(129)]) }] },
    { ...body, messages: [{}] },
    { messages: undefined },
    { ...body, agentId: rand.pick(['unknown-agent', 'bad agent', '', 5]) },
    ...(route.path === '/v1/runs'
      ? [{ ...body, threadId: rand.pick(['', 'bad id', 'x'.repeat(129)]) }, { ...body, mode: 'queue' }]
      : [
          { ...body, mode: rand.pick(['later', '', 'INTERRUPT', 1]) },
          { ...body, runId: rand.pick(['', 'bad id', 'x'.repeat(129)]) },
          { ...body, runId: fixture.runId }, // taken by another thread
          { ...body, expectedRunId: rand.pick(['', 'bad id', 'x'.repeat(129)]) },
        ]),
  ]);
}

function isJson(text: string) {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe('fuzz', () => {
  it(`${REQUESTS} malformed requests across all routes: only 4xx with a JSON code, and no row written`, async () => {
    const rand = prng(SEED);
    const requests = Array.from({ length: REQUESTS }, () => generate(rand));
    const before = await rowCounts(stack.store.pool, stack.tenant);
    const threadsBefore = await Promise.all([fixture.threadId, fixture.waitingThreadId].map((threadId) => stack.store.getThread({ tenant: stack.tenant, threadId })));
    const byKind = new Map<string, Map<number, number>>();
    const failures: string[] = [];
    // A few at a time: concurrency is part of what is fuzzed, and it keeps the run short.
    for (let i = 0; i < requests.length; i += 6) {
      await Promise.all(
        requests.slice(i, i + 6).map(async (req, j) => {
          const res = await rawRequest(stack.url, req);
          const statuses = byKind.get(req.kind) ?? new Map<number, number>();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          byKind.set(req.kind, statuses);
          const code = res.json?.code;
          const ok = res.status >= 400 && res.status < 500 && typeof res.json?.error === 'string' && STATUS_OF[code] === res.status && res.status !== 429;
          if (!ok) failures.push(`#${i + j} ${req.kind} ${req.method} ${req.path.slice(0, 120)} → ${res.status} ${res.text.slice(0, 200)}`);
        }),
      );
    }
    console.log(`fuzz seed ${SEED}:`, Object.fromEntries([...byKind].map(([kind, statuses]) => [kind, Object.fromEntries(statuses)])));
    expect(failures).toEqual([]);
    expect(byKind.size).toBeGreaterThanOrEqual(12);

    expect(await rowCounts(stack.store.pool, stack.tenant)).toEqual(before);
    const threadsAfter = await Promise.all([fixture.threadId, fixture.waitingThreadId].map((threadId) => stack.store.getThread({ tenant: stack.tenant, threadId })));
    expect(threadsAfter).toEqual(threadsBefore);
    expect((await stack.store.getRun(fixture.waitingRunId))?.status).toBe('waiting');
    // And the server is still well.
    expect((await stack.request('GET', '/health')).status).toBe(200);
    const decided = await stack.api('POST', `/v1/runs/${fixture.waitingRunId}/decisions`, { toolCallId: fixture.toolCallId, action: 'approve' });
    expect(decided.status).toBe(202);
  }, 120_000);
});
