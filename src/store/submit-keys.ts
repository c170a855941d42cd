// Idempotency keys a tenant used on submits: the same key with another request is a conflict, not a replay.
import type { ThreadRef } from './threads.js';
import type { Queryable } from './tx.js';

/**
 * Claims an Idempotency-Key for a submit request. `claimed`: first use; `replay`: the same request
 * again; `conflict`: the key was used with another request (or thread). Keys are per tenant.
 */
export async function claimSubmitKey(db: Queryable, ref: ThreadRef, key: string, requestHash: string): Promise<'claimed' | 'replay' | 'conflict'> {
  const inserted = await db.query('INSERT INTO submit_keys (tenant, key, thread_id, request_hash) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [
    ref.tenant,
    key,
    ref.threadId,
    requestHash,
  ]);
  if (inserted.rowCount) return 'claimed';
  const { rows } = await db.query('SELECT thread_id, request_hash FROM submit_keys WHERE tenant = $1 AND key = $2', [ref.tenant, key]);
  return rows[0] && rows[0].thread_id === ref.threadId && rows[0].request_hash === requestHash ? 'replay' : 'conflict';
}

export async function submitKeyHash(db: Queryable, tenant: string, key: string): Promise<string | undefined> {
  const { rows } = await db.query('SELECT request_hash FROM submit_keys WHERE tenant = $1 AND key = $2', [tenant, key]);
  return rows[0]?.request_hash;
}

export async function threadOfSubmitKey(db: Queryable, tenant: string, key: string): Promise<string | undefined> {
  const { rows } = await db.query('SELECT thread_id FROM submit_keys WHERE tenant = $1 AND key = $2', [tenant, key]);
  return rows[0]?.thread_id;
}

/** Releases a key whose submit the API turned away before Temporal saw it: the key is free again. */
export async function releaseSubmitKey(db: Queryable, tenant: string, key: string): Promise<void> {
  await db.query('DELETE FROM submit_keys WHERE tenant = $1 AND key = $2', [tenant, key]);
}
