// API errors: one shape, `{error, code}`, with the codes of the HTTP contract.
export type ErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'not_found'
  | 'active_run_conflict'
  | 'no_pending_approval'
  | 'run_not_active'
  | 'payload_too_large'
  | 'rate_limited'
  | 'unavailable';

const STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  not_found: 404,
  active_run_conflict: 409,
  no_pending_approval: 409,
  run_not_active: 409,
  payload_too_large: 413,
  rate_limited: 429,
  unavailable: 503,
};

export class ApiError extends Error {
  readonly statusCode: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.statusCode = STATUS[code];
  }
}

export const notFound = (what: string) => new ApiError('not_found', `${what} not found`);
