// Reading a thread's workflow histories out of Temporal, for the recorder: every execution of the thread and
// of its runs, whether the thread has settled, and the runEnded signals it got.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, isGrpcServiceError, WorkflowNotFoundError } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { tenantRunWorkflowId } from '../../src/contract/mailbox.js';
import { eventually, sleep } from '../../testkit/wait.js';
import type { Api, RunRecord } from './api.js';
import { historyToJSON } from './history-json.js';

type History = temporal.api.history.v1.IHistory;

const TENANT = 'default';

/** The thread's executions (first to latest, across continue-as-new), then each started run's workflow. */
export async function recordThread(temporal: Client, api: Api, threadId: string, dir: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const write = (name: string, history: History) => {
    writeFileSync(join(dir, name), historyToJSON(history) + '\n');
    files.push(name);
  };
  const executions = await threadHistories(temporal, threadId);
  executions.forEach((history, i) => write(executions.length > 1 ? `thread-${i + 1}.json` : 'thread.json', history));
  const runs: RunRecord[] = (await api.request('GET', `/v1/threads/${threadId}/runs`)).body.items;
  runs.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  for (const [i, run] of runs.entries()) {
    let history: History;
    try {
      history = await temporal.workflow.getHandle(tenantRunWorkflowId(TENANT, run.runId)).fetchHistory();
    } catch (err) {
      if (isNotFound(err)) continue; // superseded or cancelled before it started
      throw err;
    }
    write(`run-${i + 1}-${run.termination?.type ?? run.status}.json`, history);
  }
  return files;
}

export async function threadHistories(temporal: Client, threadId: string): Promise<History[]> {
  const workflowId = `thread:${TENANT}:${threadId}`;
  const latest = await temporal.workflow.getHandle(workflowId).fetchHistory();
  let runId: string | null | undefined = latest.events?.[0]?.workflowExecutionStartedEventAttributes?.firstExecutionRunId;
  const histories: History[] = [];
  while (runId) {
    const history = await temporal.workflow.getHandle(workflowId, runId).fetchHistory();
    histories.push(history);
    runId = history.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
  }
  return histories;
}

/**
 * Every run done and its workflow closed, and the thread's mailbox empty, twice in a row: late steering
 * becomes a new run only after the run that carried it has ended.
 */
export async function waitUntilSettled(temporal: Client, api: Api, threadId: string): Promise<void> {
  const settled = async () => {
    const runs = (await api.request('GET', `/v1/threads/${threadId}/runs`)).body.items as RunRecord[];
    if (runs.some((r) => r.status !== 'done')) return false;
    for (const run of runs) {
      const open = await temporal.workflow.getHandle(tenantRunWorkflowId(TENANT, run.runId)).describe().then(
        (d) => d.status.name === 'RUNNING',
        (err) => (isNotFound(err) ? false : Promise.reject(err)),
      );
      if (open) return false;
    }
    const mailbox = await temporal.workflow.getHandle(`thread:${TENANT}:${threadId}`).query<{ active: unknown; queue: unknown[] }>('mailbox');
    return mailbox.active === null && mailbox.queue.length === 0;
  };
  await eventually(async () => ((await settled()) && (await sleep(300), await settled()) ? true : undefined), 30_000, `thread ${threadId} to settle`);
}

/** fetchHistory rejects with the bare gRPC error, describe with WorkflowNotFoundError. */
function isNotFound(err: unknown): boolean {
  return err instanceof WorkflowNotFoundError || (isGrpcServiceError(err) && err.code === 5); // 5: NOT_FOUND
}

export function runEndedSignals(histories: History[]): { runId: string; unappliedSteering: number }[] {
  return histories.flatMap((h) =>
    (h.events ?? []).flatMap((e) => {
      const signal = e.workflowExecutionSignaledEventAttributes;
      if (signal?.signalName !== 'runEnded') return [];
      const ended = JSON.parse(Buffer.from(signal.input!.payloads![0]!.data!).toString('utf8'));
      return [{ runId: ended.runId as string, unappliedSteering: ended.unappliedSteering.length as number }];
    }),
  );
}
