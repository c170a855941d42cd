// The AI SDK chat routes: `useChat`'s DefaultChatTransport posts here and reconnects here, and reads the history.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { encodeUiChunks, UI_MESSAGE_STREAM_HEADERS, UI_STREAM_DONE, UiMessageStreamEncoder } from '../../protocols/ui-message-stream.js';
import { awaitedToolCallIds } from '../chat.js';
import { logIds } from '../log.js';
import { runCursor, type SseStream } from '../sse.js';
import { chatBody, errorBody, threadParams, uiMessagesResponse } from '../schemas.js';

const errors = { 400: errorBody, 401: errorBody, 404: errorBody, 409: errorBody, 429: errorBody, 503: errorBody };
/** useChat posts the whole conversation each time: more room than the other routes' 1 MiB. */
const CHAT_BODY_LIMIT = 8 * 1024 * 1024;

export const chatRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/chat',
    {
      bodyLimit: CHAT_BODY_LIMIT,
      schema: {
        tags: ['chat'],
        summary: "AI SDK useChat (DefaultChatTransport): submit the newest user message, answer approvals or regenerate; streams the run's UI-message stream",
        body: chatBody,
        response: { 200: z.string().describe('text/event-stream: the AI SDK UI-message stream (x-vercel-ai-ui-message-stream: v1)'), ...errors, 413: errorBody },
      },
      config: { sse: 'always' },
    },
    async (request, reply) => {
      const answer = await app.chat.answer(request.tenant, request.body);
      if ('steeredInto' in answer) {
        // The message went into the running run: its own stream (already open at the client) shows it.
        const stream = app.openSse(reply, runCursor, UI_MESSAGE_STREAM_HEADERS);
        stream.sendFrames(encodeUiChunks([{ type: 'data-steered', data: { runId: answer.steeredInto }, transient: true }]) + UI_STREAM_DONE);
        return stream.end();
      }
      await streamUiRun(app, request, reply, answer.runId, answer.after, answer.submitted);
    },
  );

  app.get(
    '/v1/chat/:threadId/stream',
    {
      schema: {
        tags: ['chat'],
        summary: "Resume (useChat's reconnect): the thread's active run as a UI-message stream from its first event, then live; 204 when nothing runs",
        params: threadParams,
        response: { 200: z.string().describe('text/event-stream: the AI SDK UI-message stream'), 204: z.null().describe('nothing is running'), ...errors },
      },
      config: { sse: 'always' },
    },
    async (request, reply) => {
      const runId = await app.chat.activeRun({ tenant: request.tenant, threadId: request.params.threadId });
      if (!runId) return reply.status(204).send(null);
      await streamUiRun(app, request, reply, runId, 0);
    },
  );

  app.get(
    '/v1/threads/:threadId/ui-messages',
    {
      schema: {
        tags: ['chat'],
        summary: "The committed log as AI SDK UIMessage[] (useChat's initial messages); a run still going is left to its stream",
        params: threadParams,
        response: { 200: uiMessagesResponse, ...errors },
      },
    },
    async (request) => app.chat.uiMessages({ tenant: request.tenant, threadId: request.params.threadId }),
  );
};

/**
 * A run as a UI-message stream after `after`: until its end, or until it waits for decisions (useChat then
 * shows the approval request and posts the responses, which stream the continuation).
 */
async function streamUiRun(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, runId: string, after: number, submitted = false) {
  logIds(request, { runId });
  const run = await app.threadbox.getRun(request.tenant, runId);
  const encoder = new UiMessageStreamEncoder({ runId, threadId: run.threadId });
  let stream!: SseStream;
  let batches = 0;
  let firstToken = submitted;
  const finish = (frames: string) => {
    stream.sendFrames(frames + UI_STREAM_DONE);
    stream.end();
  };
  // Pauses once the run record shows it waiting for exactly the approvals this stream has carried.
  const pauseIfWaiting = async (batch: number) => {
    const now = await app.threadbox.getRun(request.tenant, runId).catch(() => undefined);
    const awaited = awaitedToolCallIds(now?.waiting);
    const all = awaited.length > 0 && awaited.every((id) => encoder.pendingApprovals.has(id));
    if (now?.status === 'waiting' && all && batch === batches && !stream.closed) finish(encodeUiChunks(encoder.pause()));
  };
  const unsubscribe = await app.threadbox.followRun(request.tenant, runId, after, () => {
    stream = app.openSse(reply, runCursor, UI_MESSAGE_STREAM_HEADERS);
    return (events) => {
      if (stream.closed) return;
      const end = events.findIndex((e) => e.type === 'run_finish');
      const sent = end < 0 ? events : events.slice(0, end + 1);
      const frames = encodeUiChunks(encoder.encode(sent));
      batches++;
      if (firstToken && sent.some((e) => e.type === 'text_delta')) {
        firstToken = false;
        app.metrics.submitToFirstToken.observe(reply.elapsedTime / 1000);
      }
      if (encoder.finished) return finish(frames);
      stream.sendFrames(frames);
      if (sent.at(-1)?.type === 'tool_approval_requested') void pauseIfWaiting(batches);
    };
  });
  if (!unsubscribe) return finish(encodeUiChunks(encoder.encode([])));
  stream.onClose(unsubscribe);
}
