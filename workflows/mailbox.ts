// The mailbox's state and rules, free of Temporal so unit tests can drive it without a server.
import type { Dispatch, MailboxState } from './types.js';

export class Mailbox {
  epoch: number;
  queue: Dispatch[];
  active: Dispatch | null;
  /** the active run's child workflow has been started, so it can be signalled */
  activeStarted: boolean;

  constructor(state?: MailboxState) {
    this.epoch = state?.epoch ?? 0;
    this.queue = state?.queue ?? [];
    this.active = state?.active ?? null;
    this.activeStarted = this.active !== null;
  }

  get idle(): boolean {
    return this.active === null && this.queue.length === 0;
  }

  isActive(runId: string): boolean {
    return this.active?.runId === runId;
  }

  /** Background submit: FIFO behind whatever runs. */
  enqueue(dispatch: Omit<Dispatch, 'epoch' | 'carriedRunIds'>): Dispatch {
    const queued = { ...dispatch, epoch: this.epoch, carriedRunIds: [] };
    this.queue.push(queued);
    return queued;
  }

  /**
   * Foreground submit: a new epoch, every queued dispatch superseded (their input travels
   * with the new run), and the new dispatch first in line.
   */
  putFirst(dispatch: Omit<Dispatch, 'epoch' | 'carriedRunIds'>): { dispatch: Dispatch; superseded: Dispatch[] } {
    this.epoch += 1;
    const superseded = this.queue;
    const carriedRunIds = superseded.flatMap((d) => [...d.carriedRunIds, d.runId]);
    const first = { ...dispatch, epoch: this.epoch, carriedRunIds };
    this.queue = [first];
    return { dispatch: first, superseded };
  }

  /** The next dispatch to start, if the thread has no active run. */
  takeNext(): Dispatch | undefined {
    if (this.active || this.queue.length === 0) return undefined;
    this.active = this.queue.shift()!;
    this.activeStarted = false;
    return this.active;
  }

  markStarted(runId: string): void {
    if (this.isActive(runId)) this.activeStarted = true;
  }

  runEnded(runId: string): void {
    if (this.isActive(runId)) {
      this.active = null;
      this.activeStarted = false;
    }
  }

  removeQueued(runId: string): Dispatch | undefined {
    const index = this.queue.findIndex((d) => d.runId === runId);
    return index < 0 ? undefined : this.queue.splice(index, 1)[0];
  }

  snapshot(): MailboxState {
    return { epoch: this.epoch, queue: this.queue, active: this.active };
  }
}
