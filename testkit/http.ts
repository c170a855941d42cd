// JSON over HTTP as the tests, the history recorder and the bench call threadbox's API.
import { randomUUID } from 'node:crypto';
import { sleep } from './wait.js';

export interface JsonResponse {
  status: number;
  body: any;
}

/** One request with a JSON body (when given); the answer's status and parsed body (undefined when empty). */
export async function requestJson(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<JsonResponse> {
  const { status, body: answer } = await send(url, method, body, headers);
  return { status, body: answer };
}

/**
 * A POST as a careful client makes it: a 429 or 503 (the API's overload and outage answers) is
 * retried after its Retry-After with the same Idempotency-Key, so that it is applied once.
 */
export async function postRetrying(url: string, body?: unknown): Promise<JsonResponse> {
  const headers = { 'idempotency-key': randomUUID() };
  for (;;) {
    const answer = await send(url, 'POST', body, headers);
    if (answer.status !== 429 && answer.status !== 503) return { status: answer.status, body: answer.body };
    await sleep(Number(answer.retryAfter ?? '1') * 1000);
  }
}

/** `postRetrying` that must end in a 2xx: its parsed body. */
export async function postJson(url: string, body?: unknown): Promise<any> {
  const response = await postRetrying(url, body);
  if (response.status >= 300) throw new Error(`POST ${url}: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body;
}

async function send(url: string, method: string, body: unknown, headers: Record<string, string>) {
  const response = await fetch(url, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined, retryAfter: response.headers.get('retry-after') ?? undefined };
}
