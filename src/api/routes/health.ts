import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorBody, health } from '../schemas.js';

export const healthRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/health',
    { schema: { tags: ['operations'], summary: 'Readiness: Postgres and Temporal', response: { 200: health, 503: health.extend(errorBody.shape) } } },
    async (_request, reply) => {
      const result = await app.threadbox.health();
      if (result.status === 'ok') return result;
      const down = (['postgres', 'temporal'] as const).filter((name) => result[name] !== 'ok');
      return reply.status(503).send({ ...result, error: `${down.join(' and ')} unavailable`, code: 'unavailable' });
    },
  );
  app.get('/health/live', { schema: { tags: ['operations'], summary: 'Liveness', response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({
    status: 'ok' as const,
  }));
};
