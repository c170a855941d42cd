// Postgres settings of a deployment: the statement timeout reaches every connection, and a database that
// refuses stops startup with the database named (never its password) and what to check.
import { afterAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { freePort } from '../../src/infra/ports.js';
import { startThreadbox } from '../../src/server.js';
import { createPool, isDatabaseRefusal } from '../../src/store/db.js';
import { plainTarget } from '../../src/temporal/connection.js';

const url = new URL(inject('databaseUrl'));
const pools: { end(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
});

describe('THREADBOX_PG_STATEMENT_TIMEOUT_MS', () => {
  it('bounds every statement on the server; 0 leaves none', async () => {
    const bounded = createPool(url.href, 2, 150);
    const unbounded = createPool(url.href, 2, 0);
    pools.push(bounded, unbounded);
    expect((await bounded.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('150ms');
    await expect(bounded.query('SELECT pg_sleep(1)')).rejects.toMatchObject({ code: '57014' }); // query_canceled
    expect((await unbounded.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('0');
  });

  it('is read from the environment with a default of 60 s, and a bad value is named', () => {
    expect(loadConfig({}).THREADBOX_PG_STATEMENT_TIMEOUT_MS).toBe(60_000);
    expect(loadConfig({ THREADBOX_PG_POOL_SIZE: '7' }).THREADBOX_PG_POOL_SIZE).toBe(7);
    expect(() => loadConfig({ THREADBOX_PG_POOL_SIZE: '1' })).toThrow(/THREADBOX_PG_POOL_SIZE/);
    expect(() => loadConfig({ THREADBOX_PG_STATEMENT_TIMEOUT_MS: '-5' })).toThrow(/THREADBOX_PG_STATEMENT_TIMEOUT_MS/);
  });
});

describe('a database that refuses', () => {
  const start = (databaseUrl: string) =>
    startThreadbox(loadConfig({ PORT: '0', LOG_LEVEL: 'silent' }), { databaseUrl, temporal: plainTarget(inject('temporalAddress')), api: true, worker: false });
  const at = (change: (u: URL) => void) => {
    const u = new URL(url.href);
    change(u);
    return u.href;
  };

  it('a wrong password: the database and the cause are named, the password is not', async () => {
    const err = await start(at((u) => (u.password = 'not-the-password'))).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/^cannot use the database postgres@127\.0\.0\.1:\d+\/threadbox \(DATABASE_URL\): password authentication failed for user "postgres"; the user or password in DATABASE_URL is wrong$/);
    expect((err as Error).message).not.toContain('not-the-password');
  });

  it('a database that does not exist, and a port where nothing listens', async () => {
    expect(((await start(at((u) => (u.pathname = '/nope'))).catch((e: Error) => e)) as Error).message).toMatch(/database "nope" does not exist; the database in DATABASE_URL does not exist; create it first$/);
    const port = await freePort();
    expect(((await start(at((u) => (u.port = String(port)))).catch((e: Error) => e)) as Error).message).toMatch(
      new RegExp(`^cannot use the database postgres@127\\.0\\.0\\.1:${port}/threadbox \\(DATABASE_URL\\): .*ECONNREFUSED.*; nothing listens there`),
    );
  });

  it('only a refusal is told in one line: a failing statement (a migration) is not taken for one', () => {
    for (const code of ['28P01', '28000', '3D000', '08006', 'ECONNREFUSED', 'SELF_SIGNED_CERT_IN_CHAIN']) expect(isDatabaseRefusal({ code }), code).toBe(true);
    for (const code of ['42P01', '42601', '23505', '57014']) expect(isDatabaseRefusal({ code }), code).toBe(false);
  });

  it('TLS asked of a server that serves none', async () => {
    const err = await start(at((u) => u.searchParams.set('sslmode', 'require'))).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/The server does not support SSL connections; the server does not serve TLS: drop sslmode from DATABASE_URL or enable ssl on the server$/);
  });
});
