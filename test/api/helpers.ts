// Helpers of the HTTP API tests: a stack with a tenant of its own, raw HTTP requests, per-tenant row counts.
import { randomUUID } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type pg from 'pg';
import { eventually, startStack, type Stack } from '../stack.js';

/**
 * Every test file runs against the one shared database, concurrently with the others: a tenant of
 * its own makes "this request wrote nothing" a question about that tenant's rows alone.
 */
export interface TenantStack extends Stack {
  tenant: string;
  key: string;
  /** `stack.request` with this tenant's bearer key */
  api(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  auth: Record<string, string>;
}

export async function startTenantStack(opts: { env?: Record<string, string>; worker?: boolean; taskQueue?: string; extraKeys?: string } = {}): Promise<TenantStack> {
  const tenant = `t-${randomUUID().slice(0, 8)}`;
  const key = `k-${randomUUID()}`;
  const keys = [`${key}:${tenant}`, ...(opts.extraKeys ? [opts.extraKeys] : [])].join(',');
  const stack = await startStack({ ...opts, env: { THREADBOX_API_KEYS: keys, ...opts.env } });
  const auth = { authorization: `Bearer ${key}` };
  return Object.assign(stack, {
    tenant,
    key,
    auth,
    api: (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => stack.request(method, path, body, { ...auth, ...headers }),
  });
}

export const TABLES = ['threads', 'messages', 'runs', 'pending_input', 'run_events'] as const;
export type RowCounts = Record<(typeof TABLES)[number], number>;

/** Rows of every table that belong to `tenant`. */
export async function rowCounts(pool: pg.Pool, tenant: string): Promise<RowCounts> {
  const { rows } = await pool.query(
    `SELECT (SELECT count(*) FROM threads WHERE tenant = $1) AS threads,
            (SELECT count(*) FROM messages WHERE tenant = $1) AS messages,
            (SELECT count(*) FROM runs WHERE tenant = $1) AS runs,
            (SELECT count(*) FROM pending_input WHERE tenant = $1) AS pending_input,
            (SELECT count(*) FROM run_events WHERE tenant = $1) AS run_events`,
    [tenant],
  );
  return Object.fromEntries(TABLES.map((t) => [t, Number(rows[0][t])])) as RowCounts;
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

/**
 * One HTTP request with nothing normalised: the path goes out as written (`..`, `%`, spaces), the
 * headers and body exactly as given. A server that answers before reading a big body may reset the
 * connection while it is still being sent; the answer counts, the reset after it does not.
 */
export function rawRequest(
  url: string,
  opts: { method: string; path: string; headers?: Record<string, string>; body?: string | Buffer; /** fail instead of waiting longer for the answer */ timeoutMs?: number },
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest({ hostname, port, method: opts.method, path: opts.path, headers: opts.headers ?? {}, agent: false }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    if (opts.timeoutMs !== undefined) {
      const deadline = setTimeout(() => {
        reject(new Error(`no full answer to ${opts.method} ${opts.path.slice(0, 100)} within ${opts.timeoutMs} ms`));
        req.destroy();
      }, opts.timeoutMs);
      req.on('close', () => clearTimeout(deadline));
    }
    if (opts.body !== undefined) req.end(opts.body);
    else req.end();
  });
}

/** The contract's status for each error code. */
export const STATUS_OF: Record<string, number> = {
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

/** Asserts the contract's error shape and returns the code. */
export function errorCode(res: { status: number; body?: any; json?: any }): string {
  const body = res.body ?? res.json;
  if (!body || typeof body.error !== 'string' || typeof body.code !== 'string') throw new Error(`not an error body (${res.status}): ${JSON.stringify(body)}`);
  if (STATUS_OF[body.code] !== res.status) throw new Error(`code ${body.code} came with status ${res.status}`);
  return body.code;
}

export async function runDone(stack: Stack, runId: string, timeoutMs = 30_000) {
  return eventually(async () => {
    const run = await stack.store.getRun(runId);
    return run?.status === 'done' ? run : undefined;
  }, timeoutMs, `run ${runId} to end`);
}

export async function runStatus(stack: Stack, runId: string, status: string, timeoutMs = 30_000) {
  return eventually(async () => {
    const run = await stack.store.getRun(runId);
    return run?.status === status ? run : undefined;
  }, timeoutMs, `run ${runId} to be ${status}`);
}

export const EMAIL_TOOL = '/tool send_email {"to":"a@example.com","subject":"s","body":"b"}';

/** Every /v1 route of the contract (DESIGN.md), with a body that is valid for it. */
export interface ContractRoute {
  method: 'GET' | 'POST';
  /** OpenAPI-style template: `{threadId}`, `{runId}` */
  path: string;
  body?: unknown;
  /** what an id in the path names; none: the route takes no id */
  id?: 'threadId' | 'runId';
  /** a submit to an unknown thread creates it: no 404 */
  creates?: boolean;
  accept?: string;
}

export const CONTRACT_ROUTES: ContractRoute[] = [
  { method: 'POST', path: '/v1/threads/{threadId}/runs', id: 'threadId', creates: true, body: { messages: [{ content: 'hi' }] } },
  { method: 'POST', path: '/v1/runs', body: { messages: [{ content: 'hi' }] } },
  { method: 'POST', path: '/v1/threads/{threadId}/interrupt', id: 'threadId' },
  { method: 'POST', path: '/v1/runs/{runId}/cancel', id: 'runId' },
  { method: 'POST', path: '/v1/runs/{runId}/decisions', id: 'runId', body: { toolCallId: 'call_1', action: 'approve' } },
  { method: 'POST', path: '/v1/threads/{threadId}/mailbox', id: 'threadId', creates: true, body: { messageId: 'm-1', text: 'hi' } },
  { method: 'GET', path: '/v1/threads/{threadId}/mailbox', id: 'threadId' },
  { method: 'GET', path: '/v1/threads' },
  { method: 'GET', path: '/v1/threads/{threadId}', id: 'threadId' },
  { method: 'GET', path: '/v1/threads/{threadId}/messages', id: 'threadId' },
  { method: 'GET', path: '/v1/threads/{threadId}/runs', id: 'threadId' },
  { method: 'GET', path: '/v1/runs/{runId}', id: 'runId' },
  { method: 'GET', path: '/v1/runs/{runId}/events', id: 'runId' },
  { method: 'GET', path: '/v1/runs/{runId}/events', id: 'runId', accept: 'text/event-stream' },
  { method: 'GET', path: '/v1/threads/{threadId}/events', id: 'threadId' },
  { method: 'GET', path: '/v1/threads/{threadId}/events', id: 'threadId', accept: 'text/event-stream' },
];

export const fillPath = (template: string, ids: { threadId?: string; runId?: string }) =>
  template.replace('{threadId}', ids.threadId ?? '').replace('{runId}', ids.runId ?? '');

/** The `key value` lines of a Prometheus exposition, for assertions. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3]);
  }
  return undefined;
}
