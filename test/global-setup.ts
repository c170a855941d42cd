// Starts one real Postgres and one real Temporal dev server for the whole suite, and bundles the workflows once.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../src/infra/postgres.js';
import { startTemporalDevServer } from '../src/infra/temporal-server.js';
import { createPool, migrate } from '../src/store/db.js';
import { bundleWorkflows } from '../src/temporal/worker.js';
import { freePort } from './ports.js';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    temporalAddress: string;
    workflowBundlePath: string;
  }
}

export default async function setup(project: TestProject) {
  if (process.env.THREADBOX_TEST_SERVICES === 'none') return;
  const dir = mkdtempSync(join(tmpdir(), 'threadbox-test-'));
  chmodSync(dir, 0o755); // embedded Postgres runs as its own user when we are root
  const stops: (() => Promise<void>)[] = [];
  const log = (line: string) => console.log(`[test services] ${line}`);

  let databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    const pg = await startEmbeddedPostgres({ dataDir: join(dir, 'postgres'), port: await freePort() });
    stops.push(pg.stop);
    databaseUrl = pg.url;
  }
  const pool = createPool(databaseUrl);
  await migrate(pool);
  await pool.end();

  let temporalAddress = process.env.TEMPORAL_ADDRESS;
  if (!temporalAddress) {
    const temporal = await startTemporalDevServer({
      port: await freePort(),
      log,
      // Small histories make continue-as-new observable in tests.
      dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': 400 },
    });
    stops.push(temporal.stop);
    temporalAddress = temporal.address;
  }

  const bundle = await bundleWorkflows();
  const workflowBundlePath = join(dir, 'workflows.js');
  writeFileSync(workflowBundlePath, bundle.code);

  project.provide('databaseUrl', databaseUrl);
  project.provide('temporalAddress', temporalAddress);
  project.provide('workflowBundlePath', workflowBundlePath);
  log(`postgres ${databaseUrl.replace(/:[^:@]+@/, ':***@')}, temporal ${temporalAddress}`);

  return async () => {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(err));
    rmSync(dir, { recursive: true, force: true });
  };
}
