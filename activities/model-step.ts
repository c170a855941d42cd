// One model call: streams the reply into the event log, flushing as it heartbeats, and returns what it said.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { APICallError } from '@ai-sdk/provider';
import { streamText, type ModelMessage } from 'ai';
import type { RunEventBody, Usage } from '../src/events.js';
import type { AgentRegistry } from '../src/agent/agents.js';
import { toAiSdkTools } from '../src/agent/tools.js';
import { StoreError, type CommittedMessage, type Store, type ToolCall } from '../src/store/store.js';
import { modelStepFence } from '../workflows/types.js';

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

  const events = new EventFlusher(deps.store, runId, modelStepFence(step, attempt), (seq) => ctx.heartbeat({ seq }), deps.flushMs ?? DEFAULT_FLUSH_MS);
  const heartbeat = setInterval(() => ctx.heartbeat({ seq: events.lastSeq }), STEP_HEARTBEAT_MS);
  // Leaving the stream early (a failed or fenced-out flush) only detaches the AI SDK's reader;
  // aborting is what ends the provider's HTTP request, so every way out of this function does it.
  const done = new AbortController();
  try {
    // A retry starts the step over: clients drop what the failed attempt streamed.
    if (attempt > 1) events.push({ type: 'stream_reset', step, attempt });
    events.push({ type: 'step_start', step, attempt });

    const history = await deps.store.loadCommittedMessages({ tenant: input.tenant, threadId: input.threadId });
    const started = performance.now();
    const result = streamText({
      model: deps.agents.modelFor(agent),
      system: agent.system,
      messages: toModelMessages(history),
      tools: toAiSdkTools(agent.tools),
      temperature: agent.temperature,
      // Aborting it aborts the provider's HTTP request: the socket closes and the provider stops generating.
      abortSignal: AbortSignal.any([ctx.cancellationSignal, done.signal]),
      maxRetries: 0, // Temporal owns retries
      providerOptions: { echo: { attempt } },
      onError: () => {}, // errors arrive as `error` parts below; the default handler would only log them
    });

    let text = '';
    const toolCalls: ToolCall[] = [];
    let finishReason = 'unknown';
    let usage: Usage = {};
    for await (const part of result.fullStream) {
      switch (part.type) {
        case 'text-delta':
          text += part.text;
          events.push({ type: 'text_delta', step, delta: part.text });
          break;
        case 'reasoning-delta':
          events.push({ type: 'reasoning_delta', step, delta: part.text });
          break;
        case 'tool-input-start':
          events.push({ type: 'tool_call_start', step, toolCallId: part.id, toolName: part.toolName });
          break;
        case 'tool-input-delta':
          events.push({ type: 'tool_call_delta', step, toolCallId: part.id, delta: part.delta });
          break;
        case 'tool-call':
          // Invalid calls (unknown tool, unparsable input) are kept too: the tool activity answers them with an error the model can read.
          toolCalls.push({ toolCallId: part.toolCallId, toolName: part.toolName, input: part.input });
          events.push({ type: 'tool_call_ready', step, toolCallId: part.toolCallId, toolName: part.toolName, input: part.input });
          break;
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
    // Carried beside the token counts so the run record can sum it once the store keeps it.
    const stepUsage = { ...usage, inferenceMs: Math.round(performance.now() - started) };
    events.push({ type: 'step_end', step, finishReason, usage: stepUsage });
    await events.close();
    await deps.store.recordStep(runId, step, stepUsage);
    return { text, toolCalls, finishReason, usage, inferenceMs: stepUsage.inferenceMs };
  } catch (err) {
    if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? err;
    // A newer writer (a retry, or the workflow closing an interrupted step) owns the log now: this attempt is a zombie.
    if (err instanceof StoreError && err.code === 'stale_writer') throw ApplicationFailure.nonRetryable(err.message, err.code);
    if (err instanceof StoreError) throw err;
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
 */
export function classifyModelError(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (APICallError.isInstance(err)) {
    const status = err.statusCode;
    const detail = `model call failed${status ? ` (HTTP ${status})` : ''}: ${err.message}`;
    const details = [{ statusCode: status ?? null, url: err.url, responseBody: err.responseBody?.slice(0, 2000) ?? null }];
    const transient =
      status === undefined || (status >= 200 && status < 300) ? err.isRetryable || !CONTEXT_OVERFLOW.test(err.message) : isTransientStatus(status);
    if (!transient) return ApplicationFailure.create({ message: detail, type: 'model_permanent', nonRetryable: true, details });
    return ApplicationFailure.create({ message: detail, type: 'model_transient', details, nextRetryDelay: retryAfterMs(err.responseHeaders) });
  }
  if (err instanceof Error && PERMANENT_SDK_ERRORS.has(err.name)) {
    return ApplicationFailure.create({ message: `model call failed: ${err.message}`, type: 'model_permanent', nonRetryable: true });
  }
  // Mid-stream failures: a provider's in-band `{"error": …}` chunk, or the socket dropping under the body.
  const message = err instanceof Error ? errorChainMessage(err) : providerErrorMessage(err);
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
        const { lastSeq } = await this.store.appendEvents(this.runId, this.fence, batch);
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
