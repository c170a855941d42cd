// threadbox/client: a typed client of the HTTP API for Node and browsers (fetch and web streams only).
// Request and response types come from the routes' own zod schemas; streams resume by Last-Event-ID on their own.
import { EventSourceParserStream } from 'eventsource-parser/stream';
import type { z } from 'zod';
import type { RunEvent } from '../contract/run-events.js';
import type * as schemas from '../api/schemas.js';

export type { RunEvent } from '../contract/run-events.js';
export type SubmitRequest = z.input<typeof schemas.submitBody>;
export type SubmitResponse = z.output<typeof schemas.submitResponse>;
export type Thread = z.output<typeof schemas.thread>;
export type Run = z.output<typeof schemas.run>;
export type Message = z.output<typeof schemas.message>;
export type MessagesPage = z.output<typeof schemas.messagesPage>;
/** (the event union's schema is built dynamically; its type is the contract's RunEvent) */
export type EventsPage = Omit<z.output<typeof schemas.eventsPage>, 'items'> & { items: RunEvent[] };
export type Decision = z.input<typeof schemas.decisionBody>;
export type DecisionResponse = z.output<typeof schemas.decisionResponse>;
export type CancelResponse = z.output<typeof schemas.cancelResponse>;
export type InterruptResponse = z.output<typeof schemas.interruptResponse>;
export type Dispatch = z.output<typeof schemas.dispatch>;
export type DurableMessage = z.input<typeof schemas.durableMessageBody>;
export type DurableMessageResponse = z.output<typeof schemas.durableMessageResponse>;
/** The contract's error codes (`invalid_request`, `not_found`, `active_run_conflict`, `rate_limited`, …). */
export type ErrorCode = string;

/** A refused request: the HTTP status, the contract's `code`, its message, and for 429/503 when to retry. */
export class ThreadboxError extends Error {
  override readonly name = 'ThreadboxError';
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

export interface ClientOptions {
  /** the API's address, e.g. http://127.0.0.1:3000 (empty: this page's origin) */
  baseUrl?: string;
  apiKey?: string;
  fetch?: typeof fetch;
  /** longest wait between reconnects of a stream (and before retrying a 429/503) */
  maxRetryDelayMs?: number;
}

export interface StreamOptions {
  /** resume after this cursor (a run stream's seq, a thread stream's event id) */
  after?: number;
  signal?: AbortSignal;
  /** called before each reconnect, with the cursor it resumes from */
  onReconnect?: (after: number) => void;
}

export class ThreadboxClient {
  private readonly baseUrl: string;
  private readonly fetch: typeof fetch;
  private readonly maxRetryDelayMs: number;

  constructor(private readonly options: ClientOptions = {}) {
    this.baseUrl = (options.baseUrl ?? '').replace(/\/$/, '');
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 10_000;
  }

  submit(threadId: string, body: SubmitRequest, opts: { idempotencyKey?: string } = {}): Promise<SubmitResponse> {
    const headers = opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : undefined;
    return this.json('POST', `/v1/threads/${enc(threadId)}/runs`, body, headers);
  }
  deliver(threadId: string, message: DurableMessage): Promise<DurableMessageResponse> {
    return this.json('POST', `/v1/threads/${enc(threadId)}/mailbox`, message);
  }
  decide(runId: string, decision: Decision): Promise<DecisionResponse> {
    return this.json('POST', `/v1/runs/${enc(runId)}/decisions`, decision);
  }
  cancel(runId: string): Promise<CancelResponse> {
    return this.json('POST', `/v1/runs/${enc(runId)}/cancel`);
  }
  interrupt(threadId: string): Promise<InterruptResponse> {
    return this.json('POST', `/v1/threads/${enc(threadId)}/interrupt`);
  }
  async listThreads(): Promise<Thread[]> {
    return (await this.json<{ items: Thread[] }>('GET', '/v1/threads')).items;
  }
  getThread(threadId: string): Promise<Thread> {
    return this.json('GET', `/v1/threads/${enc(threadId)}`);
  }
  async listRuns(threadId: string): Promise<Run[]> {
    return (await this.json<{ items: Run[] }>('GET', `/v1/threads/${enc(threadId)}/runs`)).items;
  }
  getRun(runId: string): Promise<Run> {
    return this.json('GET', `/v1/runs/${enc(runId)}`);
  }
  listMessages(threadId: string, page: { after?: number; limit?: number } = {}): Promise<MessagesPage> {
    return this.json('GET', `/v1/threads/${enc(threadId)}/messages${query(page)}`);
  }
  async listDispatches(threadId: string): Promise<Dispatch[]> {
    return (await this.json<{ items: Dispatch[] }>('GET', `/v1/threads/${enc(threadId)}/mailbox`)).items;
  }
  /** A page of a run's events (JSON), after a seq. */
  runEvents(runId: string, page: { after?: number; limit?: number } = {}): Promise<EventsPage> {
    return this.json('GET', `/v1/runs/${enc(runId)}/events${query(page)}`);
  }
  /** The committed log as AI SDK UIMessages (`useChat`'s initial messages). */
  uiMessages<T = unknown>(threadId: string): Promise<T[]> {
    return this.json('GET', `/v1/threads/${enc(threadId)}/ui-messages`);
  }

