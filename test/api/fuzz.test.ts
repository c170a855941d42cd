// A fuzz test of the whole /v1 surface: hundreds of generated malformed requests, each a valid request
// of some route with one thing broken. Every answer must be a 4xx with the contract's error body, and
// nothing may be written. A seeded PRNG makes a failure reproducible (FUZZ_SEED=<n> to replay one).
// Strings the store cannot keep (NUL, lone surrogates, bytes that are not UTF-8) go into every string
// field of every route; each request is bounded in time, and every fuzzed thread still runs afterwards.
import { connect } from 'node:net';
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
/** No request may take longer to answer: a hang is a failure, not a slow test. */
const ANSWER_WITHIN_MS = 15_000;

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
  kinds.push('unstorable');
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
      // An empty body is no body: the routes that take none accept it.
      if (broken === '' && !validBody) return generate(rand);
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
    case 'unstorable':
      return { ...rand.pick(unstorableRequests(route, ids)), kind };
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

/** A value the store cannot keep, as a JSON string escape or as raw bytes inside a JSON string. */
interface Poison {
  name: string;
  escaped?: string;
  bytes?: number[];
}

const POISONS: Poison[] = [
  { name: 'NUL escape', escaped: 'a\u0000b' },
  { name: 'NUL escape alone', escaped: '\u0000' },
  { name: 'lone high surrogate escape', escaped: 'a\ud800b' },
  { name: 'lone low surrogate escape', escaped: '\udfff' },
  { name: 'reversed surrogate pair escape', escaped: '\udc00\ud800' },
  { name: 'raw NUL byte', bytes: [0x00] },
  { name: 'raw encoded surrogate', bytes: [0xed, 0xa0, 0x80] },
  { name: 'over-long NUL (2 bytes)', bytes: [0xc0, 0x80] },
  { name: 'over-long NUL (3 bytes)', bytes: [0xe0, 0x80, 0x80] },
  { name: 'over-long slash (4 bytes)', bytes: [0xf0, 0x80, 0x80, 0xaf] },
  { name: 'past U+10FFFF', bytes: [0xf4, 0x90, 0x80, 0x80] },
  { name: 'invalid byte', bytes: [0xff] },
  { name: 'lone continuation byte', bytes: [0x80] },
  { name: 'truncated sequence', bytes: [0xe2, 0x82] },
];

/** What can replace an id in a path, a query value or a header: percent-encoded or raw (sent as latin1 bytes). */
const URL_POISONS = ['%00', 'a%00b', '%ED%A0%80', '%C0%80', '%E0%80%80', '%FF', '%F4%90%80%80', 'a%C3'];
const RAW_HEADER_POISONS = [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xff], [0x80, 0x80]].map((bytes) => Buffer.from(bytes).toString('latin1'));

const MARK = 'POISON-MARK-7f3a';

/** `body` with the string at `path` (dotted) replaced by the poison, as the bytes to send. */
function poisoned(body: Record<string, unknown>, path: string, poison: Poison): Buffer {
  const copy = structuredClone(body);
  const keys = path.split('.');
  let at: any = copy;
  for (const key of keys.slice(0, -1)) at = at[key];
  at[keys.at(-1)!] = poison.escaped ?? MARK;
  const text = JSON.stringify(copy);
  if (poison.escaped !== undefined) return Buffer.from(text);
  const [before, after] = text.split(MARK) as [string, string];
  return Buffer.concat([Buffer.from(`${before}x`), Buffer.from(poison.bytes!), Buffer.from(`y${after}`)]);
}

/** Every string field a route takes, with a valid body around it. */
function stringFields(route: ContractRoute, ids: { threadId: string; runId: string; toolCallId?: string }): { body: Record<string, unknown>; fields: string[] } | undefined {
  if (route.method !== 'POST') return undefined;
  if (route.path === '/v1/threads/{threadId}/runs') {
    return { body: { messages: [{ id: 'm-1', content: 'hi' }], mode: 'steer', agentId: 'default', expectedRunId: ids.runId, runId: 'r-1' }, fields: ['messages.0.content', 'messages.0.id', 'agentId', 'expectedRunId', 'runId'] };
  }
  if (route.path === '/v1/runs') return { body: { threadId: ids.threadId, agentId: 'default', messages: [{ id: 'm-1', content: 'hi' }] }, fields: ['messages.0.content', 'messages.0.id', 'threadId', 'agentId'] };
  if (route.path.endsWith('/mailbox')) return { body: { messageId: 'm-1', text: 'hi', senderAgentId: 'planner', agentId: 'default' }, fields: ['text', 'messageId', 'senderAgentId', 'agentId'] };
  if (route.path.endsWith('/decisions')) return { body: { toolCallId: ids.toolCallId ?? 'call_1', action: 'deny', reason: 'no' }, fields: ['toolCallId', 'reason'] };
  // Routes that take no body: a field is refused anyway, and must be refused as cleanly when it is poison.
  return { body: { note: 'x' }, fields: ['note'] };
}

