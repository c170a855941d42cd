// Load scenarios: throughput, tokens per second of one run, and the worker's memory and latency with many threads.
import { postJson } from '../../testkit/http.js';
import { rssMiB } from '../../testkit/processes.js';
import { clock } from '../../testkit/sse.js';
import { sleep } from '../../testkit/wait.js';
import { progress, settings } from '../settings.js';
import { newThreadId, threadRuns, waitForRuns, type Stack } from '../stack.js';
import { mapLimit, p50p99, round } from '../stats.js';
import { submitTimed, userMessage, type TimedRun } from '../timed-run.js';

/** Completed runs per second: every thread submits its runs in queue mode at once. */
export async function measureThroughput(stack: Stack) {
  const threads = Array.from({ length: settings.throughputThreads }, () => newThreadId('throughput'));
  const t0 = clock();
  const runIds = (
    await Promise.all(
      threads.map(async (threadId, t) => {
        const ids: string[] = [];
        for (let k = 0; k < settings.throughputRunsPerThread; k++) {
          const { runId } = await postJson(threadRuns(stack, threadId), { ...userMessage(`thread ${t} run ${k} says hello`), mode: 'queue' });
          ids.push(runId);
        }
        return ids;
      }),
    )
  ).flat();
  const submitted = clock();
  const finished = await waitForRuns(stack, runIds);
  const { rows } = await stack.db.query<{ type: string; n: string }>(
    `SELECT termination->>'type' AS type, count(*) AS n FROM runs WHERE run_id = ANY($1) GROUP BY 1`,
    [runIds],
  );
  const natural = Number(rows.find((r) => r.type === 'natural_end')?.n ?? 0);
  if (natural !== runIds.length) throw new Error(`throughput: ${natural} of ${runIds.length} runs ended naturally: ${JSON.stringify(rows)}`);
  return {
    throughput_runs: runIds.length,
    throughput_runs_per_sec: round(runIds.length / ((finished - t0) / 1000), 1),
    throughput_submits_per_sec: round(runIds.length / ((submitted - t0) / 1000), 1),
  };
}

/** Tokens per second one run sustains: `/long n` with no delay, counted at the client. */
export async function measureTokensPerSecond(stack: Stack) {
  const text = `/long ${settings.longTokens} firehose`;
  // Submit to run_finish: threadbox may deliver a fast model's tokens in a few coalesced events.
  const rate = (run: TimedRun) => run.tokens.length / ((run.finishAt! - run.submittedAt) / 1000);
  const run = await submitTimed(threadRuns(stack, newThreadId('firehose')), userMessage(text));
  await run.done;
  if (run.tokens.length !== settings.longTokens) throw new Error(`firehose streamed ${run.tokens.length} of ${settings.longTokens} tokens`);
  const base = await submitTimed(`${stack.baseline}/baseline/runs`, userMessage(text));
  await base.done;
  const { rows } = await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM run_events WHERE run_id = $1', [run.runId]);
  return {
    long_run_tokens: run.tokens.length,
    long_run_events_stored: Number(rows[0]!.n),
    tokens_per_sec_one_run: Math.round(rate(run)),
    baseline_tokens_per_sec_one_run: Math.round(rate(base)),
    long_run_total_ms: Math.round(run.finishAt! - run.submittedAt),
  };
}

export async function measureScale(stack: Stack) {
  const settle = async () => {
    await sleep(3000);
    return rssMiB(stack.worker.pid);
  };
  const figures: Record<string, number> = { worker_rss_before_scale_mib: await settle() };

  progress(`creating ${settings.idleThreads} threads, one finished run each…`);
  const idle = Array.from({ length: settings.idleThreads }, () => newThreadId('idle'));
  const t0 = clock();
  const runIds = await mapLimit(idle, 16, async (threadId) => (await postJson(threadRuns(stack, threadId), userMessage('hello idle thread'))).runId as string);
  const finished = await waitForRuns(stack, runIds);
  figures.idle_threads_created_per_sec = round(idle.length / ((finished - t0) / 1000), 1);
  figures.worker_rss_idle_threads_mib = await settle();

  // An idle thread picked at random was most likely evicted from the worker's workflow cache (far more
  // threads than THREADBOX_WORKFLOW_CACHE_SIZE); the submit right behind it finds the thread cached.
  progress(`submit → first event on existing threads, with ${settings.idleThreads} threads…`);
  const firstEvent: number[] = [];
  const firstToken: number[] = [];
  const cachedFirstToken: number[] = [];
  for (let i = 0; i < settings.scaleSamples; i++) {
    const threadId = idle[Math.floor(Math.random() * idle.length)]!;
    const run = await submitTimed(threadRuns(stack, threadId), userMessage(`hello again ${i}`));
    await run.done;
    firstEvent.push(run.firstEventAt! - run.submittedAt);
    firstToken.push(run.firstTokenAt! - run.submittedAt);
    const cached = await submitTimed(threadRuns(stack, threadId), userMessage(`and again ${i}`));
    await cached.done;
    cachedFirstToken.push(cached.firstTokenAt! - cached.submittedAt);
  }
  Object.assign(
    figures,
    p50p99('first_event_with_idle_threads', firstEvent),
    p50p99('first_token_with_idle_threads', firstToken),
    p50p99('first_token_cached_thread', cachedFirstToken),
  );
  figures.first_token_evicted_over_cached_p50_ms = round(figures.first_token_with_idle_threads_p50_ms! - figures.first_token_cached_thread_p50_ms!);

  progress(`${settings.waitingRuns} runs waiting for an approval…`);
  const waiting = await mapLimit(Array.from({ length: settings.waitingRuns }, () => newThreadId('approval')), 16, async (threadId) => {
    const { runId } = await postJson(threadRuns(stack, threadId), userMessage('/tool send_email {"to":"bench@example.com","subject":"bench","body":"hi"}'));
    return runId as string;
  });
  await waitForRuns(stack, waiting, 'waiting');
  figures.worker_rss_waiting_runs_mib = await settle();
  await mapLimit(waiting, 16, (runId) => postJson(`${stack.api}/v1/runs/${runId}/cancel`));
  await waitForRuns(stack, waiting);
  return figures;
}
