// The schema's CHECK constraints allow exactly the contract's status lists: one list, written once in src/contract.
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MESSAGE_STATUSES, RUN_STATUSES } from '../../src/contract/run-events.js';
import { createPool, migrate } from '../../src/store/db.js';

let pool: pg.Pool;
beforeAll(async () => {
  pool = createPool(inject('databaseUrl'));
  await migrate(pool);
});
afterAll(async () => {
  await pool?.end();
});

/** The values a table's CHECK on `column` allows, read from pg_catalog (`CHECK ((status = ANY (ARRAY['a'::text, …])))`). */
async function allowedValues(table: string, column: string): Promise<string[]> {
  const { rows } = await pool.query<{ def: string }>(
    `SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
      WHERE c.conrelid = $1::regclass AND c.contype = 'c'
        AND c.conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2)]`,
    [table, column],
  );
  expect(rows, `one CHECK on ${table}.${column}`).toHaveLength(1);
  return [...rows[0]!.def.matchAll(/'([^']*)'::text/g)].map((m) => m[1]!);
}

describe('schema', () => {
  it('the status CHECKs of runs and messages allow exactly the contract lists (a dispatch has no status of its own: it is derived from its run)', async () => {
    expect((await allowedValues('runs', 'status')).sort()).toEqual([...RUN_STATUSES].sort());
    expect((await allowedValues('messages', 'status')).sort()).toEqual([...MESSAGE_STATUSES].sort());
  });
});
