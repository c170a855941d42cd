// Every error answers in the contract's shape, `{error, code}`: thrown ApiErrors, schema failures, Fastify's own.
import type { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { ApiError } from '../errors.js';

export default fp(
  async (app) => {
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
  },
  { name: 'threadbox-error-handler' },
);

/** A field as a client names it: `messages.0.content`, `header idempotency-key`, `query after`. */
function fieldName(context: string | undefined, instancePath: string): string {
  const path = instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (!path) return context === 'querystring' ? 'query' : (context ?? 'request');
  if (context === 'headers') return `header ${path}`;
  if (context === 'querystring') return `query ${path}`;
  return path;
}

/** Fastify's own errors before routing (a malformed URL, …), for its `frameworkErrors` option. */
export function answerFrameworkError(err: Error, _request: FastifyRequest, reply: FastifyReply) {
  void reply.status(400).send({ error: `invalid request: ${err.message}`, code: 'invalid_request' });
}

/**
 * A request that is not even HTTP (bad framing, oversized headers, a timeout) never reaches Fastify's
 * routes or error handler: it still gets the contract's error body, then the connection is closed.
 */
export function answerUnparsableRequest(err: Error & { code?: string }, socket: Socket) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const reason =
    err.code === 'HPE_HEADER_OVERFLOW' ? 'the request headers are too large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'the request did not arrive in time' : 'malformed HTTP request';
  const body = JSON.stringify({ error: `invalid request: ${reason}`, code: 'invalid_request' });
  if (socket.writable) {
    socket.write(`HTTP/1.1 400 Bad Request\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(err);
}
