// Overload: bursts of 500 concurrent queue submits, to one thread and across 100, are each answered
// at once (202, or 429 thread_busy / rate_limited with Retry-After and nothing written); clients that
// retry their 429s with the same Idempotency-Key get every message committed exactly once (the queues are
// then interrupted, which commits what they hold), and every run ends.
// The API and the worker run as their own processes, as deployed: the answer times are the API's,
// not those of an event loop shared with 500 clients.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { spawnThreadbox, type ThreadboxProcess } from '../../testkit/processes.js';
import { uniqueId } from '../stack.js';

const tenant = `t-${randomUUID().slice(0, 8)}`;
const key = `k-${randomUUID()}`;
const auth = { authorization: `Bearer ${key}` };
const processes: ThreadboxProcess[] = [];
let url = '';

beforeAll(async () => {
  const env = {
    DATABASE_URL: inject('databaseUrl'),
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TEMPORAL_TASK_QUEUE: `overload-${tenant}`,
    THREADBOX_API_KEYS: `${key}:${tenant}`,
    // The per-key rate limit is not what these bursts are about.
    THREADBOX_RATE_LIMIT_PER_MIN: '1000000',
  };
  processes.push(...(await Promise.all([spawnThreadbox('api', env), spawnThreadbox('worker', env)])));
  url = processes[0]!.url!;
}, 180_000);
afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop()));
});

async function api(path: string) {
  const res = await fetch(url + path, { headers: auth });
  return { status: res.status, body: (await res.json()) as any };
}

interface Answer {
  status: number;
  ms: number;
  code?: string;
  retryAfter: string | null;
}

interface Message {
  threadId: string;
  content: string;
  idempotencyKey: string;
  answers: Answer[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls once a second (a 500-run thread is a big page) until `check` gives a value. */
async function once<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(1000)) {
    const value = await check();
    if (value !== undefined) return value;
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function post(message: Message): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(`${url}/v1/threads/${message.threadId}/runs`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': message.idempotencyKey },
    body: JSON.stringify({ messages: [{ role: 'user', content: message.content }], mode: 'queue' }),
  });
  const body = (await res.json()) as { code?: string };
  const answer = { status: res.status, ms: performance.now() - started, code: body.code, retryAfter: res.headers.get('retry-after') };
  message.answers.push(answer);
  return answer;
}

/** A careful client: on 429 it waits Retry-After (plus up to a second, so retries spread out) and sends the same request again. */
async function deliver(message: Message, deadline: number) {
  while (Date.now() < deadline) {
    const answer = await post(message);
    if (answer.status !== 429) return;
    await sleep(Number(answer.retryAfter) * 1000 + Math.random() * 1000);
  }
}

/**
 * POST /interrupt until it is accepted. It counts against the same in-flight bounds as submits (429), and
 * superseding 500 queued runs can outlast the API's wait for an update (503: it goes on in the thread,
 * and interrupting again is harmless).
 */
async function interrupt(threadId: string) {
  for (;;) {
    const res = await fetch(`${url}/v1/threads/${threadId}/interrupt`, { method: 'POST', headers: auth });
    if (res.status === 202) return;
    // 409 active_run_conflict: the active run, sent its stop, did not settle within 5 s (a hundred threads
    // stopping at once on two cores); nothing changed and the stop stands, so the interrupt is sent again.
    if (res.status === 409) expect(((await res.json()) as { code: string }).code).toBe('active_run_conflict');
    else expect([429, 503]).toContain(res.status);
    await sleep(Number(res.headers.get('retry-after') ?? '1') * 1000 + Math.random() * 1000);
  }
}

