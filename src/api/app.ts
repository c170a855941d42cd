// The Fastify app: external plugins, then this app's services, then the routes; one error handler.
import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { hasZodFastifySchemaValidationErrors, jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { Metrics } from '../metrics.js';
import { ApiError } from './errors.js';
import { logIds } from './log.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { runRoutes } from './routes/runs.js';
import { awakenRoutes, mailboxRoutes, threadRoutes } from './routes/threads.js';
import type { ThreadboxService } from './service.js';
import { SseStream, wantsEventStream, type CursorOf, type SseOptions } from './sse.js';

declare module 'fastify' {
  interface FastifyInstance {
    threadbox: ThreadboxService;
    metrics: Metrics;
    /** Opens an SSE response, tracked so shutdown can end it with a retry hint. */
    openSse(reply: FastifyReply, cursorOf: CursorOf): SseStream;
  }
  interface FastifyRequest {
    tenant: string;
  }
  interface FastifyContextConfig {
    /** the route answers with SSE always, or when asked for text/event-stream: it counts against THREADBOX_SSE_MAX_PER_KEY */
    sse?: 'always' | 'optional';
  }
}

export interface AppOptions {
  service: ThreadboxService;
  sse?: Partial<SseOptions>;
  /** bearer key → tenant; empty: every request is tenant `default` (loopback only) */
  apiKeys: Map<string, string>;
  logLevel?: string;
  /** requests per minute per API key (per client address without keys) on /v1 */
  rateLimitPerMin?: number;
  /** concurrent SSE connections per API key */
  sseMaxPerKey?: number;
  /** origins allowed by CORS; `*` any; empty: no CORS headers */
  corsOrigins?: string[] | '*';
  /** on close, in-flight requests get this long to finish before their connections are cut */
  drainTimeoutMs?: number;
}

export const BODY_LIMIT = 1024 * 1024;
/** How long a client told to back off (SSE cap, shutdown) should wait before retrying. */
const RETRY_AFTER_SECONDS = 5;
/** The `retry:` hint of streams ended by a shutdown: soon, since another instance is up. */
const SHUTDOWN_RETRY_MS = 1000;

// A JSON API needs no content policy; Swagger UI needs its own scripts, inline styles and data: images,
// and no upgrade-insecure-requests, which would break /docs on a plain-http development server.
const API_CSP = { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } };
const DOCS_CSP = { useDefaults: true, directives: { imgSrc: ["'self'", 'data:', 'https:'], upgradeInsecureRequests: null } };

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { level: opts.logLevel ?? 'info' },
    bodyLimit: BODY_LIMIT,
    // Ids may be 128 characters: longer path segments must reach the schema (a 400), not the router's 414.
    routerOptions: { maxParamLength: 1024 },
    // Fastify's own 503 while closing has no `code`: the onRequest hook below answers in the contract's shape.
    return503OnClosing: false,
    clientErrorHandler: answerUnparsableRequest,
    frameworkErrors: (err, _request, reply) => {
      void (reply as FastifyReply).status(400).send({ error: `invalid request: ${err.message}`, code: 'invalid_request' });
    },
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  parseBodiesStrictly(app);

  // ---- external plugins -------------------------------------------------------------------
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/docs')) route.config = { ...route.config, helmet: { contentSecurityPolicy: DOCS_CSP } } as typeof route.config;
  });
  await app.register(helmet, { contentSecurityPolicy: API_CSP });
  if (opts.corsOrigins && opts.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: opts.corsOrigins,
      allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'last-event-id'],
      exposedHeaders: ['retry-after', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'],
      maxAge: 600,
    });
  }
  await app.register(swagger, {
    openapi: {
      info: { title: 'threadbox', version: '1', description: 'A durable mailbox for AI-agent conversation threads' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      // /v1 needs a key whenever THREADBOX_API_KEYS is set; the operations routes opt out.
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
    // Schemas with a `.meta({ id })` (Error, RunEvent) become components the routes' $refs point to.
    transformObject: (document) => optionalNullableBodies(jsonSchemaTransformObject(document)),
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  // ---- this app's services ----------------------------------------------------------------
  app.decorate('threadbox', opts.service);
  const openStreams = new Set<SseStream>();
  const sseReplies = new WeakSet<FastifyReply>();
  const metrics = new Metrics(() => opts.service.operationalCounts(), () => openStreams.size);
  app.decorate('metrics', metrics);
  const sseOptions: SseOptions = {
    heartbeatMs: 15_000,
    maxBufferedBytes: 1024 * 1024,
    ...opts.sse,
    onSlowClient: () => metrics.sseSlowClientDisconnects.inc(),
  };
  let closing = false;
  app.decorate('openSse', (reply: FastifyReply, cursorOf: CursorOf) => {
    const stream = new SseStream(reply, cursorOf, sseOptions);
    sseReplies.add(reply);
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

  app.decorateRequest('tenant', '');
  // The scheme is case-insensitive (RFC 7235); the key is not.
  const bearerKey = (request: FastifyRequest) => /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
  /** Whose quota a request spends: its API key, or with no keys configured its client address. */
  const callerKey = (request: FastifyRequest) => (opts.apiKeys.size > 0 ? `key:${bearerKey(request)}` : `ip:${request.ip}`);

  app.addHook('onRequest', async (request, reply) => {
    if (!closing) return;
    reply.header('connection', 'close').header('retry-after', String(RETRY_AFTER_SECONDS));
    throw new ApiError('unavailable', 'the server is shutting down; retry on another instance');
  });
  let refusedKeyQuota: ReturnType<FastifyInstance['createRateLimit']>;
  app.addHook('onRequest', async (request, reply) => {
    // A CORS preflight carries no credentials; the cors plugin has answered it already when enabled.
    if (!request.url.startsWith('/v1/') || request.method === 'OPTIONS') return;
    if (opts.apiKeys.size === 0) {
      request.tenant = 'default';
      return;
    }
    const key = bearerKey(request);
    const tenant = key === undefined ? undefined : opts.apiKeys.get(key);
    if (!tenant) {
      // Refused keys spend a quota of their own, per client address: guessing keys is throttled too.
      const spent = await refusedKeyQuota(request);
      if (!spent.isAllowed && spent.isExceeded) {
        reply.header('retry-after', String(spent.ttlInSeconds));
        throw new ApiError('rate_limited', `more than ${spent.max} requests per minute with an invalid API key from this address; retry in ${spent.ttlInSeconds} s`);
      }
      throw new ApiError('unauthorized', 'a valid "Authorization: Bearer <key>" header is required');
    }
    request.tenant = tenant;
  });

  // Each SSE connection holds a subscription and a socket for as long as its run lasts: capped per key.
  const sseMaxPerKey = opts.sseMaxPerKey ?? 50;
  const sseOpenByKey = new Map<string, number>();
  app.addHook('onRequest', async (request, reply) => {
    const sse = request.routeOptions.config.sse;
    if (!sse || (sse === 'optional' && !wantsEventStream(request))) return;
    const key = callerKey(request);
    const open = sseOpenByKey.get(key) ?? 0;
    if (open >= sseMaxPerKey) {
      reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      throw new ApiError('rate_limited', `at most ${sseMaxPerKey} concurrent event streams per API key; close one or retry later`);
    }
    sseOpenByKey.set(key, open + 1);
    reply.raw.once('close', () => {
      const left = (sseOpenByKey.get(key) ?? 1) - 1;
      if (left > 0) sseOpenByKey.set(key, left);
      else sseOpenByKey.delete(key);
    });
  });

  // Rate limits apply per route (the plugin adds its hook to each route registered after it), after auth.
  await app.register(rateLimit, {
    max: opts.rateLimitPerMin ?? 1200,
    timeWindow: 60_000,
    keyGenerator: callerKey,
    allowList: (request) => !request.url.startsWith('/v1/') || request.method === 'OPTIONS',
    errorResponseBuilder: (_request, context) =>
      new ApiError('rate_limited', `more than ${context.max} requests per minute for this API key; retry in ${context.after}`),
  });
  refusedKeyQuota = app.createRateLimit({ keyGenerator: (request) => `refused:${request.ip}` });

  // Request logs carry the thread and run they concern, from the path, the body or the answer.
  app.addHook('preHandler', async (request) => {
    const params = (request.params ?? {}) as { threadId?: string; runId?: string };
    const body = (request.body ?? {}) as { threadId?: unknown };
    logIds(request, { threadId: params.threadId ?? (typeof body.threadId === 'string' ? body.threadId : undefined), runId: params.runId });
  });
  app.addHook('preSerialization', async (request, _reply, payload) => {
    const ids = (payload ?? {}) as { threadId?: unknown; runId?: unknown };
    if (typeof ids.runId === 'string' || typeof ids.threadId === 'string') {
      logIds(request, { threadId: typeof ids.threadId === 'string' ? ids.threadId : undefined, runId: typeof ids.runId === 'string' ? ids.runId : undefined });
    }
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    if (sseReplies.has(reply)) return;
    metrics.httpRequestDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  app.setErrorHandler((err: unknown, request, reply) => {
    if (err instanceof ApiError) {
      // A hook that set its own Retry-After (rate limit, shutdown) keeps it.
      if (err.retryAfterSeconds !== undefined && !reply.hasHeader('retry-after')) reply.header('retry-after', String(err.retryAfterSeconds));
      return reply.status(err.statusCode).send({ error: err.message, code: err.code });
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const detail = err.validation.map((v) => `${fieldName(err.validationContext, v.instancePath)} ${v.message}`).join('; ');
      return reply.status(400).send({ error: `invalid request: ${detail}`, code: 'invalid_request' });
    }
    const e = err as { statusCode?: number; code?: string; message?: string };
    if (e.statusCode === 413) return reply.status(413).send({ error: 'the request body is larger than 1 MiB', code: 'payload_too_large' });
    // Everything else the client got wrong (malformed JSON, an unsupported content type, …) is one code.
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.status(400).send({ error: `invalid request: ${e.message ?? 'malformed'}`, code: 'invalid_request' });
    }
    request.log.error({ err }, 'request failed');
    return reply.status(503).header('retry-after', '2').send({ error: 'the service could not complete the request; retry it', code: 'unavailable' });
  });
  app.setNotFoundHandler((request, reply) => reply.status(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}`, code: 'not_found' }));

  // ---- routes -----------------------------------------------------------------------------
  await app.register(healthRoutes);
  await app.register(threadRoutes);
  await app.register(mailboxRoutes);
  await app.register(awakenRoutes);
  await app.register(runRoutes);
  await app.register(eventRoutes);
  return app;
}

/** @fastify/swagger marks every request body required: a route whose body may be null takes none. */
function optionalNullableBodies<T>(document: T): T {
  type Operation = { requestBody?: { required?: boolean; content?: Record<string, { schema?: { nullable?: boolean } }> } };
  const paths = (document as { paths?: Record<string, Record<string, Operation>> }).paths ?? {};
  for (const operation of Object.values(paths).flatMap((item) => Object.values(item))) {
    const body = operation.requestBody;
    if (body && Object.values(body.content ?? {}).every((media) => media.schema?.nullable)) body.required = false;
  }
  return document;
}

/** A field as a client names it: `messages.0.content`, `header idempotency-key`, `query after`. */
function fieldName(context: string | undefined, instancePath: string): string {
  const path = instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (!path) return context === 'querystring' ? 'query' : (context ?? 'request');
  if (context === 'headers') return `header ${path}`;
  if (context === 'querystring') return `query ${path}`;
  return path;
}

/**
 * JSON bodies must be valid UTF-8: a decoder would otherwise turn bad bytes into U+FFFD and store
 * text the client never sent. An empty body is no body, whatever its content type, so routes that
 * take none (`/interrupt`, `/cancel`) accept what Swagger UI and generated clients send; a route that
 * needs a body still refuses it through its schema. Any other content type is refused.
 */
function parseBodiesStrictly(app: FastifyInstance) {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    if (body.length === 0) return done(null, undefined);
    let text: string;
    try {
      text = utf8.decode(body);
    } catch {
      return done(new ApiError('invalid_request', 'invalid request: the body is not valid UTF-8'), undefined);
    }
    parseJson(request, text, done);
  });
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body: Buffer, done) => {
    if (body.length === 0) return done(null, undefined);
    const type = request.headers['content-type'] ?? 'none';
    done(new ApiError('invalid_request', `invalid request: content type ${JSON.stringify(type)} is not supported; send application/json`), undefined);
  });
}

/**
 * A request that is not even HTTP (bad framing, oversized headers, a timeout) never reaches Fastify's
 * routes or error handler: it still gets the contract's error body, then the connection is closed.
 */
function answerUnparsableRequest(err: Error & { code?: string }, socket: Socket) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const reason =
    err.code === 'HPE_HEADER_OVERFLOW' ? 'the request headers are too large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'the request did not arrive in time' : 'malformed HTTP request';
  const body = JSON.stringify({ error: `invalid request: ${reason}`, code: 'invalid_request' });
  if (socket.writable) {
    socket.write(`HTTP/1.1 400 Bad Request\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(err);
}
