// How activities fail: the retry budget they share, and the store errors no retry can fix.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { StoreError } from '../src/store/store.js';
import { isConstraintViolation, isRejectedData, isStoreOutage } from '../src/store/errors.js';

/** Attempts a tool call gets for failures other than a store outage. */
export const TOOL_ATTEMPTS = 3;
/** Attempts a model step gets for the model's own transient errors (429, 5xx, dropped streams). */
export const MODEL_ATTEMPTS = 6;
/** How long a model step rides out a store outage before the run ends in error. */
export const STORE_OUTAGE_BUDGET_MS = 10 * 60_000;

/**
 * Runs an activity's work so that a store outage (raw, or already classified `store_unavailable`) is
 * retried for STORE_OUTAGE_BUDGET_MS since the activity was first scheduled, however many attempts that
 * takes, and any other retryable failure `attempts` times. Past either, the failure is made final, with
 * `finalType` as its type (else its own).
 */
export async function withRetryBudget<T>(work: () => Promise<T>, attempts: number, finalType?: string): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ApplicationFailure && err.nonRetryable) throw err;
    const failure = err instanceof ApplicationFailure ? err : undefined;
    const { attempt, scheduledTimestampMs } = Context.current().info;
    const outage = isStoreOutage(err) || failure?.type === 'store_unavailable';
    const givesUp = outage ? Date.now() - scheduledTimestampMs > STORE_OUTAGE_BUDGET_MS : attempt >= attempts;
    if (!givesUp) throw err;
    const type = finalType ?? failure?.type ?? (err as Error).name;
    throw ApplicationFailure.create({ type, message: (err as Error).message, details: failure?.details as unknown[], nonRetryable: true, cause: err as Error });
  }
}

/**
 * Store errors that retrying cannot fix become non-retryable failures with the error's code as type;
 * so does data Postgres refuses (a data exception or a violated constraint, class 22 or 23): retrying
 * the same bytes fails the same way, and a thread must not wait on it forever. Outages stay retryable.
 */
export async function storeCall<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof StoreError && err.code !== 'version_conflict') {
      throw ApplicationFailure.create({ type: err.code, message: err.message, nonRetryable: true });
    }
    if (isRejectedData(err) || isConstraintViolation(err)) {
      throw ApplicationFailure.create({ type: 'invalid_data', message: `the store refused the data: ${(err as Error).message}`, nonRetryable: true });
    }
    throw err;
  }
}
