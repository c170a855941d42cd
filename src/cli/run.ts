// Shared by the entry points: config errors print one readable message; signals stop everything once.
import { ConfigError, loadConfig } from '../config.js';
import { startThreadbox } from '../server.js';
import { resolveTemporalTarget } from '../temporal/connection.js';

/** Past this, a stop that hangs (a stuck dependency) must not keep the process from exiting. */
const STOP_DEADLINE_MS = 30_000;

export function main(start: () => Promise<() => Promise<void>>) {
  let stopping = false;
  let stop: (() => Promise<void>) | undefined;
  const shutdown = async (signal: string) => {
    // Wrappers (npm, npx, tsx) forward the signal the whole process group already got: a repeat is
    // the same request to stop, not an order to skip the drain; the deadline bounds it.
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping (no new requests or tasks; open streams are told to reconnect; in-flight work drains)…`);
    setTimeout(() => {
      console.error(`still stopping after ${STOP_DEADLINE_MS / 1000} s: exiting anyway`);
      process.exit(1);
    }, STOP_DEADLINE_MS).unref();
    // Still starting: the start's own completion below stops what it started.
    if (!stop) return;
    await stop();
    console.log(`${signal}: stopped`);
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  start().then(
    (s) => {
      stop = s;
      if (stopping) void s().then(() => process.exit(0));
    },
    async (err) => {
      console.error(err instanceof ConfigError ? `threadbox: ${err.message}` : err);
      process.exit(1);
    },
  );
}

export function requireVar(value: string | undefined, name: string): string {
  if (!value) throw new ConfigError(`${name} is required (this command uses no embedded services; \`npm run dev\` starts them)`);
  return value;
}

/**
 * `npm start`, `npm run api`, `npm run worker`: the processes against DATABASE_URL and the Temporal of
 * TEMPORAL_ADDRESS (or a TEMPORAL_PROFILE), no embedded services.
 */
export function runAgainstExternalServices(role: 'start' | 'api' | 'worker') {
  main(async () => {
    const config = loadConfig();
    const temporal = resolveTemporalTarget(process.env);
    const running = await startThreadbox(config, {
      databaseUrl: requireVar(config.DATABASE_URL, 'DATABASE_URL'),
      temporal,
      api: role !== 'worker',
      worker: role !== 'api',
    });
    console.log(`threadbox ${role} ready${running.url ? ` on ${running.url}` : ''} (Temporal ${temporal.address}, namespace ${temporal.namespace}, task queue ${config.TEMPORAL_TASK_QUEUE})`);
    return running.stop;
  });
}
