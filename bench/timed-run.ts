// A timed SSE client: one submit, every frame's arrival time.
import { clock, readSse } from '../testkit/sse.js';

/** One model token; a `text_delta` event may carry several (threadbox coalesces what arrives during a write). */
export interface Token {
  at: number; // arrival at the client of the event that carried it
  ts: number; // the event's `ts` (threadbox: Postgres commit time of its write)
  delta: string;
}

/** The tokens of the echo model and the timed provider: optional whitespace, then a word. */
const TOKEN = /\s*\S+/g;

export interface TimedRun {
  submittedAt: number;
  headersAt: number;
  firstEventAt?: number;
  firstTokenAt?: number;
  finishAt?: number;
  runId?: string;
  termination?: string;
  tokens: Token[];
  /** `text_delta` events that carried the tokens */
  textEvents: number;
  firstToken: Promise<void>;
  done: Promise<void>;
}

export const userMessage = (content: string) => ({ messages: [{ role: 'user', content }] });

export async function submitTimed(url: string, body: unknown): Promise<TimedRun> {
  const submittedAt = clock();
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(body),
  });
  const headersAt = clock();
  if (response.status !== 200 || !response.body) throw new Error(`POST ${url}: ${response.status} ${await response.text()}`);
  let tokenSeen!: () => void;
  const firstToken = new Promise<void>((r) => (tokenSeen = r));
  const run: TimedRun = { submittedAt, headersAt, tokens: [], textEvents: 0, firstToken, done: Promise.resolve() };
  run.done = readSse(response.body, (frame, at) => {
    if (!frame.event || !frame.data) return;
    const event = JSON.parse(frame.data);
    run.firstEventAt ??= at;
    run.runId ??= event.runId;
    if (frame.event === 'text_delta') {
      run.firstTokenAt ??= at;
      run.textEvents += 1;
      for (const [delta] of (event.delta as string).matchAll(TOKEN)) run.tokens.push({ at, ts: Date.parse(event.ts), delta });
      tokenSeen();
    } else if (frame.event === 'run_finish') {
      run.finishAt = at;
      run.termination = event.termination.type;
    }
  }).finally(() => tokenSeen());
  return run;
}
