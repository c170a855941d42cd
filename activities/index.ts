// Everything the workflows ask the world to do: the committed log, run records and the agent's model and tools.
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { RunEventBody, Termination } from '../src/contract/run-events.js';
import type { AgentRegistry } from '../src/agent/agents.js';
import { sanitizeJson, sanitizeText } from '../src/agent/sanitize.js';
import { builtinTools, executeTool } from '../src/agent/tools.js';
import { StoreError, type NewMessage, type Store, type ThreadRef, type ToolCall } from '../src/store/store.js';
import { afterStepFence, toolResultFence, type ApprovalTicket, type Dispatch, type InputMessage, type RunClosure, type StoredMailbox } from '../src/contract/mailbox.js';
import { isConstraintViolation, isRejectedData, isStoreOutage } from '../src/store/errors.js';
import { runModelStep, type ModelStepInput } from './model-step.js';

export interface ActivityDeps {
  store: Store;
  agents: AgentRegistry;
  /** how long streamed events may wait before a flush (THREADBOX_FLUSH_MS) */
  flushMs?: number;
  /** asks Temporal whether a run workflow still runs (probeRun); without it every run counts as running */
  temporal?: Client;
}

interface ToolArgs {
  tenant: string;
  threadId: string;
  runId: string;
  agentId: string;
  step: number;
  call: ToolCall;
  outcome?: 'denied' | 'cancelled';
  reason?: string;
}

/**
 * Runs an activity's work so that a store outage (raw, or already classified `store_unavailable`) is
 * retried for STORE_OUTAGE_BUDGET_MS since the activity was first scheduled, however many attempts that
 * takes, and any other retryable failure `attempts` times. Past either, the failure is made final, with
 * `finalType` as its type (else its own).
 */
async function withRetryBudget<T>(work: () => Promise<T>, attempts: number, finalType?: string): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ApplicationFailure && err.nonRetryable) throw err;
    const failure = err instanceof ApplicationFailure ? err : undefined;
    const { attempt, scheduledTimestampMs } = Context.current().info;
    const outage = isStoreOutage(err) || failure?.type === 'store_unavailable';
    const givesUp = outage ? Date.now() - scheduledTimestampMs > STORE_OUTAGE_BUDGET_MS : attempt >= attempts;
    if (!givesUp) throw err;
    const type = finalType ?? failure?.type ?? (err as Error).name;
    throw ApplicationFailure.create({ type, message: (err as Error).message, details: failure?.details as unknown[], nonRetryable: true, cause: err as Error });
  }
}

/** Attempts a tool call gets for failures other than a store outage. */
const TOOL_ATTEMPTS = 3;
/** Attempts a model step gets for the model's own transient errors (429, 5xx, dropped streams). */
export const MODEL_ATTEMPTS = 6;
/** How long a model step rides out a store outage before the run ends in error. */
export const STORE_OUTAGE_BUDGET_MS = 10 * 60_000;

/**
 * Store errors that retrying cannot fix become non-retryable failures with the error's code as type;
 * so does data Postgres refuses (a data exception or a violated constraint, class 22 or 23): retrying
 * the same bytes fails the same way, and a thread must not wait on it forever. Outages stay retryable.
 */
async function storeCall<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof StoreError && err.code !== 'version_conflict') {
      throw ApplicationFailure.create({ type: err.code, message: err.message, nonRetryable: true });
    }
    if (isRejectedData(err) || isConstraintViolation(err)) {
      throw ApplicationFailure.create({ type: 'invalid_data', message: `the store refused the data: ${(err as Error).message}`, nonRetryable: true });
    }
    throw err;
  }
}

