// `npm run bench`: threadbox against a no-durability baseline (the same echo model behind a plain
// Fastify SSE route), plus throughput, scale and the store benchmarks. Progress goes to stderr; stdout
// gets a table and, as its last line, one JSON object with every figure and the machine.
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { streamText } from 'ai';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import { createEchoModel } from '../src/agent/echo.js';
import { loadConfig } from '../src/config.js';
import { startEmbeddedPostgres } from '../src/infra/postgres.js';
import { findTemporalCli, temporalCliVersion } from '../src/infra/temporal-cli.js';
import { startTemporalDevServer } from '../src/infra/temporal-server.js';
import { startThreadbox } from '../src/server.js';
import { freePort } from '../test/ports.js';
import { rssMiB, spawnThreadbox, type ThreadboxProcess } from './processes.js';
import { clock, readSse } from './sse.js';
import { cadenceText, startTimedProvider, type TimedProvider } from './timed-provider.js';
import { benchStore } from './store.js';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '200' }, // submit → first byte/token samples per side
    'latency-threads': { type: 'string', default: '20' },
    'token-runs': { type: 'string', default: '6' },
    'token-count': { type: 'string', default: '50' },
    'token-slow-ms': { type: 'string', default: '50' },
    interrupts: { type: 'string', default: '50' },
    cancels: { type: 'string', default: '50' },
    'throughput-threads': { type: 'string', default: '50' },
    'throughput-runs-per-thread': { type: 'string', default: '6' },
    'long-tokens': { type: 'string', default: '20000' },
    'idle-threads': { type: 'string', default: '1000' },
    'waiting-runs': { type: 'string', default: '100' },
    'scale-samples': { type: 'string', default: '50' },
    quick: { type: 'boolean', default: false }, // every count divided by 10: a smoke run
    'skip-store': { type: 'boolean', default: false },
  },
});
const count = (name: keyof typeof flags) => {
  const n = Number(flags[name]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return flags.quick ? Math.max(2, Math.ceil(n / 10)) : n;
};
const settings = {
  runs: count('runs'),
  latencyThreads: count('latency-threads'),
  tokenRuns: count('token-runs'),
  tokenCount: Number(flags['token-count']),
  tokenSlowMs: Number(flags['token-slow-ms']),
  interrupts: count('interrupts'),
  cancels: count('cancels'),
  throughputThreads: count('throughput-threads'),
  throughputRunsPerThread: Number(flags['throughput-runs-per-thread']),
  longTokens: count('long-tokens'),
  idleThreads: count('idle-threads'),
  waitingRuns: count('waiting-runs'),
  scaleSamples: count('scale-samples'),
  flushIntervalMs: loadConfig().THREADBOX_FLUSH_MS,
};

const started = Date.now();
const progress = (line: string) => console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// A timed SSE client: one submit, every frame's arrival time.

interface Token {
  at: number; // arrival at the client
  ts: number; // the event's `ts` (threadbox: Postgres commit time of its flush)
  delta: string;
}

interface TimedRun {
  submittedAt: number;
  headersAt: number;
  firstEventAt?: number;
  firstTokenAt?: number;
  finishAt?: number;
  runId?: string;
  termination?: string;
  tokens: Token[];
  firstToken: Promise<void>;
  done: Promise<void>;
}

async function submitTimed(url: string, body: unknown): Promise<TimedRun> {
  const submittedAt = clock();
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(body),
  });
  const headersAt = clock();
  if (response.status !== 200 || !response.body) throw new Error(`POST ${url}: ${response.status} ${await response.text()}`);
  let tokenSeen!: () => void;
  const firstToken = new Promise<void>((r) => (tokenSeen = r));
  const run: TimedRun = { submittedAt, headersAt, tokens: [], firstToken, done: Promise.resolve() };
  run.done = readSse(response.body, (frame, at) => {
    if (!frame.event || !frame.data) return;
    const event = JSON.parse(frame.data);
    run.firstEventAt ??= at;
    run.runId ??= event.runId;
    if (frame.event === 'text_delta') {
      run.firstTokenAt ??= at;
      run.tokens.push({ at, ts: Date.parse(event.ts), delta: event.delta });
      tokenSeen();
    } else if (frame.event === 'run_finish') {
      run.finishAt = at;
      run.termination = event.termination.type;
    }
  }).finally(() => tokenSeen());
  return run;
}

