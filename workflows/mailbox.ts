// The mailbox's state and rules, free of Temporal so unit tests can drive it without a server.
import type { Dispatch, MailboxState, StoredMailbox } from '../src/contract/mailbox.js';

type NewDispatch = Omit<Dispatch, 'epoch' | 'carriedRunIds'>;

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

  isQueued(runId: string): boolean {
    return this.queue.some((d) => d.runId === runId);
  }

  /** Background submit: FIFO behind whatever runs. */
  enqueue(dispatch: NewDispatch): Dispatch {
    const queued = { ...dispatch, epoch: this.epoch, carriedRunIds: [] };
    this.queue.push(queued);
    return queued;
  }

  /** Input that must not wait behind the queue (late steering): first in line, same epoch. */
  enqueueFirst(dispatch: NewDispatch): Dispatch {
    const queued = { ...dispatch, epoch: this.epoch, carriedRunIds: [] };
    this.queue.unshift(queued);
    return queued;
  }

  /**
   * Foreground submit: a new epoch, every queued dispatch superseded (their input travels
   * with the new run, ahead of its own), and the new dispatch first in line.
   */
  putFirst(dispatch: NewDispatch, alsoCarried: string[] = []): { dispatch: Dispatch; superseded: Dispatch[] } {
    const superseded = this.supersedeQueue();
    const carriedRunIds = [...superseded.flatMap((d) => [...d.carriedRunIds, d.runId]), ...alsoCarried];
    const first = { ...dispatch, epoch: this.epoch, carriedRunIds };
    this.queue = [first];
    return { dispatch: first, superseded };
  }

  /** A new epoch with an empty queue; returns what was queued. */
  supersedeQueue(): Dispatch[] {
    this.epoch += 1;
    const superseded = this.queue;
    this.queue = [];
    return superseded;
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

  /** Takes a queued dispatch out; the runs it carried move to the next in line, or are returned to commit now. */
  removeQueued(runId: string): { removed: Dispatch; orphanedCarriedRunIds: string[] } | undefined {
    const index = this.queue.findIndex((d) => d.runId === runId);
    if (index < 0) return undefined;
    const [removed] = this.queue.splice(index, 1);
    const heir = this.queue[index];
    if (heir) {
      heir.carriedRunIds = [...removed!.carriedRunIds, ...heir.carriedRunIds];
      return { removed: removed!, orphanedCarriedRunIds: [] };
    }
    return { removed: removed!, orphanedCarriedRunIds: removed!.carriedRunIds };
  }

  /** Steering the active run was sent: if the run dies without applying it, the thread commits it. */
  recordSteering(runId: string, messages: Dispatch['steered'] & {}): void {
    if (this.active?.runId === runId) this.active.steered = [...(this.active.steered ?? []), ...messages];
  }

  /** A thread rebuilt from the store (its workflow was terminated): the active run is already started. */
  restore(stored: StoredMailbox): void {
    this.epoch = Math.max(this.epoch, stored.epoch);
    this.queue = [...stored.queue, ...this.queue];
    this.active = stored.active;
    this.activeStarted = stored.active !== null;
  }

  snapshot(): MailboxState {
    return { epoch: this.epoch, queue: this.queue, active: this.active };
  }
}
