// The AI SDK's UI-message stream (`x-vercel-ai-ui-message-stream: v1`) as a pure encoder over RunEvent:
// what `useChat`'s DefaultChatTransport reads. One encoder follows one run; the assistant message's id is the run id.
import type { UIMessageChunk } from 'ai';
import type { RunEvent, Termination } from '../contract/run-events.js';

export const UI_MESSAGE_STREAM_HEADERS = { 'x-vercel-ai-ui-message-stream': 'v1' } as const;

/** What a chat message's `metadata` carries: which run it is, how far it got, how it ended. */
export interface RunMessageMetadata {
  runId: string;
  threadId: string;
  status?: 'queued' | 'running' | 'waiting' | 'done';
  agentId?: string;
  termination?: Termination;
}

/** A finished run's last chunks: `finish` for a run that ended on its own, `abort` for a stopped one, `error` for a failed one. */
export function closingChunks(termination: Termination, metadata: RunMessageMetadata): UIMessageChunk[] {
  const messageMetadata = { ...metadata, status: 'done', termination };
  switch (termination.type) {
    case 'natural_end':
      return [{ type: 'finish', finishReason: 'stop', messageMetadata }];
    case 'max_steps':
      return [{ type: 'finish', finishReason: 'length', messageMetadata }];
    case 'error':
      return [{ type: 'message-metadata', messageMetadata }, { type: 'error', errorText: termination.detail ?? 'the run failed' }];
    default:
      // interrupted, cancelled, superseded: what streamed so far stays, marked by the metadata
      return [{ type: 'message-metadata', messageMetadata }, { type: 'abort', reason: termination.detail ? `${termination.type}: ${termination.detail}` : termination.type }];
  }
}

export class UiMessageStreamEncoder {
  private started = false;
  private stepOpen = false;
  private text?: string;
  private reasoning?: string;
  private parts = 0;
  private waiting = false;
  private readonly toolInputs = new Set<string>();
  /** approvals asked for and not yet answered by a tool result */
  readonly pendingApprovals = new Set<string>();
  /** the run's last event has been encoded */
  finished = false;

  constructor(private readonly metadata: RunMessageMetadata) {}

  encode(events: RunEvent[]): UIMessageChunk[] {
    return events.flatMap((event) => this.encodeOne(event));
  }

  /** Ends a stream that stops while the run waits for decisions (the client answers with a new request). */
  pause(): UIMessageChunk[] {
    return [...this.closeParts(), { type: 'finish', messageMetadata: { ...this.metadata, status: 'waiting' } }];
  }

  private encodeOne(event: RunEvent): UIMessageChunk[] {
    const out: UIMessageChunk[] = [];
    if (!this.started) {
      this.started = true;
      const status = event.type === 'run_queued' ? 'queued' : 'running';
      out.push({ type: 'start', messageId: this.metadata.runId, messageMetadata: { ...this.metadata, status } });
    }
    if (this.waiting && (event.type === 'tool_call_done' || event.type === 'step_start')) {
      this.waiting = false;
      out.push(this.status('running'));
    }
    out.push(...this.chunksOf(event));
    return out;
  }