/** Each unstorable value in each string a route accepts: body fields, path ids, query values, headers. */
function unstorableRequests(route: ContractRoute, ids: { threadId: string; runId: string; toolCallId?: string }): FuzzRequest[] {
  const path = fillPath(route.path, ids);
  const headers = { ...stack.auth, ...(route.accept ? { accept: route.accept } : {}) } as Record<string, string>;
  const withJson = { ...headers, 'content-type': 'application/json' };
  const fields = stringFields(route, ids);
  const validBody = fields && !fields.fields.includes('note') ? JSON.stringify(fields.body) : undefined;
  const out: FuzzRequest[] = [];
  const kind = `unstorable ${route.method} ${route.path}${route.accept ? ' (SSE)' : ''}`;
  for (const field of fields?.fields ?? []) {
    for (const poison of POISONS) out.push({ kind: `${kind} ${field}: ${poison.name}`, method: route.method, path, headers: withJson, body: poisoned(fields!.body, field, poison) });
  }
  if (route.id) {
    for (const bad of [...URL_POISONS, ...RAW_HEADER_POISONS]) {
      out.push({ kind: `${kind} path ${route.id}`, method: route.method, path: fillPath(route.path, { ...ids, [route.id]: bad }), headers: validBody ? withJson : headers, body: validBody });
    }
  }
  if (STRICT_QUERY(route)) {
    for (const bad of [...URL_POISONS, ...RAW_HEADER_POISONS]) {
      for (const query of [`after=${bad}`, `limit=${bad}`, `after=0&${bad}=1`]) out.push({ kind: `${kind} query`, method: route.method, path: `${path}?${query}`, headers });
    }
  }
  const headerNames = [
    ...(route.method === 'POST' && route.path.endsWith('/runs') ? ['idempotency-key'] : []),
    ...(route.path.endsWith('/events') ? ['last-event-id'] : []),
  ];
  for (const name of headerNames) {
    for (const bad of RAW_HEADER_POISONS) out.push({ kind: `${kind} header ${name}`, method: route.method, path, headers: { ...(validBody ? withJson : headers), [name]: `a${bad}` }, body: validBody });
  }
  for (const bad of RAW_HEADER_POISONS) {
    out.push({ kind: `${kind} header authorization`, method: route.method, path, headers: { ...(validBody ? withJson : headers), authorization: `Bearer ${stack.key}${bad}` }, body: validBody });
  }
  return out;
}

/**
 * Bytes that no HTTP client library will send (a NUL in a header value or in the request line),
 * written to a socket as they are; the answer is read until the server closes the connection.
 */
