// The representative slice on a production-shaped topology: the Temporal server built from source with
// Postgres persistence and mTLS on its frontend, two API processes and two workers connected with
// client certificates, threadbox's own Postgres over verified TLS. Each mode, an approval, SSE resume
// across API instances, a worker SIGKILL mid-stream and a Temporal server restart: 0 lost, 0 doubled.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestJson } from '../../testkit/http.js';
import { openSse, payloads } from '../../testkit/sse.js';
import { eventually, sleep } from '../../testkit/wait.js';
import { checkRuns } from '../faults/checks.js';
import { randomBetween, startCrowd } from '../faults/crowd.js';
import { Fleet } from '../faults/fleet.js';
import { spawnThreadbox } from '../../testkit/processes.js';
import { Connection } from '@temporalio/client';
import { connectionOptions, resolveTemporalTarget } from '../../src/temporal/connection.js';
import { msToTs } from '@temporalio/common/lib/time.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { refusedStart, setupNamespace, startStage, type ClusterStage } from './stage.js';

const log = (line: string) => console.log(`[cluster ${new Date().toISOString().slice(11, 23)}] ${line}`);

let stage: ClusterStage;
let fleet: Fleet;
beforeAll(async () => {
  stage = await startStage('mtls', log);
  fleet = new Fleet({ env: () => stage.env() });
  await Promise.all([fleet.startApi(), fleet.startApi(), fleet.startWorker(), fleet.startWorker()]);
  log(`2 APIs (${fleet.apis.map((a) => a.url).join(', ')}) and 2 workers ready`);
}, 600_000);
afterAll(async () => {
  await fleet?.stop();
  await stage?.stop();
});

const api = (i = 0) => fleet.apis[i]!.url!;
let counter = 0;
const threadId = (name: string) => `cluster-${name}-${process.pid}-${++counter}`;


const submit = (thread: string, content: string, extra: Record<string, unknown> = {}, on = api()) =>
  requestJson(`${on}/v1/threads/${thread}/runs`, 'POST', { messages: [{ role: 'user', content }], ...extra });

const runDone = (runId: string) =>
  eventually(async () => {
    const run = (await requestJson(`${api()}/v1/runs/${runId}`, 'GET')).body;
    return run?.status === 'done' ? run : undefined;
  }, 60_000, `run ${runId} to end`);

const messages = async (thread: string): Promise<{ role: string; content: string; status: string; runId?: string }[]> =>
  (await requestJson(`${api()}/v1/threads/${thread}/messages?limit=1000`, 'GET')).body.items;

/** Follows the run's stream until an event of `type` arrives. */
async function firstEvent(runId: string, type: string, on = api()) {
  const connection = await openSse(`${on}/v1/runs/${runId}/events`);
  try {
    for (let count = 1; ; count++) {
      const found = payloads(await connection.waitForEvents(count, 60_000)).find((e) => e.type === type);
      if (found) return found;
    }
  } finally {
    connection.close();
  }
}

