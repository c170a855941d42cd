// Event streams: SSE when the client asks for text/event-stream, a JSON page otherwise; both resumable.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ApiError } from '../errors.js';
import { errorBody, eventsPage, eventsQuery, runParams, storableString, threadParams } from '../schemas.js';
import { logIds } from '../log.js';
import { runCursor, threadCursor, wantsEventStream, type SseStream } from '../sse.js';

const errors = { 400: errorBody, 401: errorBody, 404: errorBody, 429: errorBody, 503: errorBody };

/** Where a stream resumes: the Last-Event-ID header wins over `?after=`. */
export function resumeCursor(request: FastifyRequest, after: number | undefined): number {
  const header = request.headers['last-event-id'];
  if (header === undefined) return after ?? 0;
  const value = Array.isArray(header) ? header[0] : header;
  if (!value || !/^\d{1,15}$/.test(value)) throw new ApiError('invalid_request', 'Last-Event-ID must be a non-negative integer');
  return Number(value);
}

/**
 * Streams a run's events after `after` until its `run_finish`. For a submit (`submitted`), the time
 * from the request to its first event and first token is what a client waits: it is measured here.
 */
export async function streamRun(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, runId: string, after: number, submitted = false) {
  logIds(request, { runId });
  let stream!: SseStream;
  let firstEvent = submitted;
  let firstToken = submitted;
  const unsubscribe = await app.threadbox.followRun(request.tenant, runId, after, () => {
    stream = app.openSse(reply, runCursor);
    return (events) => {
      const finish = events.findIndex((e) => e.type === 'run_finish');
      const sent = finish < 0 ? events : events.slice(0, finish + 1);
      stream.send(sent);
      if (firstEvent && sent.length > 0) {
        firstEvent = false;
        app.metrics.submitToFirstEvent.observe(reply.elapsedTime / 1000);
      }
      if (firstToken && sent.some((e) => e.type === 'text_delta')) {
        firstToken = false;
        app.metrics.submitToFirstToken.observe(reply.elapsedTime / 1000);
      }
      if (finish >= 0) stream.end();
    };
  });
  if (!unsubscribe) return stream.end();
  stream.onClose(unsubscribe);
}

export const eventRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/v1/runs/:runId/events',
    {
      schema: {
        tags: ['events'],
        summary: "A run's events: SSE (Accept: text/event-stream) until run_finish, or a JSON page; resume with Last-Event-ID or ?after=",
        params: runParams,
        querystring: eventsQuery,
        headers: z.object({ 'last-event-id': storableString.optional() }),
        response: { 200: eventsPage, ...errors },
      },
      config: { sse: 'optional' },
    },
    async (request, reply) => {
      const after = resumeCursor(request, request.query.after);
      if (!wantsEventStream(request)) return app.threadbox.runEventsPage(request.tenant, request.params.runId, after, request.query.limit);
      await streamRun(app, request, reply, request.params.runId, after);
    },
  );

  app.get(
    '/v1/threads/:threadId/events',
    {
      schema: {
        tags: ['events'],
        summary: "Every event of a thread's runs, in commit order (cursor: the global event id); SSE or a JSON page",
        params: threadParams,
        querystring: eventsQuery,
        headers: z.object({ 'last-event-id': storableString.optional() }),
        response: { 200: eventsPage, ...errors },
      },
      config: { sse: 'optional' },
    },
    async (request, reply) => {
      const ref = { tenant: request.tenant, threadId: request.params.threadId };
      const after = resumeCursor(request, request.query.after);
      if (!wantsEventStream(request)) return app.threadbox.threadEventsPage(ref, after, request.query.limit);
      let stream!: SseStream;
      const unsubscribe = await app.threadbox.followThread(ref, after, () => {
        stream = app.openSse(reply, threadCursor);
        return (events) => stream.send(events);
      });
      stream.onClose(unsubscribe);
    },
  );
};
