// One LISTEN connection per process, fanned out in-process: each subscriber gets its run's or
// thread's events in order, exactly once and with no gap, across coalesced notifications and
// lost connections, because a notification only says "look", and what is delivered is always
// read from Postgres from that subscriber's own cursor.
import type pg from 'pg';
import type { RunEvent } from '../contract/run-events.js';
import { EVENTS_CHANNEL, type EventsNotification } from './events.js';
import { ListenConnection } from './listen-connection.js';
import type { Store } from './store.js';
import type { ThreadRef } from './threads.js';

export type Unsubscribe = () => void;
export type OnEvents = (events: RunEvent[]) => void;

export interface EventSubscriberOptions {
  /** First delay before reconnecting or re-reading after a failure; doubles per failure up to `maxRetryDelayMs`. */
  minRetryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** Events per read; a subscriber further behind reads page after page. */
  pageSize?: number;
  /** Failures that do not stop delivery: a lost connection, a failed read (retried), a throwing callback. */
  onError?: (err: unknown) => void;
}

interface Subscription {
  /** `seq` for run subscriptions, the global `id` for thread subscriptions */
  cursor: number;
  read: (after: number, limit: number) => Promise<RunEvent[]>;
  position: (event: RunEvent) => number;
  onEvents: OnEvents;
  active: boolean;
  reading: boolean;
  /** a notification arrived while reading: read once more before going idle */
  again: boolean;
  failures: number;
  retryTimer?: NodeJS.Timeout;
  remove: () => void;
}

export class EventSubscriber {
  private readonly runs = new Map<string, Set<Subscription>>();
  private readonly threads = new Map<string, Set<Subscription>>();
  private readonly minRetryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly pageSize: number;
  private readonly onError: (err: unknown) => void;
  private readonly connection: ListenConnection;

  constructor(
    private readonly store: Store,
    databaseUrl: string,
    options: EventSubscriberOptions = {},
  ) {
    this.minRetryDelayMs = options.minRetryDelayMs ?? 100;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 5_000;
    this.pageSize = options.pageSize ?? 500;
    this.onError = options.onError ?? (() => {});
    this.connection = new ListenConnection({
      databaseUrl,
      onNotification: (message) => this.notified(message),
      // Notifications sent while nobody listened are gone: re-read every subscriber's gap.
      onListening: () => this.forEachSubscription((sub) => this.schedule(sub)),
      onError: (err) => this.onError(err),
      backoff: (failures) => this.backoff(failures),
    });
  }

  /** Resolves once the LISTEN is in place; keeps retrying (with backoff) until it is or `close()` is called. */
  start(): Promise<void> {
    return this.connection.start();
  }

  get listening(): boolean {
    return this.connection.listening;
  }

  /** The listener's server process id while connected (what `pg_terminate_backend` takes). */
  get backendPid(): number | undefined {
    return this.connection.backendPid;
  }

  /** Times the LISTEN connection was re-established after being lost. */
  get reconnects(): number {
    return this.connection.reconnects;
  }

  get subscriptionCount(): number {
    let n = 0;
    this.forEachSubscription(() => n++);
    return n;
  }

  /**
   * Delivers the run's events with `seq > afterSeq`, in seq order, as they are committed. Run ids are
   * unique per tenant: the API always names the tenant; without one the id must be unique overall.
   */
  subscribeRun(runId: string, afterSeq: number, onEvents: OnEvents, tenant?: string): Unsubscribe {
    return this.add(this.runs, tenant === undefined ? runId : runKey(tenant, runId), afterSeq, onEvents, {
      read: (after, limit) => this.store.readEvents(runId, after, limit, tenant),
      position: (e) => e.seq,
    });
  }

  /** Delivers the thread's events with `id > afterId`, in id order, as they are committed. */
  subscribeThread(ref: ThreadRef, afterId: number, onEvents: OnEvents): Unsubscribe {
    return this.add(this.threads, threadKey(ref.tenant, ref.threadId), afterId, onEvents, {
      read: (after, limit) => this.store.readThreadEvents(ref, after, limit),
      position: (e) => e.id,
    });
  }

