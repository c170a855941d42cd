// The playground page at `/` (built by `npm run build:playground` into dist/playground) and what it needs to know.
import fastifyStatic from '@fastify/static';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fp from 'fastify-plugin';

export interface PlaygroundOptions {
  /** where the built page lives; default dist/playground of this package */
  playgroundDir?: string;
  /** the Temporal Web UI, for links to each run's workflow */
  temporalUiUrl?: string;
  temporalNamespace?: string;
}

const DEFAULT_DIR = fileURLToPath(new URL('../../../dist/playground/', import.meta.url));

export default fp<PlaygroundOptions>(
  async (app, opts) => {
    const root = opts.playgroundDir ?? DEFAULT_DIR;
    const built = existsSync(`${root}/index.html`);
    app.get('/playground.json', { schema: { hide: true } }, async () => ({
      temporalUiUrl: opts.temporalUiUrl ?? null,
      namespace: opts.temporalNamespace ?? 'default',
    }));
    if (!built) {
      app.get('/', { schema: { hide: true } }, async (_request, reply) =>
        reply.type('text/plain; charset=utf-8').send('threadbox is running. The playground page is not built: run `npm run build:playground` (npm install does it).\n'),
      );
      return;
    }
    // Only the page's own files: the API's unknown paths keep their JSON 404.
    await app.register(fastifyStatic, { root: `${root}/assets`, prefix: '/assets/', index: false, wildcard: true, immutable: true, maxAge: '1y' });
    app.get('/', { schema: { hide: true } }, async (_request, reply) => reply.header('cache-control', 'no-cache').sendFile('index.html', root));
  },
  { name: 'threadbox-playground' },
);
