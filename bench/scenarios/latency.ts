// Latency scenarios: submit → first byte/event/token against the baseline, per-token delivery, interrupts and cancels.
import { randomUUID } from 'node:crypto';
import { postJson } from '../../testkit/http.js';
import { clock } from '../../testkit/sse.js';
import { settings } from '../settings.js';
import { newThreadId, threadRuns, type Stack } from '../stack.js';
import { p50p99 } from '../stats.js';
import { cadenceText } from '../timed-provider.js';
import { submitTimed, userMessage, type TimedRun } from '../timed-run.js';

/** Submit → headers, first event, first token and run_finish of one run, into per-figure sample lists. */
function firstBytesSamples() {
  const samples = { byte: [] as number[], event: [] as number[], token: [] as number[], total: [] as number[] };
  return {
    samples,
    add(run: TimedRun) {
      if (run.termination !== 'natural_end') throw new Error(`latency run ended ${run.termination}`);
      samples.byte.push(run.headersAt - run.submittedAt);
      samples.event.push(run.firstEventAt! - run.submittedAt);
      samples.token.push(run.firstTokenAt! - run.submittedAt);
      samples.total.push(run.finishAt! - run.submittedAt);
    },
  };
}

export async function measureFirstBytes(stack: Stack) {
  const threads = Array.from({ length: settings.latencyThreads }, () => newThreadId('latency'));
  const threadbox = firstBytesSamples();
  const baseline = firstBytesSamples();
  // Warm-up, not counted: connections, JIT, the worker's first workflow tasks.
  for (let i = 0; i < 10; i++) {
    await (await submitTimed(threadRuns(stack, newThreadId('warmup')), userMessage('warm up'))).done;
    await (await submitTimed(`${stack.baseline}/baseline/runs`, userMessage('warm up'))).done;
  }
  // Interleaved, so the two sides see the same background noise of a shared machine.
  for (let i = 0; i < settings.runs; i++) {
    const text = `latency run ${i} says hello`;
    const base = await submitTimed(`${stack.baseline}/baseline/runs`, userMessage(text));
    await base.done;
    baseline.add(base);
    const run = await submitTimed(threadRuns(stack, threads[i % threads.length]!), userMessage(text));
    await run.done;
    threadbox.add(run);
  }
  return {
    ...p50p99('first_byte', threadbox.samples.byte),
    ...p50p99('baseline_first_byte', baseline.samples.byte),
    ...p50p99('first_event', threadbox.samples.event),
    ...p50p99('first_token', threadbox.samples.token),
    ...p50p99('baseline_first_token', baseline.samples.token),
    ...p50p99('run_total', threadbox.samples.total),
    ...p50p99('baseline_run_total', baseline.samples.total),
  };
}

/**
 * Model emits → client receives, exactly: the `timed` agent's model is the timed provider, an
 * OpenAI-compatible HTTP server in this process that records when it writes each token; the
 * worker (another process) calls it as it would a real provider. The baseline streams the same
 * provider. Threadbox also gives each token's Postgres commit time (`ts`): commit → client.
 */
export async function measureTokenDelivery(stack: Stack) {
  const threadbox: number[] = [];
  const commitToClient: number[] = [];
  const baseline: number[] = [];
  const delays = (run: TimedRun, marker: string) => {
    const emitted = stack.timed.emitted(marker);
    if (run.tokens.length !== settings.tokenCount || emitted.length !== settings.tokenCount) {
      throw new Error(`cadence run ${marker}: ${run.tokens.length} tokens arrived, ${emitted.length} emitted, ${settings.tokenCount} asked`);
    }
    return run.tokens.map((t, i) => {
      if (t.delta !== ` tok${i}`) throw new Error(`cadence run ${marker}: token ${i} is "${t.delta}"`);
      return t.at - emitted[i]!;
    });
  };
  for (let i = 0; i < settings.tokenRuns; i++) {
    const baseMarker = `base-${randomUUID()}`;
    const base = await submitTimed(`${stack.baseline}/baseline/runs`, { ...userMessage(cadenceText(baseMarker, settings.tokenCount, settings.tokenSlowMs)), model: 'timed' });
    await base.done;
    baseline.push(...delays(base, baseMarker));
    const marker = `tb-${randomUUID()}`;
    const run = await submitTimed(threadRuns(stack, newThreadId('cadence')), { ...userMessage(cadenceText(marker, settings.tokenCount, settings.tokenSlowMs)), agentId: 'timed' });
    await run.done;
    threadbox.push(...delays(run, marker));
    commitToClient.push(...run.tokens.map((t) => t.at - t.ts));
  }
  return {
    ...p50p99('token_emit_to_client', threadbox),
    ...p50p99('token_commit_to_client', commitToClient),
    ...p50p99('baseline_token_emit_to_client', baseline),
  };
}

/** A foreground submit on a busy thread → the old run's run_finish at its client. */
export async function measureInterrupts(stack: Stack) {
  const threadId = newThreadId('interrupt');
  const busy = (i: number) => userMessage(`/slow 20 /long 100000 busy ${i}`);
  const latencies: number[] = [];
  let current = await submitTimed(threadRuns(stack, threadId), busy(0));
  await current.firstToken;
  for (let i = 1; i <= settings.interrupts; i++) {
    const sent = clock();
    const next = submitTimed(threadRuns(stack, threadId), { ...busy(i), mode: 'interrupt' });
    await current.done;
    if (current.termination !== 'interrupted') throw new Error(`interrupted run ended ${current.termination}`);
    latencies.push(current.finishAt! - sent);
    current = await next;
    await current.firstToken;
  }
  await postJson(`${stack.api}/v1/runs/${current.runId}/cancel`);
  await current.done;
  return p50p99('interrupt', latencies);
}

/**
 * POST cancel → run_finish at the client; and cancel → the last token the step wrote, which
 * bounds when the model call was aborted (tokens every 10 ms, each committed within a flush interval).
 */
export async function measureCancels(stack: Stack) {
  const threadId = newThreadId('cancel');
  const latencies: number[] = [];
  const toAbort: number[] = [];
  for (let i = 0; i < settings.cancels; i++) {
    const run = await submitTimed(threadRuns(stack, threadId), userMessage(`/slow 10 /long 100000 cancel me ${i}`));
    await run.firstToken;
    const sent = clock();
    await postJson(`${stack.api}/v1/runs/${run.runId}/cancel`);
    await run.done;
    if (run.termination !== 'cancelled') throw new Error(`cancelled run ended ${run.termination}`);
    latencies.push(run.finishAt! - sent);
    toAbort.push(Math.max(0, Math.max(...run.tokens.map((t) => t.ts)) - sent));
  }
  return { ...p50p99('cancel', latencies), ...p50p99('cancel_to_last_token', toAbort) };
}
