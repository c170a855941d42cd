// A client that behaves as a careful real one would under faults: it retries its submit with the
// same Idempotency-Key until one API instance answers, and resumes a broken stream with
// Last-Event-ID against whichever API instance is alive, recording every event it sees.
import { randomUUID } from 'node:crypto';
import { clock, readSse } from '../../testkit/sse.js';
import { sleep } from '../../testkit/wait.js';

export interface ReceivedEvent {
  seq: number;
  type: string;
  data: any;
  at: number;
}

/** One submit attempt as the client saw it: when it began, how long its answer took, what it said. */
export interface SubmitAnswer {
  /** epoch ms */
  startedAt: number;
  /** until the response headers (or the failure) */
  ms: number;
  /** 0 when no answer came (connection refused or reset, or no headers within the time limit) */
  status: number;
  code?: string;
  retryAfter?: string;
}

export interface DrivenRun {
  threadId: string;
  content: string;
  mode: 'interrupt' | 'queue';
  idempotencyKey: string;
  runId?: string;
  events: ReceivedEvent[];
  finished: boolean;
  termination?: string;
  /** a seq that skipped ahead of the last one seen */
  gaps: number;
  /** a seq at or behind the last one seen */
  duplicates: number;
  submitAttempts: number;
  submitAnswers: SubmitAnswer[];
  /** GET …/events connections made to resume (the submit's own stream is not one) */
  reconnects: number;
  /** connections dropped by the client because not even a keepalive arrived for IDLE_MS */
  idleDrops: number;
  errors: string[];
}

/** The API instances a client may use, first live one first. */
export type ApiPicker = () => string;

const IDLE_MS = 15_000;
const RETRY_MS = 250;

/**
 * Submits `content` to the thread and follows the run to its run_finish, or until `deadline`
 * (epoch ms). `track` gets the run record at once, to watch it while it streams.
 */
export async function driveRun(
  api: ApiPicker,
  threadId: string,
  content: string,
  mode: 'interrupt' | 'queue',
  deadline: number,
  track?: (run: DrivenRun) => void,
): Promise<DrivenRun> {
  const run: DrivenRun = {
    threadId,
    content,
    mode,
    idempotencyKey: randomUUID(),
    events: [],
    finished: false,
    gaps: 0,
    duplicates: 0,
    submitAttempts: 0,
    submitAnswers: [],
    reconnects: 0,
    idleDrops: 0,
    errors: [],
  };
  track?.(run);
  // Submit: the same key every time, so a submit the server applied but could not answer is not applied twice.
  let final = false;
  while (!run.runId && !final && Date.now() < deadline) {
    const answer = await submitOnce(run, api(), deadline);
    final = answer.final;
    if (!run.runId && !final) await sleep(answer.wait);
  }
  // Follow: resume after the last event seen until run_finish.
  while (run.runId && !run.finished && Date.now() < deadline) {
    await followOnce(run, api(), deadline);
    if (!run.finished) await sleep(RETRY_MS);
  }
  return run;
}

function note(run: DrivenRun, what: string) {
  if (run.errors.length < 20) run.errors.push(`${new Date().toISOString()} ${what}`);
}

/**
 * One submit attempt, its SSE stream read as far as it goes. A 429 or 503 is retried after its
 * Retry-After (at most 5 s); any other 4xx is final: a careful client does not repeat it.
 */
async function submitOnce(run: DrivenRun, base: string, deadline: number): Promise<{ wait: number; final: boolean }> {
  run.submitAttempts++;
  const answer: SubmitAnswer = { startedAt: Date.now(), ms: 0, status: 0 };
  const started = clock();
  try {
    const response = await fetchWithin(`${base}/v1/threads/${run.threadId}/runs`, deadline, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'idempotency-key': run.idempotencyKey },
      body: JSON.stringify({ messages: [{ role: 'user', content: run.content }], mode: run.mode }),
    });
    answer.ms = clock() - started;
    answer.status = response.status;
    answer.retryAfter = response.headers.get('retry-after') ?? undefined;
    run.submitAnswers.push(answer);
    if (response.status === 200 && response.headers.get('content-type')?.includes('text/event-stream')) {
      await consume(run, response, deadline);
      // With no event yet the submit may not have happened: resubmit.
      if (!run.runId) note(run, 'SSE submit ended before its first event');
      return { wait: RETRY_MS, final: false };
    }
    const text = await response.text();
    answer.code = errorCode(text);
    note(run, `submit to ${base}: ${response.status} ${text.slice(0, 200)}`);
    if (response.status === 429 || response.status === 503) return { wait: Math.min(5000, Number(answer.retryAfter ?? 0) * 1000 || RETRY_MS), final: false };
    return { wait: RETRY_MS, final: response.status >= 400 && response.status < 500 };
  } catch (err) {
    answer.ms = clock() - started;
    if (!run.submitAnswers.includes(answer)) run.submitAnswers.push(answer);
    note(run, `submit to ${base}: ${describe(err)}`);
    return { wait: RETRY_MS, final: false };
  }
}

