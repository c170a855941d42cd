// The model call of one step: the AI SDK request, and its stream parts turned into run events as they arrive.
import { streamText, type TextStreamPart, type ToolSet } from 'ai';
import type { Usage } from '../src/contract/run-events.js';
import type { Agent, AgentRegistry } from '../src/agent/agents.js';
import { DeltaSanitizer, sanitizeJson, sanitizeText } from '../src/agent/sanitize.js';
import { toAiSdkTools } from '../src/agent/tools.js';
import type { CommittedMessage, ToolCall } from '../src/store/store.js';
import type { EventFlusher } from './event-flusher.js';
import { toModelMessages } from './model-context.js';

/** Sends the request; aborting `abortSignal` aborts the provider's HTTP request: the socket closes and the provider stops generating. */
export function streamModelReply(agents: AgentRegistry, agent: Agent, history: CommittedMessage[], abortSignal: AbortSignal, attempt: number) {
  return streamText({
    model: agents.modelFor(agent),
    system: agent.system,
    messages: toModelMessages(history),
    tools: toAiSdkTools(agent.tools),
    temperature: agent.temperature,
    abortSignal,
    maxRetries: 0, // Temporal owns retries
    ...callOptionsFor(agent, attempt),
    onError: () => {}, // errors arrive as `error` parts (StepReply.take); the default handler would only log them
  });
}

/** Only the echo model reads the attempt (its `/fail` directive); a real provider gets no options of ours. */
export function callOptionsFor(agent: Pick<Agent, 'model'>, attempt: number): { providerOptions?: { echo: { attempt: number } } } {
  return agent.model === 'echo' ? { providerOptions: { echo: { attempt } } } : {};
}

/** What one step's reply said so far; each part it takes goes on to the event log as it arrives. */
export class StepReply {
  text = '';
  readonly toolCalls: ToolCall[] = [];
  finishReason = 'unknown';
  usage: Usage = {};
  // Everything a model says is made storable before it reaches the event log or the returned text.
  private readonly deltas = new Map<string, DeltaSanitizer>();

  constructor(
    private readonly step: number,
    private readonly events: EventFlusher,
    private readonly cancellation: AbortSignal,
  ) {}

  /** Takes one stream part; the stream's own failure (an `error` or `abort` part) is thrown. */
  take(part: TextStreamPart<ToolSet>): void {
    const { step, events } = this;
    switch (part.type) {
      case 'text-delta':
        this.pushText(this.sanitized(`text:${part.id}`, part.text));
        break;
      case 'text-end':
        this.pushText(this.ended(`text:${part.id}`));
        break;
      case 'reasoning-delta':
        this.pushReasoning(this.sanitized(`reasoning:${part.id}`, part.text));
        break;
      case 'reasoning-end':
        this.pushReasoning(this.ended(`reasoning:${part.id}`));
        break;
      case 'tool-input-start':
        events.push({ type: 'tool_call_start', step, toolCallId: sanitizeText(part.id), toolName: sanitizeText(part.toolName) });
        break;
      case 'tool-input-delta': {
        const delta = this.sanitized(`tool:${part.id}`, part.delta);
        if (delta) events.push({ type: 'tool_call_delta', step, toolCallId: sanitizeText(part.id), delta });
        break;
      }
      case 'tool-input-end': {
        const delta = this.ended(`tool:${part.id}`);
        if (delta) events.push({ type: 'tool_call_delta', step, toolCallId: sanitizeText(part.id), delta });
        break;
      }
      case 'tool-call': {
        // Invalid calls (unknown tool, unparsable input) are kept too: the tool activity answers them with an error the model can read.
        const call = { toolCallId: sanitizeText(part.toolCallId), toolName: sanitizeText(part.toolName), input: sanitizeJson(part.input) };
        this.toolCalls.push(call);
        events.push({ type: 'tool_call_ready', step, ...call });
        break;
      }
      case 'finish-step':
        this.finishReason = part.finishReason;
        this.usage = { inputTokens: part.usage.inputTokens, outputTokens: part.usage.outputTokens };
        break;
      case 'abort':
        throw this.cancellation.reason ?? new Error('model call aborted');
      case 'error':
        throw part.error;
    }
  }

  /** A stream that ended without its end parts still gives back what its sanitizers held. */
  end(): void {
    for (const key of [...this.deltas.keys()]) {
      if (key.startsWith('text:')) this.pushText(this.ended(key));
      else if (key.startsWith('reasoning:')) this.pushReasoning(this.ended(key));
    }
  }

  private sanitized(key: string, delta: string): string {
    let sanitizer = this.deltas.get(key);
    if (!sanitizer) this.deltas.set(key, (sanitizer = new DeltaSanitizer()));
    return sanitizer.push(delta);
  }

  private ended(key: string): string {
    const rest = this.deltas.get(key)?.end() ?? '';
    this.deltas.delete(key);
    return rest;
  }

  private pushText(delta: string) {
    if (!delta) return;
    this.text += delta;
    this.events.push({ type: 'text_delta', step: this.step, delta });
  }

  private pushReasoning(delta: string) {
    if (delta) this.events.push({ type: 'reasoning_delta', step: this.step, delta });
  }
}