  /** A run's events from its first (or after `opts.after`) to its `run_finish`, reconnecting on a dropped connection. */
  streamRun(runId: string, opts: StreamOptions = {}): AsyncIterable<RunEvent> {
    return this.follow(`/v1/runs/${enc(runId)}/events`, (e) => e.seq, (e) => e.type === 'run_finish', opts);
  }

  /** Every event of a thread's runs, live, until `opts.signal` aborts; reconnects on a dropped connection. */
  streamThread(threadId: string, opts: StreamOptions = {}): AsyncIterable<RunEvent> {
    return this.follow(`/v1/threads/${enc(threadId)}/events`, (e) => e.id, () => false, opts);
  }

  private async *follow(path: string, cursorOf: (e: RunEvent) => number, isLast: (e: RunEvent) => boolean, opts: StreamOptions): AsyncGenerator<RunEvent> {
    let after = opts.after ?? 0;
    let failures = 0;
    for (;;) {
      let retryMs: number | undefined;
      try {
        const headers: Record<string, string> = { accept: 'text/event-stream', ...(after > 0 ? { 'last-event-id': String(after) } : {}) };
        const response = await this.send('GET', path, undefined, headers, opts.signal);
        const frames = response.body!.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream({ onRetry: (ms) => (retryMs = ms) }));
        for await (const frame of iterate(frames)) {
          const event = JSON.parse(frame.data) as RunEvent;
          after = cursorOf(event);
          failures = 0;
          yield event;
          if (isLast(event)) return;
        }
      } catch (err) {
        if (opts.signal?.aborted || (err instanceof ThreadboxError && !isTransient(err))) throw err;
        if (err instanceof ThreadboxError && err.retryAfterSeconds !== undefined) retryMs = err.retryAfterSeconds * 1000;
      }
      // The stream ended before its last event (a server going away, a dropped connection): resume where it stopped.
      failures++;
      opts.onReconnect?.(after);
      await delay(retryMs ?? Math.min(this.maxRetryDelayMs, 250 * 2 ** Math.min(failures - 1, 6)), opts.signal);
    }
  }

  private async json<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    const response = await this.send(method, path, body, headers);
    return (await response.json()) as T;
  }

  private async send(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
    const response = await this.fetch(this.baseUrl + path, {
      method,
      signal,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.ok) return response;
    const text = await response.text();
    let parsed: { error?: string; code?: string } = {};
    try {
      parsed = JSON.parse(text);
    } catch {
      // not the contract's shape (a proxy's page): the status says enough
    }
    const retryAfter = response.headers.get('retry-after');
    throw new ThreadboxError(response.status, parsed.code ?? `http_${response.status}`, parsed.error ?? (text || response.statusText), retryAfter ? Number(retryAfter) : undefined);
  }
}

const isTransient = (err: ThreadboxError) => err.status === 429 || err.status === 503;
const enc = encodeURIComponent;

function query(page: { after?: number; limit?: number }): string {
  const params = Object.entries(page).filter(([, v]) => v !== undefined);
  return params.length ? `?${params.map(([k, v]) => `${k}=${v}`).join('&')}` : '';
}

/** Web streams are async-iterable in Node but not in every browser: read them by hand. */
async function* iterate<T>(stream: ReadableStream<T>): AsyncGenerator<T> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    // a consumer that stops early closes the connection
    await reader.cancel().catch(() => {});
  }
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true });
  });
}
