// The store's own refusals, and which database failures are an outage (the same call succeeds once Postgres is back) and which are data it refused.

export class StoreError extends Error {
  override readonly name = 'StoreError';

  constructor(
    readonly code: 'version_conflict' | 'duplicate_message_id' | 'illegal_transition' | 'stale_writer' | 'not_found' | 'conflict' | 'idempotency_conflict',
    message: string,
  ) {
    super(message);
  }
}

// SQLSTATEs of a server that is going away or not taking connections; class 08 (connection exception) is matched whole.
const OUTAGE_SQLSTATES = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down, in recovery)
  '57P05', // idle_session_timeout
  '53300', // too_many_connections
]);

// Socket errors of the driver's own connection (node-postgres raises them as they are, not wrapped).
const OUTAGE_SYSCALL_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

// node-postgres and pg-pool word a lost or never-made connection in plain messages without a code.
const OUTAGE_MESSAGE = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable)/;

/**
 * True for an error that means Postgres could not be reached or dropped the connection, so the
 * call may be retried unchanged once it is back. Only the error itself (and the parts of an
 * AggregateError, as a refused connect to several addresses is) are looked at, not its causes:
 * an HTTP client's wrapped ECONNREFUSED is some other dependency's outage.
 */
export function isStoreOutage(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof AggregateError && err.errors.length > 0 && err.errors.every(isStoreOutage)) return true;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (code.startsWith('08') || OUTAGE_SQLSTATES.has(code) || OUTAGE_SYSCALL_CODES.has(code))) return true;
  return OUTAGE_MESSAGE.test(err.message);
}

/** True for data Postgres refused (SQLSTATE class 22: a NUL byte in text or JSON, a lone surrogate, a bad value): retrying the same write cannot help. */
export function isRejectedData(err: unknown): boolean {
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('22');
}

/** True for a write that breaks a constraint (SQLSTATE class 23) other than a unique key, which callers treat as a lost race: the same write breaks it again. */
export function isConstraintViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('23') && code !== '23505';
}

/** A one-line description naming the driver's code, also for an AggregateError whose own message is empty. */
export function describeStoreError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const message = err.message || (err instanceof AggregateError ? err.errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ') : '') || err.name;
  return typeof code === 'string' && !message.includes(code) ? `${message} (${code})` : message;
}
