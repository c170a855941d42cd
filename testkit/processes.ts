// `npm run api` / `npm run worker` as separate OS processes, killable with SIGKILL and measurable from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface ThreadboxProcess {
  role: 'api' | 'worker';
  pid: number;
  /** the API's base URL */
  url?: string;
  exited: Promise<void>;
  /** SIGKILL to the whole process group: no shutdown hook runs, as in a crash */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs` */
  stop(graceMs?: number): Promise<void>;
  output(): string;
}

/**
 * Starts the CLI entry with `node --import tsx`, so the pid is the Node process itself (no npx or
 * tsx wrapper in between) and /proc/<pid> is the worker's own memory. Resolves once it printed
 * its ready line.
 */
export async function spawnThreadbox(role: 'api' | 'worker', env: Record<string, string>, readyTimeoutMs = 120_000): Promise<ThreadboxProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', `src/cli/${role}.ts`], {
    cwd: REPO_ROOT,
    env: { ...process.env, LOG_LEVEL: 'warn', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string | undefined>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${role} not ready within ${readyTimeoutMs} ms:\n${output.slice(-2000)}`)), readyTimeoutMs);
    const onData = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-20_000);
      const ready = new RegExp(`threadbox ${role} ready(?: on (\\S+))?`).exec(output);
      if (ready) {
        clearTimeout(timer);
        resolve(ready[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${role} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${output.slice(-2000)}`));
    });
  });
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  return {
    role,
    pid: child.pid!,
    url,
    exited,
    output: () => output,
    async kill() {
      signalGroup('SIGKILL');
      await exited;
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const killer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
      signalGroup('SIGTERM');
      await exited;
      clearTimeout(killer);
    },
  };
}

/** Resident set size of a process, from /proc (Linux), in MiB. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  return Math.round((kib / 1024) * 10) / 10;
}
