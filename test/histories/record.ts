// Records the workflow histories of the committed workflow code into test/histories/<commit>/, for the replay
// test: a real Postgres and Temporal dev server, the API driven over HTTP, a worker on this checkout's workflows/.
// Run it in a clean checkout of the commit to record (see test/histories/README.md):
//   npx tsx test/histories/record.ts [--out <dir>] [scenario …]
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection, isGrpcServiceError, WorkflowNotFoundError } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { loadConfig } from '../../src/config.js';
import { startEmbeddedPostgres } from '../../src/infra/postgres.js';
import { startTemporalDevServer } from '../../src/infra/temporal-server.js';
import { startThreadbox, type Running } from '../../src/server.js';
import { bundleWorkflows } from '../../src/temporal/worker.js';
import { tenantRunWorkflowId } from '../../src/contract/mailbox.js';
import { freePort } from '../ports.js';
import { historyToJSON } from './history-json.js';

type History = temporal.api.history.v1.IHistory;

/** Small, so that a thread continues-as-new after a dozen submits (the test suite uses 400). */
const SUGGEST_CONTINUE_AS_NEW = 150;
const TENANT = 'default';
const SEND_EMAIL = '/tool send_email {"to":"a@b.c","subject":"s","body":"b"}';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

interface Scenario {
  name: string;
  run(ctx: Ctx): Promise<void>;
}

interface Ctx {
  api: Api;
  /** Writes every execution of the thread's workflow and of its runs' workflows, as they stand now, into `folder`. */
  record(folder: string, what: string, threadId: string): Promise<void>;
  stopWorker(): Promise<void>;
  startWorker(): Promise<void>;
  temporal: Client;
}

