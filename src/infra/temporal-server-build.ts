// The Temporal server itself and its SQL schema tool, built from their Go module (as the CLI is) and
// cached, for a production-shaped cluster: SQL persistence, TLS, several processes (npm run test:cluster).
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isExecutable, temporalCacheDir } from './temporal-cli.js';

export const TEMPORAL_SERVER_VERSION = 'v1.29.1';

export interface TemporalServerBinaries {
  version: string;
  server: string;
  sqlTool: string;
  /** seconds the build took; absent when it came from the cache */
  builtInSeconds?: number;
}

/**
 * The cached build of go.temporal.io/server (cmd/server and cmd/tools/sql) at TEMPORAL_SERVER_VERSION,
 * building it first when missing (a few minutes on 2 cores; needs Go and the module proxy). Its
 * go.mod carries replace directives, so `go install pkg@version` refuses it: a scratch module
 * requires it and builds both commands.
 */
export function ensureTemporalServer(log: (line: string) => void = () => {}): TemporalServerBinaries {
  const dir = join(temporalCacheDir(), 'temporal-server', TEMPORAL_SERVER_VERSION);
  const server = join(dir, 'temporal-server');
  const sqlTool = join(dir, 'temporal-sql-tool');
  if (isExecutable(server) && isExecutable(sqlTool)) return { version: TEMPORAL_SERVER_VERSION, server, sqlTool };
  const work = join(dir, 'module');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  writeFileSync(join(work, 'go.mod'), 'module threadbox/temporal-server-build\n\ngo 1.23\n');
  const started = Date.now();
  log(`building the Temporal server ${TEMPORAL_SERVER_VERSION} and its SQL tool from their Go module into ${dir} (a few minutes, once)…`);
  const go = (args: string[]) => {
    const result = spawnSync('go', args, { cwd: work, env: { ...process.env, GOFLAGS: `${process.env.GOFLAGS ?? ''} -buildvcs=false`.trim() }, stdio: ['ignore', 'inherit', 'inherit'] });
    if (result.error) throw new Error(`go ${args[0]} failed: ${result.error.message} (is Go installed?)`);
    if (result.status !== 0) throw new Error(`go ${args.join(' ')} failed (exit ${result.status})`);
  };
  go(['get', `go.temporal.io/server/cmd/server@${TEMPORAL_SERVER_VERSION}`, `go.temporal.io/server/cmd/tools/sql@${TEMPORAL_SERVER_VERSION}`]);
  go(['build', '-o', sqlTool, 'go.temporal.io/server/cmd/tools/sql']);
  go(['build', '-o', server, 'go.temporal.io/server/cmd/server']);
  rmSync(work, { recursive: true, force: true });
  const builtInSeconds = Math.round((Date.now() - started) / 1000);
  log(`built the Temporal server ${TEMPORAL_SERVER_VERSION} in ${builtInSeconds} s`);
  return { version: TEMPORAL_SERVER_VERSION, server, sqlTool, builtInSeconds };
}
