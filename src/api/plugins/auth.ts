// Auth: a bearer API key names the tenant of every /v1 request; refused keys are throttled per address.
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ApiError } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    tenant: string;
  }
}

export interface AuthOptions {
  /** bearer key → tenant; empty: every request is tenant `default` (loopback only) */
  apiKeys: Map<string, string>;
}

// The scheme is case-insensitive (RFC 7235); the key is not.
const bearerKey = (request: FastifyRequest) => /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];

/** Whose quota a request spends: its API key, or with no keys configured its client address. */
export const callerKeyOf = (apiKeys: Map<string, string>) => (request: FastifyRequest) =>
  apiKeys.size > 0 ? `key:${bearerKey(request)}` : `ip:${request.ip}`;

/** The requests that need a key: /v1, except a CORS preflight, which carries no credentials (the cors plugin has answered it). */
export const needsKey = (request: FastifyRequest) => request.url.startsWith('/v1/') && request.method !== 'OPTIONS';

export default fp<AuthOptions>(
  async (app, { apiKeys }) => {
    app.decorateRequest('tenant', '');
    // Refused keys spend a quota of their own, per client address: guessing keys is throttled too.
    const refusedKeyQuota = app.createRateLimit({ keyGenerator: (request) => `refused:${request.ip}` });
    app.addHook('onRequest', async (request, reply) => {
      if (!needsKey(request)) return;
      if (apiKeys.size === 0) {
        request.tenant = 'default';
        return;
      }
      const key = bearerKey(request);
      const tenant = key === undefined ? undefined : apiKeys.get(key);
      if (!tenant) {
        const spent = await refusedKeyQuota(request);
        if (!spent.isAllowed && spent.isExceeded) {
          reply.header('retry-after', String(spent.ttlInSeconds));
          throw new ApiError('rate_limited', `more than ${spent.max} requests per minute with an invalid API key from this address; retry in ${spent.ttlInSeconds} s`);
        }
        throw new ApiError('unauthorized', 'a valid "Authorization: Bearer <key>" header is required');
      }
      request.tenant = tenant;
    });
  },
  { name: 'threadbox-auth', decorators: { fastify: ['createRateLimit'] } },
);
