// A run's input, durable from submit until the run commits it to the log (or is cancelled before it starts).
import type pg from 'pg';
import type { PendingMessage } from './messages.js';

export async function insertPendingInput(client: pg.PoolClient, tenant: string, runId: string, input: PendingMessage[]): Promise<void> {
  if (input.length === 0) return;
  await client.query(
    `INSERT INTO pending_input (tenant, run_id, position, message)
     SELECT $3, $1, i - 1, m FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS t(m, i)`,
    [runId, JSON.stringify(input), tenant],
  );
}

/** Removes and returns the runs' pending input, run after run in the order given, each in its own order. */
export async function takePendingInput(client: pg.PoolClient, tenant: string, runIds: string[]): Promise<PendingMessage[]> {
  const input: PendingMessage[] = [];
  for (const runId of runIds) {
    const { rows } = await client.query('DELETE FROM pending_input WHERE tenant = $1 AND run_id = $2 RETURNING position, message', [tenant, runId]);
    input.push(...rows.sort((a, b) => a.position - b.position).map((r) => r.message as PendingMessage));
  }
  return input;
}

export async function deletePendingInput(client: pg.PoolClient, tenant: string, runId: string): Promise<void> {
  await client.query('DELETE FROM pending_input WHERE tenant = $1 AND run_id = $2', [tenant, runId]);
}
