// What every fault scenario shares: its own Postgres and Temporal (restartable), API and worker
// processes, a crowd of resuming clients, and the checks that the thread ends as if nothing happened.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, inject } from 'vitest';
import { spawnThreadbox, type ThreadboxProcess } from '../../bench/processes.js';
import { clock } from '../../bench/sse.js';
import { replyTokens } from '../../src/agent/echo.js';
import { startEmbeddedPostgres, type RunningPostgres } from '../../src/infra/postgres.js';
import { startTemporalDevServer, type RunningTemporal } from '../../src/infra/temporal-server.js';
import { freePort } from '../ports.js';
import { driveRun, reassembledText, type DrivenRun } from './client.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const randomBetween = (min: number, max: number) => min + Math.random() * (max - min);
const log = (line: string) => console.log(`[faults ${new Date().toISOString().slice(11, 23)}] ${line}`);
export { log };

/** When a dependency was down (epoch ms): stopped, being started again, answering again. */
export interface Outage {
  stoppedAt: number;
  restartingAt: number;
  upAt: number;
}

export interface Operator {
  /** terminates the run's workflow; resolves to its workflow id */
  terminateRun(runId: string, reason: string): Promise<string>;
  /** terminates the thread's workflow; resolves to its workflow id */
  terminateThread(threadId: string, reason: string): Promise<string>;
  close(): Promise<void>;
}

