// With tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT), thread and run executions run without Temporal's
// OpenTelemetry workflow interceptors (the otel-tracing-when-asked patch): nothing carries a trace
// context to their activities or children. Applied regardless, each cached execution kept an
// AsyncLocalStorage the worker thread walks for every promise (memory and throughput, for spans that went nowhere).
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { tenantRunWorkflowId, threadWorkflowId } from '../../src/contract/mailbox.js';
import { eventually, startStack, uniqueId, type Stack } from '../stack.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

const patchIds = (events: HistoryEvent[]) =>
  events
    .filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_patch')
    .map((e) => JSON.parse(Buffer.from(e.markerRecordedEventAttributes!.details!['patch-data']!.payloads![0]!.data!).toString()).id as string);

const traceHeaders = (events: HistoryEvent[]) =>
  events.flatMap((e) => [
    ...Object.keys(e.activityTaskScheduledEventAttributes?.header?.fields ?? {}),
    ...Object.keys(e.startChildWorkflowExecutionInitiatedEventAttributes?.header?.fields ?? {}),
  ]);

it('a new thread and its run, submitted with tracing off, are not traced: no trace header on their activities or child', async () => {
  const threadId = uniqueId('untraced');
  const res = await stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ role: 'user', content: 'hello' }] });
  expect(res.status).toBe(202);
  const runId: string = res.body.runId;
  await eventually(async () => ((await stack.store.getRun(runId))?.status === 'done' ? true : undefined), 30_000, 'the run to end');
  const run = (await stack.temporal.workflow.getHandle(tenantRunWorkflowId('default', runId)).fetchHistory()).events ?? [];
  const thread = (await stack.temporal.workflow.getHandle(threadWorkflowId('default', threadId)).fetchHistory()).events ?? [];
  for (const events of [run, thread]) {
    // New executions: both tracing patches recorded, and the decision they made is "not traced".
    expect(patchIds(events)).toEqual(expect.arrayContaining(['otel-tracing', 'otel-tracing-when-asked']));
    expect(traceHeaders(events)).not.toContain('_tracer-data');
  }
  expect(run.some((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'modelStep')).toBe(true);
  expect(thread.some((e) => e.startChildWorkflowExecutionInitiatedEventAttributes)).toBe(true);
});
