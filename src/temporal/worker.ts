// Builds the worker: bundles the workflow code and registers the activities.
import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker, type WorkflowBundle } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../../activities/index.js';

const WORKFLOWS_ENTRY = fileURLToPath(new URL('../../workflows/index.ts', import.meta.url));

/**
 * Bundles workflows/ once (or another entry: an older commit's workflows, for the upgrade test); the `.js`
 * specifiers of NodeNext ESM resolve to the `.ts` sources.
 */
export async function bundleWorkflows(workflowsPath = WORKFLOWS_ENTRY): Promise<WorkflowBundle> {
  return bundleWorkflowCode({
    workflowsPath,
    logger: { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error },
    webpackConfigHook: (config) => {
      config.resolve = { ...config.resolve, extensionAlias: { '.js': ['.ts', '.js'] } };
      return config;
    },
  });
}

export interface WorkerOptions extends ActivityDeps {
  address: string;
  namespace: string;
  taskQueue: string;
  workflowBundle?: WorkflowBundle;
}

export async function createWorker(opts: WorkerOptions): Promise<{ worker: Worker; connection: NativeConnection }> {
  const connection = await NativeConnection.connect({ address: opts.address });
  const worker = await Worker.create({
    connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    workflowBundle: opts.workflowBundle ?? (await bundleWorkflows()),
    // probeRun asks Temporal, over the worker's own connection, whether a run workflow still runs.
    activities: createActivities({ ...opts, temporal: new Client({ connection, namespace: opts.namespace }) }),
    // A cancel reaches a streaming step only with its next heartbeat: keep the throttle short.
    maxHeartbeatThrottleInterval: '100 milliseconds',
    defaultHeartbeatThrottleInterval: '100 milliseconds',
    shutdownGraceTime: '10 seconds',
  });
  return { worker, connection };
}
