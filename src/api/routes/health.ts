// Operations: readiness, liveness, Prometheus metrics and the OpenAPI document; none needs a key.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorBody, health } from '../schemas.js';

const open = { security: [] };

export const healthRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/health',
    { schema: { tags: ['operations'], summary: 'Readiness: Postgres and Temporal', ...open, response: { 200: health, 503: health.extend(errorBody.shape) } } },
    async (_request, reply) => {
      const result = await app.threadbox.health();
      if (result.status === 'ok') return result;
      const down = (['postgres', 'temporal'] as const).filter((name) => result[name] !== 'ok');
      return reply.status(503).header('retry-after', '1').send({ ...result, error: `${down.join(' and ')} unavailable`, code: 'unavailable' });
    },
  );

  app.get('/health/live', { schema: { tags: ['operations'], summary: 'Liveness', ...open, response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics of this instance (run and dispatch gauges are counted in Postgres)',
        ...open,
        produces: ['text/plain'],
        response: { 200: z.string().describe('Prometheus text exposition format') },
      },
    },
    async (_request, reply) => reply.type(app.metrics.contentType).send(await app.metrics.render()),
  );

  app.get(
    '/openapi.json',
    { schema: { tags: ['operations'], summary: 'This document (OpenAPI 3), generated from the route schemas', ...open, response: { 200: z.record(z.string(), z.unknown()) } } },
    async () => app.swagger() as unknown as Record<string, unknown>,
  );
};
