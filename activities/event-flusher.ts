// The first hop of the token path: a step's events, buffered and appended to the run's log in batches.
import type { RunEventBody } from '../src/contract/run-events.js';
import type { Store } from '../src/store/store.js';

/** Buffers events and appends them in batches; each append heartbeats its last seq, the step's resume cursor. */
export class EventFlusher {
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
