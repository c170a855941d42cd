// `npm run dev` as a user runs it: one command, a curl session, Ctrl-C, nothing left behind, data kept.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { freePort } from '../src/infra/ports.js';

const dataDir = mkdtempSync(join(tmpdir(), 'threadbox-dev-'));
chmodSync(dataDir, 0o755);
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

async function startDev(env: Record<string, string>): Promise<{ child: ChildProcess; output: () => string; ready: Promise<void> }> {
  // Its own process group, like a terminal's foreground job, so Ctrl-C can be sent the way a terminal sends it.
  const child = spawn('npm', ['run', 'dev'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ctrl-C stops everything')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`npm run dev exited (${code}) before it was ready:\n${output}`)));
  });
  return { child, output: () => output, ready };
}

function processesUsing(path: string): string[] {
  try {
    return execFileSync('pgrep', ['-af', path], { encoding: 'utf8' }).trim().split('\n').filter((l) => l && !l.includes('pgrep'));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** Ctrl-C: SIGINT to the whole foreground process group. */
async function stopWithSigint(child: ChildProcess): Promise<string[]> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(-child.pid!, 'SIGINT');
  await exited;
  // npm exits on the signal at once; threadbox then stops its children: give it the time it takes.
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && (processesUsing(dataDir).length > 0 || groupAlive(child.pid!))) await new Promise((r) => setTimeout(r, 200));
  return [...processesUsing(dataDir), ...(groupAlive(child.pid!) ? [`process group ${child.pid}`] : [])];
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * `npm run dev` that should refuse to start: its exit code and output, or (had it started after all)
 * what it printed until it was ready, after which it is stopped.
 */
async function devThatShouldFail(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const dev = await startDev(env);
  const outcome = await Promise.race([
    dev.ready.then(() => 'ready' as const),
    new Promise<'exited'>((resolve) => dev.child.once('exit', () => resolve('exited'))),
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 60_000)),
  ]).catch(() => 'exited' as const);
  if (outcome !== 'exited') {
    await stopWithSigint(dev.child);
    return { code: null, output: dev.output() };
  }
  return { code: dev.child.exitCode, output: dev.output() };
}

