// The first hop of the token path: a step's events, appended to the run's log by group commit.
import type { RunEventBody } from '../src/contract/run-events.js';
import type { Store } from '../src/store/store.js';

/**
 * Group commit: an event is written at once when no write is in flight; whatever arrives meanwhile
 * goes into the next write, with runs of deltas coalesced into one event each. A slow model's tokens
 * each cost one commit and reach the client at once; a fast model's are batched, one `text_delta` per
 * write. Each append heartbeats its last seq, the step's resume cursor.
 */
export class EventFlusher {
  lastSeq = 0;
  private buffer: RunEventBody[] = [];
  private inFlight: Promise<void> | undefined;
  private failure: unknown;

  constructor(
    private readonly store: Store,
    private readonly tenant: string,
    private readonly runId: string,
    private readonly fence: number,
    private readonly heartbeat: (seq: number) => void,
  ) {}

  push(event: RunEventBody) {
    const last = this.buffer.at(-1);
    const merged = last && coalesce(last, event);
    if (merged) this.buffer[this.buffer.length - 1] = merged;
    else this.buffer.push(event);
    if (!this.inFlight) void this.flush();
  }

  throwIfFailed() {
    if (this.failure) throw this.failure;
  }

  /** Resolves once everything pushed so far is written (or the flusher has failed). */
  async flush(): Promise<void> {
    while (this.inFlight) await this.inFlight;
    if (this.buffer.length === 0 || this.failure) return;
    this.inFlight = this.write(this.buffer.splice(0)).finally(() => {
      this.inFlight = undefined;
      // What arrived during the write goes next, as one batch.
      if (this.buffer.length > 0 && !this.failure) void this.flush();
    });
    await this.inFlight;
  }

  private async write(batch: RunEventBody[]) {
    try {
      const { lastSeq } = await this.store.appendEvents(this.runId, this.fence, batch, this.tenant);
      this.lastSeq = lastSeq;
      this.heartbeat(lastSeq);
    } catch (err) {
      this.failure = err;
    }
  }

  async close() {
    await this.flush();
    while (this.inFlight) await this.inFlight;
    this.throwIfFailed();
  }
}

/** A coalesced delta stops growing here, so one SSE frame stays small even behind a slow write. */
const MAX_COALESCED_CHARS = 16_384;

/** One event for two consecutive deltas of the same stream, or undefined when they do not join. */
function coalesce(a: RunEventBody, b: RunEventBody): RunEventBody | undefined {
  if ('delta' in a && a.delta.length >= MAX_COALESCED_CHARS) return undefined;
  if (a.type === 'text_delta' && b.type === 'text_delta' && a.step === b.step) return { ...a, delta: a.delta + b.delta };
  if (a.type === 'reasoning_delta' && b.type === 'reasoning_delta' && a.step === b.step) return { ...a, delta: a.delta + b.delta };
  if (a.type === 'tool_call_delta' && b.type === 'tool_call_delta' && a.step === b.step && a.toolCallId === b.toolCallId) return { ...a, delta: a.delta + b.delta };
  return undefined;
}
