// Scenario 8: an operator terminates a streaming `run:` workflow in Temporal while three runs wait
// behind it on its thread. The run ends `error` ("terminated"), its input stays committed once, and
// the thread moves on: the runs queued behind it complete.
import { expect, it } from 'vitest';
import { driveRun, type DrivenRun } from './client.js';
import { checkRuns, echoPrompt, log, randomBetween, recordReport, sleep, useFleet } from './harness.js';

const THREADS = 8;
/** threads whose first run is terminated; the others run undisturbed beside them */
const TERMINATED = 6;
const stage = useFleet();

it('operator terminates a running run: workflow with runs queued behind it: it ends error "terminated", its input committed once, the queue completes', async () => {
  const { fleet, services } = stage;
  const started = Date.now();
  const deadline = Date.now() + 150_000;
  const operator = await services.operator();
  const expected = new Map<string, string>();
  const driven: DrivenRun[] = [];
  const threads = Array.from({ length: THREADS }, (_, t) => `faults-${process.pid}-${Date.now().toString(36)}-term${t}`);
  const tasks: Promise<DrivenRun>[] = [];
  const firsts: DrivenRun[] = [];
  for (const threadId of threads) {
    // A long first run (about 10 s of tokens), then three short ones queued behind it.
    const prompts = [echoPrompt(50, 200, `first${Math.random().toString(36).slice(2, 10)}`)];
    for (let k = 0; k < 3; k++) prompts.push(echoPrompt(20, Math.round(randomBetween(20, 40)), `q${k}x${Math.random().toString(36).slice(2, 10)}`));
    prompts.forEach((prompt, k) => {
      expected.set(prompt.content, prompt.expected);
      tasks.push(
        (async () => {
          // The first run's client is tracked at once (no await before driveRun), so `firsts` is complete below.
          if (k > 0) await sleep(k * 150);
          return driveRun(fleet.api, threadId, prompt.content, 'queue', deadline, (run) => {
            driven.push(run);
            if (k === 0) firsts.push(run);
          });
        })(),
      );
    });
  }

  // Each victim is terminated at a random moment of its stream, once the runs behind it are accepted.
  const terminated = new Set<string>();
  const victims = firsts.slice(0, TERMINATED);
  await Promise.all(
    victims.map(async (victim) => {
      const queuedBehind = () => driven.filter((r) => r.threadId === victim.threadId && r !== victim);
      while (!(victim.events.some((e) => e.type === 'text_delta') && queuedBehind().every((r) => r.runId)) && Date.now() < deadline) await sleep(50);
      await sleep(randomBetween(200, 2500));
      if (victim.finished) throw new Error(`run ${victim.runId} ended before it could be terminated`);
      const workflowId = await operator.terminateRun(victim.runId!, 'operator pressed terminate');
      log(`terminated ${workflowId} on ${victim.threadId} (${victim.events.length} events seen, ${queuedBehind().length} runs behind it)`);
      terminated.add(victim.runId!);
    }),
  );
  await operator.close();

  const runs = await Promise.all(tasks);
  const report = await checkRuns('8 operator terminates a run', fleet, runs, expected, terminated.size, (Date.now() - started) / 1000, { terminatedByOperator: terminated });
  recordReport(report, fleet);
  expect(report.problems).toEqual([]);
  expect(report.terminatedByOperator).toBe(TERMINATED);
  expect(report.runsCompleted).toBe(report.runsDriven - TERMINATED);
  expect(report.wedgedThreads).toBe(0);
  // The terminated run's record says so, as its client's run_finish did.
  for (const victim of victims) {
    expect(victim.termination).toBe('error');
    expect(victim.events.at(-1)?.data.termination.detail).toMatch(/terminated/);
  }
});
