// Request logs that name their thread and run, and the Prometheus metrics of this instance.
import fp from 'fastify-plugin';
import { Metrics } from '../../metrics.js';
import { logIds } from '../log.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

const stringOrUndefined = (value: unknown) => (typeof value === 'string' ? value : undefined);

export default fp(
  async (app) => {
    // The stream count is read at scrape time, from the SSE plugin registered next.
    const metrics = new Metrics(() => app.threadbox.operationalCounts(), () => app.openSseCount());
    app.decorate('metrics', metrics);

    // Request logs carry the thread and run they concern, from the path, the body or the answer.
    app.addHook('preHandler', async (request) => {
      const params = (request.params ?? {}) as { threadId?: string; runId?: string };
      const body = (request.body ?? {}) as { threadId?: unknown };
      logIds(request, { threadId: params.threadId ?? stringOrUndefined(body.threadId), runId: params.runId });
    });
    app.addHook('preSerialization', async (request, _reply, payload) => {
      const ids = (payload ?? {}) as { threadId?: unknown; runId?: unknown };
      if (typeof ids.runId === 'string' || typeof ids.threadId === 'string') {
        logIds(request, { threadId: stringOrUndefined(ids.threadId), runId: stringOrUndefined(ids.runId) });
      }
      return payload;
    });
    // An SSE response lasts as long as its run: it is no request duration.
    app.addHook('onResponse', async (request, reply) => {
      if (reply.isEventStream) return;
      metrics.httpRequestDuration.observe(
        { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      );
    });
  },
  { name: 'threadbox-observability', decorators: { fastify: ['threadbox'] } },
);