const percentile = (sorted: number[], q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;

function summary(label: string, messages: Message[], acceptedMs: number) {
  const first = messages.map((m) => m.answers[0]!);
  const all = messages.flatMap((m) => m.answers);
  const count = (answers: Answer[]) => {
    const byStatus = new Map<number, number>();
    for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
    return [...byStatus].map(([status, n]) => `${n}×${status}`).join(', ');
  };
  const ms = (answers: Answer[]) => answers.map((a) => a.ms).sort((a, b) => a - b);
  const line = (answers: Answer[]) => `${count(answers)}; p50 ${percentile(ms(answers), 0.5).toFixed(0)} ms, p99 ${percentile(ms(answers), 0.99).toFixed(0)} ms, max ${Math.max(...ms(answers)).toFixed(0)} ms`;
  console.log(`[burst ${label}] first answers: ${line(first)} | all ${all.length} answers incl. retries: ${line(all)} | all accepted after ${(acceptedMs / 1000).toFixed(1)} s`);
}

/** Pages through a thread's committed messages. */
async function committedUserMessages(threadId: string): Promise<string[]> {
  const contents: string[] = [];
  let after = 0;
  for (;;) {
    const res = await api(`/v1/threads/${threadId}/messages?limit=1000&after=${after}`);
    expect(res.status).toBe(200);
    contents.push(...res.body.items.filter((m: { role: string }) => m.role === 'user').map((m: { content: string }) => m.content));
    if (res.body.nextCursor === null) return contents;
    after = res.body.nextCursor;
  }
}

async function burst(label: string, threads: string[], perThread: number) {
  const tag = randomUUID().slice(0, 8);
  const messages: Message[] = threads.flatMap((threadId) =>
    Array.from({ length: perThread }, (_, i) => ({ threadId, content: `${label} ${tag} ${threadId} #${i}`, idempotencyKey: randomUUID(), answers: [] })),
  );
  const started = Date.now();
  await Promise.all(messages.map((m) => deliver(m, started + 240_000)));
  summary(label, messages, Date.now() - started);

  // Every answer came fast, and was an acceptance or a busy signal with a time to come back.
  for (const answer of messages.flatMap((m) => m.answers)) {
    expect(answer.ms).toBeLessThan(10_000);
    if (answer.status === 202) continue;
    // Busy: this thread's line is full (thread_busy), or this API instance's (rate_limited).
    expect({ status: answer.status, code: answer.code, retryAfter: answer.retryAfter }).toEqual({ status: 429, code: expect.stringMatching(/^(thread_busy|rate_limited)$/), retryAfter: '1' });
  }
  expect(messages.filter((m) => m.answers.at(-1)!.status !== 202).map((m) => m.content)).toEqual([]);

  // Running 500 queued runs one after another would take minutes and prove nothing more: interrupting
  // each thread supersedes its queue, which commits every queued message at once (ahead of nothing).
  await Promise.all(threads.map((threadId) => interrupt(threadId)));

  // Every run ends, and the thread has exactly one run per message: a 429 wrote nothing.
  for (const threadId of threads) {
    const runs = await once(async () => {
      const res = await api(`/v1/threads/${threadId}/runs`);
      return res.body.items.every((r: { status: string }) => r.status === 'done') ? res.body.items : undefined;
    }, 600_000, `the runs of ${threadId} to end`);
    expect(runs).toHaveLength(perThread);
  }
  console.log(`[burst ${label}] all runs ended after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  // Every message committed exactly once.
  for (const threadId of threads) {
    const expected = messages.filter((m) => m.threadId === threadId).map((m) => m.content);
    expect((await committedUserMessages(threadId)).sort()).toEqual(expected.sort());
  }
  return messages;
}

it('500 concurrent queue submits to one thread: each answered within 10 s (202 or 429 thread_busy with Retry-After); retried, every message is committed once', async () => {
  const messages = await burst('one thread', [uniqueId('busy')], 500);
  // The bound is what answered: some of the burst was told to come back.
  expect(messages.filter((m) => m.answers[0]!.status === 429).length).toBeGreaterThan(0);
}, 900_000);

it('500 concurrent queue submits across 100 threads (5 each): each answered within 10 s; every message is committed once', async () => {
  await burst('100 threads', Array.from({ length: 100 }, () => uniqueId('spread')), 5);
}, 900_000);
