// Scenario 3: Postgres stops mid-run, stays down 3 s and starts again on the same data.
import { expect, it } from 'vitest';
import { checkRuns, log, randomBetween, recordReport, sleep, startCrowd, useFleet } from './harness.js';

const stage = useFleet();

it('Postgres restart mid-run (down 3 s): every run ends once, nothing lost, doubled or skipped', async () => {
  const { fleet, services } = stage;
  const started = Date.now();
  const crowd = startCrowd(fleet, { threads: 12, runsPerThread: 2, slowMs: 30, minTokens: 40, maxTokens: 100, deadlineMs: 150_000 });
  await crowd.waitUntilStreaming(60_000);
  await sleep(randomBetween(500, 2500));
  log(`stopping Postgres (${crowd.status()})`);
  await services.restartPostgres(3000);
  log('Postgres is back');
  const runs = await crowd.runs;
  const report = await checkRuns('3 Postgres restart', fleet, runs, crowd.expected, 1, (Date.now() - started) / 1000);
  recordReport(report, fleet);
  expect(report.problems).toEqual([]);
  expect(report.runsCompleted).toBe(report.runsDriven);
  expect(fleet.apis).toHaveLength(1);
  expect(fleet.workers).toHaveLength(1);
});
