// `npm run dev`: an embedded Postgres, a Temporal dev server, the worker and the API in one command.
import { ConfigError, loadConfig, type Config } from '../config.js';
import { startDevServices } from '../infra/dev-services.js';
import { portInUse } from '../infra/ports.js';
import { startThreadbox, type Running } from '../server.js';
import { plainTarget, resolveTemporalTarget, temporalProfile } from '../temporal/connection.js';
import { main } from './run.js';

main(async () => {
  const startedAt = Date.now();
  const config = loadConfig();
  // A Temporal named by TEMPORAL_ADDRESS, TEMPORAL_PROFILE or TEMPORAL_CONFIG_FILE is used as it is;
  // otherwise the dev server starts (a default profile of the Temporal CLI is not taken for a wish).
  const named = ['TEMPORAL_ADDRESS', 'TEMPORAL_PROFILE', 'TEMPORAL_CONFIG_FILE'].some((v) => process.env[v]);
  const profile = named ? temporalProfile() : {};
  const namespace = profile.namespace ?? process.env.TEMPORAL_NAMESPACE ?? 'default';
  await refuseTakenPorts(config, profile.address);
  const services = await startDevServices({
    dataDir: config.THREADBOX_DATA_DIR,
    ports: { postgres: config.THREADBOX_PG_PORT, temporal: config.THREADBOX_TEMPORAL_PORT, temporalUi: config.THREADBOX_TEMPORAL_UI_PORT },
    databaseUrl: config.DATABASE_URL,
    temporalAddress: profile.address,
    keepHistory: true,
    namespace,
    log: (line) => console.log(line),
  });
  let running: Running;
  try {
    const withUi = { ...config, THREADBOX_TEMPORAL_UI_URL: config.THREADBOX_TEMPORAL_UI_URL ?? services.temporalUiUrl };
    const temporal = profile.address ? resolveTemporalTarget(process.env) : plainTarget(services.temporalAddress, namespace);
    running = await startThreadbox(withUi, { databaseUrl: services.databaseUrl, temporal, api: true, worker: true });
  } catch (err) {
    await services.stop();
    throw err;
  }
  console.log(`\nthreadbox ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
  console.log(`  Playground   ${running.url}/`);
  console.log(`  API          ${running.url}`);
  console.log(`  API docs     ${running.url}/docs`);
  if (services.temporalUiUrl) console.log(`  Temporal UI  ${services.temporalUiUrl}/namespaces/${namespace}/workflows`);
  console.log('Ctrl-C stops everything.');
  return async () => {
    await running.stop().catch((err) => console.error(err));
    await services.stop();
  };
});

/**
 * Every port this command would listen on must be free before anything starts: the Temporal dev
 * server's own health check would otherwise find another server on its port and attach to it, and
 * Postgres fails with no reason given.
 */
async function refuseTakenPorts(config: Config, temporalAddress: string | undefined): Promise<void> {
  const wanted: { variable: string; port: number; host: string; what: string; instead?: string }[] = [{ variable: 'PORT', port: config.PORT, host: config.HOST, what: 'the API' }];
  if (!config.DATABASE_URL) {
    wanted.push({ variable: 'THREADBOX_PG_PORT', port: config.THREADBOX_PG_PORT, host: '127.0.0.1', what: 'the embedded Postgres', instead: 'DATABASE_URL' });
  }
  if (!temporalAddress) {
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
