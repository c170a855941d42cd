// Scenario 4: the Temporal dev server stops mid-run, stays down 3 s and starts again on the same history file.
import { expect, it } from 'vitest';
import { checkRuns, log, randomBetween, recordReport, sleep, startCrowd, useFleet } from './harness.js';

const stage = useFleet();

it('Temporal dev server restart mid-run (persistent history, down 3 s): every run ends once, nothing lost, doubled or skipped', async () => {
  const { fleet, services } = stage;
  const started = Date.now();
  // Submits spread over 5 s, so some arrive while Temporal is down and must be retried.
  const crowd = startCrowd(fleet, { threads: 12, runsPerThread: 2, slowMs: 30, minTokens: 40, maxTokens: 100, deadlineMs: 150_000, staggerMs: 5000 });
  await crowd.waitUntilStreaming(60_000);
  await sleep(randomBetween(1000, 3000));
  log(`stopping Temporal (${crowd.status()})`);
  await services.restartTemporal(3000);
  log('Temporal is back');
  const runs = await crowd.runs;
  const report = await checkRuns('4 Temporal restart', fleet, runs, crowd.expected, 1, (Date.now() - started) / 1000);
  recordReport(report, fleet);
  expect(report.problems).toEqual([]);
  expect(report.runsCompleted).toBe(report.runsDriven);
  expect(fleet.apis).toHaveLength(1);
  expect(fleet.workers).toHaveLength(1);
});
