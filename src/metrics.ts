// Prometheus metrics of one API instance. Each instance has its own registry (not prom-client's
// global one), so two instances in one process, as in the tests, do not clash.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { TERMINATION_TYPES as TERMINATIONS } from './contract/run-events.js';

import type { OperationalCounts } from './store/store.js';

export class Metrics {
  readonly registry = new Registry();
  readonly contentType = this.registry.contentType;

  readonly httpRequestDuration = new Histogram({
    name: 'threadbox_http_request_duration_seconds',
    help: 'HTTP requests by route pattern, method and status (SSE streams excluded: they last as long as their run)',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly submitToFirstEvent = new Histogram({
    name: 'threadbox_submit_to_first_event_seconds',
    help: 'From a streaming submit arriving to its first SSE event being written',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly submitToFirstToken = new Histogram({
    name: 'threadbox_submit_to_first_token_seconds',
    help: 'From a streaming submit arriving to its first text_delta being written',
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly sseSlowClientDisconnects = new Counter({
    name: 'threadbox_sse_slow_client_disconnects_total',
    help: 'SSE connections closed because the client read too slowly (past THREADBOX_SSE_MAX_BUFFER_BYTES unsent)',
    registers: [this.registry],
  });
  private readonly runsFinished = new Gauge({
    name: 'threadbox_runs_finished',
    help: 'Runs that have ended, by termination type (counted in Postgres: every replica reports the same)',
    labelNames: ['termination'] as const,
    registers: [this.registry],
  });
  private readonly runsActive = new Gauge({
    name: 'threadbox_runs_active',
    help: 'Runs in progress, by status (running, or waiting for an approval); counted in Postgres',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  private readonly dispatchesQueued = new Gauge({
    name: 'threadbox_dispatches_queued',
    help: 'Dispatches queued behind an active run; counted in Postgres',
    registers: [this.registry],
  });
  private readonly countsUp = new Gauge({
    name: 'threadbox_metrics_postgres_up',
    help: '1 when the Postgres-backed gauges of this scrape are fresh, 0 when reading them failed',
    registers: [this.registry],
  });

  constructor(
    private readonly readCounts: () => Promise<OperationalCounts>,
    openSseConnections: () => number,
  ) {
    new Gauge({
      name: 'threadbox_sse_connections',
      help: 'Open SSE connections on this instance',
      registers: [this.registry],
      collect() {
        this.set(openSseConnections());
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** The exposition text; the Postgres-backed gauges are read once per scrape. */
  async render(): Promise<string> {
    try {
      const counts = await this.readCounts();
      for (const type of TERMINATIONS) this.runsFinished.set({ termination: type }, counts.finishedByTermination[type] ?? 0);
      this.runsActive.set({ status: 'running' }, counts.running);
      this.runsActive.set({ status: 'waiting' }, counts.waiting);
      this.dispatchesQueued.set(counts.queuedDispatches);
      this.countsUp.set(1);
    } catch {
      // A scrape must still answer when Postgres does not: the stale gauges are flagged instead.
      this.countsUp.set(0);
    }
    return this.registry.metrics();
  }
}
