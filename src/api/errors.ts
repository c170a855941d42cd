// API errors: one shape, `{error, code}`, with the codes of the HTTP contract.
export type ErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'not_found'
  | 'active_run_conflict'
  | 'no_pending_approval'
  | 'run_not_active'
  | 'conflict'
  | 'idempotency_conflict'
  | 'payload_too_large'
  | 'rate_limited'
  | 'thread_busy'
  | 'unavailable';

const STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  not_found: 404,
  active_run_conflict: 409,
  no_pending_approval: 409,
  run_not_active: 409,
  conflict: 409,
  idempotency_conflict: 409,
  payload_too_large: 413,
  rate_limited: 429,
  thread_busy: 429,
  unavailable: 503,
};

/** Every 429 and 503 tells the client when to come back; these are the waits unless the thrower knows better. */
const RETRY_AFTER_SECONDS: Partial<Record<ErrorCode, number>> = {
  rate_limited: 5,
  thread_busy: 1,
  unavailable: 2,
};

export class ApiError extends Error {
  readonly statusCode: number;
  /** the `Retry-After` of the answer, in seconds; set for every 429 and 503 */
  readonly retryAfterSeconds?: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    retryAfterSeconds?: number,
  ) {
    super(message);
    this.statusCode = STATUS[code];
    this.retryAfterSeconds = retryAfterSeconds ?? RETRY_AFTER_SECONDS[code];
  }
}

export const notFound = (what: string) => new ApiError('not_found', `${what} not found`);
