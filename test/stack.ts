// A threadbox API and worker on the suite's real Postgres and Temporal, isolated by their own task queue.
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../src/config.js';
import { startThreadbox, type Running } from '../src/server.js';
import { createPool } from '../src/store/db.js';
import { Store } from '../src/store/store.js';
import { requestJson, type JsonResponse } from '../testkit/http.js';
import { plainTarget } from '../src/temporal/connection.js';

export { eventually } from '../testkit/wait.js';

export interface Stack {
  url: string;
  store: Store;
  temporal: Client;
  taskQueue: string;
  stop(): Promise<void>;
  request(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<JsonResponse>;
}

export async function startStack(opts: { env?: Record<string, string>; worker?: boolean; taskQueue?: string } = {}): Promise<Stack> {
  const taskQueue = opts.taskQueue ?? `test-${randomUUID()}`;
  const config = loadConfig({ PORT: '0', LOG_LEVEL: 'warn', TEMPORAL_TASK_QUEUE: taskQueue, ...opts.env });
  const running: Running = await startThreadbox(config, {
    databaseUrl: inject('databaseUrl'),
    temporal: plainTarget(inject('temporalAddress')),
    api: true,
    worker: opts.worker ?? true,
    workflowBundle: { code: readFileSync(inject('workflowBundlePath'), 'utf8') },
  });
  const pool = createPool(inject('databaseUrl'));
  const connection = await Connection.connect({ address: inject('temporalAddress') });
  const url = running.url!;
  return {
    url,
    store: new Store(pool),
    temporal: new Client({ connection }),
    taskQueue,
    async stop() {
      await running.stop();
      await pool.end();
      await connection.close();
    },
    request: (method, path, body, headers) => requestJson(url + path, method, body, headers),
  };
}

export const uniqueId = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;
