// One model call: streams the reply into the event log, flushing as it heartbeats, and returns what it said.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { APICallError } from '@ai-sdk/provider';
import { streamText, type ModelMessage } from 'ai';
import type { RunEventBody, Usage } from '../src/contract/run-events.js';
import type { Agent, AgentRegistry } from '../src/agent/agents.js';
import { contextBudget, contextWindow } from '../src/agent/context.js';
import { DeltaSanitizer, sanitizeJson, sanitizeText } from '../src/agent/sanitize.js';
import { toAiSdkTools } from '../src/agent/tools.js';
import { describeStoreError, isRejectedData, isStoreOutage } from '../src/store/errors.js';
import { StoreError, type CommittedMessage, type Store, type ThreadRef, type ToolCall } from '../src/store/store.js';
import { modelStepFence } from '../src/contract/mailbox.js';

export interface ModelStepInput {
  tenant: string;
  threadId: string;
  runId: string;
  agentId: string;
  step: number;
}

export interface ModelStepResult {
  text: string;
  toolCalls: ToolCall[];
  finishReason: string;
  usage: Usage;
  /** from sending the request to the last streamed part */
  inferenceMs: number;
}

/** How long streamed events may wait in the buffer before a flush. */
export const DEFAULT_FLUSH_MS = 25;
/**
 * A cancel reaches an activity only in the reply to a heartbeat, so a step heartbeats this often
 * even while the provider sends nothing (before its first token, between slow ones). The worker
 * throttles heartbeats to the same 100 ms, so token flushes add no RPCs on top of these.
 */
export const STEP_HEARTBEAT_MS = 100;
/** Longest provider-asked retry delay (`retry-after`) that is honoured; longer ones fall back to the retry policy. */
const MAX_RETRY_AFTER_MS = 60_000;

