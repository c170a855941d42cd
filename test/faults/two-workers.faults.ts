// Scenario 5: two workers share the task queue and one is SIGKILLed; the other carries on alone.
import { expect, it } from 'vitest';
import { checkRuns, log, randomBetween, recordReport, sleep, startCrowd, useFleet } from './harness.js';

const stage = useFleet({ workers: 2 });

it('two workers, one SIGKILLed mid-stream (twice, a replacement joining between): the survivor finishes every run once', async () => {
  const { fleet } = stage;
  const started = Date.now();
  const crowd = startCrowd(fleet, { threads: 12, runsPerThread: 2, slowMs: 30, minTokens: 40, maxTokens: 100, deadlineMs: 150_000 });
  let kills = 0;
  for (; kills < 2; kills++) {
    expect(fleet.workers).toHaveLength(2);
    await crowd.waitUntilStreaming(60_000);
    await sleep(randomBetween(0, 1000));
    const victim = fleet.workers[Math.floor(Math.random() * fleet.workers.length)]!;
    log(`SIGKILL worker ${victim.pid} of ${fleet.workers.length} (${crowd.status()})`);
    await victim.kill();
    if (kills > 0) break;
    // The survivor runs alone for a while, then a replacement joins before the next kill.
    await sleep(5000);
    await fleet.startWorker();
    log(`replacement worker joined (${crowd.status()})`);
  }
  kills++;
  const runs = await crowd.runs;
  const report = await checkRuns('5 two workers, kill one', fleet, runs, crowd.expected, kills, (Date.now() - started) / 1000);
  recordReport(report, fleet);
  expect(report.problems).toEqual([]);
  expect(report.runsCompleted).toBe(report.runsDriven);
});