  private chunksOf(event: RunEvent): UIMessageChunk[] {
    switch (event.type) {
      case 'run_queued':
        return [];
      case 'run_start':
        return [{ type: 'message-metadata', messageMetadata: { ...this.metadata, status: 'running', agentId: event.agentId } }];
      case 'step_start':
        this.stepOpen = true;
        return [{ type: 'start-step' }];
      case 'text_delta':
        return this.delta('text', event);
      case 'reasoning_delta':
        return this.delta('reasoning', event);
      case 'tool_call_start':
        this.toolInputs.add(event.toolCallId);
        return [...this.closeText(), { type: 'tool-input-start', toolCallId: event.toolCallId, toolName: event.toolName, dynamic: true }];
      case 'tool_call_delta':
        // a delta of a call whose start this stream did not carry cannot be placed: its `ready` carries the whole input
        return this.toolInputs.has(event.toolCallId) ? [{ type: 'tool-input-delta', toolCallId: event.toolCallId, inputTextDelta: event.delta }] : [];
      case 'tool_call_ready':
        return [...this.closeText(), { type: 'tool-input-available', toolCallId: event.toolCallId, toolName: event.toolName, input: event.input, dynamic: true }];
      case 'tool_approval_requested':
        this.pendingApprovals.add(event.toolCallId);
        this.waiting = true;
        return [{ type: 'tool-approval-request', approvalId: event.toolCallId, toolCallId: event.toolCallId }, this.status('waiting')];
      case 'tool_call_done':
        this.pendingApprovals.delete(event.toolCallId);
        if (event.outcome === 'ok') return [{ type: 'tool-output-available', toolCallId: event.toolCallId, output: event.output ?? null, dynamic: true }];
        if (event.outcome === 'denied') return [{ type: 'tool-output-denied', toolCallId: event.toolCallId }];
        return [{ type: 'tool-output-error', toolCallId: event.toolCallId, errorText: event.error ?? event.outcome, dynamic: true }];
      case 'steering_applied':
        return [...this.closeText(), { type: 'data-steering', id: `steering:${event.seq}`, data: { messageIds: event.messageIds } }];
      case 'stream_reset':
        // A retried step: a plain client keeps the failed attempt's text above this marker; the playground drops it.
        return [...this.closeParts(), { type: 'data-stream-reset', id: `reset:${event.step}:${event.attempt}`, data: { step: event.step, attempt: event.attempt } }];
      case 'step_end':
        return this.closeParts();
      case 'run_finish':
        this.finished = true;
        return [...this.closeParts(), ...closingChunks(event.termination, this.metadata)];
    }
  }

  private status(status: RunMessageMetadata['status']): UIMessageChunk {
    return { type: 'message-metadata', messageMetadata: { ...this.metadata, status } };
  }

  private delta(kind: 'text' | 'reasoning', event: Extract<RunEvent, { type: 'text_delta' | 'reasoning_delta' }>): UIMessageChunk[] {
    const out: UIMessageChunk[] = [];
    if (!this.stepOpen) {
      // a stream that begins inside a step (it never does from a run's start, but a resumed continuation may)
      this.stepOpen = true;
      out.push({ type: 'start-step' });
    }
    if (kind === 'text') {
      out.push(...this.closeReasoning());
      if (!this.text) {
        this.text = `${this.metadata.runId}:${event.step}:${event.attempt}:text:${++this.parts}`;
        out.push({ type: 'text-start', id: this.text });
      }
      out.push({ type: 'text-delta', id: this.text, delta: event.delta });
    } else {
      out.push(...this.closeText());
      if (!this.reasoning) {
        this.reasoning = `${this.metadata.runId}:${event.step}:${event.attempt}:reasoning:${++this.parts}`;
        out.push({ type: 'reasoning-start', id: this.reasoning });
      }
      out.push({ type: 'reasoning-delta', id: this.reasoning, delta: event.delta });
    }
    return out;
  }

  private closeText(): UIMessageChunk[] {
    const out: UIMessageChunk[] = [];
    if (this.text) out.push({ type: 'text-end', id: this.text });
    this.text = undefined;
    return [...out, ...this.closeReasoning()];
  }

  private closeReasoning(): UIMessageChunk[] {
    const id = this.reasoning;
    this.reasoning = undefined;
    return id ? [{ type: 'reasoning-end', id }] : [];
  }

  private closeParts(): UIMessageChunk[] {
    const out = this.closeText();
    if (this.stepOpen) out.push({ type: 'finish-step' });
    this.stepOpen = false;
    return out;
  }
}

/** SSE framing of the UI-message stream: one `data:` line per chunk, `[DONE]` at the end. */
export const encodeUiChunks = (chunks: UIMessageChunk[]) => chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join('');
export const UI_STREAM_DONE = 'data: [DONE]\n\n';