describe('npm run dev', () => {
  it('serves the README curl session, stops every child on SIGINT, and keeps its data for the next start', async () => {
    const env = {
      THREADBOX_DATA_DIR: dataDir,
      PORT: String(await freePort()),
      THREADBOX_PG_PORT: String(await freePort()),
      THREADBOX_TEMPORAL_PORT: String(await freePort()),
      THREADBOX_TEMPORAL_UI_PORT: String(await freePort()),
      LOG_LEVEL: 'warn',
    };
    const api = `http://127.0.0.1:${env.PORT}`;

    const first = await startDev(env);
    await first.ready;
    expect(first.output()).toContain(`API          ${api}`);
    expect(first.output()).toContain(`API docs     ${api}/docs`);
    expect(first.output()).toContain(`Temporal UI  http://127.0.0.1:${env.THREADBOX_TEMPORAL_UI_PORT}`);
    expect(first.output()).toContain(`Playground   ${api}/`);
    const playground = await fetch(`${api}/`);
    expect(playground.headers.get('content-type')).toContain('text/html');
    expect(await playground.text()).toContain('<div id="root"></div>');
    expect(await (await fetch(`${api}/playground.json`)).json()).toEqual({ temporalUiUrl: `http://127.0.0.1:${env.THREADBOX_TEMPORAL_UI_PORT}`, namespace: 'default' });

    const submitted = await fetch(`${api}/v1/threads/readme/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(submitted.status).toBe(202);
    let contents: string[] = [];
    for (let i = 0; i < 100 && contents.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const page = (await (await fetch(`${api}/v1/threads/readme/messages`)).json()) as { items: { content: string }[] };
      contents = page.items.map((m: { content: string }) => m.content);
    }
    expect(contents).toEqual(['hi', 'Echo: hi']);
    const ui = await fetch(`http://127.0.0.1:${env.THREADBOX_TEMPORAL_UI_PORT}/`);
    expect(ui.status).toBe(200);

    expect(processesUsing(dataDir).length).toBeGreaterThan(0); // postgres and temporal run with paths under it
    expect(await stopWithSigint(first.child)).toEqual([]);

    const second = await startDev(env);
    await second.ready;
    const page = (await (await fetch(`${api}/v1/threads/readme/messages`)).json()) as { items: { content: string }[] };
    expect(page.items.map((m: { content: string }) => m.content)).toEqual(['hi', 'Echo: hi']);
    const history = await fetch(`http://127.0.0.1:${env.THREADBOX_TEMPORAL_UI_PORT}/api/v1/namespaces/default/workflows?query=${encodeURIComponent('ThreadId="readme"')}`);
    const listed = (await history.json()) as { executions: { execution: { workflowId: string } }[] };
    expect(listed.executions.map((e: { execution: { workflowId: string } }) => e.execution.workflowId)).toContain('thread:default:readme');
    expect(await stopWithSigint(second.child)).toEqual([]);
  }, 180_000);

  it('refuses to start when its Temporal port is taken by another Temporal server, naming the port and THREADBOX_TEMPORAL_PORT', async () => {
    // The suite's own Temporal dev server answers on this port: a readiness check alone would attach to it.
    const taken = new URL(`http://${inject('temporalAddress')}`).port;
    const { code, output } = await devThatShouldFail({
      THREADBOX_DATA_DIR: join(dataDir, 'temporal-taken'),
      PORT: String(await freePort()),
      THREADBOX_PG_PORT: String(await freePort()),
      THREADBOX_TEMPORAL_PORT: taken,
      THREADBOX_TEMPORAL_UI_PORT: String(await freePort()),
    });
    expect(code).toBe(1);
    expect(output).toContain(`port ${taken} (THREADBOX_TEMPORAL_PORT)`);
    expect(output).toContain('already in use');
    expect(output).not.toContain('history in');
    expect(output).not.toContain('threadbox ready');
  }, 90_000);

  it('refuses to start when its Postgres port is taken, with a message naming THREADBOX_PG_PORT (not `undefined`)', async () => {
    const taken = new URL(inject('databaseUrl')).port;
    const { code, output } = await devThatShouldFail({
      THREADBOX_DATA_DIR: join(dataDir, 'postgres-taken'),
      PORT: String(await freePort()),
      THREADBOX_PG_PORT: taken,
      THREADBOX_TEMPORAL_PORT: String(await freePort()),
      THREADBOX_TEMPORAL_UI_PORT: String(await freePort()),
    });
    expect(code).toBe(1);
    expect(output).toContain(`port ${taken} (THREADBOX_PG_PORT)`);
    expect(output).not.toMatch(/^undefined$/m);
    expect(output).not.toContain('threadbox ready');
  }, 90_000);

  it('refuses a bad configuration with a message naming the variable', () => {
    let stderr = '';
    try {
      execFileSync('npx', ['tsx', 'src/cli/start.ts'], { env: { ...process.env, PORT: 'eighty' }, encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      stderr = (err as { stderr: string }).stderr;
    }
    expect(stderr).toContain('PORT');
  });

  it('refuses a non-loopback HOST without API keys', () => {
    let stderr = '';
    try {
      execFileSync('npx', ['tsx', 'src/cli/api.ts'], {
        env: { ...process.env, HOST: '0.0.0.0', DATABASE_URL: 'postgres://u:p@127.0.0.1:1/x', TEMPORAL_ADDRESS: '127.0.0.1:1', THREADBOX_API_KEYS: '' },
        encoding: 'utf8',
        stdio: 'pipe',
      });
    } catch (err) {
      stderr = (err as { stderr: string }).stderr;
    }
    expect(stderr).toContain('HOST=0.0.0.0 is not a loopback address');
  });
});
