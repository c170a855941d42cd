// The cluster suite's certificates, made with the openssl command: a CA, a server certificate for
// localhost/127.0.0.1 (Temporal's frontend, Postgres), client certificates it signed, and a rogue CA
// whose client certificate no server trusts.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CertPair {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  ca: string;
  server: CertPair;
  client: CertPair;
  /** signed by a CA the servers do not trust */
  rogueClient: CertPair;
}

function openssl(args: string[], cwd: string) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function issue(dir: string, name: string, subject: string, ca: { cert: string; key: string }, extensions: string): CertPair {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, extensions);
  openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-subj', subject, '-out', csr], dir);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', cert], dir);
  return { cert, key };
}

function authority(dir: string, name: string, subject: string): CertPair {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.pem`);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-subj', subject, '-days', '2', '-sha256', '-out', cert], dir);
  return { cert, key };
}

export function makePki(dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  const ca = authority(dir, 'ca', '/CN=threadbox test CA');
  const rogueCa = authority(dir, 'rogue-ca', '/CN=some other CA');
  const server = issue(dir, 'server', '/CN=localhost', ca, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  const client = issue(dir, 'client', '/CN=threadbox', ca, 'extendedKeyUsage=clientAuth\n');
  const rogueClient = issue(dir, 'rogue-client', '/CN=threadbox', rogueCa, 'extendedKeyUsage=clientAuth\n');
  return { dir, ca: ca.cert, server, client, rogueClient };
}
