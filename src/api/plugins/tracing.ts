// The HTTP server span of each request (OpenTelemetry; a no-op when src/telemetry.ts did not set up a
// tracer): its parent is the caller's `traceparent`, and the route's handler runs inside it, so the
// Temporal client's spans (and through them the workflows' and activities') join the request's trace.
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import fp from 'fastify-plugin';

declare module 'fastify' {
  interface FastifyRequest {
    span?: Span;
  }
}

const tracer = () => trace.getTracer('threadbox-api');

export default fp(
  async (app) => {
    app.addHook('onRequest', async (request) => {
      const route = request.routeOptions.url ?? 'unmatched';
      const parent = propagation.extract(context.active(), request.headers);
      request.span = tracer().startSpan(`${request.method} ${route}`, {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': request.method, 'http.route': route, 'url.path': request.url.split('?')[0] },
      }, parent);
    });
    // After the body is parsed (its stream events run outside any context): the handler runs within the span.
    app.addHook('preHandler', (request, _reply, done) => {
      if (!request.span) return done();
      context.with(trace.setSpan(context.active(), request.span), done);
    });
    app.addHook('onError', async (request, _reply, error) => {
      request.span?.recordException(error);
    });
    app.addHook('onResponse', async (request, reply) => {
      const span = request.span;
      if (!span) return;
      span.setAttribute('http.response.status_code', reply.statusCode);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    });
  },
  { name: 'threadbox-tracing' },
);
