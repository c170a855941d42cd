// One cluster test file's stage: certificates, a Postgres that serves TLS, the Temporal server built from
// source with its history in that Postgres, the namespace set up by the operator path (npm run
// setup-namespace), and threadbox processes that connect the way a deployment does (environment only).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/infra/ports.js';
import { startEmbeddedPostgres, type RunningPostgres } from '../../src/infra/postgres.js';
import { ensureTemporalServer } from '../../src/infra/temporal-server-build.js';
import { REPO_ROOT, spawnThreadbox } from '../../testkit/processes.js';
import { scratchDir } from '../../testkit/services.js';
import { rmSync } from 'node:fs';
import { makePki, type Pki } from './pki.js';
import { setUpTemporalCluster, type TemporalCluster } from './temporal-cluster.js';
import { startKeyIssuer, type KeyIssuer } from './jwt.js';

export const NAMESPACE = 'threadbox';

export interface ClusterStage {
  dir: string;
  pki: Pki;
  postgres: RunningPostgres & { port: number };
  /** the threadbox database over TLS, the server's certificate checked against the test CA */
  databaseUrl: string;
  temporal: TemporalCluster;
  keys?: KeyIssuer;
  /** the environment of a threadbox process (or script) on this stage */
  env(overrides?: Record<string, string>): Record<string, string>;
  stop(): Promise<void>;
}

const run = promisify(execFile);

/** `npm run setup-namespace` with `env`, as an operator runs it; resolves to its output. */
export async function setupNamespace(env: Record<string, string>): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/setup-namespace.ts'], { cwd: REPO_ROOT, env: { ...process.env, ...env } });
  return stdout;
}

/** Starts a process that must refuse to start; resolves to what it printed (or 'started') and how long it took. */
export async function refusedStart(role: 'api' | 'worker', env: Record<string, string>): Promise<{ output: string; seconds: number }> {
  const started = Date.now();
  const outcome = await spawnThreadbox(role, env, 60_000).then(
    async (p) => {
      await p.kill();
      return 'started';
    },
    (err: Error) => err.message,
  );
  return { output: outcome, seconds: (Date.now() - started) / 1000 };
}

export async function startStage(shape: 'mtls' | 'apikey', log: (line: string) => void = () => {}): Promise<ClusterStage> {
  const binaries = ensureTemporalServer(log);
  const dir = scratchDir(`threadbox-cluster-${shape}-`);
  const stops: (() => Promise<void>)[] = [async () => rmSync(dir, { recursive: true, force: true })];
  const stop = async () => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => {});
  };
  try {
    const pki = makePki(join(dir, 'pki'));
    const port = await freePort();
    const pg = await startEmbeddedPostgres({ dataDir: join(dir, 'postgres'), port, tls: pki.server });
    stops.push(pg.stop);
    const keys = shape === 'apikey' ? await startKeyIssuer() : undefined;
    if (keys) stops.push(keys.close);
    const started = Date.now();
    const temporal = await setUpTemporalCluster({
      binaries,
      dir: join(dir, 'temporal'),
      pki,
      postgres: { port, user: 'postgres', password: 'postgres' },
      name: 'temporal',
      shape,
      jwksUrl: keys?.jwksUrl,
    });
    stops.push(temporal.stop);
    log(`temporal-server ${binaries.version} (${shape}) serving on ${temporal.address} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const databaseUrl = `${pg.url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(pki.ca)}`;
    const credentials: Record<string, string> =
      shape === 'mtls'
        ? { TEMPORAL_TLS_CLIENT_CERT_PATH: pki.client.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: pki.client.key }
        : { TEMPORAL_API_KEY: keys!.issue(['system:admin', `${NAMESPACE}:admin`]) };
    const env = (overrides: Record<string, string> = {}) => ({
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: NAMESPACE,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.ca,
      TEMPORAL_TLS_SERVER_NAME: 'localhost',
      ...credentials,
      TEMPORAL_TASK_QUEUE: 'cluster',
      THREADBOX_SSE_HEARTBEAT_MS: '1000',
      THREADBOX_RATE_LIMIT_PER_MIN: '1000000',
      ...overrides,
    });
    log((await setupNamespace(env())).trim());
    return { dir, pki, postgres: { ...pg, port }, databaseUrl, temporal, keys, env, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
