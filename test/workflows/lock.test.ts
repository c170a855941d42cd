// The mailbox Lock (workflows/lock.ts) on a real Temporal server: one holder at a time, released on failure.
import { Client, Connection, WorkflowUpdateFailedError } from '@temporalio/client';
import { NativeConnection, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { enterUpdate, lockWorkflow, statsQuery } from './lock-workflow.js';

const taskQueue = `lock-${Date.now().toString(36)}`;
let worker: Worker;
let running: Promise<void>;
let client: Client;
let connection: Connection;

beforeAll(async () => {
  const workflowBundle = await bundleWorkflowCode({ workflowsPath: fileURLToPath(new URL('./lock-workflow.ts', import.meta.url)), logger: undefined });
  const native = await NativeConnection.connect({ address: inject('temporalAddress') });
  worker = await Worker.create({ connection: native, taskQueue, workflowBundle });
  running = worker.run().finally(() => native.close());
  connection = await Connection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection });
}, 120_000);

afterAll(async () => {
  worker?.shutdown();
  await running;
  await connection?.close();
});

describe('Lock', () => {
  it('lets one update at a time hold it; 12 concurrent updates all get through, one after another', async () => {
    const handle = await client.workflow.start(lockWorkflow, { taskQueue, workflowId: `lock-${taskQueue}-a`, args: [12] });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, id) => handle.executeUpdate(enterUpdate, { args: [{ id }] })));
    expect([...answers].sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    const order = await handle.result();
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i));
    const stats = await handle.query(statsQuery);
    expect(stats.maxInside).toBe(1);
    expect(stats.held).toBe(false);
  });

  it('is released when the work inside it fails: later updates still get it', async () => {
    const handle = await client.workflow.start(lockWorkflow, { taskQueue, workflowId: `lock-${taskQueue}-b`, args: [3] });
    const failing = handle.executeUpdate(enterUpdate, { args: [{ id: 99, fail: true }] });
    const others = Array.from({ length: 3 }, (_, id) => handle.executeUpdate(enterUpdate, { args: [{ id }] }));
    await expect(failing).rejects.toBeInstanceOf(WorkflowUpdateFailedError);
    await Promise.all(others);
    expect(await handle.result()).toHaveLength(3);
    expect((await handle.query(statsQuery)).maxInside).toBe(1);
  });
});
