// Connecting as to Temporal Cloud: server TLS only (no client certificate), every call authorized by an
// API key (a JWT the cluster's key provider checks). The worker and the API connect with
// TEMPORAL_API_KEY; a call without a key is refused by the server; a key it did not issue, or one for
// another namespace, stops the process at start naming TEMPORAL_API_KEY.
import { Connection } from '@temporalio/client';
import { connectionOptions, resolveTemporalTarget } from '../../src/temporal/connection.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawnThreadbox, type ThreadboxProcess } from '../../testkit/processes.js';
import { requestJson } from '../../testkit/http.js';
import { eventually } from '../../testkit/wait.js';
import { startKeyIssuer } from './jwt.js';
import { NAMESPACE, refusedStart, startStage, type ClusterStage } from './stage.js';

const log = (line: string) => console.log(`[cluster ${new Date().toISOString().slice(11, 23)}] ${line}`);

let stage: ClusterStage;
const processes: ThreadboxProcess[] = [];
beforeAll(async () => {
  stage = await startStage('apikey', log);
}, 600_000);
afterAll(async () => {
  await Promise.all(processes.map((p) => p.kill()));
  await stage?.stop();
});


it('the API and the worker connect with TEMPORAL_API_KEY over server TLS, and a run completes', async () => {
  expect(stage.env().TEMPORAL_API_KEY).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  expect(stage.env().TEMPORAL_TLS_CLIENT_CERT_PATH).toBeUndefined();
  const worker = await spawnThreadbox('worker', stage.env());
  const api = await spawnThreadbox('api', stage.env());
  processes.push(worker, api);
  const run = (await requestJson(`${api.url}/v1/threads/apikey-${process.pid}/runs`, 'POST', { messages: [{ role: 'user', content: 'over an API key' }] })).body;
  const done = await eventually(async () => {
    const record = (await requestJson(`${api.url}/v1/runs/${run.runId}`, 'GET')).body;
    return record?.status === 'done' ? record : undefined;
  }, 60_000, 'the run to end');
  expect(done.termination).toEqual({ type: 'natural_end' });
  const log = (await requestJson(`${api.url}/v1/threads/apikey-${process.pid}/messages`, 'GET')).body.items;
  expect(log.map((m: { content: string }) => m.content)).toEqual(['over an API key', 'Echo: over an API key']);
});

it('the server enforces keys: the same call without one is refused', async () => {
  // The stage's own connection settings (server CA and name), without the key.
  const connection = await Connection.connect(connectionOptions(resolveTemporalTarget(stage.env({ TEMPORAL_API_KEY: '' }))));
  try {
    await expect(connection.workflowService.describeNamespace({ namespace: NAMESPACE })).rejects.toMatchObject({ code: 7 }); // PERMISSION_DENIED
  } finally {
    await connection.close();
  }
});

it('a key the cluster did not issue, or one for another namespace: refused at start, naming TEMPORAL_API_KEY', async () => {
  const stranger = await startKeyIssuer();
  try {
    const keys = { 'a stranger key': stranger.issue(['system:admin']), 'a key for another namespace': stage.keys!.issue(['elsewhere:admin']) };
    for (const [what, key] of Object.entries(keys)) {
      for (const role of ['worker', 'api'] as const) {
        const { output, seconds } = await refusedStart(role, stage.env({ TEMPORAL_API_KEY: key }));
        log(`${role} with ${what} refused in ${seconds.toFixed(1)} s`);
        expect(output).toMatch(/exited \(1\) before it was ready/);
        expect(output).toMatch(/Temporal at 127\.0\.0\.1:\d+ refused these credentials for namespace threadbox \(.*\); check TEMPORAL_API_KEY$/m);
        expect(seconds).toBeLessThan(30);
      }
    }
  } finally {
    await stranger.close();
  }
});