export async function runModelStep(
  deps: { store: Store; agents: AgentRegistry; flushMs?: number },
  input: ModelStepInput,
): Promise<ModelStepResult> {
  const ctx = Context.current();
  const { runId, step } = input;
  const attempt = ctx.info.attempt;
  const agent = deps.agents.get(input.agentId);
  if (!agent) throw ApplicationFailure.nonRetryable(`unknown agent ${input.agentId}`, 'unknown_agent');

  const events = new EventFlusher(deps.store, input.tenant, runId, modelStepFence(step, attempt), (seq) => ctx.heartbeat({ seq }), deps.flushMs ?? DEFAULT_FLUSH_MS);
  const heartbeat = setInterval(() => ctx.heartbeat({ seq: events.lastSeq }), STEP_HEARTBEAT_MS);
  // Leaving the stream early (a failed or fenced-out flush) only detaches the AI SDK's reader;
  // aborting is what ends the provider's HTTP request, so every way out of this function does it.
  const done = new AbortController();
  let started: number | undefined;
  let usage: Usage = {};
  // An interrupted step still counts on the run record: its number and the time it spent (and tokens, when the provider got to say).
  const recordStoppedStep = () =>
    deps.store.recordStep(runId, step, { ...usage, inferenceMs: started === undefined ? 0 : Math.round(performance.now() - started) }, input.tenant).catch(() => {});
  try {
    // A retry starts the step over: clients drop what the failed attempt streamed.
    if (attempt > 1) events.push({ type: 'stream_reset', step, attempt });
    events.push({ type: 'step_start', step, attempt });

    const history = await loadContext(deps.store, { tenant: input.tenant, threadId: input.threadId }, agent);
    started = performance.now();
    const result = streamText({
      model: deps.agents.modelFor(agent),
      system: agent.system,
      messages: toModelMessages(history),
      tools: toAiSdkTools(agent.tools),
      temperature: agent.temperature,
      // Aborting it aborts the provider's HTTP request: the socket closes and the provider stops generating.
      abortSignal: AbortSignal.any([ctx.cancellationSignal, done.signal]),
      maxRetries: 0, // Temporal owns retries
      ...callOptionsFor(agent, attempt),
      onError: () => {}, // errors arrive as `error` parts below; the default handler would only log them
    });

    let text = '';
    const toolCalls: ToolCall[] = [];
    let finishReason = 'unknown';
    // Everything a model says is made storable before it reaches the event log or the returned text.
    const deltas = new Map<string, DeltaSanitizer>();
    const sanitized = (key: string, delta: string) => {
      let sanitizer = deltas.get(key);
      if (!sanitizer) deltas.set(key, (sanitizer = new DeltaSanitizer()));
      return sanitizer.push(delta);
    };
    const ended = (key: string) => {
      const rest = deltas.get(key)?.end() ?? '';
      deltas.delete(key);
      return rest;
    };
    const pushText = (delta: string) => {
      if (!delta) return;
      text += delta;
      events.push({ type: 'text_delta', step, delta });
    };
    const pushReasoning = (delta: string) => {
      if (delta) events.push({ type: 'reasoning_delta', step, delta });
    };
    for await (const part of result.fullStream) {
      switch (part.type) {
        case 'text-delta':
          pushText(sanitized(`text:${part.id}`, part.text));
          break;
        case 'text-end':
          pushText(ended(`text:${part.id}`));
          break;
        case 'reasoning-delta':
          pushReasoning(sanitized(`reasoning:${part.id}`, part.text));
          break;
        case 'reasoning-end':
          pushReasoning(ended(`reasoning:${part.id}`));
          break;
        case 'tool-input-start':
          events.push({ type: 'tool_call_start', step, toolCallId: sanitizeText(part.id), toolName: sanitizeText(part.toolName) });
          break;
        case 'tool-input-delta': {
          const delta = sanitized(`tool:${part.id}`, part.delta);
          if (delta) events.push({ type: 'tool_call_delta', step, toolCallId: sanitizeText(part.id), delta });
          break;
        }
        case 'tool-input-end': {
          const delta = ended(`tool:${part.id}`);
          if (delta) events.push({ type: 'tool_call_delta', step, toolCallId: sanitizeText(part.id), delta });
          break;
        }
        case 'tool-call': {
          // Invalid calls (unknown tool, unparsable input) are kept too: the tool activity answers them with an error the model can read.
          const call = { toolCallId: sanitizeText(part.toolCallId), toolName: sanitizeText(part.toolName), input: sanitizeJson(part.input) };
          toolCalls.push(call);
          events.push({ type: 'tool_call_ready', step, ...call });
          break;
        }
        case 'finish-step':
          finishReason = part.finishReason;
          usage = { inputTokens: part.usage.inputTokens, outputTokens: part.usage.outputTokens };
          break;
        case 'abort':
          throw ctx.cancellationSignal.reason ?? new Error('model call aborted');
        case 'error':
          throw part.error;
      }
      events.throwIfFailed();
    }
    // A stream that ended without its end parts still gives back what its sanitizers held.
    for (const key of [...deltas.keys()]) {
      if (key.startsWith('text:')) pushText(ended(key));
      else if (key.startsWith('reasoning:')) pushReasoning(ended(key));
    }
    // Carried beside the token counts so the run record can sum it once the store keeps it.
    const stepUsage = { ...usage, inferenceMs: Math.round(performance.now() - started) };
    events.push({ type: 'step_end', step, finishReason, usage: stepUsage });
    await events.close();
    await deps.store.recordStep(runId, step, stepUsage, input.tenant);
    return { text, toolCalls, finishReason, usage, inferenceMs: stepUsage.inferenceMs };
  } catch (err) {
    if (ctx.cancellationSignal.aborted) {
      if (ctx.cancellationDetails?.cancelRequested) await recordStoppedStep();
      throw ctx.cancellationSignal.reason ?? err;
    }
    // A newer writer (a retry, or the workflow closing an interrupted step) owns the log now: this attempt is a zombie.
    if (err instanceof StoreError && err.code === 'stale_writer') {
      // The workflow closing an interrupted step can fence it out before the cancel reaches this attempt's heartbeat.
      done.abort();
      if (await cancelRequestedSoon(ctx)) {
        await recordStoppedStep();
        throw ctx.cancellationSignal.reason ?? err;
      }
      throw ApplicationFailure.nonRetryable(err.message, err.code);
    }
    const failure = classifyModelError(err);
    // What the attempt streamed stays visible up to its failure; the retry's stream_reset tells clients to drop it.
    await events.close().catch(() => {});
    throw failure;
  } finally {
    done.abort();
    clearInterval(heartbeat);
    events.dispose();
  }
}

/** Whether a cancel of this attempt arrives within a few heartbeats (the interval keeps heartbeating until the step returns). */
async function cancelRequestedSoon(ctx: Context, withinMs = 10 * STEP_HEARTBEAT_MS): Promise<boolean> {
  if (!ctx.cancellationSignal.aborted) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, withinMs);
      ctx.cancellationSignal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
  }
  return ctx.cancellationDetails?.cancelRequested ?? false;
}