export function createActivities({ store, agents, flushMs, temporal }: ActivityDeps) {
  return {
    async createRun(args: {
      ref: ThreadRef;
      run: { runId: string; dispatchId: string; agentId: string; mode: string; epoch: number; input: InputMessage[]; workflowId?: string; requestHash?: string };
    }) {
      const run = await storeCall(() => store.createRun(args.ref, args.run));
      return { created: run.created, runId: run.runId, dispatchId: run.dispatchId, status: run.status };
    },

    /** Discards a run created for a submit that was then rejected: the rejected request writes nothing. */
    async discardRun(args: { ref: ThreadRef; runId: string }) {
      await storeCall(() => store.discardRun(args.ref, args.runId));
    },

    async findRun(args: { runId: string; tenant?: string }) {
      const run = await store.getRun(args.runId, args.tenant);
      return run ? { runId: run.runId, dispatchId: run.dispatchId, status: run.status, threadId: run.threadId, requestHash: run.requestHash } : null;
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
        await storeCall(() => store.appendEvents(runId, args.fence, [{ type: 'steering_applied', messageIds: committed.messageIds }], args.ref.tenant));
      }
    },

    /** running → waiting, with a ticket per tool call and one `tool_approval_requested` event each. */
    async awaitApproval(args: { runId: string; step: number; tickets: ApprovalTicket[]; tenant?: string }) {
      const { runId, step, tickets, tenant } = args;
      const run = await store.getRun(runId, tenant);
      if (run?.status === 'waiting') return; // a retry after success
      await storeCall(() => store.setRunWaiting(runId, { tickets: tickets.map(({ toolCallId, toolName, input }) => ({ toolCallId, toolName, input })) }, tenant));
      await storeCall(() =>
        store.appendEvents(
          runId,
          toolResultFence(step),
          tickets.map((t) => ({ type: 'tool_approval_requested', toolCallId: t.toolCallId, toolName: t.toolName, input: t.input })),
          tenant,
        ),
      );
    },

    // `tenant` is absent only in activities scheduled by workflow code older than tenant-scoped run ids, whose run ids are unique.
    async resumeRun(args: { runId: string; tenant?: string }) {
      await storeCall(() => store.setRunWaiting(args.runId, null, args.tenant));
    },

    async startRun(args: { runId: string; carriedRunIds: string[]; tenant?: string }) {
      await storeCall(() => store.startRun(args.runId, args.carriedRunIds, args.tenant));
    },

    async finishRun(args: { runId: string; termination: Termination; fence?: number; tenant?: string }) {
      const error = args.termination.type === 'error' ? args.termination.detail : undefined;
      await storeCall(() => store.finishRun(args.runId, args.termination, { fence: args.fence, error, tenant: args.tenant }));
    },

    /** Finishes many runs the same way (the queue an interrupt superseded): one activity, not one per run. */
    async finishRuns(args: { tenant: string; runIds: string[]; termination: Termination }) {
      for (const runId of args.runIds) {
        await storeCall(() => store.finishRun(runId, args.termination, { tenant: args.tenant }));
        Context.current().heartbeat();
      }
    },

    async commitMessages(args: { ref: ThreadRef; messages: NewMessage[] }) {
      const result = await storeCall(() => store.commitMessages(args.ref, args.messages));
      return { firstSeq: result.firstSeq, lastSeq: result.lastSeq };
    },

    /**
     * After a cancel (or an error): commits what the interrupted step streamed (its text, marked
     * `interrupted`) and a `cancelled` result for each tool call left without one, so the log stays
     * valid for the next model call. The higher fence shuts out the step's activity.
     */
    async commitInterruptedStep(args: { tenant: string; threadId: string; runId: string; step: number }) {
      await closeStep({ tenant: args.tenant, threadId: args.threadId }, args.runId, args.step);
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
      await closeStep(ref, runId, step);
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

    /** Whether a run workflow still runs, and if not how it closed. */
    async probeRun(args: { workflowId: string }): Promise<RunClosure> {
      if (!temporal) return 'running';
      try {
        const { status } = await temporal.workflow.getHandle(args.workflowId).describe();
        const closures: Record<string, RunClosure> = {
          RUNNING: 'running',
          COMPLETED: 'completed',
          CANCELLED: 'cancelled',
          TERMINATED: 'terminated',
          TIMED_OUT: 'timed_out',
          FAILED: 'failed',
          CONTINUED_AS_NEW: 'running',
        };
        return closures[status.name] ?? 'failed';
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return 'not_found';
        throw err;
      }
    },

    /** The mailbox of a thread whose workflow state was lost (terminated), from Postgres. */
    async loadMailbox(args: { ref: ThreadRef }): Promise<StoredMailbox> {
      const rows = await store.loadMailboxRows(args.ref);
      const toDispatch = (r: (typeof rows.open)[number]): Dispatch => ({
        runId: r.runId,
        dispatchId: r.dispatchId,
        mode: r.mode as Dispatch['mode'],
        // An agent removed from the config since: the run fails at its first step with a clear error.
        agent: agents.settings(r.agentId) ?? { agentId: r.agentId, maxSteps: 1, approvalTools: [] },
        epoch: r.epoch,
        carriedRunIds: [],
        workflowId: r.workflowId,
      });
      const active = rows.open.find((r) => r.status === 'running' || r.status === 'waiting');
      const queue = rows.open.filter((r) => r.status === 'queued').map(toDispatch);
      // Input of superseded runs travels with the first queued run, as it did before; with none, it is committed now.
      if (queue[0]) queue[0].carriedRunIds = rows.pendingOfEnded;
      return { epoch: rows.epoch, active: active ? toDispatch(active) : null, queue, orphanedRunIds: queue[0] ? [] : rows.pendingOfEnded };
    },

    /**
     * The model's own transient errors get MODEL_ATTEMPTS attempts; a store outage is ridden out by
     * time (STORE_OUTAGE_BUDGET_MS since the step was first scheduled), however many attempts that takes.
     */
    async modelStep(input: ModelStepInput) {
      return withRetryBudget(() => runModelStep({ store, agents, flushMs }, input), MODEL_ATTEMPTS);
    },

    async runTool(args: ToolArgs) {
      return withRetryBudget(() => runToolOnce(args), TOOL_ATTEMPTS, 'tool_failed');
    },
  };

  /**
   * Runs one tool call (or records that it was denied or cancelled) and commits its result;
   * a failing tool is a result the model reads, not a failed run.
   */
  async function runToolOnce(args: ToolArgs) {
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
  }

  /**
   * Closes a run's step `step` after it was stopped: what the step streamed but never committed
   * becomes an assistant message marked `interrupted`, and each of its tool calls without a result
   * gets a `cancelled` one. The fence above the step's writers shuts out a zombie attempt first.
   */
  async function closeStep(ref: ThreadRef, runId: string, step: number) {
    if (step === 0) return;
    const fence = afterStepFence(step);
    await storeCall(() => store.appendEvents(runId, fence, [], ref.tenant));
    const committed = await store.loadRunMessages(ref, runId);
    const assistantId = `${runId}:${step}:assistant`;
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
        store.appendEvents(runId, fence, unanswered.map((c) => ({ type: 'tool_call_done', toolCallId: c.toolCallId, toolName: c.toolName, outcome: 'cancelled', error: 'cancelled' })), ref.tenant),
      );
    }
  }

  /** Commits a tool message and, unless a retry already did, its `tool_call_done` event. */
  async function recordToolResult(
    args: { tenant: string; threadId: string; runId: string; step: number; call: ToolCall },
    done: Extract<RunEventBody, { type: 'tool_call_done' }>,
    content: string,
  ) {
    const { call, runId, step } = args;
    // A tool's output (or a decision's reason) is data from outside: kept as Postgres can store it, never fatal.
    done = sanitizeJson(done) as typeof done;
    const committed = await storeCall(() =>
      store.commitMessages({ tenant: args.tenant, threadId: args.threadId }, [
        {
          messageId: `${runId}:${step}:tool:${call.toolCallId}`,
          role: 'tool',
          content: sanitizeText(content),
          toolCallId: call.toolCallId,
          runId,
          metadata: { toolName: call.toolName, outcome: done.outcome },
        },
      ]),
    );
    if (committed.duplicate) return; // a retry after the result was committed and announced
    await storeCall(() => store.appendEvents(runId, toolResultFence(step), [done], args.tenant));
  }
}

export type Activities = ReturnType<typeof createActivities>;
