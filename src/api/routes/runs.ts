import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { errorBody, run, runParams } from '../schemas.js';

export const runRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/v1/runs/:runId',
    { schema: { tags: ['runs'], summary: 'A run record', params: runParams, response: { 200: run, 401: errorBody, 404: errorBody } } },
    async (request) => app.threadbox.getRun(request.tenant, request.params.runId),
  );
};