function rawSocketRequest(url: string, head: Buffer, timeoutMs: number): Promise<{ status: number; json: any; text: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const deadline = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms to ${JSON.stringify(head.toString('latin1').slice(0, 120))}`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(head));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(deadline);
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const bodyText = text.slice(text.indexOf('\r\n\r\n') + 4);
      let json: unknown;
      try {
        json = JSON.parse(bodyText);
      } catch {
        json = undefined;
      }
      resolve({ status, json, text });
    });
  });
}

/** A 4xx in the contract's shape (never a 429 here: the fuzz stack's rate limit is out of reach). */
function isContractRefusal(res: { status: number; json?: any }) {
  return res.status >= 400 && res.status < 500 && res.status !== 429 && typeof res.json?.error === 'string' && STATUS_OF[res.json?.code] === res.status;
}

/** The thread still takes input: "hello" runs to its natural end with the echo committed. */
async function completesNormalRun(threadId: string) {
  const res = await stack.api('POST', `/v1/threads/${threadId}/runs`, { messages: [{ content: 'hello' }] });
  expect({ threadId, status: res.status }).toEqual({ threadId, status: 202 });
  expect({ threadId, termination: (await runDone(stack, res.body.runId)).termination?.type }).toEqual({ threadId, termination: 'natural_end' });
  const items = (await stack.api('GET', `/v1/threads/${threadId}/messages?after=0&limit=1000`)).body.items as { content: string; runId?: string }[];
  expect(items.filter((m) => m.runId === res.body.runId).map((m) => m.content)).toEqual(['hello', 'Echo: hello']);
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
          const res = await rawRequest(stack.url, { ...req, timeoutMs: ANSWER_WITHIN_MS });
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
    expect((await runDone(stack, fixture.waitingRunId)).termination?.type).toBe('natural_end');
    for (const threadId of [fixture.threadId, fixture.waitingThreadId]) await completesNormalRun(threadId);
  }, 180_000);

  it('NUL, lone surrogates and over-long or invalid UTF-8 in every string of every route: only 4xx, nothing written, every fuzzed thread still runs', async () => {
    // A thread that only ever got poison, one with history, and one whose run waits on an approval.
    const fresh = { threadId: uniqueId('fuzz-fresh'), runId: fixture.runId };
    const done = { threadId: fixture.threadId, runId: fixture.runId };
    const waitingThreadId = uniqueId('fuzz-poison-wait');
    const waitingRunId = (await stack.api('POST', `/v1/threads/${waitingThreadId}/runs`, { messages: [{ content: EMAIL_TOOL }] })).body.runId;
    const requested = await eventually(async () => (await stack.store.readEvents(waitingRunId)).find((e) => e.type === 'tool_approval_requested'));
    const toolCallId = (requested as { toolCallId: string }).toolCallId;
    await runStatus(stack, waitingRunId, 'waiting');
    const waiting = { threadId: waitingThreadId, runId: waitingRunId, toolCallId };

    const requests = CONTRACT_ROUTES.flatMap((route) => [fresh, done, waiting].flatMap((ids) => unstorableRequests(route, ids)));
    const before = await rowCounts(stack.store.pool, stack.tenant);
    const failures: string[] = [];
    const statuses = new Map<number, number>();
    for (let i = 0; i < requests.length; i += 8) {
      await Promise.all(
        requests.slice(i, i + 8).map(async (req) => {
          const res = await rawRequest(stack.url, { ...req, timeoutMs: ANSWER_WITHIN_MS }).catch((err: Error) => ({ status: 0, json: undefined, text: err.message }));
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (!isContractRefusal(res)) failures.push(`${req.kind}: ${req.method} ${req.path.slice(0, 100)} → ${res.status} ${res.text.slice(0, 200)}`);
        }),
      );
    }
    // A NUL in a header value or the request line: not even HTTP, still the contract's 400.
    const auth = `Authorization: Bearer ${stack.key}\r\n`;
    for (const head of [
      `POST /v1/threads/${fresh.threadId}/runs HTTP/1.1\r\nHost: x\r\n${auth}Idempotency-Key: a\u0000b\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
      `GET /v1/runs/${waitingRunId}/events HTTP/1.1\r\nHost: x\r\n${auth}Last-Event-ID: 1\u0000\r\n\r\n`,
      `GET /v1/threads/${fixture.threadId} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${stack.key}\u0000\r\n\r\n`,
      `POST /v1/threads/${fixture.threadId}/interrupt HTTP/1.1\r\nHost: x\r\n${auth}X-Note: \u0000\r\nContent-Length: 0\r\n\r\n`,
      `GET /v1/threads/a\u0000b HTTP/1.1\r\nHost: x\r\n${auth}\r\n`,
    ]) {
      const res = await rawSocketRequest(stack.url, Buffer.from(head, 'latin1'), ANSWER_WITHIN_MS);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (!isContractRefusal(res)) failures.push(`raw ${JSON.stringify(head.slice(0, 60))} → ${res.status} ${res.text.slice(0, 200)}`);
    }
    console.log(`unstorable fuzz: ${requests.length + 5} requests, statuses`, Object.fromEntries(statuses));
    expect(failures).toEqual([]);
    expect(requests.length).toBeGreaterThan(500);

    expect(await rowCounts(stack.store.pool, stack.tenant)).toEqual(before);
    expect((await stack.api('GET', `/v1/threads/${fresh.threadId}`)).status).toBe(404);
    expect((await stack.store.getRun(waitingRunId))?.status).toBe('waiting');
    const decided = await stack.api('POST', `/v1/runs/${waitingRunId}/decisions`, { toolCallId, action: 'deny', reason: 'not today' });
    expect(decided.status).toBe(202);
    expect((await runDone(stack, waitingRunId)).termination?.type).toBe('natural_end');
    for (const threadId of [fresh.threadId, done.threadId, waiting.threadId]) await completesNormalRun(threadId);
  }, 300_000);
});
