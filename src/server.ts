// Composes the processes: the API and/or the worker against a Postgres and a Temporal server.
import { Client, Connection } from '@temporalio/client';
import type { WorkflowBundle } from '@temporalio/worker';
import type { FastifyInstance } from 'fastify';
import { AgentRegistry } from './agent/agents.js';
import { buildApp } from './api/app.js';
import { ThreadboxService } from './api/service.js';
import { apiConnectionOptions, TemporalCalls, TemporalLink } from './api/temporal-calls.js';
import { ConfigError, type Config } from './config.js';
import { checkNamespace, connectTo, connectionOptions, type TemporalTarget } from './temporal/connection.js';
import { createPool, databaseRefusal, isDatabaseRefusal, migrate } from './store/db.js';
import { Store } from './store/store.js';
import { EventSubscriber } from './store/subscriber.js';
import { createWorker } from './temporal/worker.js';
import { startTelemetry, type Telemetry } from './telemetry.js';

export interface Running {
  app?: FastifyInstance;
  url?: string;
  stop(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export function assertSafeBind(config: Config) {
  if (config.THREADBOX_API_KEYS.size === 0 && !LOOPBACK.has(config.HOST)) {
    throw new ConfigError(
      `HOST=${config.HOST} is not a loopback address, and THREADBOX_API_KEYS is empty: without keys the API has no auth, so it serves loopback only. Set THREADBOX_API_KEYS="key:tenant,…" to listen on ${config.HOST}.`,
    );
  }
}

type StartOptions = { databaseUrl: string; temporal: TemporalTarget; api: boolean; worker: boolean; workflowBundle?: WorkflowBundle };

/** What stopping takes: drains first, in parallel, then stops, in reverse order of their start. */
interface Teardown {
  drains: (() => Promise<void>)[];
  stops: (() => Promise<void>)[];
}

export async function startThreadbox(config: Config, opts: StartOptions): Promise<Running> {
  if (opts.api) assertSafeBind(config);
  const agents = AgentRegistry.fromConfig(config);
  const telemetry = startTelemetry();
  const pool = createPool(opts.databaseUrl, config.THREADBOX_PG_POOL_SIZE, config.THREADBOX_PG_STATEMENT_TIMEOUT_MS, telemetry.enabled);
  await migrate(pool).catch(async (err) => {
    await pool.end().catch(() => {});
    // A refusal is the operator's to fix and says so in a line; anything else (a migration's SQL) keeps its stack.
    throw isDatabaseRefusal(err) ? new ConfigError(databaseRefusal(opts.databaseUrl, err)) : err;
  });
  const store = new Store(pool);
  // Draining comes first and runs in parallel: the API stops accepting and lets requests finish while
  // the worker stops polling and lets its activities finish (or Temporal retries them elsewhere).
  const teardown: Teardown = { drains: [], stops: [() => telemetry.shutdown(), () => pool.end()] };
  const result: Running = {
    stop: async () => {
      await Promise.all(teardown.drains.splice(0).map((drain) => drain().catch(() => {})));
      for (const stop of teardown.stops.reverse()) await stop().catch(() => {});
    },
  };
  try {
    if (opts.worker) await startWorker(config, opts, { store, agents, telemetry }, teardown);
    if (opts.api) Object.assign(result, await startApi(config, opts, { store, agents, telemetry }, teardown));
  } catch (err) {
    await result.stop();
    throw err;
  }
  return result;
}

/** What the API and the worker of one process share. */
interface Shared {
  store: Store;
  agents: AgentRegistry;
  telemetry: Telemetry;
}

async function startWorker(config: Config, opts: StartOptions, { store, agents, telemetry }: Shared, teardown: Teardown) {
  const { worker, connection } = await createWorker({
    target: opts.temporal,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    store,
    agents,
    workflowBundle: opts.workflowBundle,
    maxCachedWorkflows: config.THREADBOX_WORKFLOW_CACHE_SIZE,
    telemetry: telemetry.worker,
  });
  const running = worker.run();
  teardown.drains.push(async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running.catch(() => {});
  });
  teardown.stops.push(() => connection.close());
}

async function startApi(config: Config, opts: StartOptions, { store, agents, telemetry }: Shared, teardown: Teardown): Promise<{ app: FastifyInstance; url: string }> {
  const link = new TemporalLink();
  const target = opts.temporal;
  const connection = await connectTo(target, () => Connection.connect({ ...connectionOptions(target), ...apiConnectionOptions(link) }));
  teardown.stops.push(() => connection.close());
  await connectTo(target, () => checkNamespace(connection.workflowService, target));
  const client = new Client({ connection, namespace: target.namespace, interceptors: telemetry.clientInterceptors });
  const calls = new TemporalCalls(client, link, {
    maxInFlight: config.THREADBOX_MAX_INFLIGHT_UPDATES,
    maxInFlightPerWorkflow: config.THREADBOX_MAX_INFLIGHT_PER_THREAD,
  });
  const subscriber = new EventSubscriber(store, opts.databaseUrl, { onError: (err) => console.warn('event subscriber:', (err as Error).message) });
  await subscriber.start();
  teardown.stops.push(() => subscriber.close());
  const service = new ThreadboxService(store, client, agents, config.TEMPORAL_TASK_QUEUE, subscriber, calls);
  const app = await buildApp({
    service,
    apiKeys: config.THREADBOX_API_KEYS,
    logLevel: config.LOG_LEVEL,
    sse: { heartbeatMs: config.THREADBOX_SSE_HEARTBEAT_MS, maxBufferedBytes: config.THREADBOX_SSE_MAX_BUFFER_BYTES },
    sseMaxPerKey: config.THREADBOX_SSE_MAX_PER_KEY,
    rateLimitPerMin: config.THREADBOX_RATE_LIMIT_PER_MIN,
    corsOrigins: config.THREADBOX_CORS_ORIGINS,
    drainTimeoutMs: config.THREADBOX_DRAIN_TIMEOUT_MS,
    temporalUiUrl: config.THREADBOX_TEMPORAL_UI_URL,
    temporalNamespace: target.namespace,
  });
  teardown.drains.push(() => app.close());
  await app.listen({ host: config.HOST, port: config.PORT });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  return { app, url: `http://${config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST}:${port}` };
}
