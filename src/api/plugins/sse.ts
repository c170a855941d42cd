// SSE connections: opened through `openSse`, capped per API key, told to resume elsewhere on shutdown.
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { ApiError } from '../errors.js';
import { SseStream, wantsEventStream, type CursorOf, type SseOptions } from '../sse.js';
import { callerKeyOf } from './auth.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Opens an SSE response, tracked so shutdown can end it with a retry hint. */
    openSse(reply: FastifyReply, cursorOf: CursorOf, headers?: Record<string, string>): SseStream;
    openSseCount(): number;
  }
  interface FastifyReply {
    /** the reply was turned into an SSE stream by `openSse` */
    isEventStream: boolean;
  }
  interface FastifyContextConfig {
    /** the route answers with SSE always, or when asked for text/event-stream: it counts against THREADBOX_SSE_MAX_PER_KEY */
    sse?: 'always' | 'optional';
  }
}

export interface SsePluginOptions {
  sse?: Partial<SseOptions>;
  /** concurrent SSE connections per API key */
  sseMaxPerKey?: number;
  /** whose quota a request spends: see callerKeyOf */
  apiKeys: Map<string, string>;
  /** on close, in-flight requests get this long to finish before their connections are cut */
  drainTimeoutMs?: number;
}

/** How long a client told to back off (SSE cap, shutdown) should wait before retrying. */
const RETRY_AFTER_SECONDS = 5;
/** The `retry:` hint of streams ended by a shutdown: soon, since another instance is up. */
const SHUTDOWN_RETRY_MS = 1000;

export default fp<SsePluginOptions>(
  async (app, opts) => {
    const openStreams = new Set<SseStream>();
    const sseOptions: SseOptions = {
      heartbeatMs: 15_000,
      maxBufferedBytes: 1024 * 1024,
      ...opts.sse,
      onSlowClient: () => app.metrics.sseSlowClientDisconnects.inc(),
    };
    let closing = false;
    app.decorateReply('isEventStream', false);
    app.decorate('openSseCount', () => openStreams.size);
    app.decorate('openSse', (reply: FastifyReply, cursorOf: CursorOf, headers?: Record<string, string>) => {
      const stream = new SseStream(reply, cursorOf, sseOptions, headers);
      reply.isEventStream = true;
      // A stream that opens while the server shuts down is told at once to resume elsewhere.
      if (closing) stream.end(SHUTDOWN_RETRY_MS);
      else {
        openStreams.add(stream);
        stream.onClose(() => openStreams.delete(stream));
      }
      return stream;
    });

    let drainTimer: NodeJS.Timeout | undefined;
    // Shutdown: open streams end with a retry hint, so clients reconnect (with Last-Event-ID) to another
    // instance; requests in flight may finish, up to drainTimeoutMs, then their connections are cut.
    app.addHook('preClose', async () => {
      closing = true;
      for (const stream of [...openStreams]) stream.end(SHUTDOWN_RETRY_MS);
      drainTimer = setTimeout(() => app.server.closeAllConnections(), opts.drainTimeoutMs ?? 10_000);
      drainTimer.unref();
    });
    app.addHook('onClose', async () => clearTimeout(drainTimer));
    app.addHook('onRequest', async (_request, reply) => {
      if (!closing) return;
      reply.header('connection', 'close').header('retry-after', String(RETRY_AFTER_SECONDS));
      throw new ApiError('unavailable', 'the server is shutting down; retry on another instance');
    });

    // A route hook (route hooks run after the instance's): the cap is judged after auth, before the rate limit.
    const capStreams = streamCap(opts.sseMaxPerKey ?? 50, callerKeyOf(opts.apiKeys));
    app.addHook('onRoute', (route) => {
      if (route.config?.sse) route.onRequest = [route.onRequest ?? [], capStreams].flat();
    });
  },
  { name: 'threadbox-sse', decorators: { fastify: ['metrics'] } },
);

/** Each SSE connection holds a subscription and a socket for as long as its run lasts: capped per key. */
function streamCap(maxPerKey: number, callerKey: (request: FastifyRequest) => string): onRequestAsyncHookHandler {
  const openByKey = new Map<string, number>();
  return async (request, reply) => {
    const sse = request.routeOptions.config.sse;
    if (sse === 'optional' && !wantsEventStream(request)) return;
    const key = callerKey(request);
    const open = openByKey.get(key) ?? 0;
    if (open >= maxPerKey) {
      reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      throw new ApiError('rate_limited', `at most ${maxPerKey} concurrent event streams per API key; close one or retry later`);
    }
    openByKey.set(key, open + 1);
    reply.raw.once('close', () => {
      const left = (openByKey.get(key) ?? 1) - 1;
      if (left > 0) openByKey.set(key, left);
      else openByKey.delete(key);
    });
  };
}
