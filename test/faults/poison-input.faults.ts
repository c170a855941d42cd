// Scenario 10: input Postgres cannot store (a NUL character, an unpaired surrogate) sent among normal
// traffic on the same threads, through every route that takes text: submits (queue, steer, SSE),
// message ids, mailbox text, decision reasons. Each is refused with 400 invalid_request and writes
// nothing; the normal runs beside them, one of them waiting for an approval, all complete.
import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { replyTokens } from '../../src/agent/echo.js';
import { driveRun, errorCode, type DrivenRun } from './client.js';
import { checkRuns, echoPrompt, getJson, recordReport, sleep, useFleet } from './harness.js';
import { postRetrying } from '../../testkit/http.js';

const THREADS = 8;
const stage = useFleet();

interface PoisonAnswer {
  what: string;
  status: number;
  code?: string;
}

it('poison inputs among normal traffic: each gets 400 invalid_request and writes nothing; the normal runs all complete, no thread wedged', async () => {
  const { fleet } = stage;
  const started = Date.now();
  const deadline = Date.now() + 120_000;
  const expected = new Map<string, string>();
  const poisons: PoisonAnswer[] = [];
  const approvalRuns: DrivenRun[] = [];

  const send = async (what: string, path: string, body: unknown, headers: Record<string, string> = {}) => {
    // JSON.stringify writes "\u0000" and a lone "\ud800" as escapes: the server's JSON parser turns them back into the poison.
    // A refusal is immediate; an answer still missing after 20 s (status 0) means the poison got in.
    try {
      const init = { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal: AbortSignal.timeout(20_000) };
      const response = await fetch(`${fleet.api()}${path}`, init);
      poisons.push({ what, status: response.status, code: errorCode(await response.text()) });
    } catch {
      poisons.push({ what, status: 0 });
    }
  };

  const runs = await Promise.all(
    Array.from({ length: THREADS }, async (_, t) => {
      const threadId = `faults-${process.pid}-${Date.now().toString(36)}-poison${t}`;
      const nonce = () => Math.random().toString(36).slice(2, 10);
      const normal = (tokens: number, tag: string) => {
        const p = echoPrompt(20, tokens, `${tag}${nonce()}`);
        expected.set(p.content, p.expected);
        return driveRun(fleet.api, threadId, p.content, 'queue', deadline);
      };
      const submitPath = `/v1/threads/${threadId}/runs`;
      const mine: Promise<DrivenRun>[] = [];
      const step = () => sleep(100);

      mine.push(normal(40, 'a'));
      await step();
      await send('submit content with NUL (SSE, Idempotency-Key)', submitPath, { messages: [{ content: `poison a\u0000b` }], mode: 'queue' }, { accept: 'text/event-stream', 'idempotency-key': randomUUID() });
      await step();
      const email = `/tool send_email {"to":"a@example.com","subject":"s${nonce()}","body":"b"}`;
      mine.push(driveRun(fleet.api, threadId, email, 'queue', deadline, (run) => approvalRuns.push(run)));
      await step();
      await send('submit content with a lone surrogate', submitPath, { messages: [{ content: 'poison x\ud800y' }], mode: 'queue' });
      await step();
      await send('steer with NUL', submitPath, { messages: [{ content: 'poison steer\u0000' }], mode: 'steer' });
      await step();
      await send('mailbox text with NUL', `/v1/threads/${threadId}/mailbox`, { messageId: `m-${nonce()}`, text: 'poison mail\u0000' });
      await step();
      await send('message id with NUL', submitPath, { messages: [{ id: 'poison\u0000id', content: 'poison id' }], mode: 'queue' });
      await step();
      mine.push(normal(30, 'b'));

      // The approval run waits: a decision with a NUL reason is refused, then a clean approve lets it finish.
      const approval = approvalRuns.find((r) => r.threadId === threadId)!;
      while (!approval.events.some((e) => e.type === 'tool_approval_requested') && !approval.finished && Date.now() < deadline) await sleep(50);
      const ticket = approval.events.find((e) => e.type === 'tool_approval_requested')?.data;
      if (ticket) {
        const decisions = `/v1/runs/${approval.runId}/decisions`;
        await send('decision reason with NUL', decisions, { toolCallId: ticket.toolCallId, action: 'deny', reason: 'poison x\u0000' });
        await send('decision reason with a lone surrogate', decisions, { toolCallId: ticket.toolCallId, action: 'deny', reason: 'poison \udc00' });
        const approve = await postRetrying(`${fleet.api()}${decisions}`, { toolCallId: ticket.toolCallId, action: 'approve' });
        expect(approve.status).toBe(202);
      }
      return Promise.all(mine);
    }),
  );

  // The echo model answers an approved call with the tool's output.
  for (const run of approvalRuns) {
    const { items } = await getJson(`${fleet.api()}/v1/threads/${run.threadId}/messages?limit=1000`);
    const result = items.find((m: any) => m.role === 'tool' && m.runId === run.runId);
    expect(result?.metadata?.outcome ?? 'ok').toBe('ok');
    if (result) expected.set(run.content, replyTokens(result.content).join(''));
  }

  // Nothing of the poison was written: no message, no run beyond the three normal ones per thread
  // (read now: the wedge probe of checkRuns adds a run to each thread).
  const written: string[] = [];
  for (const threadId of new Set(runs.flat().map((r) => r.threadId))) {
    const { items: messages } = await getJson(`${fleet.api()}/v1/threads/${threadId}/messages?limit=1000`);
    for (const m of messages.filter((m: any) => String(m.content).includes('poison'))) written.push(`${threadId}: message ${JSON.stringify(m.content)}`);
    const { items: records } = await getJson(`${fleet.api()}/v1/threads/${threadId}/runs`);
    if (records.length !== 3) written.push(`${threadId}: ${records.length} runs, not the 3 normal ones`);
  }

  const report = await checkRuns('10 poison inputs', fleet, runs.flat(), expected, poisons.length, (Date.now() - started) / 1000);
  recordReport(report, fleet);
  expect(written).toEqual([]);
  expect(poisons.filter((p) => p.status !== 400 || p.code !== 'invalid_request')).toEqual([]);
  expect(poisons).toHaveLength(THREADS * 7);
  expect(report.problems).toEqual([]);
  expect(report.runsCompleted).toBe(report.runsDriven);
  expect(report.wedgedThreads).toBe(0);
});
