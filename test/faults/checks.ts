// The checks after a fault scenario: what each client saw against what was committed, and whether
// every thread still works.
import { sleep } from '../../testkit/wait.js';
import { driveRun, reassembledText, type DrivenRun } from './client.js';
import type { Fleet } from './fleet.js';
import { emptyReport, noteProblem, type ScenarioReport } from './report.js';

/** The committed log and run records, read over HTTP from a live API. */
async function readThread(api: string, threadId: string) {
  const items: any[] = [];
  for (let after = 0; ; ) {
    const page = await getJson(`${api}/v1/threads/${threadId}/messages?after=${after}&limit=1000`);
    items.push(...page.items);
    if (page.nextCursor === null) break;
    after = page.nextCursor;
  }
  return items;
}

export async function getJson(url: string, attempts = 20): Promise<any> {
  for (let i = 1; ; i++) {
    try {
      const response = await fetch(url);
      if (response.status === 200) return await response.json();
      if (i >= attempts) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
    } catch (err) {
      if (i >= attempts) throw err;
    }
    await sleep(500);
  }
}

export interface CheckOptions {
  /** runs an operator terminated: each must end `error` with "terminated" in its detail, its input committed once */
  terminatedByOperator?: Set<string>;
  /** threads to probe for wedging besides those of `runs` */
  moreThreads?: string[];
}

/**
 * The checks: every run ended (client saw run_finish, record says done); every user message
 * committed exactly once; each run that completed has exactly one final assistant answer (one
 * without tool calls), equal to what the echo model says; each client's reassembled text equals
 * that committed answer; no gap and no duplicate in any client's stream. A run an operator
 * terminated ends `error` ("terminated") with at most its interrupted partial answer, which its
 * client saw whole. Then no thread is wedged: a fresh submit on each completes within 30 s and
 * leaves no run that is not done.
 */
export async function checkRuns(
  scenario: string,
  fleet: Fleet,
  runs: DrivenRun[],
  expected: Map<string, string>,
  faults: number,
  seconds: number,
  options: CheckOptions = {},
): Promise<ScenarioReport> {
  const report = emptyReport(scenario, runs.length, faults, seconds);
  const api = fleet.api();
  const threadIds = [...new Set([...runs.map((r) => r.threadId), ...(options.moreThreads ?? [])])];
  const logs = new Map<string, any[]>();
  for (const threadId of threadIds) logs.set(threadId, await readThread(api, threadId));
  for (const run of runs) {
    countStream(report, run);
    // A queued run's input is committed when the run starts: only an ended run's count is final.
    const record = run.runId ? await getJson(`${api}/v1/runs/${run.runId}`) : undefined;
    if (!run.finished || record?.status !== 'done') {
      report.runsNotEnded++;
      noteProblem(report, run, `not ended: client saw run_finish ${run.finished}, record status ${record?.status ?? 'none'}, ${run.events.length} events seen`);
      continue;
    }
    const log = logs.get(run.threadId)!;
    checkUserMessage(report, run, log);
    if (record.termination?.type !== run.termination) noteProblem(report, run, `client saw termination ${run.termination}, record says ${record.termination?.type}`);
    const answers = log.filter((m) => m.role === 'assistant' && m.runId === run.runId && !m.toolCalls?.length);
    if (options.terminatedByOperator?.has(run.runId!)) checkTerminatedRun(report, run, record, answers);
    else checkCompletedRun(report, run, record, answers, expected.get(run.content));
  }
  const wedged = await probeThreads(fleet, threadIds);
  report.wedgedThreads = wedged.length;
  for (const what of wedged) if (report.problems.length < 40) report.problems.push(what);
  return report;
}

/** What the client's connections went through: retries, refusals, resets, gaps and duplicates. */
function countStream(report: ScenarioReport, run: DrivenRun) {
  report.reconnects += run.reconnects;
  report.submitRetries += run.submitAttempts - 1;
  for (const answer of run.submitAnswers.filter((a) => a.status === 429 || a.status === 503)) {
    report.refusals++;
    report.slowestRefusalMs = Math.max(report.slowestRefusalMs, Math.round(answer.ms));
    const kind = `${answer.status} ${answer.code}`;
    report.refusalCodes[kind] = (report.refusalCodes[kind] ?? 0) + 1;
  }
  report.streamResets += run.events.filter((e) => e.type === 'stream_reset').length;
  report.streamGaps += run.gaps;
  report.duplicateEvents += run.duplicates;
  if (run.gaps) noteProblem(report, run, `${run.gaps} gap(s) in the event stream`);
  if (run.duplicates) noteProblem(report, run, `${run.duplicates} duplicate event(s)`);
}

