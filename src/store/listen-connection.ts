// The one LISTEN connection of a process on the events channel: connected at start, reconnected with
// backoff whenever it is lost, until closed. What a notification means is the subscriber's business.
import pg from 'pg';
import { EVENTS_CHANNEL } from './events.js';

export interface ListenConnectionOptions {
  databaseUrl: string;
  onNotification: (message: pg.Notification) => void;
  /** the LISTEN is (again) in place: notifications sent while nobody listened are gone */
  onListening: () => void;
  onError: (err: unknown) => void;
  /** delay before the next connect after `failures` failed or lost connections */
  backoff: (failures: number) => number;
}

export class ListenConnection {
  private client: pg.Client | undefined;
  private pid: number | undefined;
  private connecting = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connectFailures = 0;
  private connectedBefore = false;
  private closed = false;
  private readyWaiters: (() => void)[] = [];
  /** Times the connection was re-established after being lost. */
  reconnects = 0;

  constructor(private readonly options: ListenConnectionOptions) {}

  /** Resolves once the LISTEN is in place; keeps retrying (with backoff) until it is or `close()` is called. */
  start(): Promise<void> {
    if (this.client || this.closed) return Promise.resolve();
    const ready = new Promise<void>((resolve) => this.readyWaiters.push(resolve));
    if (!this.connecting && !this.reconnectTimer) this.connect();
    return ready;
  }

  get listening(): boolean {
    return this.client !== undefined;
  }

  /** The listener's server process id while connected (what `pg_terminate_backend` takes). */
  get backendPid(): number | undefined {
    return this.pid;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    for (const resolve of this.readyWaiters.splice(0)) resolve();
    const client = this.client;
    this.client = undefined;
    this.pid = undefined;
    await client?.end().catch(() => {});
  }

  private connect() {
    this.connecting = true;
    void this.open().then(
      () => {
        this.connecting = false;
      },
      (err) => {
        this.connecting = false;
        this.options.onError(err);
        this.scheduleReconnect();
      },
    );
  }

  private async open(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.databaseUrl, keepAlive: true, connectionTimeoutMillis: 10_000, application_name: 'threadbox-listener' });
    let ended = false;
    // An unhandled 'error' on a pg.Client crashes the process; losing the listener must not.
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => {
      ended = true;
      this.lost(client);
    });
    client.on('notification', (message) => this.options.onNotification(message));
    let pid: number;
    try {
      await client.connect();
      await client.query(`LISTEN ${EVENTS_CHANNEL}`);
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      if (ended) throw new Error('listener connection ended while it was being set up');
      pid = rows[0]!.pid;
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.closed) return void (await client.end().catch(() => {}));
    this.client = client;
    this.pid = pid;
    this.connectFailures = 0;
    if (this.connectedBefore) this.reconnects += 1;
    this.connectedBefore = true;
    for (const resolve of this.readyWaiters.splice(0)) resolve();
    this.options.onListening();
  }

  private lost(client: pg.Client, err?: unknown) {
    if (client !== this.client) return;
    this.client = undefined;
    this.pid = undefined;
    if (err) this.options.onError(err);
    client.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect() {
    if (this.closed || this.reconnectTimer || this.connecting) return;
    this.connectFailures += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.closed && !this.client) this.connect();
    }, this.options.backoff(this.connectFailures));
  }
}
