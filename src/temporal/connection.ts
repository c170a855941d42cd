// Where Temporal is and how to reach it, by Temporal's own environment configuration
// (@temporalio/envconfig): TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*,
// TEMPORAL_GRPC_META_*, TEMPORAL_PROFILE and the TOML file (TEMPORAL_CONFIG_FILE, else temporalio/temporal.toml
// in the user's config folder: $XDG_CONFIG_HOME or ~/.config). The API, the worker and the scripts all connect through here.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/common/lib/internal-non-workflow/index.js';
import { loadClientConfigProfile, type ClientConfigProfile, type ConfigDataSource } from '@temporalio/envconfig';
import { ConfigError, HOST_PORT } from '../config.js';

export interface TemporalTarget {
  address: string;
  namespace: string;
  apiKey?: string;
  tls?: TLSConfig | boolean;
  metadata?: Record<string, string>;
  /** the settings TLS was configured from, to name in a refused handshake */
  tlsSettings: string[];
}

/** The connection options both SDK connections (the API's Connection, the worker's NativeConnection) take. */
export function connectionOptions(target: TemporalTarget) {
  return { address: target.address, tls: target.tls, apiKey: target.apiKey, metadata: target.metadata };
}

/** A plain dev-server target: no TLS, no key. */
export function plainTarget(address: string, namespace = 'default'): TemporalTarget {
  return { address, namespace, tlsSettings: [] };
}

type Env = Record<string, string | undefined>;

const setVars = (env: Env) => Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''));

/** The profile as Temporal's configuration gives it: the TOML profile with the environment's overrides. */
export function temporalProfile(env: Env = process.env): ClientConfigProfile {
  const vars = setVars(env);
  // The SDK takes a missing file for an empty one; a file named on purpose must be there.
  if (vars.TEMPORAL_CONFIG_FILE && !existsSync(vars.TEMPORAL_CONFIG_FILE)) throw new ConfigError(`TEMPORAL_CONFIG_FILE: ${vars.TEMPORAL_CONFIG_FILE} does not exist`);
  try {
    return loadClientConfigProfile({ overrideEnvVars: vars });
  } catch (err) {
    throw new ConfigError(`Temporal client configuration (TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE): ${(err as Error).message}`);
  }
}

/**
 * Resolves the target from the environment and the profile (environment variables win, as in the
 * Temporal CLI); a missing address is a ConfigError. Every certificate and key is read and checked
 * here, so a bad one stops startup with the setting named, not a handshake error later.
 */
export function resolveTemporalTarget(env: Env = process.env): TemporalTarget {
  const vars = setVars(env);
  const profileName = vars.TEMPORAL_PROFILE ?? 'default';
  const inFile = (key: string) => `${key} of profile "${profileName}" in ${vars.TEMPORAL_CONFIG_FILE ?? 'the Temporal config file (temporalio/temporal.toml in $XDG_CONFIG_HOME or ~/.config)'}`;
  const profile = temporalProfile(env);
  const address = profile.address;
  if (!address) throw new ConfigError(`TEMPORAL_ADDRESS is required (or an address in ${inFile('address')}); \`npm run dev\` starts its own server`);
  if (!HOST_PORT.test(address)) throw new ConfigError(`TEMPORAL_ADDRESS: "${address}" must be host:port`);
  const target: TemporalTarget = { address, namespace: profile.namespace ?? 'default', apiKey: profile.apiKey, metadata: profile.grpcMeta, tlsSettings: [] };
  checkHeaderValues(target);
  if (vars.TEMPORAL_TLS_DISABLE_HOST_VERIFICATION === 'true') {
    throw new ConfigError('TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: the TypeScript SDK always verifies the server; set TEMPORAL_TLS_SERVER_NAME to the name in its certificate instead');
  }
  const tls = profile.tls;
  if (tls?.disabled) {
    target.tls = false;
    return target;
  }
  if (!tls) {
    // An API key implies TLS (Temporal Cloud), as in the SDK's own toClientOptions.
    if (target.apiKey) target.tls = true;
    return target;
  }
  const name = (field: 'client_cert' | 'client_key' | 'server_ca_cert', source: ConfigDataSource | undefined) => {
    const kind = source && 'path' in source ? 'path' : 'data';
    const variable = `TEMPORAL_TLS_${field.toUpperCase()}_${kind.toUpperCase()}`;
    return vars[variable] !== undefined ? variable : inFile(`tls.${field}_${kind}`);
  };
  const certName = name('client_cert', tls.clientCert);
  const keyName = name('client_key', tls.clientKey);
  const caName = name('server_ca_cert', tls.serverCACert);
  if (Boolean(tls.clientCert) !== Boolean(tls.clientKey)) {
    throw new ConfigError(tls.clientCert ? `${certName} is set without a client key (TEMPORAL_TLS_CLIENT_KEY_PATH)` : `${keyName} is set without a client certificate (TEMPORAL_TLS_CLIENT_CERT_PATH)`);
  }
  const ca = readSource(tls.serverCACert, caName);
  const crt = readSource(tls.clientCert, certName);
  const key = readSource(tls.clientKey, keyName);
  if (ca) parseCertificate(ca, caName);
  if (crt && key) checkPair(parseCertificate(crt, certName), parsePrivateKey(key, keyName), certName, keyName);
  target.tls = {
    serverNameOverride: tls.serverName,
    serverRootCACertificate: ca,
    clientCertPair: crt && key ? { crt, key } : undefined,
  };
  target.tlsSettings = [
    ...(tls.clientCert ? [certName, keyName] : []),
    ...(tls.serverCACert ? [caName] : []),
    ...(tls.serverName ? [vars.TEMPORAL_TLS_SERVER_NAME !== undefined ? 'TEMPORAL_TLS_SERVER_NAME' : inFile('tls.server_name')] : []),
  ];
  return target;
}

