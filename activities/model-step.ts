// One model call: streams the reply into the event log, flushing as it heartbeats, and returns what it said.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Usage } from '../src/contract/run-events.js';
import type { AgentRegistry } from '../src/agent/agents.js';
import { StoreError, type Store, type ToolCall } from '../src/store/store.js';
import { assistantMessageId, assistantReply, modelStepFence } from '../src/contract/mailbox.js';
import { EventFlusher } from './event-flusher.js';
import { loadContext } from './model-context.js';
import { classifyModelError } from './model-errors.js';
import { StepReply, streamModelReply } from './model-stream.js';
import { MODEL_ATTEMPTS, storeCall, withRetryBudget } from './retry.js';

export interface ModelStepInput {
  tenant: string;
  threadId: string;
  runId: string;
  agentId: string;
  step: number;
  /** the first step of a run starts it: commits its input (and that of `carriedRunIds`) before the model call */
  start?: { carriedRunIds: string[] };
  /**
   * The step commits its reply (the assistant message `<runId>:<step>:assistant`) itself, one activity hop
   * fewer per step (since the commit-in-step patch). A retry of a step whose reply is committed returns it.
   */
  commit?: boolean;
}

export interface ModelStepResult {
  text: string;
  toolCalls: ToolCall[];
  finishReason: string;
  usage: Usage;
  /** from sending the request to the last streamed part */
  inferenceMs: number;
}

/**
 * A cancel reaches an activity only in the reply to a heartbeat, so a step heartbeats this often
 * even while the provider sends nothing (before its first token, between slow ones). The worker
 * throttles heartbeats to the same 100 ms, so token writes add no RPCs on top of these.
 */
export const STEP_HEARTBEAT_MS = 100;

type ModelStepDeps = { store: Store; agents: AgentRegistry };

export function modelStepActivities(deps: ModelStepDeps) {
  return {
    /**
     * The model's own transient errors get MODEL_ATTEMPTS attempts; a store outage is ridden out by
     * time (STORE_OUTAGE_BUDGET_MS since the step was first scheduled), however many attempts that takes.
     */
    async modelStep(input: ModelStepInput) {
      return withRetryBudget(() => runModelStep(deps, input), MODEL_ATTEMPTS);
    },
  };
}

async function runModelStep(deps: ModelStepDeps, input: ModelStepInput): Promise<ModelStepResult> {
  const ctx = Context.current();
  const { runId, step } = input;
  const attempt = ctx.info.attempt;
  const agent = deps.agents.get(input.agentId);
  if (!agent) throw ApplicationFailure.nonRetryable(`unknown agent ${input.agentId}`, 'unknown_agent');

  const events = new EventFlusher(deps.store, input.tenant, runId, modelStepFence(step, attempt), (seq) => ctx.heartbeat({ seq }));
  const heartbeat = setInterval(() => ctx.heartbeat({ seq: events.lastSeq }), STEP_HEARTBEAT_MS);
  // Leaving the stream early (a failed or fenced-out flush) only detaches the AI SDK's reader;
  // aborting is what ends the provider's HTTP request, so every way out of this function does it.
  const done = new AbortController();
  const reply = new StepReply(step, events, ctx.cancellationSignal);
  let started: number | undefined;
  const inferenceMs = () => (started === undefined ? 0 : Math.round(performance.now() - started));
  try {
    // A retry after the reply was committed (the attempt died before Temporal heard its result): the committed reply is the step's.
    const committed = input.commit && attempt > 1 ? await committedReply(deps.store, input) : undefined;
    if (committed) return committed;
    // Idempotent: a retry of the first step (or the run's end racing it) finds the run started.
    if (input.start) await deps.store.startRun(runId, input.start.carriedRunIds, input.tenant);
    // A retry starts the step over: clients drop what the failed attempt streamed.
    if (attempt > 1) events.push({ type: 'stream_reset', step, attempt });
    events.push({ type: 'step_start', step, attempt });

    const history = await loadContext(deps.store, { tenant: input.tenant, threadId: input.threadId }, agent);
    started = performance.now();
    const result = streamModelReply(deps.agents, agent, history, AbortSignal.any([ctx.cancellationSignal, done.signal]), attempt);
    for await (const part of result.fullStream) {
      reply.take(part);
      events.throwIfFailed();
    }
    reply.end();
    // Carried beside the token counts so the run record can sum it once the store keeps it.
    const stepUsage = { ...reply.usage, inferenceMs: inferenceMs() };
    events.push({ type: 'step_end', step, finishReason: reply.finishReason, usage: stepUsage });
    await events.close();
    await deps.store.recordStep(runId, step, stepUsage, input.tenant);
    if (input.commit) await commitReply(deps.store, input, reply);
    return { text: reply.text, toolCalls: reply.toolCalls, finishReason: reply.finishReason, usage: reply.usage, inferenceMs: stepUsage.inferenceMs };
  } catch (err) {
    // An interrupted step still counts on the run record: its number and the time it spent (and tokens, when the provider got to say).
    const recordStoppedStep = () => deps.store.recordStep(runId, step, { ...reply.usage, inferenceMs: inferenceMs() }, input.tenant).catch(() => {});
    throw await stepFailure(err, { ctx, events, stop: () => done.abort(), recordStoppedStep });
  } finally {
    done.abort();
    clearInterval(heartbeat);
  }
}

