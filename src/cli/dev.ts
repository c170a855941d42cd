// `npm run dev`: an embedded Postgres, a Temporal dev server, the worker and the API in one command.
import { join } from 'node:path';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { portInUse } from '../infra/ports.js';
import { startEmbeddedPostgres } from '../infra/postgres.js';
import { startTemporalDevServer } from '../infra/temporal-server.js';
import { startThreadbox } from '../server.js';
import { main } from './run.js';

main(async () => {
  const startedAt = Date.now();
  const config = loadConfig();
  const dataDir = config.THREADBOX_DATA_DIR;
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(err));
  };
  await refuseTakenPorts(config);
  try {
    let databaseUrl = config.DATABASE_URL;
    if (!databaseUrl) {
      const pg = await startEmbeddedPostgres({ dataDir: join(dataDir, 'postgres'), port: config.THREADBOX_PG_PORT });
      stops.push(pg.stop);
      databaseUrl = pg.url;
      console.log(`postgres   ${pg.url} (embedded, data in ${join(dataDir, 'postgres')})`);
    }
    let temporalAddress = config.TEMPORAL_ADDRESS;
    let uiUrl: string | undefined;
    if (!temporalAddress) {
      const temporal = await startTemporalDevServer({
        port: config.THREADBOX_TEMPORAL_PORT,
        uiPort: config.THREADBOX_TEMPORAL_UI_PORT,
        dbFile: join(dataDir, 'temporal.db'),
        namespace: config.TEMPORAL_NAMESPACE,
        log: (line) => console.log(line),
      });
      stops.push(temporal.stop);
      temporalAddress = temporal.address;
      uiUrl = temporal.uiUrl;
      console.log(`temporal   ${temporal.address} (dev server, history in ${join(dataDir, 'temporal.db')})`);
    }
    const running = await startThreadbox(config, { databaseUrl, temporalAddress, api: true, worker: true });
    stops.push(running.stop);
    console.log(`\nthreadbox ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
    console.log(`  API          ${running.url}`);
    console.log(`  API docs     ${running.url}/docs`);
    if (uiUrl) console.log(`  Temporal UI  ${uiUrl}/namespaces/${config.TEMPORAL_NAMESPACE}/workflows`);
    console.log('Ctrl-C stops everything.');
  } catch (err) {
    await stopAll();
    throw err;
  }
  return stopAll;
});

/**
 * Every port this command would listen on must be free before anything starts: the Temporal dev
 * server's own health check would otherwise find another server on its port and attach to it, and
 * Postgres fails with no reason given.
 */
async function refuseTakenPorts(config: Config): Promise<void> {
  const wanted: { variable: string; port: number; host: string; what: string; instead?: string }[] = [{ variable: 'PORT', port: config.PORT, host: config.HOST, what: 'the API' }];
  if (!config.DATABASE_URL) {
    wanted.push({ variable: 'THREADBOX_PG_PORT', port: config.THREADBOX_PG_PORT, host: '127.0.0.1', what: 'the embedded Postgres', instead: 'DATABASE_URL' });
  }
  if (!config.TEMPORAL_ADDRESS) {
    wanted.push({ variable: 'THREADBOX_TEMPORAL_PORT', port: config.THREADBOX_TEMPORAL_PORT, host: '127.0.0.1', what: 'the Temporal dev server', instead: 'TEMPORAL_ADDRESS' });
    wanted.push({ variable: 'THREADBOX_TEMPORAL_UI_PORT', port: config.THREADBOX_TEMPORAL_UI_PORT, host: '127.0.0.1', what: 'the Temporal UI' });
  }
  const taken = [];
  for (const w of wanted) if (await portInUse(w.port, w.host)) taken.push(w);
  if (taken.length === 0) return;
  const lines = taken.map(
    (w) =>
      `  port ${w.port} (${w.variable}), wanted by ${w.what}, is already in use: is another \`npm run dev\` running? ` +
      `Stop it, or set ${w.variable} to a free port${w.instead ? ` (or ${w.instead} to use a running server)` : ''}.`,
  );
  throw new ConfigError(`cannot start: ${taken.length === 1 ? 'a port is' : 'ports are'} taken\n${lines.join('\n')}`);
}
