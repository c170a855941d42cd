// The Fastify app: external plugins, then this app's services, then the routes; one error handler.
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { SseStream, type CursorOf, type SseOptions } from './sse.js';
import { eventRoutes } from './routes/events.js';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { hasZodFastifySchemaValidationErrors, jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { ApiError } from './errors.js';
import type { ThreadboxService } from './service.js';
import { healthRoutes } from './routes/health.js';
import { awakenRoutes, mailboxRoutes, threadRoutes } from './routes/threads.js';
import { runRoutes } from './routes/runs.js';

declare module 'fastify' {
  interface FastifyInstance {
    threadbox: ThreadboxService;
    /** Opens an SSE response, tracked so shutdown can end it with a retry hint. */
    openSse(reply: FastifyReply, cursorOf: CursorOf): SseStream;
  }
  interface FastifyRequest {
    tenant: string;
  }
}

export interface AppOptions {
  service: ThreadboxService;
  sse?: Partial<SseOptions>;
  /** bearer key → tenant; empty: every request is tenant `default` (loopback only) */
  apiKeys: Map<string, string>;
  logLevel?: string;
}

export const BODY_LIMIT = 1024 * 1024;

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: { level: opts.logLevel ?? 'info' }, bodyLimit: BODY_LIMIT }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  await app.register(swagger, {
    openapi: { info: { title: 'threadbox', version: '1' }, components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } } },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.decorate('threadbox', opts.service);
  const sseOptions: SseOptions = { heartbeatMs: 15_000, maxBufferedBytes: 1024 * 1024, ...opts.sse };
  const openStreams = new Set<SseStream>();
  app.decorate('openSse', (reply: FastifyReply, cursorOf: CursorOf) => {
    const stream = new SseStream(reply, cursorOf, sseOptions);
    openStreams.add(stream);
    stream.onClose(() => openStreams.delete(stream));
    return stream;
  });
  // Shutdown: open streams end with a retry hint, so clients reconnect (with Last-Event-ID) to another instance.
  app.addHook('preClose', async () => {
    for (const stream of [...openStreams]) stream.end(1000);
  });
  app.decorateRequest('tenant', '');
  app.addHook('onRequest', async (request) => {
    if (!request.url.startsWith('/v1/')) return;
    if (opts.apiKeys.size === 0) {
      request.tenant = 'default';
      return;
    }
    const match = /^Bearer (.+)$/.exec(request.headers.authorization ?? '');
    const tenant = match ? opts.apiKeys.get(match[1]!) : undefined;
    if (!tenant) throw new ApiError('unauthorized', 'a valid "Authorization: Bearer <key>" header is required');
    request.tenant = tenant;
  });

  app.setErrorHandler((err: unknown, request, reply) => {
    if (err instanceof ApiError) return reply.status(err.statusCode).send({ error: err.message, code: err.code });
    if (hasZodFastifySchemaValidationErrors(err)) {
      const detail = err.validation.map((v) => `${v.instancePath || err.validationContext || 'request'} ${v.message}`).join('; ');
      return reply.status(400).send({ error: `invalid request: ${detail}`, code: 'invalid_request' });
    }
    const e = err as { statusCode?: number; code?: string; message?: string };
    if (e.statusCode === 413) return reply.status(413).send({ error: 'the request body is larger than 1 MiB', code: 'payload_too_large' });
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      return reply.status(e.statusCode).send({ error: e.message ?? 'bad request', code: 'invalid_request' });
    }
    request.log.error({ err }, 'request failed');
    return reply.status(503).send({ error: 'the service could not complete the request; retry it', code: 'unavailable' });
  });
  app.setNotFoundHandler((request, reply) => reply.status(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}`, code: 'not_found' }));

  await app.register(healthRoutes);
  await app.register(threadRoutes);
  await app.register(mailboxRoutes);
  await app.register(awakenRoutes);
  await app.register(runRoutes);
  await app.register(eventRoutes);
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
  return app;
}