const scenarios: Scenario[] = [
  {
    name: 'interrupt',
    async run({ api, record }) {
      const threadId = api.newThreadId('interrupt');
      const first = await api.submit(threadId, '/slow 100 /long 200 first');
      await api.waitForEvent(first.runId, 'text_delta');
      for (const text of ['q1', 'q2', 'q3']) expectStatus(await api.submit(threadId, text, { mode: 'queue' }), 'queued');
      const last = await api.submit(threadId, 'last');
      await api.expectTermination(first.runId, 'interrupted');
      await api.expectTermination(last.runId, 'natural_end');
      await record('interrupt', 'an interrupting submit (mode interrupt, the default) stops the streaming run and supersedes 3 queued runs', threadId);
    },
  },
  {
    name: 'queue-fifo',
    async run({ api, record }) {
      const threadId = api.newThreadId('queue');
      const runs = [];
      for (const text of ['/slow 20 /long 10 one', 'two', 'three']) runs.push(await api.submit(threadId, text, { mode: 'queue' }));
      for (const run of runs) await api.expectTermination(run.runId, 'natural_end');
      await record('queue-fifo', 'three queue submits run one after another in arrival order', threadId);
    },
  },
  {
    name: 'steer',
    async run({ api, record }) {
      const threadId = api.newThreadId('steer');
      const first = await api.submit(threadId, '/slow 100 /long 30 story');
      await api.waitForEvent(first.runId, 'text_delta');
      expectStatus(await api.submit(threadId, 'also this', { mode: 'steer', expectedRunId: first.runId }), 'steered');
      await api.expectTermination(first.runId, 'natural_end');
      await api.waitForEvent(first.runId, 'steering_applied');
      await record('steer', 'a steer submit with expectedRunId is applied to the active run at its next step boundary', threadId);
    },
  },
  {
    name: 'steer-late',
    async run({ api, record, temporal }) {
      // The race is timing-bound: tries run 4 at a time (the load widens the window), until one thread shows a
      // run that signalled runEnded twice with steering, or 10 batches have run. Every other steer names no
      // expectedRunId, so it steers whichever run is active: each run's end is another chance.
      const attempt = async (): Promise<{ threadId: string; shows: string; carrying: number; twice: boolean }> => {
        const threadId = api.newThreadId('steer-late');
        const first = await api.submit(threadId, '/slow 5 /long 4 go');
        const steers = [];
        for (let i = 0; i < 20; i++) {
          steers.push(api.submit(threadId, `late ${i}`, { mode: 'steer', ...(i % 2 ? {} : { expectedRunId: first.runId }) }));
          await sleep(4);
        }
        await Promise.all(steers);
        await waitUntilSettled(temporal, api, threadId);
        const ended = runEndedSignals(await threadHistories(temporal, threadId));
        const carrying = ended.filter((s) => s.unappliedSteering > 0).length;
        const perRun = new Map<string, number>();
        for (const s of ended) perRun.set(s.runId, (perRun.get(s.runId) ?? 0) + 1);
        const twice = [...perRun.values()].some((n) => n > 1);
        const shows = `${ended.length} runEnded signals, ${carrying} carrying steering, ${twice ? 'two from one run' : 'one per run'}`;
        log(`steer-late ${threadId}: ${shows}`);
        return { threadId, shows, carrying, twice };
      };
      let kept: { threadId: string; shows: string } | undefined;
      for (let batch = 0; batch < 10; batch++) {
        const tries = await Promise.all([attempt(), attempt(), attempt(), attempt()]);
        kept = tries.find((t) => t.twice && t.carrying > 0) ?? kept ?? tries.find((t) => t.carrying > 0);
        if (tries.some((t) => t.twice && t.carrying > 0)) break;
      }
      if (!kept) throw new Error('no try produced a runEnded signal carrying steering');
      await record(
        'steer-late',
        `20 steer submits (every other one with expectedRunId of the first run) fired 4 ms apart at a short run; those arriving as a run ends reach the thread in runEnded, or queue as runs of their own. This thread: ${kept.shows}`,
        kept.threadId,
      );
    },
  },
  {
    name: 'approval',
    async run({ api, record }) {
      const approved = api.newThreadId('approve');
      const waiting = await api.submit(approved, SEND_EMAIL);
      const request = await api.waitForEvent(waiting.runId, 'tool_approval_requested');
      await api.waitForRunStatus(waiting.runId, 'waiting');
      await record('approval-waiting', 'a run waits for the approval of a send_email call; recorded while it waits (open histories)', approved);
      expectHttp(await api.request('POST', `/v1/runs/${waiting.runId}/decisions`, { toolCallId: request.toolCallId, action: 'approve' }), 202);
      await api.expectTermination(waiting.runId, 'natural_end');
      await record('approval-approve', 'the run of approval-waiting, approved: the email is sent and the run answers', approved);

      const denied = api.newThreadId('deny');
      const run = await api.submit(denied, SEND_EMAIL);
      const deny = await api.waitForEvent(run.runId, 'tool_approval_requested');
      expectHttp(await api.request('POST', `/v1/runs/${run.runId}/decisions`, { toolCallId: deny.toolCallId, action: 'deny', reason: 'not now' }), 202);
      await api.expectTermination(run.runId, 'natural_end');
      await record('approval-deny', 'a send_email call denied with a reason: the model sees the denial and answers', denied);
    },
  },
  {
    name: 'cancel',
    async run({ api, record }) {
      const threadId = api.newThreadId('cancel');
      const active = await api.submit(threadId, '/slow 100 /long 100 active');
      const queued = await api.submit(threadId, 'queued, then cancelled', { mode: 'queue' });
      const behind = await api.submit(threadId, 'behind', { mode: 'queue' });
      await api.waitForEvent(active.runId, 'text_delta');
      expectHttp(await api.request('POST', `/v1/runs/${queued.runId}/cancel`), 202);
      await api.expectTermination(queued.runId, 'cancelled');
      expectHttp(await api.request('POST', `/v1/runs/${active.runId}/cancel`), 202);
      await api.expectTermination(active.runId, 'cancelled');
      await api.expectTermination(behind.runId, 'natural_end');
      await record('cancel', 'POST /v1/runs/{id}/cancel of a queued run, then of the active (streaming) run; the run queued behind them runs', threadId);
    },
  },
  {
    name: 'thread-interrupt',
    async run({ api, record }) {
      const threadId = api.newThreadId('thread-interrupt');
      const active = await api.submit(threadId, '/slow 100 /long 100 active');
      const queued = await api.submit(threadId, 'queued', { mode: 'queue' });
      await api.waitForEvent(active.runId, 'text_delta');
      const interrupted = expectHttp(await api.request('POST', `/v1/threads/${threadId}/interrupt`), 202);
      if (interrupted.cancelledRunId !== active.runId) throw new Error(`interrupt cancelled ${interrupted.cancelledRunId}, not ${active.runId}`);
      await api.expectTermination(active.runId, 'interrupted');
      await api.expectTermination(queued.runId, 'superseded');
      await record('thread-interrupt', 'POST /v1/threads/{id}/interrupt cancels the active run and supersedes the queued one', threadId);
    },
  },
  {
    name: 'durable-mailbox',
    async run({ api, record }) {
      const threadId = api.newThreadId('durable');
      const message = { messageId: `${threadId}-msg`, text: '/slow 50 /long 20 delivered', senderAgentId: 'scheduler' };
      const first = expectHttp(await api.request('POST', `/v1/threads/${threadId}/mailbox`, message), 201);
      const again = expectHttp(await api.request('POST', `/v1/threads/${threadId}/mailbox`, message), 200);
      if (!again.duplicate || again.runId !== first.runId) throw new Error('a redelivery was not answered as a duplicate of the first');
      await api.expectTermination(first.runId, 'natural_end');
      expectHttp(await api.request('POST', `/v1/threads/${threadId}/mailbox`, message), 200);
      await record('durable-mailbox', 'a durable mailbox message (201), redelivered while its run is in flight and again after it ended (200, duplicate)', threadId);
    },
  },
  {
    name: 'continue-as-new',
    async run({ api, record, temporal }) {
      const threadId = api.newThreadId('can');
      const waiting = await api.submit(threadId, SEND_EMAIL);
      const request = await api.waitForEvent(waiting.runId, 'tool_approval_requested');
      const queued = [];
      for (let i = 0; (await threadHistories(temporal, threadId)).length < 2; i++) {
        if (i === 40) throw new Error('the thread did not continue-as-new after 40 queue submits');
        queued.push(await api.submit(threadId, `behind ${i}`, { mode: 'queue' }));
      }
      expectHttp(await api.request('POST', `/v1/runs/${waiting.runId}/decisions`, { toolCallId: request.toolCallId, action: 'approve' }), 202);
      await api.expectTermination(waiting.runId, 'natural_end');
      for (const run of queued) await api.expectTermination(run.runId, 'natural_end');
      await record(
        'continue-as-new',
        `the thread continues-as-new (suggested at ${SUGGEST_CONTINUE_AS_NEW} events) while a run waits for approval with ${queued.length} queue submits behind it; then the approval and the queue complete`,
        threadId,
      );
    },
  },
  {
    name: 'tool-calculator',
    async run({ api, record }) {
      const threadId = api.newThreadId('calculator');
      const run = await api.submit(threadId, '/tool calculator {"expression":"6*7"}');
      await api.expectTermination(run.runId, 'natural_end');
      await record('tool-calculator', 'a run calls the calculator tool and answers with its result (two model steps)', threadId);
    },
  },
  {
    name: 'stopped-mid-run',
    async run({ api, record, stopWorker, startWorker }) {
      const threadId = api.newThreadId('midrun');
      const active = await api.submit(threadId, '/slow 100 /long 150 midrun');
      const behind = await api.submit(threadId, 'behind', { mode: 'queue' });
      await api.waitForEvent(active.runId, 'text_delta');
      await stopWorker();
      await record('stopped-mid-run', 'the worker shut down while a run streams, a run queued behind it; recorded while no worker runs (open histories)', threadId);
      await startWorker();
      await api.expectTermination(active.runId, 'natural_end', 90_000);
      await api.expectTermination(behind.runId, 'natural_end');
      await record('stopped-mid-run-resumed', 'the thread of stopped-mid-run after a new worker finished both runs', threadId);
    },
  },
];

