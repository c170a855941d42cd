// `npm run test:cluster`: the production-shaped topology (the Temporal server built from source, Postgres
// persistence, TLS), one file at a time: each starts its own cluster.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/cluster/**/*.cluster.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 600_000,
    teardownTimeout: 60_000,
  },
});
