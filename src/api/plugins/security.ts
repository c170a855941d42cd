// Security headers on every answer (helmet) and, when origins are configured, CORS.
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import fp from 'fastify-plugin';

// A JSON API needs no content policy; Swagger UI needs its own scripts, inline styles and data: images,
// and no upgrade-insecure-requests, which would break /docs on a plain-http development server.
const API_CSP = { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } };
const DOCS_CSP = { useDefaults: true, directives: { imgSrc: ["'self'", 'data:', 'https:'], upgradeInsecureRequests: null } };
/** The playground: its own bundled scripts and styles, fetches to this origin only. */
const PAGE_CSP = { useDefaults: true, directives: { connectSrc: ["'self'"], upgradeInsecureRequests: null } };
const isPage = (url: string) => url === '/' || url.startsWith('/assets/');

export interface SecurityOptions {
  /** origins allowed by CORS; `*` any; empty: no CORS headers */
  corsOrigins?: string[] | '*';
}

export default fp<SecurityOptions>(
  async (app, opts) => {
    // Before helmet: its own onRoute hook reads the policy a /docs route is given here.
    app.addHook('onRoute', (route) => {
      if (route.url.startsWith('/docs')) route.config = { ...route.config, helmet: { contentSecurityPolicy: DOCS_CSP } } as typeof route.config;
      else if (isPage(route.url)) route.config = { ...route.config, helmet: { contentSecurityPolicy: PAGE_CSP } } as typeof route.config;
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
  },
  { name: 'threadbox-security' },
);
