// The Fastify app: external plugins, then this app's services, then the routes (see plugins/ for each concern).
import Fastify, { type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import auth, { type AuthOptions } from './plugins/auth.js';
import bodyParsers from './plugins/body-parsers.js';
import errorHandler, { answerFrameworkError, answerUnparsableRequest } from './plugins/error-handler.js';
import observability from './plugins/observability.js';
import openapi from './plugins/openapi.js';
import playground, { type PlaygroundOptions } from './plugins/playground.js';
import rateLimit, { type RateLimitOptions } from './plugins/rate-limit.js';
import security, { type SecurityOptions } from './plugins/security.js';
import sse, { type SsePluginOptions } from './plugins/sse.js';
import tracing from './plugins/tracing.js';
import { ChatService } from './chat.js';
import { chatRoutes } from './routes/chat.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { runRoutes } from './routes/runs.js';
import { awakenRoutes, mailboxRoutes, threadRoutes } from './routes/threads.js';
import type { ThreadboxService } from './service.js';

declare module 'fastify' {
  interface FastifyInstance {
    threadbox: ThreadboxService;
    chat: ChatService;
  }
}

/** Each plugin's options, and the service the routes call. */
export interface AppOptions extends AuthOptions, RateLimitOptions, SecurityOptions, SsePluginOptions, PlaygroundOptions {
  service: ThreadboxService;
  logLevel?: string;
}

export const BODY_LIMIT = 1024 * 1024;

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: { level: opts.logLevel ?? 'info' },
    bodyLimit: BODY_LIMIT,
    // Ids may be 128 characters: longer path segments must reach the schema (a 400), not the router's 414.
    routerOptions: { maxParamLength: 1024 },
    // Fastify's own 503 while closing has no `code`: the sse plugin's onRequest hook answers in the contract's shape.
    return503OnClosing: false,
    clientErrorHandler: answerUnparsableRequest,
    frameworkErrors: answerFrameworkError,
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await app.register(bodyParsers);
  // External plugins. Order matters below: hooks run in the order they are added.
  await app.register(security, { corsOrigins: opts.corsOrigins });
  await app.register(openapi);
  // This app's services. A request meets the shutdown check (sse), auth, then the SSE cap and the rate limit:
  // those two are route hooks, which run after the instance's; auth comes last as it takes its refused-key quota from rateLimit.
  app.decorate('threadbox', opts.service);
  app.decorate('chat', new ChatService(opts.service, opts.service.store));
  await app.register(tracing);
  await app.register(observability);
  await app.register(sse, { sse: opts.sse, sseMaxPerKey: opts.sseMaxPerKey, apiKeys: opts.apiKeys, drainTimeoutMs: opts.drainTimeoutMs });
  await app.register(rateLimit, { rateLimitPerMin: opts.rateLimitPerMin, apiKeys: opts.apiKeys });
  await app.register(auth, { apiKeys: opts.apiKeys });
  // After /docs (registered above), whose routes keep Fastify's own error handler.
  await app.register(errorHandler);
  for (const routes of [healthRoutes, threadRoutes, mailboxRoutes, awakenRoutes, runRoutes, eventRoutes, chatRoutes]) await app.register(routes);
  await app.register(playground, { playgroundDir: opts.playgroundDir, temporalUiUrl: opts.temporalUiUrl, temporalNamespace: opts.temporalNamespace });
  return app;
}