/**
 * A key or header value gRPC would refuse (a trailing newline from a secret file, a space): named here,
 * since gRPC's own error quotes the whole value, the secret with it.
 */
function checkHeaderValues(target: TemporalTarget) {
  const bad = (value: string) => !/^[\x21-\x7e]+$/.test(value);
  if (target.apiKey !== undefined && bad(target.apiKey)) {
    throw new ConfigError('TEMPORAL_API_KEY holds whitespace or a control character (a trailing newline from a secret file?); only visible ASCII is allowed');
  }
  for (const [name, value] of Object.entries(target.metadata ?? {})) {
    if (!/^[\x20-\x7e]*$/.test(value)) throw new ConfigError(`TEMPORAL_GRPC_META_${name.toUpperCase().replace(/-/g, '_')}: the value holds a character a gRPC header may not (a newline?)`);
  }
}

/** `message` with the API key and header values taken out: an error is printed and logged. */
function scrubbed(message: string, target: TemporalTarget): string {
  let out = message.replace(/Bearer\s+[^\s"',)]+/gi, 'Bearer <redacted>');
  for (const secret of [target.apiKey, ...Object.values(target.metadata ?? {})]) {
    if (secret && secret.length >= 4) out = out.split(secret).join('<redacted>');
  }
  return out;
}

function readSource(source: ConfigDataSource | undefined, setting: string): Buffer | undefined {
  if (!source) return undefined;
  if ('data' in source) return Buffer.from(source.data);
  try {
    return readFileSync(source.path);
  } catch (err) {
    throw new ConfigError(`${setting}: cannot read ${source.path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

function parseCertificate(pem: Buffer, setting: string): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new ConfigError(`${setting}: not a PEM certificate (${(err as Error).message})`);
  }
  if (new Date(cert.validTo).getTime() < Date.now()) throw new ConfigError(`${setting}: the certificate expired on ${cert.validTo}`);
  return cert;
}

function parsePrivateKey(pem: Buffer, setting: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new ConfigError(`${setting}: not a PEM private key (${(err as Error).message})`);
  }
}

function checkPair(cert: X509Certificate, key: KeyObject, certSetting: string, keySetting: string) {
  if (!cert.checkPrivateKey(key)) throw new ConfigError(`${keySetting}: the key does not belong to the certificate in ${certSetting}`);
}

/** The settings that identify this process to Temporal, to name when it refuses them. */
function credentials(target: TemporalTarget): string {
  if (target.apiKey) return 'TEMPORAL_API_KEY';
  return target.tlsSettings.length > 0 ? target.tlsSettings.join(', ') : 'the credentials (TEMPORAL_API_KEY or TEMPORAL_TLS_CLIENT_CERT_PATH)';
}

export function refused(target: TemporalTarget, message: string): ConfigError {
  return new ConfigError(`Temporal at ${target.address} refused these credentials for namespace ${target.namespace} (${message}); check ${credentials(target)}`);
}

// PERMISSION_DENIED, UNAUTHENTICATED; the native connection words them in its message only.
export const isRefusal = (err: { code?: number; message?: string }) => err.code === 7 || err.code === 16 || /permission|unauthori[sz]ed|unauthenticated/i.test(err.message ?? '');

/**
 * Connects with `connect`, and turns a failure into one message naming the address and, when TLS
 * or a key is in play, the settings to check: a handshake the server refused says no more than
 * "UNAVAILABLE" otherwise.
 */
export async function connectTo<T>(target: TemporalTarget, connect: () => Promise<T>): Promise<T> {
  try {
    return await connect();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // The client's connection wraps the server's answer ("Failed to connect to Temporal server") as its cause.
    const cause = (err as Error).cause as { code?: number; message?: string } | undefined;
    const message = scrubbed([(err as Error).message, cause?.message].filter(Boolean).join(': '), target);
    if (isRefusal(err as { code?: number }) || (cause && isRefusal(cause))) throw refused(target, message);
    const checks = [...target.tlsSettings, ...(target.apiKey ? ['TEMPORAL_API_KEY'] : [])];
    const hint = checks.length > 0 ? `; check ${checks.join(', ')}` : '';
    throw new ConfigError(`cannot connect to Temporal at ${target.address} (namespace ${target.namespace}): ${message}${hint}`);
  }
}

type DescribeNamespace = { describeNamespace(request: { namespace: string }): Promise<unknown> };

/**
 * The first call of a process, made at start: the namespace exists and these credentials may use
 * it. A cluster that refuses (a key for another namespace, a certificate it does not map) otherwise
 * shows up later as every poll or submit failing.
 */
export async function checkNamespace(service: DescribeNamespace, target: TemporalTarget): Promise<void> {
  try {
    await service.describeNamespace({ namespace: target.namespace });
  } catch (err) {
    const { code } = err as { code?: number };
    const message = scrubbed((err as Error).message, target);
    if (code === 5) {
      throw new ConfigError(`namespace ${target.namespace} does not exist on Temporal at ${target.address} (TEMPORAL_NAMESPACE): create it with \`npm run setup-namespace\` or \`temporal operator namespace create\``);
    }
    if (isRefusal({ code, message })) throw refused(target, message);
    throw err;
  }
}