/** One GET …/events connection that resumes after the last event seen. */
async function followOnce(run: DrivenRun, base: string, deadline: number): Promise<void> {
  run.reconnects++;
  try {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    const lastSeq = run.events.at(-1)?.seq ?? 0;
    if (lastSeq > 0) headers['last-event-id'] = String(lastSeq);
    const response = await fetchWithin(`${base}/v1/runs/${run.runId}/events`, deadline, { headers });
    if (response.status === 200 && response.headers.get('content-type')?.includes('text/event-stream')) await consume(run, response, deadline);
    else note(run, `follow on ${base}: ${response.status} ${(await response.text()).slice(0, 200)}`);
  } catch (err) {
    note(run, `follow on ${base}: ${describe(err)}`);
  }
}

/** A fetch whose response headers must arrive within 30 s (or by the deadline); the body has no time limit here. */
async function fetchWithin(url: string, deadline: number, init: RequestInit): Promise<Response> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error('no response headers within the time limit')), Math.max(1, Math.min(30_000, deadline - Date.now())));
  try {
    return await fetch(url, { ...init, signal: controller.signal });
  } finally {
    clearTimeout(timer);
  }
}

/** Reads one SSE connection into the run's event list; returns when it ends, breaks, idles or the deadline passes. */
async function consume(run: DrivenRun, response: Response, deadline: number): Promise<void> {
  const body = response.body!;
  const reader = body.getReader();
  let lastBytes = clock();
  const watchdog = setInterval(() => {
    const idle = clock() - lastBytes > IDLE_MS;
    if (idle || Date.now() > deadline) {
      if (idle) run.idleDrops++;
      void reader.cancel().catch(() => {});
    }
  }, 500);
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: () => reader.cancel(),
  });
  try {
    await readSse(
      stream,
      (frame, at) => {
        if (!frame.event || frame.data === undefined || frame.id === undefined) return;
        const seq = Number(frame.id);
        const last = run.events.at(-1)?.seq ?? 0;
        if (seq <= last) {
          run.duplicates++;
          return;
        }
        if (seq !== last + 1) {
          run.gaps++;
          note(run, `gap: seq ${last} then ${seq}`);
        }
        const data = JSON.parse(frame.data);
        run.events.push({ seq, type: frame.event, data, at });
        // The first event names the run: known from here on, while its stream goes on.
        run.runId ??= data.runId;
        if (frame.event === 'run_finish') {
          run.finished = true;
          run.termination = data.termination?.type;
          void reader.cancel().catch(() => {});
        }
      },
      (at) => (lastBytes = at),
    );
  } catch (err) {
    if (!run.finished) note(run, `stream broke: ${describe(err)}`);
  } finally {
    clearInterval(watchdog);
  }
}

/**
 * The text a client shows for the run's last step: text_delta appended per step, and a
 * stream_reset drops what that step streamed before it.
 */
export function reassembledText(run: DrivenRun): string {
  const byStep = new Map<number, string>();
  for (const e of run.events) {
    if (e.type === 'text_delta') byStep.set(e.data.step, (byStep.get(e.data.step) ?? '') + e.data.delta);
    else if (e.type === 'stream_reset') byStep.set(e.data.step, '');
  }
  const last = Math.max(0, ...byStep.keys());
  return byStep.get(last) ?? '';
}

/** The contract's `code` of an error body, if it is one. */
export function errorCode(body: string): string | undefined {
  try {
    return JSON.parse(body).code;
  } catch {
    return undefined;
  }
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? ` (${(err.cause as NodeJS.ErrnoException).code ?? err.cause.message})` : '';
  return `${err.name}: ${err.message}${cause}`;
}