  async close(): Promise<void> {
    this.forEachSubscription((sub) => this.deactivate(sub));
    this.runs.clear();
    this.threads.clear();
    await this.connection.close();
  }

  private forEachSubscription(act: (sub: Subscription) => void) {
    for (const set of [...this.runs.values(), ...this.threads.values()]) for (const sub of set) act(sub);
  }

  // ---- subscriptions ------------------------------------------------------------------

  private add(
    index: Map<string, Set<Subscription>>,
    key: string,
    cursor: number,
    onEvents: OnEvents,
    how: Pick<Subscription, 'read' | 'position'>,
  ): Unsubscribe {
    if (this.connection.isClosed) throw new Error('EventSubscriber is closed');
    const sub: Subscription = {
      ...how,
      cursor,
      onEvents,
      active: true,
      reading: false,
      again: false,
      failures: 0,
      remove: () => {
        const set = index.get(key);
        set?.delete(sub);
        if (set?.size === 0) index.delete(key);
      },
    };
    let set = index.get(key);
    if (!set) index.set(key, (set = new Set()));
    set.add(sub);
    void this.start();
    // What was committed before this subscriber existed is announced by no notification.
    this.schedule(sub);
    return () => this.deactivate(sub);
  }

  private deactivate(sub: Subscription) {
    sub.active = false;
    clearTimeout(sub.retryTimer);
    sub.retryTimer = undefined;
    sub.remove();
  }

  /** Starts a read of the subscriber's gap, or marks that one more is needed: reads of one subscriber never overlap. */
  private schedule(sub: Subscription) {
    if (!sub.active || sub.retryTimer) return; // a pending retry reads everything anyway
    if (sub.reading) {
      sub.again = true;
      return;
    }
    sub.reading = true;
    void this.drain(sub);
  }

  private async drain(sub: Subscription) {
    try {
      do {
        sub.again = false;
        for (;;) {
          const page = await sub.read(sub.cursor, this.pageSize);
          if (!sub.active) return;
          const fresh = page.filter((e) => sub.position(e) > sub.cursor);
          if (fresh.length > 0) {
            sub.cursor = sub.position(fresh[fresh.length - 1]!);
            this.deliver(sub, fresh);
          }
          if (page.length < this.pageSize || !sub.active) break;
        }
      } while (sub.again && sub.active);
      sub.failures = 0;
    } catch (err) {
      this.onError(err);
      if (sub.active) {
        sub.failures += 1;
        sub.retryTimer = setTimeout(() => {
          sub.retryTimer = undefined;
          this.schedule(sub);
        }, this.backoff(sub.failures));
      }
    } finally {
      sub.reading = false;
    }
  }

  private deliver(sub: Subscription, events: RunEvent[]) {
    try {
      sub.onEvents(events);
    } catch (err) {
      this.onError(err);
    }
  }

  private notified(message: pg.Notification) {
    if (message.channel !== EVENTS_CHANNEL || !message.payload) return;
    let note: EventsNotification;
    try {
      note = JSON.parse(message.payload) as EventsNotification;
    } catch (err) {
      this.onError(err);
      return;
    }
    for (const key of [runKey(note.tenant, note.runId), note.runId]) {
      for (const sub of this.runs.get(key) ?? []) if (sub.cursor < note.seq) this.schedule(sub);
    }
    for (const sub of this.threads.get(threadKey(note.tenant, note.threadId)) ?? []) if (sub.cursor < note.id) this.schedule(sub);
  }

  /** Exponential with jitter, so many API replicas that lost Postgres together do not reconnect in step. */
  private backoff(failures: number): number {
    const ceiling = Math.min(this.maxRetryDelayMs, this.minRetryDelayMs * 2 ** (failures - 1));
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }
}

/** A tenant's run, in the runs index (a NUL cannot occur in an id, so keys never collide). */
function runKey(tenant: string, runId: string): string {
  return `${tenant}\u0000${runId}`;
}

function threadKey(tenant: string, threadId: string): string {
  return JSON.stringify([tenant, threadId]);
}
