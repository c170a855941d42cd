// Postgres and Temporal for one suite, scenario, recording or bench run: the dev services in a temp dir
// that is removed when they stop.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevServices, type DevServices, type DevServicesOptions } from '../src/infra/dev-services.js';

/** A fresh temp dir embedded Postgres can use. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755); // embedded Postgres runs as its own user when we are root
  return dir;
}

export interface ScratchServices extends DevServices {
  /** the temp dir, for files of the caller's own that may go with it */
  dir: string;
}

/** The dev services on free ports, with their data in a new temp dir (`prefix…`) that `stop()` removes. */
export async function startScratchServices(prefix: string, opts: Omit<DevServicesOptions, 'dataDir' | 'ports'> = {}): Promise<ScratchServices> {
  const dir = scratchDir(prefix);
  const services = await startDevServices({ ...opts, dataDir: dir }).catch((err) => {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  const stopServices = services.stop;
  return Object.assign(services, {
    dir,
    async stop() {
      await stopServices();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}
