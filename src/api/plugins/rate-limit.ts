// Rate limits: requests per minute on /v1, per API key (per client address without keys).
import rateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';
import { ApiError } from '../errors.js';
import { callerKeyOf, needsKey } from './auth.js';

export interface RateLimitOptions {
  /** requests per minute per API key (per client address without keys) on /v1 */
  rateLimitPerMin?: number;
  /** whose quota a request spends: see callerKeyOf */
  apiKeys: Map<string, string>;
}

// The plugin adds its hook to each route registered after it: a route hook, which runs after auth.
export default fp<RateLimitOptions>(
  async (app, opts) => {
    await app.register(rateLimit, {
      max: opts.rateLimitPerMin ?? 1200,
      timeWindow: 60_000,
      keyGenerator: callerKeyOf(opts.apiKeys),
      allowList: (request) => !needsKey(request),
      errorResponseBuilder: (_request, context) =>
        new ApiError('rate_limited', `more than ${context.max} requests per minute for this API key; retry in ${context.after}`),
    });
  },
  { name: 'threadbox-rate-limit' },
);
