// Scenario 7: the Temporal dev server stops while runs stream and stays down 30 s. Submits made
// meanwhile are answered at once (503 with Retry-After, not a hang), clients retry them with their
// Idempotency-Key until one is accepted, and every run completes exactly once.
import { expect, it } from 'vitest';
import { checkRuns, log, randomBetween, recordReport, sleep, startCrowd, useFleet, type Crowd } from './harness.js';

const DOWN_MS = 30_000;
/** The contract: with Temporal unreachable a submit is answered within 5 s. */
const FAST_MS = 5000;
const stage = useFleet();

it('Temporal down 30 s mid-run: submits meanwhile get fast 503s with Retry-After, retried with their keys; every run completes once', async () => {
  const { fleet, services } = stage;
  const started = Date.now();
  const crowd = startCrowd(fleet, { threads: 10, runsPerThread: 2, slowMs: 40, minTokens: 60, maxTokens: 120, deadlineMs: 170_000 });
  await crowd.waitUntilStreaming(60_000);
  await sleep(randomBetween(500, 2000));
  log(`stopping Temporal for ${DOWN_MS / 1000} s (${crowd.status()})`);
  let late: Crowd | undefined;
  const outage = await services.restartTemporal(DOWN_MS, () => {
    late = startCrowd(fleet, { threads: 6, runsPerThread: 2, slowMs: 30, minTokens: 20, maxTokens: 60, deadlineMs: 160_000, staggerMs: DOWN_MS - 5000, name: 'late' });
  });
  log(`Temporal is back after ${((outage.upAt - outage.stoppedAt) / 1000).toFixed(1)} s (${crowd.status()}; late: ${late!.status()})`);
  const runs = [...(await crowd.runs), ...(await late!.runs)];
  const expected = new Map([...crowd.expected, ...late!.expected]);
  const report = await checkRuns('7 Temporal down 30 s', fleet, runs, expected, 1, (Date.now() - started) / 1000);
  recordReport(report, fleet);

  // Submits begun while Temporal was down: each got an answer; every refusal among them came within
  // 5 s with a Retry-After; those answered before it was being started again were all such refusals.
  // (One begun as it came back may be accepted instead, and its stream opens once its run is queued.)
  const attempts = runs.flatMap((r) => r.submitAnswers.map((a) => ({ ...a, threadId: r.threadId })));
  const duringOutage = attempts.filter((a) => a.startedAt >= outage.stoppedAt && a.startedAt < outage.upAt);
  const refused = duringOutage.filter((a) => a.status === 503 || a.status === 429);
  const answeredWhileDown = duringOutage.filter((a) => a.startedAt + a.ms < outage.restartingAt);
  const at = (t: number) => new Date(t).toISOString().slice(11, 23);
  log(`outage ${at(outage.stoppedAt)}–${at(outage.restartingAt)} (up ${at(outage.upAt)}): ${duringOutage.length} submit attempts, ${refused.length} refused, slowest refusal ${Math.round(Math.max(0, ...refused.map((a) => a.ms)))} ms; ${answeredWhileDown.length} answered while down`);
  const slowest = attempts.filter((a) => a.status === 503 || a.status === 429).sort((a, b) => b.ms - a.ms)[0];
  if (slowest) log(`slowest refusal of the scenario: ${Math.round(slowest.ms)} ms, begun ${((slowest.startedAt - outage.stoppedAt) / 1000).toFixed(1)} s after the stop`);
  expect(answeredWhileDown.length).toBeGreaterThan(10);
  expect(duringOutage.filter((a) => a.status === 0)).toEqual([]);
  expect(refused.filter((a) => a.ms >= FAST_MS || a.code !== 'unavailable' || !a.retryAfter)).toEqual([]);
  expect(answeredWhileDown.filter((a) => a.status !== 503)).toEqual([]);

  expect(report.problems).toEqual([]);
  expect(report.runsCompleted).toBe(report.runsDriven);
  expect(report.wedgedThreads).toBe(0);
  expect(fleet.apis).toHaveLength(1);
  expect(fleet.workers).toHaveLength(1);
});
