// Activities that close what was stopped: an interrupted step, a run whose workflow ended without reporting.
import { ApplicationFailure } from '@temporalio/common';
import type { Termination } from '../src/contract/run-events.js';
import type { NewMessage, Store, ThreadRef, ToolCall } from '../src/store/store.js';
import { afterStepFence, assistantMessageId, toolMessageId, type InputMessage } from '../src/contract/mailbox.js';
import { storeCall } from './retry.js';

export function closingActivities(store: Store) {
  return {
    /**
     * After a cancel (or an error): commits what the interrupted step streamed (its text, marked
     * `interrupted`) and a `cancelled` result for each tool call left without one, so the log stays
     * valid for the next model call. The higher fence shuts out the step's activity.
     */
    async commitInterruptedStep(args: { tenant: string; threadId: string; runId: string; step: number }) {
      await closeStep(store, { tenant: args.tenant, threadId: args.threadId }, args.runId, args.step);
    },

    /**
     * How a run ends (since the start-in-first-step patch), in one activity: a run stopped or failed
     * before its first step started it commits its input (`start`); a stopped or failed one closes its
     * last step (`closeStep`, as commitInterruptedStep); then the record is finished. Idempotent.
     */
    async endRun(args: {
      tenant: string;
      threadId: string;
      runId: string;
      step: number;
      termination: Termination;
      closeStep: boolean;
      start?: { carriedRunIds: string[] };
    }) {
      const { tenant, runId, step, termination } = args;
      if (args.start) await startIfQueued(store, runId, tenant, args.start.carriedRunIds);
      if (args.closeStep) await closeStep(store, { tenant, threadId: args.threadId }, runId, step);
      const error = termination.type === 'error' ? termination.detail : undefined;
      await storeCall(() => store.finishRun(runId, termination, { fence: afterStepFence(step), error, tenant }));
    },

    /**
     * Closes a run whose workflow ended without reporting (an operator terminated or cancelled it):
     * commits its input if it never started, closes its last step as an interrupted one, commits the
     * steering it was sent and never applied, and finishes its record. Idempotent.
     */
    async closeRun(args: { ref: ThreadRef; runId: string; carriedRunIds: string[]; termination: Termination; steered: InputMessage[] }) {
      const { ref, runId } = args;
      const run = await store.getRun(runId, ref.tenant);
      if (!run) return;
      if (run.status === 'queued') await storeCall(() => store.commitPendingInput(ref, [...args.carriedRunIds.filter((id) => id !== runId), runId]));
      const events = await store.readEvents(runId, 0, 100_000, ref.tenant);
      const step = Math.max(0, ...events.flatMap((e) => (e.type === 'step_start' ? [e.step] : [])));
      await closeStep(store, ref, runId, step);
      if (args.steered.length > 0) {
        const committed = new Set((await store.loadRunMessages(ref, runId)).map((m) => m.id));
        const missing = args.steered.filter((m) => !committed.has(m.messageId));
        if (missing.length) await storeCall(() => store.commitMessages(ref, missing.map((m) => ({ ...m, runId }))));
      }
      if (run.status === 'done') return;
      const { termination } = args;
      const error = termination.type === 'error' ? termination.detail : undefined;
      await storeCall(() => store.finishRun(runId, termination, { fence: afterStepFence(step), error, tenant: ref.tenant })).catch((err) => {
        // Finished meanwhile (by the run itself, just before it closed): its own termination stands.
        if (!(err instanceof ApplicationFailure && err.type === 'illegal_transition')) throw err;
      });
    },
  };
}

/** Starts a run stopped before its first step could (committing its input); a started or ended run is left as it is. */
async function startIfQueued(store: Store, runId: string, tenant: string, carriedRunIds: string[]) {
  const run = await store.getRun(runId, tenant);
  if (run?.status === 'queued') await storeCall(() => store.startRun(runId, carriedRunIds, tenant));
}

/**
 * Closes a run's step `step` after it was stopped: what the step streamed but never committed
 * becomes an assistant message marked `interrupted`, and each of its tool calls without a result
 * gets a `cancelled` one. The fence above the step's writers shuts out a zombie attempt first.
 */
async function closeStep(store: Store, ref: ThreadRef, runId: string, step: number) {
  if (step === 0) return;
  const fence = afterStepFence(step);
  await storeCall(() => store.appendEvents(runId, fence, [], ref.tenant));
  const committed = await store.loadRunMessages(ref, runId);
  const assistantId = assistantMessageId(runId, step);
  const messages: NewMessage[] = [];
  let toolCalls: ToolCall[] = committed.find((m) => m.id === assistantId)?.toolCalls ?? [];
  if (!committed.some((m) => m.id === assistantId)) {
    const events = await store.readEvents(runId, 0, 100_000, ref.tenant);
    const lastReset = events.findLastIndex((e) => (e.type === 'step_start' || e.type === 'stream_reset') && e.step === step);
    const stepEvents = events.slice(lastReset + 1);
    const text = stepEvents.flatMap((e) => (e.type === 'text_delta' && e.step === step ? [e.delta] : [])).join('');
    toolCalls = stepEvents.flatMap((e) => (e.type === 'tool_call_ready' && e.step === step ? [{ toolCallId: e.toolCallId, toolName: e.toolName, input: e.input }] : []));
    if (text || toolCalls.length) {
      messages.push({ messageId: assistantId, role: 'assistant', content: text, runId, status: 'interrupted', toolCalls: toolCalls.length ? toolCalls : undefined });
    }
  }
  const answered = new Set(committed.filter((m) => m.role === 'tool').map((m) => m.toolCallId));
  const unanswered = toolCalls.filter((c) => !answered.has(c.toolCallId));
  for (const call of unanswered) {
    messages.push({
      messageId: toolMessageId(runId, step, call.toolCallId),
      role: 'tool',
      content: JSON.stringify({ error: 'cancelled' }),
      toolCallId: call.toolCallId,
      runId,
      metadata: { toolName: call.toolName, outcome: 'cancelled' },
    });
  }
  if (messages.length) await storeCall(() => store.commitMessages(ref, messages));
  if (unanswered.length) {
    await storeCall(() =>
      store.appendEvents(runId, fence, unanswered.map((c) => ({ type: 'tool_call_done', toolCallId: c.toolCallId, toolName: c.toolName, outcome: 'cancelled', error: 'cancelled' })), ref.tenant),
    );
  }
}
