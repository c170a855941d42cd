import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { v7 as uuidv7 } from 'uuid';
import { streamRun } from './events.js';
import { wantsEventStream } from '../sse.js';
import {
  awakenRunBody,
  dispatch,
  durableMessageBody,
  durableMessageResponse,
  errorBody,
  id,
  interruptResponse,
  messagesPage,
  messagesQuery,
  noBody,
  run,
  submitBody,
  submitResponse,
  thread,
  threadParams,
} from '../schemas.js';

const errors = { 400: errorBody, 401: errorBody, 404: errorBody, 409: errorBody, 429: errorBody, 503: errorBody };
const bodyErrors = { ...errors, 413: errorBody };

export const threadRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/threads/:threadId/runs',
    {
      schema: {
        tags: ['runs'],
        summary: 'Submit messages to a thread (interrupt, queue or steer)',
        params: threadParams,
        headers: z.object({ 'idempotency-key': id.optional() }),
        body: submitBody,
        response: { 202: submitResponse, 200: z.string().describe('with Accept: text/event-stream, the run as SSE from its first event'), ...bodyErrors },
      },
      config: { sse: 'optional' },
    },
    async (request, reply) => {
      const ref = { tenant: request.tenant, threadId: request.params.threadId };
      const result = await app.threadbox.submitRun(ref, request.body, request.headers['idempotency-key']);
      if (wantsEventStream(request)) return streamRun(app, request, reply, result.runId, 0, true);
      return reply.status(202).send(result);
    },
  );

  app.get('/v1/threads', { schema: { tags: ['threads'], summary: 'List threads', response: { 200: z.object({ items: z.array(thread) }), ...errors } } }, async (request) => ({
    items: await app.threadbox.listThreads(request.tenant),
  }));

  app.get(
    '/v1/threads/:threadId',
    { schema: { tags: ['threads'], summary: 'A thread: status, version, active and queued runs', params: threadParams, response: { 200: thread, ...errors } } },
    async (request) => app.threadbox.getThread({ tenant: request.tenant, threadId: request.params.threadId }),
  );

  app.get(
    '/v1/threads/:threadId/messages',
    {
      schema: { tags: ['threads'], summary: 'The committed message log', params: threadParams, querystring: messagesQuery, response: { 200: messagesPage, ...errors } },
    },
    async (request) => app.threadbox.listMessages({ tenant: request.tenant, threadId: request.params.threadId }, request.query.after, request.query.limit),
  );

  app.get(
    '/v1/threads/:threadId/runs',
    { schema: { tags: ['runs'], summary: "A thread's run records", params: threadParams, response: { 200: z.object({ items: z.array(run) }), ...errors } } },
    async (request) => ({ items: await app.threadbox.listRuns({ tenant: request.tenant, threadId: request.params.threadId }) }),
  );
};

export const mailboxRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/threads/:threadId/interrupt',
    { schema: { tags: ['threads'], summary: 'Cancel the active run and supersede the queue', params: threadParams, body: noBody, response: { 202: interruptResponse, ...errors } } },
    async (request, reply) => reply.status(202).send(await app.threadbox.interruptThread({ tenant: request.tenant, threadId: request.params.threadId })),
  );

  app.post(
    '/v1/threads/:threadId/mailbox',
    {
      schema: {
        tags: ['mailbox'],
        summary: 'Deliver a durable cross-thread message (idempotent by messageId)',
        params: threadParams,
        body: durableMessageBody,
        response: { 200: durableMessageResponse, 201: durableMessageResponse, ...bodyErrors },
      },
    },
    async (request, reply) => {
      const result = await app.threadbox.deliverDurableMessage({ tenant: request.tenant, threadId: request.params.threadId }, request.body);
      return reply.status(result.duplicate ? 200 : 201).send(result);
    },
  );

  app.get(
    '/v1/threads/:threadId/mailbox',
    { schema: { tags: ['mailbox'], summary: "The thread's dispatches", params: threadParams, response: { 200: z.object({ items: z.array(dispatch) }), ...errors } } },
    async (request) => ({ items: await app.threadbox.listDispatches({ tenant: request.tenant, threadId: request.params.threadId }) }),
  );
};

/** awaken-server's entry: a foreground submit that always answers with the run's SSE. */
export const awakenRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/runs',
    {
      schema: {
        tags: ['runs'],
        summary: 'awaken-compatible: submit (foreground) and stream the run as SSE; no threadId starts a new thread',
        body: awakenRunBody,
        headers: z.object({ 'idempotency-key': id.optional() }),
        response: { 200: z.string().describe('text/event-stream of the run'), ...bodyErrors },
      },
      config: { sse: 'always' },
    },
    async (request, reply) => {
      // Without a threadId each request starts a thread; a retry with its Idempotency-Key goes to the first one's.
      const key = request.headers['idempotency-key'];
      const known = request.body.threadId ?? (key ? await app.threadbox.threadOfKey(request.tenant, key) : undefined);
      const ref = { tenant: request.tenant, threadId: known ?? uuidv7() };
      const body = { messages: request.body.messages, agentId: request.body.agentId, mode: 'interrupt' as const };
      const result = await app.threadbox.submitRun(ref, body, request.headers['idempotency-key']);
      return streamRun(app, request, reply, result.runId, 0, true);
    },
  );
};
