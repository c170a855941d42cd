// `npm run api` as its own process, stopped with SIGTERM during an open stream: the client gets a
// retry hint, the process drains and exits, and the client resumes on another instance with no gap.
// The same process's request logs carry threadId and runId.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../../src/infra/ports.js';
import { eventFrames, openSse, payloads } from '../../testkit/sse.js';
import { eventually, uniqueId } from '../stack.js';
import { rawRequest, runDone, startTenantStack, type TenantStack } from './helpers.js';

let stack: TenantStack;
const children: ChildProcess[] = [];

beforeAll(async () => {
  stack = await startTenantStack();
});
afterAll(async () => {
  for (const child of children) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await stack?.stop();
});

/** The API alone, on this file's task queue, database and keys, in its own process group. */
async function startApiProcess() {
  const port = await freePort();
  const child = spawn('npx', ['tsx', 'src/cli/api.ts'], {
    env: {
      ...process.env,
      DATABASE_URL: inject('databaseUrl'),
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_TASK_QUEUE: stack.taskQueue,
      THREADBOX_API_KEYS: `${stack.key}:${stack.tenant}`,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group: the signal reaches node, not only the npx wrapper
  });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await Promise.race([
    new Promise<void>((resolve) => {
      const check = () => (output.includes('threadbox api ready') ? resolve() : setTimeout(check, 50));
      check();
    }),
    exited.then((code) => Promise.reject(new Error(`api exited (${code}) before it was ready:\n${output}`))),
  ]);
  return { child, url: `http://127.0.0.1:${port}`, exited, output: () => output };
}

function groupAlive(pgid: number) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('SIGTERM', () => {
  it('ends an open stream with a retry hint, drains and exits; the client resumes on another instance with no gap', async () => {
    const api = await startApiProcess();
    const threadId = uniqueId('drain');
    const headers = { ...stack.auth, 'content-type': 'application/json' };

    // Plain requests first, for the request log: the submit's answer names the run, the read's path does.
    const probe = await fetch(`${api.url}/v1/threads/${uniqueId('logged')}/runs`, { method: 'POST', headers, body: JSON.stringify({ messages: [{ content: 'log me' }] }) });
    const logged = (await probe.json()) as { threadId: string; runId: string };
    expect((await fetch(`${api.url}/v1/runs/${logged.runId}`, { headers: stack.auth })).status).toBe(200);

    const sse = await openSse(`${api.url}/v1/threads/${threadId}/runs`, { method: 'POST', headers, body: JSON.stringify({ messages: [{ content: '/slow 40 /long 150 keep going' }] }) });
    expect(sse.status).toBe(200);
    await sse.waitForEvents(8);
    const signalledAt = Date.now();
    process.kill(-api.child.pid!, 'SIGTERM');
    await sse.done;
    const retry = sse.frames.find((f) => f.retry !== undefined);
    expect(retry?.retry).toBeGreaterThan(0);
    const seen = payloads(sse.frames);
    expect(seen.at(-1)?.type).not.toBe('run_finish');
    // npx itself dies of the signal; what counts is that node drained, said so, and left the group empty.
    await eventually(async () => (groupAlive(api.child.pid!) ? undefined : true), 15_000, 'the api process group to exit');
    expect(Date.now() - signalledAt).toBeLessThan(12_000);
    expect(api.output()).toContain('SIGTERM: stopped');
    await expect(rawRequest(api.url, { method: 'GET', path: '/health/live' })).rejects.toThrow();

    const lastId = eventFrames(sse.frames).at(-1)!.id!;
    const rest = await openSse(`${stack.url}/v1/runs/${seen[0].runId}/events`, { headers: { ...stack.auth, 'last-event-id': lastId } });
    await rest.done;
    const all = [...seen, ...payloads(rest.frames)];
    expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1));
    expect(all.at(-1)).toMatchObject({ type: 'run_finish', termination: { type: 'natural_end' } });
    const committed = await stack.store.loadCommittedMessages({ tenant: stack.tenant, threadId });
    expect(all.filter((e) => e.type === 'text_delta').map((e) => e.delta).join('')).toBe(committed.find((m) => m.role === 'assistant')!.content);

    // Structured request logs: JSON lines whose "request completed" entries name the thread and run.
    const lines = api
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const completed = lines.filter((l) => l.msg === 'request completed');
    expect(completed).toContainEqual(expect.objectContaining({ threadId: logged.threadId, runId: logged.runId, res: { statusCode: 202 } }));
    expect(completed).toContainEqual(expect.objectContaining({ runId: logged.runId, res: { statusCode: 200 } }));
    expect(api.output()).toContain('SIGTERM: stopping');
    await runDone(stack, logged.runId);
  }, 60_000);
});
