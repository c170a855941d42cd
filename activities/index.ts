// Everything the workflows ask the world to do: the committed log, run records and the agent's model and tools.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Termination } from '../src/events.js';
import type { AgentRegistry } from '../src/agent/agents.js';
import { executeTool } from '../src/agent/tools.js';
import { StoreError, type NewMessage, type Store, type ThreadRef, type ToolCall } from '../src/store/store.js';
import type { InputMessage } from '../workflows/types.js';
import { runModelStep, type ModelStepInput } from './model-step.js';

export interface ActivityDeps {
  store: Store;
  agents: AgentRegistry;
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

export function createActivities({ store, agents }: ActivityDeps) {
  return {
    async createRun(args: {
      ref: ThreadRef;
      run: { runId: string; dispatchId: string; agentId: string; mode: string; epoch: number; input: InputMessage[] };
    }) {
      await storeCall(() => store.createRun(args.ref, args.run));
    },

    async startRun(args: { runId: string; carriedRunIds: string[]; agentId: string; dispatchId: string }) {
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
      const fence = (step + 1) * 1000;
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
      return runModelStep({ store, agents }, input);
    },

    /** Runs one tool call and commits its result; a failing tool is a result the model reads, not a failed run. */
    async runTool(args: { tenant: string; threadId: string; runId: string; step: number; call: ToolCall }) {
      const { call, runId, step } = args;
      const ctx = Context.current();
      const result = await executeTool(call.toolName, call.input, { signal: ctx.cancellationSignal, heartbeat: (d) => ctx.heartbeat(d) });
      const content = JSON.stringify(result.ok ? result.output : { error: result.error });
      const committed = await storeCall(() =>
        store.commitMessages({ tenant: args.tenant, threadId: args.threadId }, [
          {
            messageId: `${runId}:${step}:tool:${call.toolCallId}`,
            role: 'tool',
            content,
            toolCallId: call.toolCallId,
            runId,
            metadata: { toolName: call.toolName, outcome: result.ok ? 'ok' : 'error' },
          },
        ]),
      );
      if (committed.duplicate) return; // a retry after the result was committed and announced
      await storeCall(() =>
        store.appendEvents(runId, step * 1000 + 999, [
          result.ok
            ? { type: 'tool_call_done', toolCallId: call.toolCallId, toolName: call.toolName, outcome: 'ok', output: result.output }
            : { type: 'tool_call_done', toolCallId: call.toolCallId, toolName: call.toolName, outcome: 'error', error: result.error },
        ]),
      );
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
