// `npm run dev`: an embedded Postgres, a Temporal dev server, the worker and the API in one command.
import { join } from 'node:path';
import { loadConfig } from '../config.js';
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
