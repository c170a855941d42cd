// Where a run's time goes: the median first-token run on a new thread, its milestones read from the thread's and
// the run's workflow histories (Temporal's own timestamps), Postgres and the client, on one clock.
import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { tenantRunWorkflowId, threadWorkflowId } from '../../src/contract/mailbox.js';
import { settings } from '../settings.js';
import { newThreadId, threadRuns, type Stack } from '../stack.js';
import { percentile, round } from '../stats.js';
import { submitTimed, userMessage, type TimedRun } from '../timed-run.js';

export interface Hop {
  /** ms since the client sent the submit */
  at_ms: number;
  /** ms since the previous milestone */
  gap_ms: number;
  where: 'client' | 'thread' | 'run' | 'postgres';
  what: string;
}

const EventType = proto.temporal.api.enums.v1.EventType;

export async function measureTimeline(stack: Stack): Promise<{ hop_timeline: Hop[]; timeline_first_token_ms: number }> {
  const runs: (TimedRun & { threadId: string })[] = [];
  for (let i = 0; i < settings.timelineRuns; i++) {
    const threadId = newThreadId('timeline');
    const run = await submitTimed(threadRuns(stack, threadId), userMessage(`timeline run ${i}`));
    await run.done;
    runs.push({ ...run, threadId });
  }
  const firstToken = (r: TimedRun) => r.firstTokenAt! - r.submittedAt;
  const median = percentile(runs.map(firstToken), 50);
  const run = runs.find((r) => firstToken(r) === median)!;

  const connection = await Connection.connect({ address: stack.temporalAddress });
  try {
    const client = new Client({ connection });
    const thread = await historyMilestones(client, threadWorkflowId('default', run.threadId), 'thread');
    const runHops = await historyMilestones(client, tenantRunWorkflowId('default', run.runId!), 'run');
    const stored = await storeMilestones(stack, run.runId!);
    const client_ = [
      { at: run.submittedAt, where: 'client' as const, what: 'POST sent' },
      { at: run.headersAt, where: 'client' as const, what: 'response headers' },
      { at: run.firstTokenAt!, where: 'client' as const, what: 'first token' },
      { at: run.finishAt!, where: 'client' as const, what: 'run_finish' },
    ];
    const all = [...client_, ...thread, ...runHops, ...stored].sort((a, b) => a.at - b.at);
    const hops = all.map((m, i) => ({
      at_ms: round(m.at - run.submittedAt, 1),
      gap_ms: round(i === 0 ? 0 : m.at - all[i - 1]!.at, 1),
      where: m.where,
      what: m.what,
    }));
    return { hop_timeline: hops, timeline_first_token_ms: round(median) };
  } finally {
    await connection.close();
  }
}

interface Milestone {
  at: number;
  where: Hop['where'];
  what: string;
}

/** Every event of the workflow's history, named by type (and the activity, child or marker it concerns). */
async function historyMilestones(client: Client, workflowId: string, where: 'thread' | 'run'): Promise<Milestone[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const activityNames = new Map<string, string>();
  return (history.events ?? []).map((event) => {
    const type = EventType[event.eventType!]!.replace(/^EVENT_TYPE_/, '').toLowerCase();
    const scheduled = event.activityTaskScheduledEventAttributes;
    if (scheduled) activityNames.set(String(event.eventId), scheduled.activityType?.name ?? '?');
    const activityOf = event.activityTaskStartedEventAttributes?.scheduledEventId ?? event.activityTaskCompletedEventAttributes?.scheduledEventId;
    const detail =
      scheduled?.activityType?.name ??
      (activityOf !== undefined && activityOf !== null ? activityNames.get(String(activityOf)) : undefined) ??
      event.markerRecordedEventAttributes?.markerName ??
      event.startChildWorkflowExecutionInitiatedEventAttributes?.workflowType?.name ??
      undefined;
    const seconds = Number(event.eventTime?.seconds ?? 0);
    const at = seconds * 1000 + (event.eventTime?.nanos ?? 0) / 1e6;
    return { at, where, what: detail ? `${type} (${detail})` : type };
  });
}

/** When Postgres committed the run's first events (their `ts`). */
async function storeMilestones(stack: Stack, runId: string): Promise<Milestone[]> {
  const { rows } = await stack.db.query<{ type: string; ts: Date }>(
    `SELECT DISTINCT ON (type) type, created_at AS ts FROM run_events WHERE run_id = $1 AND type IN ('run_start', 'step_start', 'text_delta', 'run_finish') ORDER BY type, seq`,
    [runId],
  );
  return rows.map((r) => ({ at: r.ts.getTime(), where: 'postgres' as const, what: `first ${r.type} committed` }));
}
