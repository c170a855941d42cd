// A crowd of clients: threads of echo runs, each run followed by its own resuming client.
import { replyTokens } from '../../src/agent/echo.js';
import { clock } from '../../testkit/sse.js';
import { sleep } from '../../testkit/wait.js';
import { driveRun, type DrivenRun } from './client.js';
import type { Fleet } from './fleet.js';

export const randomBetween = (min: number, max: number) => min + Math.random() * (max - min);

/** A reply the echo model gives: `/slow <ms> /long <n> <nonce>`, and the text it answers with. */
export function echoPrompt(slowMs: number, tokens: number, nonce: string) {
  return { content: `/slow ${slowMs} /long ${tokens} ${nonce}`, expected: replyTokens(nonce, tokens).join('') };
}

export interface Crowd {
  runs: Promise<DrivenRun[]>;
  /** some run received a text_delta within the last `withinMs` */
  streamingNow(withinMs?: number): boolean;
  /** a one-line account of the runs, for the log at a fault */
  status(): string;
  /** resolves once some run is streaming */
  waitUntilStreaming(timeoutMs?: number): Promise<void>;
  driven: DrivenRun[];
  expected: Map<string, string>;
}

/**
 * Starts `threads` threads with `runsPerThread` runs each, submitted in queue mode (so each
 * thread's runs stream one after another), each with its own resuming client. A thread's runs
 * go in 150 ms apart, after a random delay of up to `staggerMs` for the thread. Queue mode, not
 * interrupt: a client's retried submit may land after a later one, and must not interrupt it.
 */
export function startCrowd(
  fleet: Fleet,
  opts: { threads: number; runsPerThread: number; slowMs: number; minTokens: number; maxTokens: number; deadlineMs: number; staggerMs?: number; name?: string },
): Crowd {
  const deadline = Date.now() + opts.deadlineMs;
  const driven: DrivenRun[] = [];
  const expected = new Map<string, string>();
  const tasks: Promise<DrivenRun>[] = [];
  const track = (run: DrivenRun) => driven.push(run);
  for (let t = 0; t < opts.threads; t++) {
    const offset = opts.staggerMs ? Math.random() * opts.staggerMs : 0;
    const threadId = `faults-${process.pid}-${Date.now().toString(36)}-${opts.name ?? ''}${t}`;
    for (let k = 0; k < opts.runsPerThread; k++) {
      const nonce = `n${t}x${k}x${Math.random().toString(36).slice(2, 10)}`;
      const prompt = echoPrompt(opts.slowMs, Math.round(randomBetween(opts.minTokens, opts.maxTokens)), nonce);
      expected.set(prompt.content, prompt.expected);
      tasks.push(
        (async () => {
          await sleep(offset + k * 150);
          return driveRun(fleet.api, threadId, prompt.content, 'queue', deadline, track);
        })(),
      );
    }
  }
  const runs = Promise.all(tasks);
  const streamingNow = (withinMs = 300) => {
    const now = clock();
    return driven.some((r) => {
      const last = r.events.at(-1);
      return !r.finished && last?.type === 'text_delta' && now - last.at < withinMs;
    });
  };
  return {
    runs,
    driven,
    expected,
    streamingNow,
    status() {
      const now = clock();
      const streaming = driven.filter((r) => !r.finished && r.events.at(-1)?.type === 'text_delta' && now - r.events.at(-1)!.at < 300).length;
      const finished = driven.filter((r) => r.finished).length;
      return `${streaming} streaming, ${finished} finished, ${driven.length - finished} unfinished of ${driven.length} submitted`;
    },
    async waitUntilStreaming(timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      while (!streamingNow()) {
        if (Date.now() > until) throw new Error('no run streamed within the timeout');
        await sleep(50);
      }
    },
  };
}

