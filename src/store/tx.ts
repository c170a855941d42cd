// Transactions on the pool, and the one helper that retries work which lost a race to a concurrent writer.
import type pg from 'pg';

export type Queryable = pg.Pool | pg.PoolClient;

/** Transactions Postgres aborted for a deadlock or a serialization failure are run again, at most this many times in all. */
const MAX_TRANSACTION_ATTEMPTS = 8;

export interface RaceLimits {
  /** tries in all, the first included */
  attempts: number;
  /** the error says another writer won: trying again can succeed */
  lost: (err: unknown) => boolean;
  /** pause before the next try (after `attempt` tries failed); none when absent */
  pauseMs?: (attempt: number) => number;
  /** the error thrown once every try lost; the last loss itself when absent */
  exhausted?: (lastLoss: unknown) => Error;
}

/** Runs `work` until it does not lose a race, or `limits.attempts` tries have all lost. */
export async function retryLostRaces<T>(work: () => Promise<T>, limits: RaceLimits): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (!limits.lost(err)) throw err;
      if (attempt >= limits.attempts) throw limits.exhausted ? limits.exhausted(err) : err;
      if (limits.pauseMs) await sleep(limits.pauseMs(attempt));
    }
  }
}

/** Runs `work` in one transaction; runs it again when Postgres aborted it for a deadlock or a serialization failure. */
export function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return retryLostRaces(() => transactionOnce(pool, work), { attempts: MAX_TRANSACTION_ATTEMPTS, lost: isAbortedByPostgres });
}

async function transactionOnce<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  // pg-pool drops its error listener while a client is checked out, and pg emits 'error' on a
  // client whose connection dies (a Postgres restart): unhandled, that kills the process. The
  // query in flight fails with the same error; the dead client is discarded on release.
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.removeListener('error', onError);
    client.release(broken);
  }
}

function isAbortedByPostgres(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === '40001' || code === '40P01';
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