/** The run's user message is in the committed log exactly once. */
function checkUserMessage(report: ScenarioReport, run: DrivenRun, log: any[]) {
  const userCopies = log.filter((m) => m.role === 'user' && m.content === run.content).length;
  if (userCopies === 0) {
    report.messagesLost++;
    noteProblem(report, run, 'its user message is not in the committed log');
  } else if (userCopies > 1) {
    report.messagesDoubled += userCopies - 1;
    noteProblem(report, run, `its user message is committed ${userCopies} times`);
  }
}

/** A run an operator terminated ends `error` ("terminated") with at most its interrupted partial answer, which its client saw whole. */
function checkTerminatedRun(report: ScenarioReport, run: DrivenRun, record: any, answers: any[]) {
  if (record.termination?.type !== 'error' || !/terminated/.test(record.termination.detail ?? '')) {
    noteProblem(report, run, `terminated by an operator, yet ended ${JSON.stringify(record.termination)}`);
    return;
  }
  report.terminatedByOperator++;
  const text = reassembledText(run);
  // What the step streamed before the terminate is kept once, marked interrupted; the client saw all of it.
  if (answers.length > 1) {
    report.messagesDoubled += answers.length - 1;
    noteProblem(report, run, `${answers.length} assistant answers committed`);
  } else if (answers[0] && answers[0].status !== 'interrupted') {
    noteProblem(report, run, `its partial answer is committed as ${answers[0].status}, not interrupted`);
  } else if (text !== (answers[0]?.content ?? '')) {
    report.textMismatches++;
    noteProblem(report, run, `client text differs from the committed partial answer:\n      client:    ${JSON.stringify(text.slice(0, 300))}\n      committed: ${JSON.stringify(answers[0]?.content.slice(0, 300))}`);
  }
}

/** Any other run ends `natural_end` with one complete answer, the echo reply, which its client saw whole. */
function checkCompletedRun(report: ScenarioReport, run: DrivenRun, record: any, answers: any[], want: string | undefined) {
  if (record.termination?.type !== 'natural_end') {
    noteProblem(report, run, `ended ${JSON.stringify(record.termination)}${record.error ? `: ${record.error}` : ''}`);
    return;
  }
  report.runsCompleted++;
  if (answers.length !== 1) {
    if (answers.length === 0) report.messagesLost++;
    else report.messagesDoubled += answers.length - 1;
    noteProblem(report, run, `${answers.length} assistant answers committed`);
    return;
  }
  const answer = answers[0];
  const text = reassembledText(run);
  if (answer.content !== want || answer.status !== 'complete') noteProblem(report, run, `committed answer (${answer.status}) "${answer.content.slice(0, 80)}…" is not the echo reply "${want?.slice(0, 80)}…"`);
  if (text !== answer.content) {
    report.textMismatches++;
    noteProblem(report, run, `client text differs from the committed answer:\n      client:    ${JSON.stringify(text.slice(0, 300))}\n      committed: ${JSON.stringify(answer.content.slice(0, 300))}`);
  }
}

/** How long a fresh run on a thread that is not wedged may take, after the scenario. */
const PROBE_MS = 30_000;

/**
 * Whether each thread still works after the scenario: a fresh run, queued behind whatever the
 * thread still has, completes `natural_end` within 30 s, and then no run of the thread is left
 * not done. Returns one line per wedged thread.
 */
async function probeThreads(fleet: Fleet, threadIds: string[]): Promise<string[]> {
  const results = await Promise.all(
    threadIds.map(async (threadId) => {
      const nonce = `probe${Math.random().toString(36).slice(2, 10)}`;
      const probe = await driveRun(fleet.api, threadId, `/long 3 ${nonce}`, 'queue', Date.now() + PROBE_MS);
      if (!probe.finished || probe.termination !== 'natural_end') {
        return `${threadId} is wedged: a fresh run ${probe.runId ?? '(never accepted)'} did not complete within ${PROBE_MS / 1000} s (client saw ${probe.finished ? probe.termination : 'no run_finish'}; ${probe.errors.slice(-3).join('; ')})`;
      }
      const { items } = await getJson(`${fleet.api()}/v1/threads/${threadId}/runs`);
      const open = items.filter((r: any) => r.status !== 'done');
      if (open.length) return `${threadId} is wedged: runs ${open.map((r: any) => `${r.runId} (${r.status})`).join(', ')} are not done after a later run completed`;
      return undefined;
    }),
  );
  return results.filter((line): line is string => line !== undefined);
}

