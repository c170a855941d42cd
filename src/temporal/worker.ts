// Builds the worker: bundles the workflow code and registers the activities.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Client } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker, type WorkflowBundle } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../../activities/index.js';
import { checkNamespace, connectTo, connectionOptions, type TemporalTarget } from './connection.js';
import { checkSearchAttributes } from './search-attributes.js';
import type { Telemetry } from '../telemetry.js';

const WORKFLOWS_ENTRY = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));
/**
 * The workflows' OpenTelemetry interceptors (workflows/tracing.ts), in every bundle whether tracing is on
 * or not, so every worker of a fleet runs one workflow code; off, their spans go to a no-op sink.
 */
const TRACING_INTERCEPTORS = fileURLToPath(new URL('../../workflows/tracing.ts', import.meta.url));
const BUNDLE_CHILD = fileURLToPath(new URL('./bundle-child.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Bundles workflows/ once (or another entry: an older commit's workflows, for the upgrade test); the `.js`
 * specifiers of NodeNext ESM resolve to the `.ts` sources.
 */
export async function bundleWorkflows(workflowsPath = WORKFLOWS_ENTRY): Promise<WorkflowBundle> {
  return bundleWorkflowCode({
    workflowsPath,
    workflowInterceptorModules: [TRACING_INTERCEPTORS],
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error },
    webpackConfigHook: (config) => {
      config.resolve = { ...config.resolve, extensionAlias: { '.js': ['.ts', '.js'] } };
      return config;
    },
  });
}

/** bundleWorkflows in a child process (node with tsx's loader): the worker keeps the code, not webpack's heap. */
export async function bundleWorkflowsApart(): Promise<WorkflowBundle> {
  const dir = mkdtempSync(join(tmpdir(), 'threadbox-bundle-'));
  const out = join(dir, 'workflows.js');
  try {
    await promisify(execFile)(process.execPath, ['--import', 'tsx', BUNDLE_CHILD, out], { cwd: REPO_ROOT, maxBuffer: 10 * 2 ** 20 }).catch((err) => {
      throw new Error(`bundling the workflow code failed: ${(err as { stderr?: string }).stderr || (err as Error).message}`);
    });
    return { code: readFileSync(out, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface WorkerOptions extends ActivityDeps {
  target: TemporalTarget;
  taskQueue: string;
  workflowBundle?: WorkflowBundle;
  /** workflows kept in memory (THREADBOX_WORKFLOW_CACHE_SIZE): an idle thread past it is evicted, and replayed on its next message */
  maxCachedWorkflows?: number;
  /** activity interceptors and the sink of the workflows' spans (src/telemetry.ts) */
  telemetry: Telemetry['worker'];
}

export async function createWorker(opts: WorkerOptions): Promise<{ worker: Worker; connection: NativeConnection }> {
  const { target } = opts;
  const connection = await connectTo(target, () => NativeConnection.connect(connectionOptions(target)));
  try {
    await connectTo(target, () => checkNamespace(connection.workflowService, target));
    await checkSearchAttributes(connection.operatorService, target);
  } catch (err) {
    await connection.close();
    throw err;
  }
  const worker = await Worker.create({
    connection,
    namespace: target.namespace,
    taskQueue: opts.taskQueue,
    workflowBundle: opts.workflowBundle ?? (await bundleWorkflowsApart()),
    // probeRun asks Temporal, over the worker's own connection, whether a run workflow still runs.
    activities: createActivities({ ...opts, temporal: new Client({ connection, namespace: target.namespace }) }),
    // A cancel reaches a streaming step only with its next heartbeat: keep the throttle short.
    maxHeartbeatThrottleInterval: '100 milliseconds',
    defaultHeartbeatThrottleInterval: '100 milliseconds',
    shutdownGraceTime: '10 seconds',
    interceptors: opts.telemetry.interceptors,
    sinks: opts.telemetry.sinks,
    maxCachedWorkflows: opts.maxCachedWorkflows,
  });
  return { worker, connection };
}
