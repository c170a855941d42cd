// A production-shaped Temporal: the server binary built from its Go module (not the CLI's dev server),
// its history and visibility in Postgres (over TLS, schema set up by temporal-sql-tool), TLS on the
// frontend. Two shapes: `mtls` (every client shows a certificate the CA signed, as a self-hosted
// cluster) and `apikey` (server TLS only, each call authorized by a JWT bearer key, as Temporal Cloud;
// the server's own worker goes through an internal frontend that needs no key).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { portInUse } from '../../src/infra/ports.js';
import type { TemporalServerBinaries } from '../../src/infra/temporal-server-build.js';
import { stopChild } from '../../src/infra/temporal-server.js';
import type { Pki } from './pki.js';

export interface ClusterPostgres {
  port: number;
  user: string;
  password: string;
}

export interface TemporalClusterOptions {
  binaries: TemporalServerBinaries;
  dir: string;
  pki: Pki;
  postgres: ClusterPostgres;
  /** databases of this server: `<name>` and `<name>_visibility` */
  name: string;
  shape: 'mtls' | 'apikey';
  /** apikey: where the server fetches the JWT signing keys */
  jwksUrl?: string;
}

export interface TemporalCluster {
  address: string;
  /** the server's process output, for a failure's evidence */
  output(): string;
  /** stops the process (SIGTERM); `start()` brings it back on the same ports and databases */
  stop(): Promise<void>;
  start(): Promise<void>;
}

const SERVICES = ['frontend', 'history', 'matching', 'worker'] as const;

/**
 * A free port below 32768: the SQL stores keep a member's membership port as a smallint, and the
 * kernel's ephemeral ports (what port 0 gives) lie above it.
 */
const taken = new Set<number>();
async function lowFreePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port) || (await portInUse(port))) continue;
    taken.add(port);
    return port;
  }
}

export async function setUpTemporalCluster(opts: TemporalClusterOptions): Promise<TemporalCluster> {
  mkdirSync(join(opts.dir, 'config'), { recursive: true });
  setUpSchemas(opts);
  const services: Record<string, { rpc: Record<string, unknown> }> = {};
  const names = opts.shape === 'apikey' ? [...SERVICES, 'internal-frontend'] : SERVICES;
  for (const name of names) {
    services[name] = { rpc: { grpcPort: await lowFreePort(), membershipPort: await lowFreePort(), bindOnLocalHost: true, ...(name.endsWith('frontend') ? { httpPort: await lowFreePort() } : {}) } };
  }
  const address = `127.0.0.1:${services.frontend!.rpc.grpcPort}`;
  writeFileSync(join(opts.dir, 'config', 'cluster.yaml'), stringify(serverConfig(opts, services, address)));
  writeFileSync(join(opts.dir, 'dynamicconfig.yaml'), stringify(DYNAMIC_CONFIG));
  let child: ChildProcess | undefined;
  let output = '';
  const start = async () => {
    const args = ['--root', opts.dir, '--config', 'config', '--env', 'cluster', ...(opts.shape === 'mtls' ? ['--allow-no-auth'] : []), 'start', ...names.flatMap((name) => ['--service', name])];
    const proc = spawn(opts.binaries.server, args, { cwd: opts.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    const keep = (chunk: Buffer) => void (output = (output + chunk.toString()).slice(-20_000));
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    await waitForFrontend(proc, address, () => output);
  };
  await start();
  return {
    address,
    output: () => output,
    start,
    stop: async () => {
      if (child) await stopChild(child, 20_000);
    },
  };
}

function setUpSchemas(opts: TemporalClusterOptions) {
  const { postgres, pki } = opts;
  const base = ['--plugin', 'postgres12', '--ep', '127.0.0.1', '-p', String(postgres.port), '-u', postgres.user, '--pw', postgres.password, '--tls', '--tls-ca-file', pki.ca, '--tls-server-name', 'localhost'];
  for (const [db, schema] of [[opts.name, 'postgresql/v12/temporal'], [`${opts.name}_visibility`, 'postgresql/v12/visibility']] as const) {
    const tool = (args: string[]) => {
      try {
        execFileSync(opts.binaries.sqlTool, [...base, '--db', db, ...args], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
      } catch (err) {
        const { stdout, stderr } = err as { stdout?: string; stderr?: string };
        throw new Error(`temporal-sql-tool ${args[0]} on ${db} failed:\n${`${stdout ?? ''}${stderr ?? ''}`.slice(-3000)}`);
      }
    };
    tool(['create-database']);
    tool(['setup-schema', '-v', '0.0']);
    tool(['update-schema', '--schema-name', schema]);
  }
}

/** Updates (with start) are what a submit is; the search attributes an operator adds must be visible at once. */
const DYNAMIC_CONFIG = {
  'frontend.enableUpdateWorkflowExecution': [{ value: true }],
  'frontend.enableUpdateWorkflowExecutionAsyncAccepted': [{ value: true }],
  'frontend.enableExecuteMultiOperation': [{ value: true }],
  'system.forceSearchAttributesCacheRefreshOnRead': [{ value: true }],
};

function serverConfig(opts: TemporalClusterOptions, services: Record<string, { rpc: Record<string, unknown> }>, address: string) {
  const { pki, postgres } = opts;
  const store = (databaseName: string, maxConns: number) => ({
    sql: {
      pluginName: 'postgres12',
      databaseName,
      connectAddr: `127.0.0.1:${postgres.port}`,
      connectProtocol: 'tcp',
      user: postgres.user,
      password: postgres.password,
      maxConns,
      maxIdleConns: maxConns,
      maxConnLifetime: '1h',
      tls: { enabled: true, caFile: pki.ca, enableHostVerification: true, serverName: 'localhost' },
    },
  });
  const frontendTls = {
    server: { certFile: pki.server.cert, keyFile: pki.server.key, requireClientAuth: opts.shape === 'mtls', clientCaFiles: [pki.ca] },
    client: { serverName: 'localhost', rootCaFiles: [pki.ca] },
  };
  return {
    log: { stdout: true, level: 'warn' },
    persistence: {
      defaultStore: 'default',
      visibilityStore: 'visibility',
      numHistoryShards: 4,
      datastores: { default: store(opts.name, 20), visibility: store(`${opts.name}_visibility`, 5) },
    },
    global: {
      membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' },
      tls: {
        frontend: frontendTls,
        // The server's own worker dials a frontend like any client: with the certificate the CA signed.
        systemWorker: opts.shape === 'mtls' ? { certFile: pki.client.cert, keyFile: pki.client.key, client: { serverName: 'localhost', rootCaFiles: [pki.ca] } } : {},
      },
      ...(opts.shape === 'apikey'
        ? { authorization: { jwtKeyProvider: { keySourceURIs: [opts.jwksUrl], refreshInterval: '1m' }, permissionsClaimName: 'permissions', authorizer: 'default', claimMapper: 'default' } }
        : {}),
    },
    services,
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: { active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: address } },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    dynamicConfigClient: { filepath: join(opts.dir, 'dynamicconfig.yaml'), pollInterval: '10s' },
  };
}

/**
 * The frontend's port accepts connections once the server is up; its logs say why when it is not. A
 * connect, not portInUse's bind: a probe that binds could take the port from the starting server.
 */
async function waitForFrontend(child: ChildProcess, address: string, output: () => string): Promise<void> {
  const [host, port] = address.split(':') as [string, string];
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`temporal-server exited with ${child.exitCode}:\n${output().slice(-4000)}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host, port: Number(port) });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`temporal-server did not listen on ${address} within 90 s:\n${output().slice(-4000)}`);
}
