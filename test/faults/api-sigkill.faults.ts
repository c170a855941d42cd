// Scenario 2: the API instance the clients use is SIGKILLed while they stream and submit; they
// retry and resume (Last-Event-ID) against the second instance, and a fresh one replaces the dead.
import { expect, it } from 'vitest';
import { checkRuns, log, randomBetween, recordReport, sleep, startCrowd, useFleet } from './harness.js';

const KILLS = 3;
const stage = useFleet({ apis: 2 });

it('API SIGKILL while clients stream and submit: clients resume on another instance with no gap, nothing lost or doubled', async () => {
  const { fleet } = stage;
  const started = Date.now();
  // Submits spread over 10 s, so some are in flight when an instance dies, and runs still stream at the
  // third kill (each kill waits for a streaming run, and a new instance takes seconds to start).
  const crowd = startCrowd(fleet, { threads: 12, runsPerThread: 2, slowMs: 30, minTokens: 60, maxTokens: 150, deadlineMs: 150_000, staggerMs: 10_000 });
  let kills = 0;
  for (; kills < KILLS; kills++) {
    await crowd.waitUntilStreaming(60_000);
    await sleep(randomBetween(0, 1000));
    const victim = fleet.apis[0]!;
    log(`SIGKILL api ${victim.pid} ${victim.url} (${crowd.status()})`);
    await victim.kill();
    await fleet.startApi();
  }
  const runs = await crowd.runs;
  const report = await checkRuns('2 API SIGKILL', fleet, runs, crowd.expected, kills, (Date.now() - started) / 1000);
  recordReport(report, fleet);
  expect(report.problems).toEqual([]);
  expect(report.runsCompleted).toBe(report.runsDriven);
  expect(report.reconnects).toBeGreaterThan(0);
});