describe('connections', () => {
  it('every process connected with its client certificate, and threadbox talks to Postgres over verified TLS only', async () => {
    expect(fleet.apis).toHaveLength(2);
    expect(fleet.workers).toHaveLength(2);
    for (const p of fleet.all) expect(p.output()).toContain(`namespace threadbox`);
    const admin = new pg.Client({ connectionString: stage.databaseUrl });
    await admin.connect();
    try {
      const { rows } = await admin.query(
        `SELECT s.ssl, count(*)::int AS n FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = 'threadbox' AND a.pid <> pg_backend_pid() GROUP BY s.ssl`,
      );
      expect(rows).toEqual([{ ssl: true, n: expect.any(Number) }]);
      expect(rows[0].n).toBeGreaterThanOrEqual(4);
      const temporalConnections = await admin.query(`SELECT bool_and(s.ssl) AS all_tls, count(*)::int AS n FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname LIKE 'temporal%'`);
      expect(temporalConnections.rows[0]).toMatchObject({ all_tls: true });
      expect(temporalConnections.rows[0].n).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
  });
});

describe('operator paths', () => {
  it('a client certificate from another CA: the worker and the API stop at start, naming the certificate settings', async () => {
    const rogue = stage.env({ TEMPORAL_TLS_CLIENT_CERT_PATH: stage.pki.rogueClient.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: stage.pki.rogueClient.key });
    for (const role of ['worker', 'api'] as const) {
      const { output, seconds } = await refusedStart(role, rogue);
      log(`${role} with a rogue certificate refused in ${seconds.toFixed(1)} s`);
      expect(output).toMatch(/exited \(1\) before it was ready/);
      expect(output).toMatch(/cannot connect to Temporal at 127\.0\.0\.1:\d+ \(namespace threadbox\).*check TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_SERVER_CA_CERT_PATH/);
      expect(seconds).toBeLessThan(30);
    }
  });

  it('no client certificate at all: refused at start, naming the settings in play', async () => {
    const env = stage.env({ TEMPORAL_TLS_CLIENT_CERT_PATH: '', TEMPORAL_TLS_CLIENT_KEY_PATH: '' });
    const { output } = await refusedStart('worker', env);
    expect(output).toMatch(/cannot connect to Temporal at .*check TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME/);
  });

  it('Postgres over TLS without the CA that signed its certificate: refused at start, naming sslrootcert', async () => {
    const noCa = stage.databaseUrl.replace(/&sslrootcert=[^&]*/, '');
    expect(noCa).toContain('sslmode=verify-full');
    const { output } = await refusedStart('worker', stage.env({ DATABASE_URL: noCa }));
    expect(output).toMatch(/cannot use the database postgres@127\.0\.0\.1:\d+\/threadbox \(DATABASE_URL\): unable to verify the first certificate; the server's certificate cannot be verified: set sslrootcert=<ca file> in DATABASE_URL/);
  });

  it('a Temporal profile in a TOML file (TEMPORAL_CONFIG_FILE + TEMPORAL_PROFILE) connects the worker and the API with no TEMPORAL_* variable', async () => {
    const file = join(stage.dir, 'temporal.toml');
    const [host, port] = stage.temporal.address.split(':');
    writeFileSync(
      file,
      [
        '[profile.cluster]',
        `address = "${host}:${port}"`,
        'namespace = "threadbox"',
        '[profile.cluster.tls]',
        'server_name = "localhost"',
        `server_ca_cert_path = "${stage.pki.ca}"`,
        `client_cert_path = "${stage.pki.client.cert}"`,
        `client_key_path = "${stage.pki.client.key}"`,
      ].join('\n'),
    );
    const { TEMPORAL_ADDRESS: _a, TEMPORAL_NAMESPACE: _n, TEMPORAL_TLS_SERVER_CA_CERT_PATH: _c, TEMPORAL_TLS_SERVER_NAME: _s, TEMPORAL_TLS_CLIENT_CERT_PATH: _cc, TEMPORAL_TLS_CLIENT_KEY_PATH: _ck, ...rest } = stage.env({ TEMPORAL_TASK_QUEUE: 'cluster-profile' });
    const env = { ...rest, TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'cluster' };
    const worker = await spawnThreadbox('worker', env);
    const apiProcess = await spawnThreadbox('api', env);
    try {
      expect(apiProcess.output()).toContain(`Temporal ${stage.temporal.address}, namespace threadbox`);
      const run = (await submit(threadId('profile'), 'via a profile', {}, apiProcess.url)).body;
      expect((await runDone(run.runId)).termination).toEqual({ type: 'natural_end' });
    } finally {
      await Promise.all([worker.stop(), apiProcess.stop()]);
    }
  });

  it('a namespace without the search attributes: the worker lists the commands and does not create them; npm run setup-namespace does', async () => {
    const namespace = `bare${process.pid}`;
    const connection = await Connection.connect(connectionOptions(resolveTemporalTarget(stage.env())));
    try {
      await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
      const env = stage.env({ TEMPORAL_NAMESPACE: namespace, TEMPORAL_TASK_QUEUE: 'cluster-bare' });
      const { output } = await eventually(async () => {
        const attempt = await refusedStart('worker', env);
        return /lacks the search attribute/.test(attempt.output) ? attempt : undefined;
      }, 60_000, 'the worker to see the new namespace');
      for (const name of ['ThreadId', 'ThreadboxRunId', 'AgentId', 'RunStatus']) {
        expect(output).toContain(`temporal operator search-attribute create --address ${stage.temporal.address} --namespace ${namespace} --name ${name} --type Keyword`);
      }
      const before = await connection.operatorService.listSearchAttributes({ namespace });
      expect(Object.keys(before.customAttributes ?? {})).not.toContain('ThreadId');
      expect(await setupNamespace(env)).toContain(`created search attributes ThreadId, ThreadboxRunId, AgentId, RunStatus in ${namespace}`);
      const worker = await spawnThreadbox('worker', env);
      await worker.stop();
      expect(await setupNamespace(env)).toContain(`namespace ${namespace} already has`);
    } finally {
      await connection.close();
    }
  });
});

describe('modes', () => {
  it('interrupt: the running run ends interrupted with its partial text, the new one answers', async () => {
    const thread = threadId('interrupt');
    const first = (await submit(thread, '/slow 50 /long 400 first')).body;
    await firstEvent(first.runId, 'text_delta');
    const second = await submit(thread, 'second', {}, api(1));
    expect(second.status).toBe(202);
    expect((await runDone(first.runId)).termination).toEqual({ type: 'interrupted' });
    expect((await runDone(second.body.runId)).termination).toEqual({ type: 'natural_end' });
    const log = await messages(thread);
    expect(log.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'interrupted'],
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(log[3]!.content).toBe('Echo: second');
  });

  it('queue: runs submitted to both APIs run one after another, each answered once, in order', async () => {
    const thread = threadId('queue');
    const runs = [];
    for (const [i, text] of ['one', 'two', 'three'].entries()) runs.push((await submit(thread, `/slow 10 ${text}`, { mode: 'queue' }, api(i % 2))).body);
    for (const run of runs) expect((await runDone(run.runId)).termination).toEqual({ type: 'natural_end' });
    const log = await messages(thread);
    expect(log.map((m) => m.content)).toEqual(['/slow 10 one', 'Echo: one', '/slow 10 two', 'Echo: two', '/slow 10 three', 'Echo: three']);
  });

  it('steer: a message sent through the other API reaches the running run, which takes one more step', async () => {
    const thread = threadId('steer');
    const first = (await submit(thread, '/slow 50 /long 60 go')).body;
    await firstEvent(first.runId, 'text_delta');
    const steered = await submit(thread, 'and also this', { mode: 'steer' }, api(1));
    expect(steered.body).toMatchObject({ status: 'steered', runId: first.runId });
    expect((await runDone(first.runId)).termination).toEqual({ type: 'natural_end' });
    const log = await messages(thread);
    expect(log.map((m) => [m.role, m.runId])).toEqual([
      ['user', first.runId],
      ['assistant', first.runId],
      ['user', first.runId],
      ['assistant', first.runId],
    ]);
    expect(log[3]!.content).toBe('Echo: and also this');
  });
});

it('approval: a send_email waits, the approval through the other API runs it, and the run ends', async () => {
  const thread = threadId('approval');
  const run = (await submit(thread, '/tool send_email {"to":"a@example.com","subject":"hi","body":"hello"}')).body;
  const requested = await firstEvent(run.runId, 'tool_approval_requested');
  await eventually(async () => ((await requestJson(`${api()}/v1/runs/${run.runId}`, 'GET')).body.status === 'waiting' ? true : undefined), 30_000, 'waiting');
  const decision = await requestJson(`${api(1)}/v1/runs/${run.runId}/decisions`, 'POST', { toolCallId: requested.toolCallId, action: 'approve' });
  expect(decision).toEqual({ status: 202, body: { runId: run.runId, toolCallId: requested.toolCallId, duplicate: false } });
  expect((await runDone(run.runId)).termination).toEqual({ type: 'natural_end' });
  const log = await messages(thread);
  expect(log.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant']);
  expect(JSON.parse(log[2]!.content)).toMatchObject({ sent: true });
});

it('SSE resume across API instances: a stream cut on one API continues on the other from Last-Event-ID, no gap, no repeat', async () => {
  const thread = threadId('resume');
  const run = (await submit(thread, '/slow 20 /long 150 resume')).body;
  const before = await openSse(`${api(0)}/v1/runs/${run.runId}/events`);
  const seen = (await before.waitForEvents(20, 60_000)).map((f) => Number(f.id));
  before.close();
  const after = await openSse(`${api(1)}/v1/runs/${run.runId}/events`, { headers: { 'Last-Event-ID': String(seen.at(-1)) } });
  await after.done;
  const rest = after.frames;
  const all = [...seen, ...rest.filter((f) => f.id).map((f) => Number(f.id))];
  expect(after.status).toBe(200);
  expect(all.length).toBeGreaterThan(seen.length);
  expect(all).toEqual(Array.from({ length: all.length }, (_, i) => all[0]! + i));
  expect(payloads(rest).at(-1)).toMatchObject({ type: 'run_finish' });
});

it('a worker SIGKILLed mid-stream: the other finishes every run once (0 lost, 0 doubled, no gap)', async () => {
  const started = Date.now();
  const crowd = startCrowd(fleet, { threads: 8, runsPerThread: 2, slowMs: 30, minTokens: 40, maxTokens: 100, deadlineMs: 150_000, name: 'kill' });
  await crowd.waitUntilStreaming(60_000);
  await sleep(randomBetween(200, 1000));
  const victim = fleet.workers[0]!;
  log(`SIGKILL worker ${victim.pid} (${crowd.status()})`);
  await victim.kill();
  const report = await checkRuns('cluster worker SIGKILL', fleet, await crowd.runs, crowd.expected, 1, (Date.now() - started) / 1000);
  log(JSON.stringify(report));
  expect(report.problems).toEqual([]);
  expect(report.runsCompleted).toBe(report.runsDriven);
  expect([report.messagesLost, report.messagesDoubled, report.streamGaps, report.duplicateEvents]).toEqual([0, 0, 0, 0]);
  await fleet.startWorker();
});

it('the Temporal server restarted mid-run (its state in Postgres): every run ends once, nothing lost or doubled', async () => {
  const started = Date.now();
  const crowd = startCrowd(fleet, { threads: 8, runsPerThread: 2, slowMs: 30, minTokens: 40, maxTokens: 100, deadlineMs: 180_000, staggerMs: 3000, name: 'restart' });
  await crowd.waitUntilStreaming(60_000);
  await sleep(randomBetween(500, 1500));
  log(`stopping temporal-server (${crowd.status()})`);
  await stage.temporal.stop();
  await sleep(3000);
  await stage.temporal.start();
  log('temporal-server is back');
  const report = await checkRuns('cluster Temporal restart', fleet, await crowd.runs, crowd.expected, 1, (Date.now() - started) / 1000);
  log(JSON.stringify(report));
  expect(report.problems).toEqual([]);
  expect(report.runsCompleted).toBe(report.runsDriven);
  expect([report.messagesLost, report.messagesDoubled, report.streamGaps, report.duplicateEvents]).toEqual([0, 0, 0, 0]);
  expect(fleet.apis).toHaveLength(2);
  expect(fleet.workers).toHaveLength(2);
}, 300_000);
