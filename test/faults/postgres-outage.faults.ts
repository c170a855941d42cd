// Scenario 6: Postgres stops while runs stream and stays down 30 s, longer than any attempt count
// would carry a step through; new submits keep arriving meanwhile. Store activities and the model
// step ride the outage out by time, and every run ends natural_end once it is back on the same data.
import { expect, it } from 'vitest';
import { checkRuns, log, randomBetween, recordReport, sleep, startCrowd, useFleet, type Crowd } from './harness.js';

const DOWN_MS = 30_000;
const stage = useFleet();

it('Postgres down 30 s mid-run: every run ends natural_end once, submits made meanwhile are retried with their keys, nothing lost or doubled', async () => {
  const { fleet, services } = stage;
  const started = Date.now();
  const crowd = startCrowd(fleet, { threads: 10, runsPerThread: 2, slowMs: 40, minTokens: 60, maxTokens: 120, deadlineMs: 170_000 });
  await crowd.waitUntilStreaming(60_000);
  await sleep(randomBetween(500, 2000));
  log(`stopping Postgres for ${DOWN_MS / 1000} s (${crowd.status()})`);
  let late: Crowd | undefined;
  const outage = await services.restartPostgres(DOWN_MS, () => {
    // Clients that submit while the store is down: their submits wait or get 503, and are retried with the same key.
    late = startCrowd(fleet, { threads: 6, runsPerThread: 2, slowMs: 30, minTokens: 20, maxTokens: 60, deadlineMs: 160_000, staggerMs: DOWN_MS - 5000, name: 'late' });
  });
  log(`Postgres is back after ${((outage.upAt - outage.stoppedAt) / 1000).toFixed(1)} s (${crowd.status()}; late: ${late!.status()})`);
  const runs = [...(await crowd.runs), ...(await late!.runs)];
  const expected = new Map([...crowd.expected, ...late!.expected]);
  const report = await checkRuns('6 Postgres down 30 s', fleet, runs, expected, 1, (Date.now() - started) / 1000);
  recordReport(report, fleet);
  expect(report.problems).toEqual([]);
  expect(report.runsCompleted).toBe(report.runsDriven);
  expect(report.wedgedThreads).toBe(0);
  // The outage bit: runs were streaming when it began, and clients submitted while it lasted.
  const submittedDuringOutage = late!.driven.filter((r) => r.submitAnswers[0]!.startedAt < outage.restartingAt);
  expect(submittedDuringOutage.length).toBeGreaterThan(0);
  expect(fleet.apis).toHaveLength(1);
  expect(fleet.workers).toHaveLength(1);
});