async function post(url: string, body?: unknown): Promise<any> {
  const response = await fetch(url, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status >= 300) throw new Error(`POST ${url}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

const userMessage = (content: string) => ({ messages: [{ role: 'user', content }] });

// ---------------------------------------------------------------------------------------------
// The baseline: a model through the AI SDK's streamText, straight onto an SSE response, with no
// Temporal and no Postgres. The echo model, or (`model: "timed"`) the timed provider over HTTP.

async function startBaseline(timed: TimedProvider): Promise<{ url: string; app: FastifyInstance }> {
  const echo = createEchoModel();
  const timedModel = createOpenAICompatible({ name: 'timed', baseURL: timed.baseURL, includeUsage: true }).chatModel('timed');
  const app = Fastify({ logger: false });
  app.post('/baseline/runs', async (request, reply) => {
    const { messages, model } = request.body as { messages: { role: 'user'; content: string }[]; model?: 'timed' };
    const runId = randomUUID();
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform' });
    raw.flushHeaders();
    let seq = 0;
    const send = (type: string, data: Record<string, unknown> = {}) => {
      seq++;
      raw.write(`id: ${seq}\nevent: ${type}\ndata: ${JSON.stringify({ type, runId, seq, ts: new Date().toISOString(), ...data })}\n\n`);
    };
    const aborted = new AbortController();
    raw.on('close', () => aborted.abort());
    send('run_start');
    const result = streamText({ model: model === 'timed' ? timedModel : echo, messages, abortSignal: aborted.signal, maxRetries: 0, onError: () => {} });
    for await (const part of result.fullStream) {
      if (part.type === 'text-delta') send('text_delta', { delta: part.text });
    }
    send('run_finish', { termination: { type: aborted.signal.aborted ? 'cancelled' : 'natural_end' } });
    raw.end();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  return { url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, app };
}

// ---------------------------------------------------------------------------------------------
// Statistics.

/** Nearest-rank percentile. */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}
const round = (v: number, digits = 2) => Math.round(v * 10 ** digits) / 10 ** digits;
const p50p99 = (prefix: string, values: number[]) => ({
  [`${prefix}_p50_ms`]: round(percentile(values, 50)),
  [`${prefix}_p99_ms`]: round(percentile(values, 99)),
});

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]!, i);
      }
    }),
  );
  return results;
}

// ---------------------------------------------------------------------------------------------
// The stack.

interface Stack {
  databaseUrl: string;
  temporalAddress: string;
  taskQueue: string;
  api: string;
  baseline: string;
  worker: ThreadboxProcess;
  timed: TimedProvider;
  db: pg.Pool;
  stop(): Promise<void>;
}

async function startStack(): Promise<Stack> {
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch((err) => progress(`cleanup: ${(err as Error).message}`));
  };
  try {
    const dir = mkdtempSync(join(tmpdir(), 'threadbox-bench-'));
    chmodSync(dir, 0o755); // embedded Postgres runs as its own user when we are root
    stops.push(async () => rmSync(dir, { recursive: true, force: true }));
    let databaseUrl = process.env.DATABASE_URL;
    let temporalAddress = process.env.TEMPORAL_ADDRESS;
    if (!databaseUrl) {
      const postgres = await startEmbeddedPostgres({ dataDir: join(dir, 'postgres'), port: await freePort() });
      stops.push(postgres.stop);
      databaseUrl = postgres.url;
      progress('embedded Postgres started');
    }
    if (!temporalAddress) {
      const temporal = await startTemporalDevServer({ port: await freePort(), log: progress });
      stops.push(temporal.stop);
      temporalAddress = temporal.address;
      progress('Temporal dev server started');
    }
    const timed = await startTimedProvider();
    stops.push(() => timed.close());
    // The echo model for `default`; the timed provider for `timed` (per-token delivery).
    const agentsFile = join(dir, 'agents.json');
    writeFileSync(agentsFile, JSON.stringify({ agents: [{ id: 'default', model: 'echo' }, { id: 'timed', model: `openai-compatible:${timed.baseURL}#timed`, tools: [] }] }));
    const taskQueue = `bench-${randomUUID()}`;
    // The API's rate limit guards a deployment, not a benchmark that submits thousands of runs a minute.
    const env = { TEMPORAL_TASK_QUEUE: taskQueue, THREADBOX_CONFIG: agentsFile, THREADBOX_RATE_LIMIT_PER_MIN: '1000000' };
    const config = loadConfig({ PORT: '0', LOG_LEVEL: 'warn', ...env });
    const api = await startThreadbox(config, { databaseUrl, temporalAddress, api: true, worker: false });
    stops.push(api.stop);
    const baseline = await startBaseline(timed);
    stops.push(() => baseline.app.close());
    const worker = await spawnThreadbox('worker', { DATABASE_URL: databaseUrl, TEMPORAL_ADDRESS: temporalAddress, ...env });
    stops.push(() => worker.stop());
    progress(`worker process ${worker.pid} ready`);
    const db = new pg.Pool({ connectionString: databaseUrl, max: 4 });
    stops.push(() => db.end());
    return { databaseUrl, temporalAddress, taskQueue, api: api.url!, baseline: baseline.url, worker, timed, db, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

const threadRuns = (stack: Stack, threadId: string) => `${stack.api}/v1/threads/${threadId}/runs`;
const newThreadId = (prefix: string) => `${prefix}-${randomUUID().slice(0, 13)}`;

/** Polls Postgres until every run is done (or waiting, with `status`); returns when the last one got there. */
async function waitForRuns(stack: Stack, runIds: string[], status: 'done' | 'waiting' = 'done', timeoutMs = 300_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM runs WHERE run_id = ANY($1) AND status = $2', [runIds, status]);
    const at = clock();
    if (Number(rows[0]!.n) === runIds.length) return at;
    if (Date.now() > deadline) throw new Error(`only ${rows[0]!.n} of ${runIds.length} runs reached ${status} in ${timeoutMs / 1000} s`);
    await sleep(25);
  }
}

// ---------------------------------------------------------------------------------------------
// The measurements.

/** Submit → headers, first event, first token and run_finish of one run, into per-figure sample lists. */
function firstBytesSamples() {
  const samples = { byte: [] as number[], event: [] as number[], token: [] as number[], total: [] as number[] };
  return {
    samples,
    add(run: TimedRun) {
      if (run.termination !== 'natural_end') throw new Error(`latency run ended ${run.termination}`);
      samples.byte.push(run.headersAt - run.submittedAt);
      samples.event.push(run.firstEventAt! - run.submittedAt);
      samples.token.push(run.firstTokenAt! - run.submittedAt);
      samples.total.push(run.finishAt! - run.submittedAt);
    },
  };
}

async function measureFirstBytes(stack: Stack) {
  const threads = Array.from({ length: settings.latencyThreads }, () => newThreadId('latency'));
  const threadbox = firstBytesSamples();
  const baseline = firstBytesSamples();
  // Warm-up, not counted: connections, JIT, the worker's first workflow tasks.
  for (let i = 0; i < 10; i++) {
    await (await submitTimed(threadRuns(stack, newThreadId('warmup')), userMessage('warm up'))).done;
    await (await submitTimed(`${stack.baseline}/baseline/runs`, userMessage('warm up'))).done;
  }
  // Interleaved, so the two sides see the same background noise of a shared machine.
  for (let i = 0; i < settings.runs; i++) {
    const text = `latency run ${i} says hello`;
    const base = await submitTimed(`${stack.baseline}/baseline/runs`, userMessage(text));
    await base.done;
    baseline.add(base);
    const run = await submitTimed(threadRuns(stack, threads[i % threads.length]!), userMessage(text));
    await run.done;
    threadbox.add(run);
  }
  return {
    ...p50p99('first_byte', threadbox.samples.byte),
    ...p50p99('baseline_first_byte', baseline.samples.byte),
    ...p50p99('first_event', threadbox.samples.event),
    ...p50p99('first_token', threadbox.samples.token),
    ...p50p99('baseline_first_token', baseline.samples.token),
    ...p50p99('run_total', threadbox.samples.total),
    ...p50p99('baseline_run_total', baseline.samples.total),
  };
}

/**
 * Model emits → client receives, exactly: the `timed` agent's model is the timed provider, an
 * OpenAI-compatible HTTP server in this process that records when it writes each token; the
 * worker (another process) calls it as it would a real provider. The baseline streams the same
 * provider. Threadbox also gives each token's Postgres commit time (`ts`): commit → client.
 */
async function measureTokenDelivery(stack: Stack) {
  const threadbox: number[] = [];
  const commitToClient: number[] = [];
  const baseline: number[] = [];
  const delays = (run: TimedRun, marker: string) => {
    const emitted = stack.timed.emitted(marker);
    if (run.tokens.length !== settings.tokenCount || emitted.length !== settings.tokenCount) {
      throw new Error(`cadence run ${marker}: ${run.tokens.length} tokens arrived, ${emitted.length} emitted, ${settings.tokenCount} asked`);
    }
    return run.tokens.map((t, i) => {
      if (t.delta !== ` tok${i}`) throw new Error(`cadence run ${marker}: token ${i} is "${t.delta}"`);
      return t.at - emitted[i]!;
    });
  };
  for (let i = 0; i < settings.tokenRuns; i++) {
    const baseMarker = `base-${randomUUID()}`;
    const base = await submitTimed(`${stack.baseline}/baseline/runs`, { ...userMessage(cadenceText(baseMarker, settings.tokenCount, settings.tokenSlowMs)), model: 'timed' });
    await base.done;
    baseline.push(...delays(base, baseMarker));
    const marker = `tb-${randomUUID()}`;
    const run = await submitTimed(threadRuns(stack, newThreadId('cadence')), { ...userMessage(cadenceText(marker, settings.tokenCount, settings.tokenSlowMs)), agentId: 'timed' });
    await run.done;
    threadbox.push(...delays(run, marker));
    commitToClient.push(...run.tokens.map((t) => t.at - t.ts));
  }
  return {
    ...p50p99('token_emit_to_client', threadbox),
    ...p50p99('token_commit_to_client', commitToClient),
    ...p50p99('baseline_token_emit_to_client', baseline),
  };
}

/** A foreground submit on a busy thread → the old run's run_finish at its client. */
async function measureInterrupts(stack: Stack) {
  const threadId = newThreadId('interrupt');
  const busy = (i: number) => userMessage(`/slow 20 /long 100000 busy ${i}`);
  const latencies: number[] = [];
  let current = await submitTimed(threadRuns(stack, threadId), busy(0));
  await current.firstToken;
  for (let i = 1; i <= settings.interrupts; i++) {
    const sent = clock();
    const next = submitTimed(threadRuns(stack, threadId), { ...busy(i), mode: 'interrupt' });
    await current.done;
    if (current.termination !== 'interrupted') throw new Error(`interrupted run ended ${current.termination}`);
    latencies.push(current.finishAt! - sent);
    current = await next;
    await current.firstToken;
  }
  await post(`${stack.api}/v1/runs/${current.runId}/cancel`);
  await current.done;
  return p50p99('interrupt', latencies);
}

/**
 * POST cancel → run_finish at the client; and cancel → the last token the step wrote, which
 * bounds when the model call was aborted (tokens every 10 ms, each committed within a flush interval).
 */
async function measureCancels(stack: Stack) {
  const threadId = newThreadId('cancel');
  const latencies: number[] = [];
  const toAbort: number[] = [];
  for (let i = 0; i < settings.cancels; i++) {
    const run = await submitTimed(threadRuns(stack, threadId), userMessage(`/slow 10 /long 100000 cancel me ${i}`));
    await run.firstToken;
    const sent = clock();
    await post(`${stack.api}/v1/runs/${run.runId}/cancel`);
    await run.done;
    if (run.termination !== 'cancelled') throw new Error(`cancelled run ended ${run.termination}`);
    latencies.push(run.finishAt! - sent);
    toAbort.push(Math.max(0, Math.max(...run.tokens.map((t) => t.ts)) - sent));
  }
  return { ...p50p99('cancel', latencies), ...p50p99('cancel_to_last_token', toAbort) };
}

/** Completed runs per second: every thread submits its runs in queue mode at once. */
async function measureThroughput(stack: Stack) {
  const threads = Array.from({ length: settings.throughputThreads }, () => newThreadId('throughput'));
  const t0 = clock();
  const runIds = (
    await Promise.all(
      threads.map(async (threadId, t) => {
        const ids: string[] = [];
        for (let k = 0; k < settings.throughputRunsPerThread; k++) {
          const { runId } = await post(threadRuns(stack, threadId), { ...userMessage(`thread ${t} run ${k} says hello`), mode: 'queue' });
          ids.push(runId);
        }
        return ids;
      }),
    )
  ).flat();
  const submitted = clock();
  const finished = await waitForRuns(stack, runIds);
  const { rows } = await stack.db.query<{ type: string; n: string }>(
    `SELECT termination->>'type' AS type, count(*) AS n FROM runs WHERE run_id = ANY($1) GROUP BY 1`,
    [runIds],
  );
  const natural = Number(rows.find((r) => r.type === 'natural_end')?.n ?? 0);
  if (natural !== runIds.length) throw new Error(`throughput: ${natural} of ${runIds.length} runs ended naturally: ${JSON.stringify(rows)}`);
  return {
    throughput_runs: runIds.length,
    throughput_runs_per_sec: round(runIds.length / ((finished - t0) / 1000), 1),
    throughput_submits_per_sec: round(runIds.length / ((submitted - t0) / 1000), 1),
  };
}

/** Tokens per second one run sustains: `/long n` with no delay, counted at the client. */
async function measureTokensPerSecond(stack: Stack) {
  const text = `/long ${settings.longTokens} firehose`;
  const rate = (run: TimedRun) => (run.tokens.length - 1) / ((run.tokens.at(-1)!.at - run.tokens[0]!.at) / 1000);
  const run = await submitTimed(threadRuns(stack, newThreadId('firehose')), userMessage(text));
  await run.done;
  if (run.tokens.length !== settings.longTokens) throw new Error(`firehose streamed ${run.tokens.length} of ${settings.longTokens} tokens`);
  const base = await submitTimed(`${stack.baseline}/baseline/runs`, userMessage(text));
  await base.done;
  return {
    tokens_per_sec_one_run: Math.round(rate(run)),
    baseline_tokens_per_sec_one_run: Math.round(rate(base)),
    long_run_total_ms: Math.round(run.finishAt! - run.submittedAt),
  };
}

async function measureScale(stack: Stack) {
  const settle = async () => {
    await sleep(3000);
    return rssMiB(stack.worker.pid);
  };
  const figures: Record<string, number> = { worker_rss_before_scale_mib: await settle() };

  progress(`creating ${settings.idleThreads} threads, one finished run each…`);
  const idle = Array.from({ length: settings.idleThreads }, () => newThreadId('idle'));
  const t0 = clock();
  const runIds = await mapLimit(idle, 16, async (threadId) => (await post(threadRuns(stack, threadId), userMessage('hello idle thread'))).runId as string);
  const finished = await waitForRuns(stack, runIds);
  figures.idle_threads_created_per_sec = round(idle.length / ((finished - t0) / 1000), 1);
  figures.worker_rss_idle_threads_mib = await settle();

  progress(`submit → first event on existing threads, with ${settings.idleThreads} threads…`);
  const firstEvent: number[] = [];
  const firstToken: number[] = [];
  for (let i = 0; i < settings.scaleSamples; i++) {
    const threadId = idle[Math.floor(Math.random() * idle.length)]!;
    const run = await submitTimed(threadRuns(stack, threadId), userMessage(`hello again ${i}`));
    await run.done;
    firstEvent.push(run.firstEventAt! - run.submittedAt);
    firstToken.push(run.firstTokenAt! - run.submittedAt);
  }
  Object.assign(figures, p50p99('first_event_with_idle_threads', firstEvent), p50p99('first_token_with_idle_threads', firstToken));

  progress(`${settings.waitingRuns} runs waiting for an approval…`);
  const waiting = await mapLimit(Array.from({ length: settings.waitingRuns }, () => newThreadId('approval')), 16, async (threadId) => {
    const { runId } = await post(threadRuns(stack, threadId), userMessage('/tool send_email {"to":"bench@example.com","subject":"bench","body":"hi"}'));
    return runId as string;
  });
  await waitForRuns(stack, waiting, 'waiting');
  figures.worker_rss_waiting_runs_mib = await settle();
  await mapLimit(waiting, 16, (runId) => post(`${stack.api}/v1/runs/${runId}/cancel`));
  await waitForRuns(stack, waiting);
  return figures;
}

// ---------------------------------------------------------------------------------------------

const LABELS: [string, string][] = [
  ['first_byte', 'submit → first SSE byte (response headers)'],
  ['first_event', 'submit → first SSE event'],
  ['first_token', 'submit → first token'],
  ['run_total', 'submit → run_finish (5-token reply)'],
  ['token_emit_to_client', `token: model emits → client (1 per ${settings.tokenSlowMs} ms)`],
  ['token_commit_to_client', 'token: Postgres commit → client'],
  ['interrupt', 'interrupt: foreground submit → old run_finish'],
  ['cancel', 'cancel: POST cancel → run_finish'],
  ['cancel_to_last_token', 'cancel → last token written (≈ abort)'],
  ['first_event_with_idle_threads', `submit → first event, ${settings.idleThreads} threads exist`],
  ['first_token_with_idle_threads', `submit → first token, ${settings.idleThreads} threads exist`],
];

function printTable(figures: Record<string, unknown>) {
  const rows: string[][] = [['latency (ms)', 'threadbox p50', 'p99', 'baseline p50', 'p99']];
  for (const [key, label] of LABELS) {
    if (figures[`${key}_p50_ms`] === undefined) continue;
    const base = figures[`baseline_${key}_p50_ms`];
    rows.push([label, String(figures[`${key}_p50_ms`]), String(figures[`${key}_p99_ms`]), base === undefined ? '–' : String(base), base === undefined ? '–' : String(figures[`baseline_${key}_p99_ms`])]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  console.log(line(rows[0]!));
  for (const r of rows.slice(1)) console.log(line(r));
  console.log('');
  const shown = new Set(LABELS.flatMap(([k]) => [`${k}_p50_ms`, `${k}_p99_ms`, `baseline_${k}_p50_ms`, `baseline_${k}_p99_ms`]));
  const rest = Object.entries(figures).filter(([k, v]) => !shown.has(k) && typeof v === 'number');
  const width = Math.max(...rest.map(([k]) => k.length));
  for (const [k, v] of rest) console.log(`${k.padEnd(width)}  ${v}`);
}

async function main() {
  const loadStart = loadavg()[0]!;
  progress(`settings ${JSON.stringify(settings)}`);
  const stack = await startStack();
  // The worker as it starts, before its first task.
  const figures: Record<string, number> = { worker_rss_fresh_mib: rssMiB(stack.worker.pid) };
  let storeFigures: Record<string, number> = {};
  try {
    progress(`submit → first byte/token, ${settings.runs} runs per side…`);
    Object.assign(figures, await measureFirstBytes(stack));
    progress('per-token delivery…');
    Object.assign(figures, await measureTokenDelivery(stack));
    progress(`interrupt latency, ${settings.interrupts} interrupts…`);
    Object.assign(figures, await measureInterrupts(stack));
    progress(`cancel latency, ${settings.cancels} cancels…`);
    Object.assign(figures, await measureCancels(stack));
    progress(`throughput, ${settings.throughputThreads} threads × ${settings.throughputRunsPerThread} queued runs…`);
    Object.assign(figures, await measureThroughput(stack));
    progress(`tokens per second, /long ${settings.longTokens}…`);
    Object.assign(figures, await measureTokensPerSecond(stack));
    Object.assign(figures, await measureScale(stack));
    await stack.worker.stop();
    if (!flags['skip-store']) {
      progress('store benchmarks…');
      storeFigures = await benchStore(stack.databaseUrl);
    }
  } finally {
    await stack.stop();
  }
  Object.assign(figures, storeFigures);
  const result = {
    ...figures,
    duration_s: Math.round((Date.now() - started) / 1000),
    settings,
    machine: {
      cores: cpus().length,
      cpu: cpus()[0]?.model ?? 'unknown',
      memory_gib: round(totalmem() / 2 ** 30, 1),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      temporal_cli: temporalCliVersion(findTemporalCli({ build: false })),
      load_avg_1m_start: round(loadStart),
      load_avg_1m_end: round(loadavg()[0]!),
    },
  };
  printTable(figures);
  console.log(JSON.stringify(result));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
