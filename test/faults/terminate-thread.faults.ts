// Scenario 9: an operator terminates a `thread:` workflow while it has an active run and three queued
// runs; then its clients submit again. The next submit rebuilds the thread from Postgres: the active
// run (abandoned, still running) finishes, the queued runs and the new ones complete, nothing is lost.
import { expect, it } from 'vitest';
import { driveRun, type DrivenRun } from './client.js';
import { checkRuns, echoPrompt, getJson, log, randomBetween, recordReport, sleep, useFleet } from './harness.js';

const THREADS = 6;
const stage = useFleet();

it('operator terminates a thread: workflow with an active run and 3 queued: the next submits rebuild it from Postgres, every run completes once', async () => {
  const { fleet, services } = stage;
  const started = Date.now();
  const deadline = Date.now() + 150_000;
  const operator = await services.operator();
  const expected = new Map<string, string>();
  const prompt = (slowMs: number, tokens: number, tag: string) => {
    const p = echoPrompt(slowMs, tokens, `${tag}x${Math.random().toString(36).slice(2, 10)}`);
    expected.set(p.content, p.expected);
    return p.content;
  };

  const queueAtTerminate = new Map<string, (string | undefined)[]>();
  const runs = await Promise.all(
    Array.from({ length: THREADS }, async (_, t) => {
      const threadId = `faults-${process.pid}-${Date.now().toString(36)}-tt${t}`;
      // An active run of about 7 s, and three short runs queued behind it, all accepted before the terminate.
      const before: Promise<DrivenRun>[] = [];
      const tracked: DrivenRun[] = [];
      for (let k = 0; k < 4; k++) {
        const content = k === 0 ? prompt(50, 150, 'active') : prompt(20, Math.round(randomBetween(20, 40)), `queued${k}`);
        before.push(driveRun(fleet.api, threadId, content, 'queue', deadline, (run) => tracked.push(run)));
        await sleep(150);
      }
      const [active] = tracked;
      // All four answered (a submit answered 429 is retried later: until then it is not in `tracked`).
      while (!(active!.events.some((e) => e.type === 'text_delta') && tracked.length === 4 && tracked.every((r) => r.runId)) && Date.now() < deadline) await sleep(50);
      await sleep(randomBetween(200, 1500));
      // The queue as the thread holds it just before the terminate: the order the rebuilt thread must keep.
      const atTerminate = await getJson(`${fleet.api()}/v1/threads/${threadId}`);
      queueAtTerminate.set(threadId, [atTerminate.activeRunId, ...atTerminate.queuedRunIds].map((runId: string) => tracked.find((r) => r.runId === runId)?.content));
      const workflowId = await operator.terminateThread(threadId, 'operator pressed terminate');
      log(`terminated ${workflowId} (active ${active!.runId}: ${active!.events.length} events seen; 3 queued)`);
      // Clients come back after a while (some while the active run still streams, some after it ended).
      await sleep(randomBetween(500, 5000));
      const after = [0, 1].map(async (k) => {
        await sleep(k * 150);
        return driveRun(fleet.api, threadId, prompt(20, Math.round(randomBetween(20, 40)), `after${k}`), 'queue', deadline);
      });
      return Promise.all([...before, ...after]);
    }),
  );
  await operator.close();

  const report = await checkRuns('9 operator terminates a thread', fleet, runs.flat(), expected, THREADS, (Date.now() - started) / 1000);
  recordReport(report, fleet);
  expect(report.problems).toEqual([]);
  expect(report.runsDriven).toBe(THREADS * 6);
  expect(report.runsCompleted).toBe(report.runsDriven);
  expect(report.wedgedThreads).toBe(0);
  // The rebuilt queue kept its order: the active run and the three queued at the terminate come first, in queue order.
  for (const [threadId, queue] of queueAtTerminate) {
    const { items } = await getJson(`${fleet.api()}/v1/threads/${threadId}/messages?limit=1000`);
    const userTexts = items.filter((m: any) => m.role === 'user').map((m: any) => m.content);
    expect(queue).toHaveLength(4);
    expect(userTexts.slice(0, 4)).toEqual(queue);
  }
});