/** Only the echo model reads the attempt (its `/fail` directive); a real provider gets no options of ours. */
export function callOptionsFor(agent: Pick<Agent, 'model'>, attempt: number): { providerOptions?: { echo: { attempt: number } } } {
  return agent.model === 'echo' ? { providerOptions: { echo: { attempt } } } : {};
}

/**
 * What one model call sees of the thread: the newest messages within the agent's context budget
 * (see contextWindow), read newest first from the store, never the whole thread.
 */
export async function loadContext(store: Store, ref: ThreadRef, agent: Agent): Promise<CommittedMessage[]> {
  const budget = contextBudget(agent);
  let recent = await store.loadRecentMessages(ref, { limit: budget.maxMessages, maxContentBytes: budget.maxTokens * 4 });
  // A budget smaller than the newest exchange held only tool results: read back to the call they answer.
  for (let limit = recent.length * 2 + 16; recent.length > 0 && recent.every((m) => m.role === 'tool'); limit *= 2) {
    const more = await store.loadRecentMessages(ref, { limit, maxContentBytes: Number.MAX_SAFE_INTEGER });
    if (more.length === recent.length) break; // the thread holds nothing older
    recent = more;
  }
  return contextWindow(recent, budget, agent.system);
}

// Providers word an overflowing prompt differently; all of them mean "retrying the same prompt cannot work".
const CONTEXT_OVERFLOW =
  /context[_ ]length|context window|maximum context|prompt is too long|input is too long|too many (input )?tokens|reduce the length/i;

// Errors of our own making (bad prompt or settings, no key): the same request fails the same way again.
const PERMANENT_SDK_ERRORS = new Set([
  'AI_InvalidPromptError',
  'AI_InvalidArgumentError',
  'AI_LoadAPIKeyError',
  'AI_LoadSettingError',
  'AI_NoSuchModelError',
  'AI_UnsupportedFunctionalityError',
]);

/**
 * Transient provider errors (429, 408, 5xx, timeouts, dropped connections, a stream cut short)
 * become retryable failures of type `model_transient`; the rest (400, 401, 403, 404, context
 * overflow) become non-retryable `model_permanent` failures that end the run with the
 * provider's own message. Anything unrecognised stays retryable: the retry policy caps it.
 *
 * The step also reads and writes the store: Postgres being unreachable is `store_unavailable`
 * (retryable; the detail names the store, not the model), data it refuses is a non-retryable
 * `store_rejected`, and a StoreError keeps its code as the type, retryable only for a lost race.
 */
export function classifyModelError(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (isStoreOutage(err)) {
    return ApplicationFailure.create({ message: `store unavailable: ${sanitizeText(describeStoreError(err))}`, type: 'store_unavailable' });
  }
  if (isRejectedData(err)) {
    return ApplicationFailure.create({ message: `store rejected the step's data: ${sanitizeText(describeStoreError(err))}`, type: 'store_rejected', nonRetryable: true });
  }
  if (err instanceof StoreError) {
    return ApplicationFailure.create({ message: `store: ${err.message}`, type: err.code, nonRetryable: err.code !== 'version_conflict' });
  }
  if (APICallError.isInstance(err)) {
    const status = err.statusCode;
    // A provider's message ends up in the run record: it must be storable too.
    const detail = sanitizeText(`model call failed${status ? ` (HTTP ${status})` : ''}: ${err.message}`);
    const details = [{ statusCode: status ?? null, url: err.url, responseBody: err.responseBody === undefined ? null : sanitizeText(err.responseBody.slice(0, 2000)) }];
    const transient =
      status === undefined || (status >= 200 && status < 300) ? err.isRetryable || !CONTEXT_OVERFLOW.test(err.message) : isTransientStatus(status);
    if (!transient) return ApplicationFailure.create({ message: detail, type: 'model_permanent', nonRetryable: true, details });
    return ApplicationFailure.create({ message: detail, type: 'model_transient', details, nextRetryDelay: retryAfterMs(err.responseHeaders) });
  }
  if (err instanceof Error && PERMANENT_SDK_ERRORS.has(err.name)) {
    return ApplicationFailure.create({ message: sanitizeText(`model call failed: ${err.message}`), type: 'model_permanent', nonRetryable: true });
  }
  // Mid-stream failures: a provider's in-band `{"error": …}` chunk, or the socket dropping under the body.
  const message = sanitizeText(err instanceof Error ? errorChainMessage(err) : providerErrorMessage(err));
  if (CONTEXT_OVERFLOW.test(message)) {
    return ApplicationFailure.create({ message: `model call failed: ${message}`, type: 'model_permanent', nonRetryable: true });
  }
  return ApplicationFailure.create({ message: `model call failed: ${message}`, type: 'model_transient' });
}

function isTransientStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** `retry-after-ms` (OpenAI) or `retry-after` in seconds or as an HTTP date; undefined when absent or unreasonable. */
export function retryAfterMs(headers: Record<string, string> | undefined): number | undefined {
  if (!headers) return undefined;
  const get = (name: string) => Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
  let ms: number | undefined;
  const millis = get('retry-after-ms');
  const after = get('retry-after');
  if (millis !== undefined && /^\d+(\.\d+)?$/.test(millis.trim())) ms = Number(millis);
  else if (after !== undefined && /^\d+(\.\d+)?$/.test(after.trim())) ms = Number(after) * 1000;
  else if (after !== undefined && !Number.isNaN(Date.parse(after))) ms = Date.parse(after) - Date.now();
  if (ms === undefined || ms < 0 || ms > MAX_RETRY_AFTER_MS) return undefined;
  return Math.max(1, Math.round(ms));
}

function errorChainMessage(err: Error): string {
  const parts = [err.message];
  const seen = new Set<unknown>([err]);
  for (let cause = err.cause; cause instanceof Error && !seen.has(cause); cause = cause.cause) {
    seen.add(cause);
    const code = (cause as { code?: unknown }).code;
    parts.push(typeof code === 'string' ? `${cause.message} (${code})` : cause.message);
  }
  return parts.join(': ');
}

function providerErrorMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'message' in err && typeof err.message === 'string') return err.message;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

/** Buffers events and appends them in batches; each append heartbeats its last seq, the step's resume cursor. */
class EventFlusher {
  lastSeq = 0;
  private buffer: RunEventBody[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private failure: unknown;

  constructor(
    private readonly store: Store,
    private readonly tenant: string,
    private readonly runId: string,
    private readonly fence: number,
    private readonly heartbeat: (seq: number) => void,
    private readonly flushMs: number,
  ) {}

  push(event: RunEventBody) {
    this.buffer.push(event);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.flushMs);
  }

  throwIfFailed() {
    if (this.failure) throw this.failure;
  }

  flush(): Promise<void> {
    const batch = this.buffer.splice(0);
    if (batch.length === 0) return this.writing;
    this.writing = this.writing.then(async () => {
      if (this.failure) return;
      try {
        const { lastSeq } = await this.store.appendEvents(this.runId, this.fence, batch, this.tenant);
        this.lastSeq = lastSeq;
        this.heartbeat(lastSeq);
      } catch (err) {
        this.failure = err;
      }
    });
    return this.writing;
  }

  async close() {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    this.throwIfFailed();
  }

  dispose() {
    clearTimeout(this.timer);
  }
}

/** The committed log as the AI SDK's model messages. */
export function toModelMessages(history: CommittedMessage[]): ModelMessage[] {
  return history.map((m): ModelMessage => {
    switch (m.role) {
      case 'system':
        return { role: 'system', content: m.content };
      case 'user':
        return { role: 'user', content: m.content };
      case 'assistant':
        return {
          role: 'assistant',
          content: [
            ...(m.content ? [{ type: 'text' as const, text: m.content }] : []),
            ...(m.toolCalls ?? []).map((c) => ({ type: 'tool-call' as const, toolCallId: c.toolCallId, toolName: c.toolName, input: c.input })),
          ],
        };
      case 'tool': {
        const toolName = String(m.metadata.toolName ?? 'unknown');
        const outcome = m.metadata.outcome;
        const output =
          outcome === 'ok'
            ? { type: 'json' as const, value: JSON.parse(m.content) }
            : outcome === 'denied'
              ? { type: 'execution-denied' as const, reason: m.content }
              : { type: 'error-text' as const, value: m.content };
        return { role: 'tool', content: [{ type: 'tool-result', toolCallId: m.toolCallId ?? '', toolName, output }] };
      }
    }
  });
}
