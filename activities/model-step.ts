// One model call: streams the reply into the event log, flushing as it heartbeats, and returns what it said.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { APICallError } from '@ai-sdk/provider';
import { streamText, type ModelMessage } from 'ai';
import type { RunEventBody, Usage } from '../src/events.js';
import type { AgentRegistry } from '../src/agent/agents.js';
import { toAiSdkTools } from '../src/agent/tools.js';
import type { CommittedMessage, Store, ToolCall } from '../src/store/store.js';

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
}

/** How long streamed events may wait in the buffer before a flush. */
export const FLUSH_INTERVAL_MS = Number(process.env.THREADBOX_FLUSH_MS ?? 25);
const IDLE_HEARTBEAT_MS = 1000;

export async function runModelStep(deps: { store: Store; agents: AgentRegistry }, input: ModelStepInput): Promise<ModelStepResult> {
  const ctx = Context.current();
  const { runId, step } = input;
  const attempt = ctx.info.attempt;
  const agent = deps.agents.get(input.agentId);
  if (!agent) throw ApplicationFailure.nonRetryable(`unknown agent ${input.agentId}`, 'unknown_agent');

  const events = new EventFlusher(deps.store, runId, step * 1000 + attempt, (seq) => ctx.heartbeat({ seq }));
  const idleHeartbeat = setInterval(() => ctx.heartbeat({ seq: events.lastSeq }), IDLE_HEARTBEAT_MS);
  try {
    // A retry starts the step over: clients drop what the failed attempt streamed.
    if (attempt > 1) events.push({ type: 'stream_reset', step, attempt });
    events.push({ type: 'step_start', step, attempt });

    const history = await deps.store.loadCommittedMessages({ tenant: input.tenant, threadId: input.threadId });
    const result = streamText({
      model: deps.agents.modelFor(agent),
      system: agent.system,
      messages: toModelMessages(history),
      tools: toAiSdkTools(agent.tools),
      temperature: agent.temperature,
      abortSignal: ctx.cancellationSignal,
      maxRetries: 0, // Temporal owns retries
      providerOptions: { echo: { attempt } },
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
          throw classifyModelError(part.error);
      }
      events.throwIfFailed();
    }
    events.push({ type: 'step_end', step, finishReason, usage });
    await events.close();
    await deps.store.recordStep(runId, step, usage);
    return { text, toolCalls, finishReason, usage };
  } catch (err) {
    if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? err;
    throw classifyModelError(err);
  } finally {
    clearInterval(idleHeartbeat);
    events.dispose();
  }
}

/** Transient provider errors (429, 5xx, timeouts, resets) are retried by Temporal; the rest end the run. */
export function classifyModelError(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (APICallError.isInstance(err)) {
    const detail = `model call failed (${err.statusCode ?? 'no status'}): ${err.message}`;
    return err.isRetryable ? ApplicationFailure.retryable(detail, 'model_transient') : ApplicationFailure.nonRetryable(detail, 'model_permanent');
  }
  return err;
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
  ) {}

  push(event: RunEventBody) {
    this.buffer.push(event);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, FLUSH_INTERVAL_MS);
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
