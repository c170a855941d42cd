// Finds the `temporal` CLI, or builds it from its Go module, so the dev server needs no download.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

/** The newest CLI whose go.mod `go install` accepts (from v1.6 on it carries a replace directive). */
export const TEMPORAL_CLI_VERSION = 'v1.5.1';

export type TemporalCli =
  | { source: 'TEMPORAL_CLI_PATH' | 'PATH' | 'cache' | 'go-build'; path: string }
  | { source: 'sdk-download' };

export function temporalCacheDir(): string {
  return process.env.THREADBOX_CACHE_DIR ?? join(homedir(), '.cache', 'threadbox');
}

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    if (dir && isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * TEMPORAL_CLI_PATH, else `temporal` on PATH, else the cached build, else a fresh Go build
 * (when `build` and `go` exist), else the SDK's own download (needs internet).
 */
export function findTemporalCli(opts: { build: boolean; log?: (line: string) => void }): TemporalCli {
  const log = opts.log ?? (() => {});
  const explicit = process.env.TEMPORAL_CLI_PATH;
  if (explicit) {
    if (!isExecutable(explicit)) throw new Error(`TEMPORAL_CLI_PATH=${explicit} is not an executable file`);
    return { source: 'TEMPORAL_CLI_PATH', path: explicit };
  }
  const fromPath = onPath('temporal');
  if (fromPath) return { source: 'PATH', path: fromPath };
  const binDir = join(temporalCacheDir(), 'bin', TEMPORAL_CLI_VERSION);
  const cached = join(binDir, 'temporal');
  if (isExecutable(cached)) return { source: 'cache', path: cached };
  if (opts.build && onPath('go')) {
    mkdirSync(binDir, { recursive: true });
    log(`building the temporal CLI ${TEMPORAL_CLI_VERSION} from its Go module into ${binDir} (a few minutes, once)…`);
    const started = Date.now();
    const result = spawnSync('go', ['install', `github.com/temporalio/cli/cmd/temporal@${TEMPORAL_CLI_VERSION}`], {
      env: { ...process.env, GOBIN: binDir, GOFLAGS: `${process.env.GOFLAGS ?? ''} -buildvcs=false`.trim() },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (result.status !== 0 || !isExecutable(cached)) throw new Error(`go install of the temporal CLI failed (exit ${result.status})`);
    log(`built the temporal CLI in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return { source: 'go-build', path: cached };
  }
  return { source: 'sdk-download' };
}

export function temporalCliVersion(cli: TemporalCli): string {
  if (cli.source === 'sdk-download') return 'sdk-download';
  try {
    return execFileSync(cli.path, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}
