import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { cancelResponse, decisionBody, decisionResponse, errorBody, noBody, run, runParams } from '../schemas.js';

const errors = { 400: errorBody, 401: errorBody, 404: errorBody, 409: errorBody, 429: errorBody, 503: errorBody };

export const runRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/v1/runs/:runId',
    { schema: { tags: ['runs'], summary: 'A run record', params: runParams, response: { 200: run, ...errors } } },
    async (request) => app.threadbox.getRun(request.tenant, request.params.runId),
  );

  app.post(
    '/v1/runs/:runId/cancel',
    { schema: { tags: ['runs'], summary: 'Cancel a queued or active run', params: runParams, body: noBody, response: { 202: cancelResponse, ...errors } } },
    async (request, reply) => reply.status(202).send(await app.threadbox.cancelRun(request.tenant, request.params.runId)),
  );

  app.post(
    '/v1/runs/:runId/decisions',
    {
      schema: {
        tags: ['runs'],
        summary: 'Approve or deny a tool call the run waits on',
        params: runParams,
        body: decisionBody,
        response: { 202: decisionResponse, ...errors, 413: errorBody },
      },
    },
    async (request, reply) => reply.status(202).send(await app.threadbox.decide(request.tenant, request.params.runId, request.body)),
  );
};