async function main() {
  const args = process.argv.slice(2);
  const outFlag = args.indexOf('--out');
  const commit = git('rev-parse', '--short=7', 'HEAD');
  if (git('status', '--porcelain', '--', 'workflows')) {
    throw new Error('workflows/ has uncommitted changes: record from a clean checkout of a commit (a git worktree), never from edited code');
  }
  const outDir = resolve(outFlag >= 0 ? args.splice(outFlag, 2)[1]! : join(repoRoot, 'test', 'histories', commit));
  if (existsSync(outDir)) throw new Error(`${outDir} exists: a recording is never overwritten (remove it only if it is your own unfinished one)`);
  const chosen = args.length ? scenarios.filter((s) => args.includes(s.name)) : scenarios;
  if (chosen.length !== (args.length || scenarios.length)) throw new Error(`unknown scenario in ${args.join(' ')}; known: ${scenarios.map((s) => s.name).join(', ')}`);

  const work = mkdtempSync(join(tmpdir(), 'threadbox-record-'));
  chmodSync(work, 0o755); // embedded Postgres runs as its own user when we are root
  const stops: (() => Promise<void>)[] = [];
  try {
    const pg = await startEmbeddedPostgres({ dataDir: join(work, 'postgres'), port: await freePort() });
    stops.push(pg.stop);
    const server = await startTemporalDevServer({
      port: await freePort(),
      log,
      dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': SUGGEST_CONTINUE_AS_NEW },
    });
    stops.push(server.stop);
    log(`recording commit ${commit} into ${outDir}`);

    const config = loadConfig({ PORT: '0', LOG_LEVEL: 'warn', TEMPORAL_TASK_QUEUE: `record-${commit}` });
    const services = { databaseUrl: pg.url, temporalAddress: server.address };
    const workflowBundle = await bundleWorkflows();
    const apiProcess = await startThreadbox(config, { ...services, api: true, worker: false });
    stops.push(apiProcess.stop);
    let worker: Running | undefined = await startThreadbox(config, { ...services, api: false, worker: true, workflowBundle });
    stops.push(() => worker?.stop() ?? Promise.resolve());
    const connection = await Connection.connect({ address: server.address });
    stops.push(() => connection.close());
    const temporal = new Client({ connection });
    const api = new Api(apiProcess.url!);

    const written: { folder: string; what: string; files: string[] }[] = [];
    const ctx: Ctx = {
      api,
      temporal,
      async record(folder, what, threadId) {
        const files = await recordThread(temporal, api, threadId, join(outDir, folder));
        written.push({ folder, what, files });
        log(`${folder}: ${files.join(', ')}`);
      },
      async stopWorker() {
        await worker?.stop();
        worker = undefined;
      },
      async startWorker() {
        worker = await startThreadbox(config, { ...services, api: false, worker: true, workflowBundle });
      },
    };
    for (const scenario of chosen) {
      const started = Date.now();
      await scenario.run(ctx);
      log(`${scenario.name} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    writeFileSync(join(outDir, 'README.md'), describeRecording(commit, written));
    log(`wrote ${written.reduce((n, w) => n + w.files.length, 0)} histories into ${relative(process.cwd(), outDir) || '.'}`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(err));
    rmSync(work, { recursive: true, force: true });
  }
}

/** The thread's executions (first to latest, across continue-as-new), then each started run's workflow. */
async function recordThread(temporal: Client, api: Api, threadId: string, dir: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const write = (name: string, history: History) => {
    writeFileSync(join(dir, name), historyToJSON(history) + '\n');
    files.push(name);
  };
  const executions = await threadHistories(temporal, threadId);
  executions.forEach((history, i) => write(executions.length > 1 ? `thread-${i + 1}.json` : 'thread.json', history));
  const runs: RunRecord[] = (await api.request('GET', `/v1/threads/${threadId}/runs`)).body.items;
  runs.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  for (const [i, run] of runs.entries()) {
    let history: History;
    try {
      history = await temporal.workflow.getHandle(tenantRunWorkflowId(TENANT, run.runId)).fetchHistory();
    } catch (err) {
      if (isNotFound(err)) continue; // superseded or cancelled before it started
      throw err;
    }
    write(`run-${i + 1}-${run.termination?.type ?? run.status}.json`, history);
  }
  return files;
}

async function threadHistories(temporal: Client, threadId: string): Promise<History[]> {
  const workflowId = `thread:${TENANT}:${threadId}`;
  const latest = await temporal.workflow.getHandle(workflowId).fetchHistory();
  let runId: string | null | undefined = latest.events?.[0]?.workflowExecutionStartedEventAttributes?.firstExecutionRunId;
  const histories: History[] = [];
  while (runId) {
    const history = await temporal.workflow.getHandle(workflowId, runId).fetchHistory();
    histories.push(history);
    runId = history.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
  }
  return histories;
}

/**
 * Every run done and its workflow closed, and the thread's mailbox empty, twice in a row: late steering
 * becomes a new run only after the run that carried it has ended.
 */
async function waitUntilSettled(temporal: Client, api: Api, threadId: string): Promise<void> {
  const settled = async () => {
    const runs = (await api.request('GET', `/v1/threads/${threadId}/runs`)).body.items as RunRecord[];
    if (runs.some((r) => r.status !== 'done')) return false;
    for (const run of runs) {
      const open = await temporal.workflow.getHandle(tenantRunWorkflowId(TENANT, run.runId)).describe().then(
        (d) => d.status.name === 'RUNNING',
        (err) => (isNotFound(err) ? false : Promise.reject(err)),
      );
      if (open) return false;
    }
    const mailbox = await temporal.workflow.getHandle(`thread:${TENANT}:${threadId}`).query<{ active: unknown; queue: unknown[] }>('mailbox');
    return mailbox.active === null && mailbox.queue.length === 0;
  };
  await eventually(`thread ${threadId} to settle`, async () => ((await settled()) && (await sleep(300), await settled()) ? true : undefined));
}

/** fetchHistory rejects with the bare gRPC error, describe with WorkflowNotFoundError. */
function isNotFound(err: unknown): boolean {
  return err instanceof WorkflowNotFoundError || (isGrpcServiceError(err) && err.code === 5); // 5: NOT_FOUND
}

function runEndedSignals(histories: History[]): { runId: string; unappliedSteering: number }[] {
  return histories.flatMap((h) =>
    (h.events ?? []).flatMap((e) => {
      const signal = e.workflowExecutionSignaledEventAttributes;
      if (signal?.signalName !== 'runEnded') return [];
      const ended = JSON.parse(Buffer.from(signal.input!.payloads![0]!.data!).toString('utf8'));
      return [{ runId: ended.runId as string, unappliedSteering: ended.unappliedSteering.length as number }];
    }),
  );
}

function describeRecording(commit: string, written: { folder: string; what: string; files: string[] }[]): string {
  const subject = git('log', '-1', '--format=%s', 'HEAD');
  const lines = [
    `# Histories recorded on ${commit}`,
    '',
    `Workflow code of commit ${commit} ("${subject}"), recorded ${new Date().toISOString().slice(0, 10)} by test/histories/record.ts`,
    `with \`limit.historyCount.suggestContinueAsNew=${SUGGEST_CONTINUE_AS_NEW}\`. Files: \`thread.json\` (or \`thread-<n>.json\` per`,
    'execution across continue-as-new), `run-<n>-<termination or status>.json` for the n-th run of the thread',
    '(runs that never started have no workflow, hence the gaps).',
    '',
    '| folder | scenario | files |',
    '|---|---|---|',
  ];
  for (const { folder, what, files } of written) lines.push(`| ${folder} | ${what.replace(/\|/g, '\\|')} | ${files.join(', ')} |`);
  return lines.join('\n') + '\n';
}

interface RunRecord {
  runId: string;
  status: string;
  termination: { type: string } | null;
  createdAt: string;
}

/** The HTTP API as a client sees it. */
class Api {
  private count = 0;
  constructor(private readonly url: string) {}

  newThreadId(prefix: string): string {
    return `${prefix}-${++this.count}-${Date.now().toString(36)}`;
  }

  async request(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const response = await fetch(this.url + path, {
      method,
      headers: body !== undefined ? { 'content-type': 'application/json' } : {},
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined };
  }

  /** A submit as a careful client makes it: a 429 is retried with the same Idempotency-Key after its Retry-After. */
  async submit(threadId: string, content: string, extra: Record<string, unknown> = {}): Promise<{ runId: string; status: string }> {
    const key = `record-${randomUUID()}`;
    for (;;) {
      const response = await fetch(`${this.url}/v1/threads/${threadId}/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ messages: [{ role: 'user', content }], ...extra }),
      });
      const body = await response.json();
      if (response.status !== 429) return expectHttp({ status: response.status, body }, 202);
      await new Promise((r) => setTimeout(r, Number(response.headers.get('retry-after') ?? '1') * 1000));
    }
  }

  async waitForEvent(runId: string, type: string): Promise<any> {
    return eventually(`${type} on run ${runId}`, async () => {
      const page = await this.request('GET', `/v1/runs/${runId}/events?limit=1000`);
      return page.body?.items?.find((e: { type: string }) => e.type === type);
    });
  }

  async waitForRunStatus(runId: string, status: string, timeoutMs = 30_000): Promise<RunRecord> {
    return eventually(`run ${runId} ${status}`, async () => {
      const run = await this.request('GET', `/v1/runs/${runId}`);
      return run.body?.status === status ? (run.body as RunRecord) : undefined;
    }, timeoutMs);
  }

  async expectTermination(runId: string, type: string, timeoutMs = 30_000): Promise<void> {
    const run = await this.waitForRunStatus(runId, 'done', timeoutMs);
    if (run.termination?.type !== type) throw new Error(`run ${runId} ended ${JSON.stringify(run.termination)}, expected ${type}`);
  }

}

function expectHttp(response: { status: number; body: any }, status: number): any {
  if (response.status !== status) throw new Error(`expected HTTP ${status}, got ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body;
}

function expectStatus(result: { status: string }, status: string) {
  if (result.status !== status) throw new Error(`expected a ${status} submit, got ${JSON.stringify(result)}`);
}

async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function git(...args: string[]): string {
  return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8' }).trim();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (line: string) => console.log(`[record] ${line}`);

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
