// The bench's stack: its services, the API in this process, the worker as a process of its own (its
// memory is read from /proc), the timed provider and the baseline beside them.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { startThreadbox } from '../src/server.js';
import { spawnThreadbox, type ThreadboxProcess } from '../testkit/processes.js';
import { startScratchServices } from '../testkit/services.js';
import { clock } from '../testkit/sse.js';
import { sleep } from '../testkit/wait.js';
import { startBaseline } from './baseline.js';
import { progress } from './settings.js';
import { startTimedProvider, type TimedProvider } from './timed-provider.js';
import { plainTarget } from '../src/temporal/connection.js';

export interface Stack {
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

export async function startStack(): Promise<Stack> {
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch((err) => progress(`cleanup: ${(err as Error).message}`));
  };
  try {
    const services = await startScratchServices('threadbox-bench-', { databaseUrl: process.env.DATABASE_URL, temporalAddress: process.env.TEMPORAL_ADDRESS, log: progress });
    stops.push(services.stop);
    const { databaseUrl, temporalAddress } = services;
    const timed = await startTimedProvider();
    stops.push(() => timed.close());
    // The echo model for `default`; the timed provider for `timed` (per-token delivery).
    const agentsFile = join(services.dir, 'agents.json');
    writeFileSync(agentsFile, JSON.stringify({ agents: [{ id: 'default', model: 'echo' }, { id: 'timed', model: `openai-compatible:${timed.baseURL}#timed`, tools: [] }] }));
    const taskQueue = `bench-${randomUUID()}`;
    // The API's rate limit guards a deployment, not a benchmark that submits thousands of runs a minute.
    const env = { TEMPORAL_TASK_QUEUE: taskQueue, THREADBOX_CONFIG: agentsFile, THREADBOX_RATE_LIMIT_PER_MIN: '1000000' };
    const config = loadConfig({ PORT: '0', LOG_LEVEL: 'warn', ...env });
    const api = await startThreadbox(config, { databaseUrl, temporal: plainTarget(temporalAddress), api: true, worker: false });
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

export const threadRuns = (stack: Stack, threadId: string) => `${stack.api}/v1/threads/${threadId}/runs`;
export const newThreadId = (prefix: string) => `${prefix}-${randomUUID().slice(0, 13)}`;

/** Polls Postgres until every run is done (or waiting, with `status`); returns when the last one got there. */
export async function waitForRuns(stack: Stack, runIds: string[], status: 'done' | 'waiting' = 'done', timeoutMs = 300_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM runs WHERE run_id = ANY($1) AND status = $2', [runIds, status]);
    const at = clock();
    if (Number(rows[0]!.n) === runIds.length) return at;
    if (Date.now() > deadline) throw new Error(`only ${rows[0]!.n} of ${runIds.length} runs reached ${status} in ${timeoutMs / 1000} s`);
    await sleep(25);
  }
}

