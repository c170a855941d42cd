// Everything the workflows ask the world to do: the committed log, run records and the agent's model and tools.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { RunEventBody, Termination } from '../src/events.js';
import type { AgentRegistry } from '../src/agent/agents.js';
import { builtinTools, executeTool } from '../src/agent/tools.js';
import { StoreError, type NewMessage, type Store, type ThreadRef, type ToolCall } from '../src/store/store.js';
import { afterStepFence, toolResultFence, type ApprovalTicket, type InputMessage } from '../workflows/types.js';
import { runModelStep, type ModelStepInput } from './model-step.js';

export interface ActivityDeps {
  store: Store;
  agents: AgentRegistry;
  /** how long streamed events may wait before a flush (THREADBOX_FLUSH_MS) */
  flushMs?: number;
}

/** Store errors that retrying cannot fix become non-retryable failures with the error's code as type. */
async function storeCall<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof StoreError && err.code !== 'version_conflict') {
      throw ApplicationFailure.create({ type: err.code, message: err.message, nonRetryable: true });
    }
    throw err;
  }
}

export function createActivities({ store, agents, flushMs }: ActivityDeps) {
  return {
    async createRun(args: {
      ref: ThreadRef;
      run: { runId: string; dispatchId: string; agentId: string; mode: string; epoch: number; input: InputMessage[] };
    }) {
      await storeCall(() => store.createRun(args.ref, args.run));
    },

    async findRun(args: { runId: string }) {
      const run = await store.getRun(args.runId);
      return run ? { runId: run.runId, dispatchId: run.dispatchId, status: run.status } : null;
    },

    /** Commits the pending input of runs that ended without starting (superseded by an interrupt). */
    async commitPendingInput(args: { ref: ThreadRef; runIds: string[] }) {
      await storeCall(() => store.commitPendingInput(args.ref, args.runIds));
    },

    /** Commits steered messages before the next model call and announces them. */
    async applySteering(args: { ref: ThreadRef; runId: string; messages: InputMessage[]; fence: number }) {
      const { runId } = args;
      const committed = await storeCall(() => store.commitMessages(args.ref, args.messages.map((m) => ({ ...m, runId }))));
      if (!committed.duplicate) {
        await storeCall(() => store.appendEvents(runId, args.fence, [{ type: 'steering_applied', messageIds: committed.messageIds }]));
      }
    },

    /** running → waiting, with a ticket per tool call and one `tool_approval_requested` event each. */
    async awaitApproval(args: { runId: string; step: number; tickets: ApprovalTicket[] }) {
      const { runId, step, tickets } = args;
      const run = await store.getRun(runId);
      if (run?.status === 'waiting') return; // a retry after success
      await storeCall(() => store.setRunWaiting(runId, { tickets: tickets.map(({ toolCallId, toolName, input }) => ({ toolCallId, toolName, input })) }));
      await storeCall(() =>
        store.appendEvents(
          runId,
          toolResultFence(step),
          tickets.map((t) => ({ type: 'tool_approval_requested', toolCallId: t.toolCallId, toolName: t.toolName, input: t.input })),
        ),
      );
    },

    async resumeRun(args: { runId: string }) {
      await storeCall(() => store.setRunWaiting(args.runId, null));
    },

    async startRun(args: { runId: string; carriedRunIds: string[] }) {
      await storeCall(() => store.startRun(args.runId, args.carriedRunIds));
    },

    async finishRun(args: { runId: string; termination: Termination; fence?: number }) {
      await storeCall(() => store.finishRun(args.runId, args.termination, { fence: args.fence, error: args.termination.type === 'error' ? args.termination.detail : undefined }));
    },

    async commitMessages(args: { ref: ThreadRef; messages: NewMessage[]; expectedVersion?: number }) {
      const result = await storeCall(() => store.commitMessages(args.ref, args.messages, args.expectedVersion));
      return { firstSeq: result.firstSeq, lastSeq: result.lastSeq };
    },

    /**
     * After a cancel: commits what the interrupted step streamed (its text, marked
     * `interrupted`) and a `cancelled` result for each tool call left without one, so the
     * log stays valid for the next model call. The higher fence shuts out the step's activity.
     */
    async commitInterruptedStep(args: { tenant: string; threadId: string; runId: string; step: number }) {
      const { runId, step } = args;
      if (step === 0) return;
      const ref = { tenant: args.tenant, threadId: args.threadId };
      const fence = afterStepFence(step);
      await storeCall(() => store.appendEvents(runId, fence, []));
      const committed = await store.loadCommittedMessages(ref);
      const assistantId = `${runId}:${step}:assistant`;
      const messages: NewMessage[] = [];
      let toolCalls: ToolCall[] = committed.find((m) => m.id === assistantId)?.toolCalls ?? [];
      if (!committed.some((m) => m.id === assistantId)) {
        const events = await store.readEvents(runId, 0, 100_000);
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
          messageId: `${runId}:${step}:tool:${call.toolCallId}`,
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
          store.appendEvents(runId, fence, unanswered.map((c) => ({ type: 'tool_call_done', toolCallId: c.toolCallId, toolName: c.toolName, outcome: 'cancelled', error: 'cancelled' }))),
        );
      }
    },

    async modelStep(input: ModelStepInput) {
      return runModelStep({ store, agents, flushMs }, input);
    },

    /**
     * Runs one tool call (or records that it was denied or cancelled) and commits its result;
     * a failing tool is a result the model reads, not a failed run.
     */
    async runTool(args: {
      tenant: string;
      threadId: string;
      runId: string;
      agentId: string;
      step: number;
      call: ToolCall;
      outcome?: 'denied' | 'cancelled';
      reason?: string;
    }) {
      const { call, runId, step } = args;
      const ctx = Context.current();
      if (args.outcome) {
        const error = args.outcome === 'denied' ? `denied${args.reason ? `: ${args.reason}` : ''}` : 'cancelled: new input arrived';
        await recordToolResult(args, { type: 'tool_call_done', toolCallId: call.toolCallId, toolName: call.toolName, outcome: args.outcome, error }, error);
        return;
      }
      // An unknown tool gets executeTool's own message; a known one outside the agent's list is refused.
      const allowed = !Object.hasOwn(builtinTools, call.toolName) || (agents.get(args.agentId)?.tools.includes(call.toolName) ?? false);
      const result = allowed
        ? await executeTool(call.toolName, call.input, { signal: ctx.cancellationSignal, heartbeat: (d) => ctx.heartbeat(d) })
        : ({ ok: false, error: `tool "${call.toolName}" is not available to agent "${args.agentId}"` } as const);
      await recordToolResult(
        args,
        result.ok
          ? { type: 'tool_call_done', toolCallId: call.toolCallId, toolName: call.toolName, outcome: 'ok', output: result.output }
          : { type: 'tool_call_done', toolCallId: call.toolCallId, toolName: call.toolName, outcome: 'error', error: result.error },
        JSON.stringify(result.ok ? result.output : { error: result.error }),
      );
    },
  };

  /** Commits a tool message and, unless a retry already did, its `tool_call_done` event. */
  async function recordToolResult(
    args: { tenant: string; threadId: string; runId: string; step: number; call: ToolCall },
    done: Extract<RunEventBody, { type: 'tool_call_done' }>,
    content: string,
  ) {
    const { call, runId, step } = args;
    const committed = await storeCall(() =>
      store.commitMessages({ tenant: args.tenant, threadId: args.threadId }, [
        {
          messageId: `${runId}:${step}:tool:${call.toolCallId}`,
          role: 'tool',
          content,
          toolCallId: call.toolCallId,
          runId,
          metadata: { toolName: call.toolName, outcome: done.outcome },
        },
      ]),
    );
    if (committed.duplicate) return; // a retry after the result was committed and announced
    await storeCall(() => store.appendEvents(runId, toolResultFence(step), [done]));
  }
}

export type Activities = ReturnType<typeof createActivities>;
