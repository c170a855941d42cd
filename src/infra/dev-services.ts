// The services threadbox needs, started on this machine: an embedded Postgres and a Temporal dev server.
// `npm run dev`, the test suite, the fault suite, the bench and the history recorder all start them here.
import { join } from 'node:path';
import { freePort } from './ports.js';
import { startEmbeddedPostgres } from './postgres.js';
import { startTemporalDevServer } from './temporal-server.js';

export type DevServiceName = 'postgres' | 'temporal';

export interface DevServicesOptions {
  /** Postgres data in `<dataDir>/postgres`; Temporal history in `<dataDir>/temporal.db` with `keepHistory` */
  dataDir: string;
  /** fixed ports; a free port for each one not given, and no UI (headless) without `temporalUi` */
  ports?: { postgres?: number; temporal?: number; temporalUi?: number };
  /** a running Postgres to use: none is started */
  databaseUrl?: string;
  /** a running Temporal to use: none is started */
  temporalAddress?: string;
  /** Temporal's history in a file under `dataDir` (kept across restarts) instead of in memory */
  keepHistory?: boolean;
  namespace?: string;
  dynamicConfig?: Record<string, string | number | boolean>;
  log?: (line: string) => void;
}

export interface DevServices {
  databaseUrl: string;
  temporalAddress: string;
  /** the Temporal UI, when a UI port was given */
  temporalUiUrl?: string;
  /** Stops one service this started, as an outage would; `startService` brings it back on the same port and data. */
  stopService(name: DevServiceName): Promise<void>;
  startService(name: DevServiceName): Promise<void>;
  /** Stops every service this started that still runs, the last started first. */
  stop(): Promise<void>;
}

export async function startDevServices(opts: DevServicesOptions): Promise<DevServices> {
  const log = opts.log ?? (() => {});
  const ports = {
    postgres: opts.ports?.postgres ?? (opts.databaseUrl ? 0 : await freePort()),
    temporal: opts.ports?.temporal ?? (opts.temporalAddress ? 0 : await freePort()),
  };
  const running = new Map<DevServiceName, () => Promise<void>>();
  const services: DevServices = {
    databaseUrl: opts.databaseUrl ?? '',
    temporalAddress: opts.temporalAddress ?? '',
    async startService(name) {
      if (running.has(name)) throw new Error(`${name} is already running`);
      running.set(name, name === 'postgres' ? await startPostgres(services, opts, ports.postgres, log) : await startTemporal(services, opts, ports.temporal, log));
    },
    async stopService(name) {
      const stop = running.get(name);
      if (!stop) throw new Error(`${name} is not running here`);
      running.delete(name);
      await stop();
    },
    async stop() {
      for (const name of [...running.keys()].reverse()) await services.stopService(name).catch((err: Error) => log(`stopping ${name}: ${err.message}`));
    },
  };
  try {
    if (!opts.databaseUrl) await services.startService('postgres');
    if (!opts.temporalAddress) await services.startService('temporal');
  } catch (err) {
    await services.stop();
    throw err;
  }
  return services;
}

async function startPostgres(services: DevServices, opts: DevServicesOptions, port: number, log: (line: string) => void) {
  const dataDir = join(opts.dataDir, 'postgres');
  const postgres = await startEmbeddedPostgres({ dataDir, port });
  services.databaseUrl = postgres.url;
  log(`postgres   ${postgres.url} (embedded, data in ${dataDir})`);
  return postgres.stop;
}

async function startTemporal(services: DevServices, opts: DevServicesOptions, port: number, log: (line: string) => void) {
  const dbFile = opts.keepHistory ? join(opts.dataDir, 'temporal.db') : undefined;
  const temporal = await startTemporalDevServer({
    port,
    uiPort: opts.ports?.temporalUi,
    dbFile,
    namespace: opts.namespace,
    dynamicConfig: opts.dynamicConfig,
    log,
  });
  services.temporalAddress = temporal.address;
  services.temporalUiUrl = temporal.uiUrl;
  log(`temporal   ${temporal.address} (dev server, history ${dbFile ? `in ${dbFile}` : 'in memory'})`);
  return temporal.stop;
}