/** One scenario's Postgres (data dir kept across restarts) and Temporal dev server (history in a db file). */
export class Services {
  private postgres?: RunningPostgres;
  private temporal?: RunningTemporal;
  private readonly dir: string;
  private pgPort = 0;
  private temporalPort = 0;
  databaseUrl = '';
  temporalAddress = '';

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'threadbox-faults-'));
    chmodSync(this.dir, 0o755); // embedded Postgres runs as its own user when we are root
  }

  static async start(): Promise<Services> {
    const services = new Services();
    services.pgPort = await freePort();
    services.temporalPort = await freePort();
    await services.startPostgres();
    await services.startTemporal();
    return services;
  }

  private async startPostgres() {
    this.postgres = await startEmbeddedPostgres({ dataDir: join(this.dir, 'postgres'), port: this.pgPort });
    this.databaseUrl = this.postgres.url;
  }

  private async startTemporal() {
    this.temporal = await startTemporalDevServer({ port: this.temporalPort, dbFile: join(this.dir, 'temporal.db') });
    this.temporalAddress = this.temporal.address;
  }

  /** Stops Postgres, waits, starts it again on the same port and data; `whileDown` is called once it is stopped. */
  async restartPostgres(downMs: number, whileDown?: () => void): Promise<Outage> {
    await this.postgres!.stop();
    this.postgres = undefined;
    return this.outage(downMs, whileDown, () => this.startPostgres());
  }

  /** Stops the Temporal dev server, waits, starts it again on the same port and history file; `whileDown` as above. */
  async restartTemporal(downMs: number, whileDown?: () => void): Promise<Outage> {
    await this.temporal!.stop();
    this.temporal = undefined;
    return this.outage(downMs, whileDown, () => this.startTemporal());
  }

  private async outage(downMs: number, whileDown: (() => void) | undefined, start: () => Promise<void>): Promise<Outage> {
    const stoppedAt = Date.now();
    whileDown?.();
    await sleep(downMs);
    const restartingAt = Date.now();
    await start();
    return { stoppedAt, restartingAt, upAt: Date.now() };
  }

  /** What an operator does in the Temporal UI: find a run's or a thread's workflow by its search attributes, and terminate it. */
  async operator(): Promise<Operator> {
    const connection = await Connection.connect({ address: this.temporalAddress });
    const client = new Client({ connection });
    const terminate = async (query: string, reason: string): Promise<string> => {
      // Visibility trails the start by a moment.
      for (let attempt = 1; ; attempt++) {
        for await (const workflow of client.workflow.list({ query: `${query} AND ExecutionStatus = 'Running'` })) {
          await client.workflow.getHandle(workflow.workflowId, workflow.runId).terminate(reason);
          return workflow.workflowId;
        }
        if (attempt >= 50) throw new Error(`no running workflow matches ${query}`);
        await sleep(100);
      }
    };
    return {
      terminateRun: (runId, reason) => terminate(`WorkflowType = 'runWorkflow' AND ThreadboxRunId = '${runId}'`, reason),
      terminateThread: (threadId, reason) => terminate(`WorkflowType = 'threadWorkflow' AND ThreadId = '${threadId}'`, reason),
      close: () => connection.close(),
    };
  }

  env(): Record<string, string> {
    return {
      DATABASE_URL: this.databaseUrl,
      TEMPORAL_ADDRESS: this.temporalAddress,
      TEMPORAL_TASK_QUEUE: 'faults',
      // A keepalive every second lets clients tell a dead connection from a quiet run.
      THREADBOX_SSE_HEARTBEAT_MS: '1000',
      // Clients retry every 250 ms while a dependency is down: that is not what the rate limit is for.
      THREADBOX_RATE_LIMIT_PER_MIN: '1000000',
    };
  }

  async stop() {
    await this.temporal?.stop().catch(() => {});
    await this.postgres?.stop().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** API and worker processes of one scenario; clients use the first live API. */
export class Fleet {
  readonly apis: ThreadboxProcess[] = [];
  readonly workers: ThreadboxProcess[] = [];
  /** every process started, for the output of the dead */
  readonly all: ThreadboxProcess[] = [];

  constructor(private readonly services: Services) {}

  async startApi(): Promise<ThreadboxProcess> {
    const api = await spawnThreadbox('api', this.services.env());
    this.apis.push(api);
    this.all.push(api);
    void api.exited.then(() => this.apis.splice(this.apis.indexOf(api), 1));
    return api;
  }

  async startWorker(): Promise<ThreadboxProcess> {
    const worker = await spawnThreadbox('worker', this.services.env());
    this.workers.push(worker);
    this.all.push(worker);
    void worker.exited.then(() => this.workers.splice(this.workers.indexOf(worker), 1));
    return worker;
  }

  /** The first API instance still running (or the last one known, while none is). */
  private lastUrl = '';
  readonly api = (): string => {
    this.lastUrl = this.apis[0]?.url ?? this.lastUrl;
    return this.lastUrl;
  };

  /** The tail of each process's output, for a failure's evidence. */
  outputs(lines = 12): string {
    return this.all
      .map((p) => {
        const alive = this.apis.includes(p) || this.workers.includes(p);
        const tail = p.output().trim().split('\n').slice(alive ? -lines : -4 * lines);
        return `--- ${p.role} ${p.pid}${alive ? '' : ' (exited)'}:\n${tail.join('\n')}`;
      })
      .join('\n');
  }

  async stop() {
    await Promise.all([...this.apis, ...this.workers].map((p) => p.kill()));
  }
}

export interface ScenarioReport {
  scenario: string;
  runsDriven: number;
  faultsInjected: number;
  runsCompleted: number;
  runsNotEnded: number;
  messagesLost: number;
  messagesDoubled: number;
  streamGaps: number;
  duplicateEvents: number;
  textMismatches: number;
  /** runs an operator terminated in Temporal: they end `error` ("terminated"), counted apart from lost or not ended */
  terminatedByOperator: number;
  /** threads on which a fresh submit did not complete within 30 s, or that kept a run not done */
  wedgedThreads: number;
  reconnects: number;
  submitRetries: number;
  /** submit answers 429 or 503 (each told the client to come back), and the slowest of them */
  refusals: number;
  slowestRefusalMs: number;
  /** the refusals by status and code, e.g. `503 unavailable` */
  refusalCodes: Record<string, number>;
  /** stream_reset events clients saw: steps that a fault made start over */
  streamResets: number;
  seconds: number;
  problems: string[];
}

/** A reply the echo model gives: `/slow <ms> /long <n> <nonce>`. */
/**
 * The scenario's stage: its own Postgres and Temporal, then `apis` API and `workers` worker
 * processes, started before the scenario and all stopped after it.
 */
export function useFleet(shape: { apis?: number; workers?: number } = {}) {
  const stage = {} as { services: Services; fleet: Fleet };
  beforeAll(async () => {
    stage.services = await Services.start();
    stage.fleet = new Fleet(stage.services);
    const starts: Promise<unknown>[] = [];
    for (let i = 0; i < (shape.apis ?? 1); i++) starts.push(stage.fleet.startApi());
    for (let i = 0; i < (shape.workers ?? 1); i++) starts.push(stage.fleet.startWorker());
    await Promise.all(starts);
  });
  afterAll(async () => {
    await stage.fleet?.stop();
    await stage.services?.stop();
  });
  return stage;
}

export function echoPrompt(slowMs: number, tokens: number, nonce: string) {
  return { content: `/slow ${slowMs} /long ${tokens} ${nonce}`, expected: replyTokens(nonce, tokens).join('') };
}

export interface Crowd {
  runs: Promise<DrivenRun[]>;
  /** some run received a text_delta within the last `withinMs` */
  streamingNow(withinMs?: number): boolean;
  /** a one-line account of the runs, for the log at a fault */
  status(): string;
  /** resolves once some run is streaming */
  waitUntilStreaming(timeoutMs?: number): Promise<void>;
  driven: DrivenRun[];
  expected: Map<string, string>;
}

/**
 * Starts `threads` threads with `runsPerThread` runs each, submitted in queue mode (so each
 * thread's runs stream one after another), each with its own resuming client. A thread's runs
 * go in 150 ms apart, after a random delay of up to `staggerMs` for the thread. Queue mode, not
 * interrupt: a client's retried submit may land after a later one, and must not interrupt it.
 */
export function startCrowd(
  fleet: Fleet,
  opts: { threads: number; runsPerThread: number; slowMs: number; minTokens: number; maxTokens: number; deadlineMs: number; staggerMs?: number; name?: string },
): Crowd {
  const deadline = Date.now() + opts.deadlineMs;
  const driven: DrivenRun[] = [];
  const expected = new Map<string, string>();
  const tasks: Promise<DrivenRun>[] = [];
  const track = (run: DrivenRun) => driven.push(run);
  for (let t = 0; t < opts.threads; t++) {
    const offset = opts.staggerMs ? Math.random() * opts.staggerMs : 0;
    const threadId = `faults-${process.pid}-${Date.now().toString(36)}-${opts.name ?? ''}${t}`;
    for (let k = 0; k < opts.runsPerThread; k++) {
      const nonce = `n${t}x${k}x${Math.random().toString(36).slice(2, 10)}`;
      const prompt = echoPrompt(opts.slowMs, Math.round(randomBetween(opts.minTokens, opts.maxTokens)), nonce);
      expected.set(prompt.content, prompt.expected);
      tasks.push(
        (async () => {
          await sleep(offset + k * 150);
          return driveRun(fleet.api, threadId, prompt.content, 'queue', deadline, track);
        })(),
      );
    }
  }
  const runs = Promise.all(tasks);
  const streamingNow = (withinMs = 300) => {
    const now = clock();
    return driven.some((r) => {
      const last = r.events.at(-1);
      return !r.finished && last?.type === 'text_delta' && now - last.at < withinMs;
    });
  };
  return {
    runs,
    driven,
    expected,
    streamingNow,
    status() {
      const now = clock();
      const streaming = driven.filter((r) => !r.finished && r.events.at(-1)?.type === 'text_delta' && now - r.events.at(-1)!.at < 300).length;
      const finished = driven.filter((r) => r.finished).length;
      return `${streaming} streaming, ${finished} finished, ${driven.length - finished} unfinished of ${driven.length} submitted`;
    },
    async waitUntilStreaming(timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      while (!streamingNow()) {
        if (Date.now() > until) throw new Error('no run streamed within the timeout');
        await sleep(50);
      }
    },
  };
}

/** The committed log and run records, read over HTTP from a live API. */
async function readThread(api: string, threadId: string) {
  const items: any[] = [];
  for (let after = 0; ; ) {
    const page = await getJson(`${api}/v1/threads/${threadId}/messages?after=${after}&limit=1000`);
    items.push(...page.items);
    if (page.nextCursor === null) break;
    after = page.nextCursor;
  }
  return items;
}

export async function getJson(url: string, attempts = 20): Promise<any> {
  for (let i = 1; ; i++) {
    try {
      const response = await fetch(url);
      if (response.status === 200) return await response.json();
      if (i >= attempts) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
    } catch (err) {
      if (i >= attempts) throw err;
    }
    await sleep(500);
  }
}

export interface CheckOptions {
  /** runs an operator terminated: each must end `error` with "terminated" in its detail, its input committed once */
  terminatedByOperator?: Set<string>;
  /** threads to probe for wedging besides those of `runs` */
  moreThreads?: string[];
}

/**
 * The checks: every run ended (client saw run_finish, record says done); every user message
 * committed exactly once; each run that completed has exactly one final assistant answer (one
 * without tool calls), equal to what the echo model says; each client's reassembled text equals
 * that committed answer; no gap and no duplicate in any client's stream. A run an operator
 * terminated ends `error` ("terminated") with at most its interrupted partial answer, which its
 * client saw whole. Then no thread is wedged: a fresh submit on each completes within 30 s and
 * leaves no run that is not done.
 */
export async function checkRuns(
  scenario: string,
  fleet: Fleet,
  runs: DrivenRun[],
  expected: Map<string, string>,
  faults: number,
  seconds: number,
  options: CheckOptions = {},
): Promise<ScenarioReport> {
  const report: ScenarioReport = {
    scenario,
    runsDriven: runs.length,
    faultsInjected: faults,
    runsCompleted: 0,
    runsNotEnded: 0,
    messagesLost: 0,
    messagesDoubled: 0,
    streamGaps: 0,
    duplicateEvents: 0,
    textMismatches: 0,
    terminatedByOperator: 0,
    wedgedThreads: 0,
    reconnects: 0,
    submitRetries: 0,
    refusals: 0,
    slowestRefusalMs: 0,
    refusalCodes: {},
    streamResets: 0,
    seconds: Math.round(seconds),
    problems: [],
  };
  const problem = (run: DrivenRun, what: string) => {
    if (report.problems.length < 40) report.problems.push(`${run.threadId} run ${run.runId ?? '(never accepted)'}: ${what}${run.errors.length ? `\n      client log: ${run.errors.slice(-6).join('\n                  ')}` : ''}`);
  };
  const api = fleet.api();
  const threadIds = [...new Set([...runs.map((r) => r.threadId), ...(options.moreThreads ?? [])])];
  const logs = new Map<string, any[]>();
  for (const threadId of threadIds) logs.set(threadId, await readThread(api, threadId));

  for (const run of runs) {
    report.reconnects += run.reconnects;
    report.submitRetries += run.submitAttempts - 1;
    for (const answer of run.submitAnswers.filter((a) => a.status === 429 || a.status === 503)) {
      report.refusals++;
      report.slowestRefusalMs = Math.max(report.slowestRefusalMs, Math.round(answer.ms));
      const kind = `${answer.status} ${answer.code}`;
      report.refusalCodes[kind] = (report.refusalCodes[kind] ?? 0) + 1;
    }
    report.streamResets += run.events.filter((e) => e.type === 'stream_reset').length;
    report.streamGaps += run.gaps;
    report.duplicateEvents += run.duplicates;
    if (run.gaps) problem(run, `${run.gaps} gap(s) in the event stream`);
    if (run.duplicates) problem(run, `${run.duplicates} duplicate event(s)`);
    const log = logs.get(run.threadId)!;

    // A queued run's input is committed when the run starts: only an ended run's count is final.
    const record = run.runId ? await getJson(`${api}/v1/runs/${run.runId}`) : undefined;
    if (!run.finished || record?.status !== 'done') {
      report.runsNotEnded++;
      problem(run, `not ended: client saw run_finish ${run.finished}, record status ${record?.status ?? 'none'}, ${run.events.length} events seen`);
      continue;
    }
    const userCopies = log.filter((m) => m.role === 'user' && m.content === run.content).length;
    if (userCopies === 0) {
      report.messagesLost++;
      problem(run, 'its user message is not in the committed log');
    } else if (userCopies > 1) {
      report.messagesDoubled += userCopies - 1;
      problem(run, `its user message is committed ${userCopies} times`);
    }
    if (record.termination?.type !== run.termination) problem(run, `client saw termination ${run.termination}, record says ${record.termination?.type}`);
    const answers = log.filter((m) => m.role === 'assistant' && m.runId === run.runId && !m.toolCalls?.length);
    const text = reassembledText(run);

    if (options.terminatedByOperator?.has(run.runId!)) {
      if (record.termination?.type !== 'error' || !/terminated/.test(record.termination.detail ?? '')) {
        problem(run, `terminated by an operator, yet ended ${JSON.stringify(record.termination)}`);
        continue;
      }
      report.terminatedByOperator++;
      // What the step streamed before the terminate is kept once, marked interrupted; the client saw all of it.
      if (answers.length > 1) {
        report.messagesDoubled += answers.length - 1;
        problem(run, `${answers.length} assistant answers committed`);
      } else if (answers[0] && answers[0].status !== 'interrupted') {
        problem(run, `its partial answer is committed as ${answers[0].status}, not interrupted`);
      } else if (text !== (answers[0]?.content ?? '')) {
        report.textMismatches++;
        problem(run, `client text differs from the committed partial answer:\n      client:    ${JSON.stringify(text.slice(0, 300))}\n      committed: ${JSON.stringify(answers[0]?.content.slice(0, 300))}`);
      }
      continue;
    }
    if (record.termination?.type !== 'natural_end') {
      problem(run, `ended ${JSON.stringify(record.termination)}${record.error ? `: ${record.error}` : ''}`);
      continue;
    }
    report.runsCompleted++;

    if (answers.length !== 1) {
      if (answers.length === 0) report.messagesLost++;
      else report.messagesDoubled += answers.length - 1;
      problem(run, `${answers.length} assistant answers committed`);
      continue;
    }
    const answer = answers[0];
    const want = expected.get(run.content);
    if (answer.content !== want || answer.status !== 'complete') problem(run, `committed answer (${answer.status}) "${answer.content.slice(0, 80)}…" is not the echo reply "${want?.slice(0, 80)}…"`);
    if (text !== answer.content) {
      report.textMismatches++;
      problem(run, `client text differs from the committed answer:\n      client:    ${JSON.stringify(text.slice(0, 300))}\n      committed: ${JSON.stringify(answer.content.slice(0, 300))}`);
    }
  }

  const wedged = await probeThreads(fleet, threadIds);
  report.wedgedThreads = wedged.length;
  for (const what of wedged) if (report.problems.length < 40) report.problems.push(what);
  return report;
}

/** How long a fresh run on a thread that is not wedged may take, after the scenario. */
const PROBE_MS = 30_000;

/**
 * Whether each thread still works after the scenario: a fresh run, queued behind whatever the
 * thread still has, completes `natural_end` within 30 s, and then no run of the thread is left
 * not done. Returns one line per wedged thread.
 */
export async function probeThreads(fleet: Fleet, threadIds: string[]): Promise<string[]> {
  const results = await Promise.all(
    threadIds.map(async (threadId) => {
      const nonce = `probe${Math.random().toString(36).slice(2, 10)}`;
      const probe = await driveRun(fleet.api, threadId, `/long 3 ${nonce}`, 'queue', Date.now() + PROBE_MS);
      if (!probe.finished || probe.termination !== 'natural_end') {
        return `${threadId} is wedged: a fresh run ${probe.runId ?? '(never accepted)'} did not complete within ${PROBE_MS / 1000} s (client saw ${probe.finished ? probe.termination : 'no run_finish'}; ${probe.errors.slice(-3).join('; ')})`;
      }
      const { items } = await getJson(`${fleet.api()}/v1/threads/${threadId}/runs`);
      const open = items.filter((r: any) => r.status !== 'done');
      if (open.length) return `${threadId} is wedged: runs ${open.map((r: any) => `${r.runId} (${r.status})`).join(', ')} are not done after a later run completed`;
      return undefined;
    }),
  );
  return results.filter((line): line is string => line !== undefined);
}

/** Writes the report where the global teardown collects it, and logs it now. */
export function recordReport(report: ScenarioReport, fleet?: Fleet) {
  writeFileSync(join(inject('faultReportsDir'), `${report.scenario.replace(/[^A-Za-z0-9]+/g, '-')}.json`), JSON.stringify(report, null, 2));
  log(`${report.scenario}: ${JSON.stringify({ ...report, problems: report.problems.length })}`);
  for (const [kind, count] of Object.entries(report.refusalCodes)) log(`  refused ${count} × ${kind}`);
  for (const p of report.problems) log(`  problem: ${p}`);
  if (report.problems.length && fleet) log(`process output:\n${fleet.outputs()}`);
}
