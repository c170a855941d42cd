// Starts the Temporal dev server with threadbox's search attributes registered.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { defineSearchAttributeKey } from '@temporalio/common';
import { createSearchAttributes, SEARCH_ATTRIBUTES } from '../temporal/search-attributes.js';
import { portInUse } from './ports.js';
import { findTemporalCli, type TemporalCli } from './temporal-cli.js';

/**
 * Settings that make each dispatch hop of the dev server fast (its defaults suit a laptop demo, not a
 * benchmark): its one history shard reads its transfer queue at most 20 times a second, so a run's
 * ~20 transfer tasks wait for slots; eager activities let a workflow task carry the activity it
 * schedules straight back to the worker. A production cluster has many shards and tunes neither
 * (docs/operations.md, "The dev server's speed settings").
 */
export const DEV_SERVER_SPEED: Record<string, string | number | boolean> = {
  'history.transferProcessorMaxPollRPS': 10_000,
  'system.enableActivityEagerExecution': true,
};

/**
 * SQLite settings of a file-backed dev server: a write-ahead log and `synchronous=normal` fsync at
 * checkpoints instead of every commit. A crash of the server process loses nothing; a power cut may
 * lose the last commits, which a dev server may.
 */
export const DEV_SERVER_SQLITE_PRAGMAS = ['journal_mode=wal', 'synchronous=normal'];

export interface DevServerOptions {
  port: number;
  uiPort?: number; // absent: headless
  dbFile?: string; // absent: in memory
  namespace?: string;
  dynamicConfig?: Record<string, string | number | boolean>;
  log?: (line: string) => void;
}

export interface RunningTemporal {
  address: string;
  uiUrl?: string;
  cli: TemporalCli;
  stop(): Promise<void>;
}

export async function startTemporalDevServer(opts: DevServerOptions): Promise<RunningTemporal> {
  const log = opts.log ?? (() => {});
  const cli = findTemporalCli({ build: true, log });
  log(`temporal CLI: ${cli.source}${'path' in cli ? ` (${cli.path})` : ''}`);
  const namespace = opts.namespace ?? 'default';
  const dynamic = Object.entries({ ...DEV_SERVER_SPEED, ...opts.dynamicConfig }).flatMap(([k, v]) => ['--dynamic-config-value', `${k}=${v}`]);
  const pragmas = opts.dbFile ? DEV_SERVER_SQLITE_PRAGMAS.flatMap((p) => ['--sqlite-pragma', p]) : [];
  const address = `127.0.0.1:${opts.port}`;
  const uiUrl = opts.uiPort ? `http://127.0.0.1:${opts.uiPort}` : undefined;

  if (cli.source === 'sdk-download') {
    const env = await TestWorkflowEnvironment.createLocal({
      server: {
        ip: '127.0.0.1',
        port: opts.port,
        ui: opts.uiPort !== undefined,
        uiPort: opts.uiPort,
        dbFilename: opts.dbFile ? resolve(opts.dbFile) : undefined,
        namespace,
        searchAttributes: SEARCH_ATTRIBUTES.map((name) => defineSearchAttributeKey(name, 'KEYWORD')),
        extraArgs: [...dynamic, ...pragmas],
      },
    });
    return { address, uiUrl, cli, stop: () => env.teardown() };
  }

  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(opts.port), '--namespace', namespace, '--log-level', 'error'];
  if (opts.uiPort) args.push('--ui-port', String(opts.uiPort));
  else args.push('--headless');
  if (opts.dbFile) {
    mkdirSync(dirname(resolve(opts.dbFile)), { recursive: true });
    args.push('--db-filename', resolve(opts.dbFile));
  }
  for (const name of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${name}=Keyword`);
  args.push(...dynamic, ...pragmas);

  // The readiness check below would take any server that answers on the port for this one.
  if (await portInUse(opts.port)) throw new Error(`cannot start the temporal dev server: ${address} is already in use`);
  const child = spawn(cli.path, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const stop = () => stopChild(child);
  try {
    await waitUntilServing(address, child, () => stderr);
    await ensureSearchAttributes(address, namespace);
  } catch (err) {
    await stop();
    throw err;
  }
  return { address, uiUrl, cli, stop };
}

async function waitUntilServing(address: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`temporal dev server exited with ${child.exitCode}: ${stderr()}`);
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.workflowService.getSystemInfo({});
        return;
      } finally {
        await connection.close();
      }
    } catch {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`temporal dev server did not answer on ${address} within 90 s: ${stderr()}`);
}

/**
 * Registers threadbox's search attributes where missing. `start-dev --search-attribute` only
 * applies when it creates the namespace, so a persisted db from an older version needs this.
 */
export async function ensureSearchAttributes(address: string, namespace: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    await createSearchAttributes(connection.operatorService, namespace);
  } finally {
    await connection.close();
  }
}

export function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolveStop) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(killer);
      resolveStop();
    });
    child.kill('SIGTERM');
  });
}
