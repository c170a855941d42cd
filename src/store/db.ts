// Postgres pool and the numbered-migration runner.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { traceQueries } from './traced-queries.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
const MIGRATION_LOCK = 7_400_001; // advisory lock id: only one process migrates at a time

/**
 * A pool on `url`: TLS and its certificates come from the URL (`sslmode`, `sslrootcert`, `sslcert`,
 * `sslkey`) or PGSSLMODE, as in libpq. `statementTimeoutMs` (0: none) bounds every statement on the
 * server, so a stuck query frees its connection instead of holding the pool. `traced`: a span per
 * statement (src/store/traced-queries.ts).
 */
export function createPool(url: string, max = 10, statementTimeoutMs = 0, traced = false): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 10_000, ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}) });
  if (traced) traceQueries(pool);
  // An idle client losing its connection (Postgres restart) must not crash the process.
  pool.on('error', () => {});
  return pool;
}

/** Applies every migration not yet recorded in `schema_migrations`, in file-name order. */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    // Waiting for another process's migration, or building an index, may take longer than a statement may.
    await client.query('SET statement_timeout = 0');
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await client.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => r.name));
    const files = readdirSync(MIGRATIONS_DIR).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
    for (const file of files) {
      if (done.has(file)) continue;
      await client.query('BEGIN');
      try {
        await client.query(readFileSync(MIGRATIONS_DIR + file, 'utf8'));
        await client.query('INSERT INTO schema_migrations (name) VALUES ($1)', [file]);
        await client.query('COMMIT');
        applied.push(file);
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${file} failed: ${(err as Error).message}`);
      }
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {});
    await client.query('RESET statement_timeout').catch(() => {});
    client.release();
  }
  return applied;
}

/** The database named in `url` without its password, to name in a message. */
export function describeDatabase(url: string): string {
  try {
    const u = new URL(url);
    return `${u.username ? `${decodeURIComponent(u.username)}@` : ''}${u.host}${u.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

// What a refused connection looks like: connection exceptions (08), bad credentials or pg_hba (28), no
// such database, no slots, and the socket's and TLS's own codes.
const REFUSAL_SQLSTATES = new Set(['3D000', '53300']);
const REFUSAL_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNRESET', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED']);

/** The database would not let this process in (as opposed to a statement that failed once in). */
export function isDatabaseRefusal(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (typeof e.code === 'string' && (e.code.startsWith('08') || e.code.startsWith('28') || REFUSAL_SQLSTATES.has(e.code) || REFUSAL_CODES.has(e.code))) return true;
  return /does not support SSL|timeout exceeded when trying to connect|Connection terminated/i.test(e.message ?? '');
}

/** Why Postgres refused a connection, with what to check: a bare "password authentication failed" names neither the database nor the setting. */
export function databaseRefusal(url: string, err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = e.message || e.code || String(err);
  const hints: Record<string, string> = {
    '28P01': 'the user or password in DATABASE_URL is wrong',
    '28000': "the server's pg_hba.conf refuses this user, host or TLS mode (check sslmode in DATABASE_URL)",
    '3D000': 'the database in DATABASE_URL does not exist; create it first',
    '42501': 'the user lacks a privilege threadbox needs (it creates its tables on start)',
    '53300': 'the server has no connection slots left (lower THREADBOX_PG_POOL_SIZE or raise max_connections)',
    ECONNREFUSED: 'nothing listens there: is Postgres running, and are host and port in DATABASE_URL right?',
    ENOTFOUND: 'the host in DATABASE_URL does not resolve',
    ETIMEDOUT: 'the connection timed out (a firewall, or the wrong host)',
    SELF_SIGNED_CERT_IN_CHAIN: "the server's certificate is not signed by a CA this process trusts: set sslrootcert=<ca file> in DATABASE_URL",
    DEPTH_ZERO_SELF_SIGNED_CERT: "the server's certificate is self-signed: set sslrootcert=<that certificate> in DATABASE_URL",
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: "the server's certificate cannot be verified: set sslrootcert=<ca file> in DATABASE_URL",
    ERR_TLS_CERT_ALTNAME_INVALID: "the server's certificate does not name the host in DATABASE_URL",
  };
  const byMessage = /does not support SSL/i.test(message) ? 'the server does not serve TLS: drop sslmode from DATABASE_URL or enable ssl on the server' : undefined;
  const hint = (e.code && hints[e.code]) ?? byMessage;
  return `cannot use the database ${describeDatabase(url)} (DATABASE_URL): ${message}${hint ? `; ${hint}` : ''}`;
}
