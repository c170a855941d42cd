// Scenario 1: the worker is SIGKILLed at random moments while runs stream; a new one starts each time.
import { expect, it } from 'vitest';
import { checkRuns, log, randomBetween, recordReport, sleep, startCrowd, useFleet } from './harness.js';

const KILLS = 5;
const stage = useFleet();

it('worker SIGKILL at random moments across 36 streaming runs: every run ends once, nothing lost, doubled or skipped', async () => {
  const { fleet } = stage;
  const started = Date.now();
  const crowd = startCrowd(fleet, { threads: 18, runsPerThread: 2, slowMs: 30, minTokens: 20, maxTokens: 80, deadlineMs: 200_000 });
  let kills = 0;
  for (; kills < KILLS; kills++) {
    await crowd.waitUntilStreaming(90_000);
    await sleep(randomBetween(0, 1500));
    const [victim] = fleet.workers;
    log(`SIGKILL worker ${victim!.pid} (${crowd.status()})`);
    await victim!.kill();
    await fleet.startWorker();
  }
  const runs = await crowd.runs;
  const report = await checkRuns('1 worker SIGKILL', fleet, runs, crowd.expected, kills, (Date.now() - started) / 1000);
  recordReport(report, fleet);
  expect(report.problems).toEqual([]);
  expect(report.runsDriven).toBeGreaterThanOrEqual(30);
  expect(report.runsCompleted).toBe(report.runsDriven);
});