/** Commits the step's reply, as the run workflow did before the commit-in-step patch. Idempotent by its message id. */
async function commitReply(store: Store, input: ModelStepInput, reply: StepReply) {
  const { tenant, threadId, runId, step } = input;
  await storeCall(() => store.commitMessages({ tenant, threadId }, [assistantReply(runId, step, reply.text, reply.toolCalls)]));
}

/** The reply an earlier attempt of this step committed, if one did: what the run goes on from (a new call might answer differently). */
async function committedReply(store: Store, input: ModelStepInput): Promise<ModelStepResult | undefined> {
  const { tenant, threadId, runId, step } = input;
  const message = (await store.loadRunMessages({ tenant, threadId }, runId)).find((m) => m.id === assistantMessageId(runId, step));
  if (!message) return undefined;
  const toolCalls = message.toolCalls ?? [];
  return { text: message.content, toolCalls, finishReason: toolCalls.length ? 'tool-calls' : 'stop', usage: {}, inferenceMs: 0 };
}

/**
 * What a failed attempt throws: a cancel as itself, a fenced-out attempt as a non-retryable
 * `stale_writer` (or as the cancel that fenced it), anything else classified by classifyModelError.
 */
async function stepFailure(
  err: unknown,
  { ctx, events, stop, recordStoppedStep }: { ctx: Context; events: EventFlusher; stop: () => void; recordStoppedStep: () => Promise<void> },
): Promise<unknown> {
  if (ctx.cancellationSignal.aborted) {
    if (stoppedByRun(ctx)) await recordStoppedStep();
    return ctx.cancellationSignal.reason ?? err;
  }
  // A newer writer (a retry, or the workflow closing an interrupted step) owns the log now: this attempt is a zombie.
  if (err instanceof StoreError && err.code === 'stale_writer') {
    // The workflow closing an interrupted step can fence it out before the cancel reaches this attempt's heartbeat.
    stop();
    if (await cancelRequestedSoon(ctx)) {
      await recordStoppedStep();
      return ctx.cancellationSignal.reason ?? err;
    }
    return ApplicationFailure.nonRetryable(err.message, err.code);
  }
  const failure = classifyModelError(err);
  // What the attempt streamed stays visible up to its failure; the retry's stream_reset tells clients to drop it.
  await events.close().catch(() => {});
  return failure;
}

/**
 * The run stopped this step: it asked for the cancel, or it has already closed (the step's heartbeat finds no
 * workflow: a run that ends while a step streams was interrupted, cancelled or failed, and closed the step first).
 */
function stoppedByRun(ctx: Context): boolean {
  const details = ctx.cancellationDetails;
  return Boolean(details?.cancelRequested || details?.notFound);
}

/** Whether this attempt is stopped by its run within a few heartbeats (the interval keeps heartbeating until the step returns). */
async function cancelRequestedSoon(ctx: Context, withinMs = 10 * STEP_HEARTBEAT_MS): Promise<boolean> {
  if (!ctx.cancellationSignal.aborted) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, withinMs);
      ctx.cancellationSignal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
  }
  return stoppedByRun(ctx);
}
