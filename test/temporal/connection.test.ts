// How the API, the worker and the scripts find Temporal: @temporalio/envconfig's variables and profiles,
// and every certificate checked at start with the setting at fault named.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.js';
import { resolveTemporalTarget } from '../../src/temporal/connection.js';
import { makePki } from '../cluster/pki.js';

const dir = mkdtempSync(join(tmpdir(), 'threadbox-connection-'));
const pki = makePki(join(dir, 'pki'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// No ambient ~/.config/temporalio/temporal.toml may change what these tests see.
const base = { HOME: dir, TEMPORAL_ADDRESS: 'temporal.example.com:7233' };
const mtls = { ...base, TEMPORAL_TLS_CLIENT_CERT_PATH: pki.client.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: pki.client.key, TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.ca };

function refusal(env: Record<string, string>): string {
  try {
    resolveTemporalTarget(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('resolved, but should have been refused');
}

describe('resolveTemporalTarget', () => {
  it('plain: address and namespace from the environment, no TLS', () => {
    const target = resolveTemporalTarget({ ...base, TEMPORAL_NAMESPACE: 'prod' });
    expect(target).toMatchObject({ address: 'temporal.example.com:7233', namespace: 'prod' });
    expect([target.tls, target.apiKey]).toEqual([undefined, undefined]);
    expect(resolveTemporalTarget(base).namespace).toBe('default');
  });

  it('an API key turns TLS on (Temporal Cloud), and gRPC metadata passes through', () => {
    const target = resolveTemporalTarget({ ...base, TEMPORAL_API_KEY: 'key-123', TEMPORAL_GRPC_META_X_TENANT: 'acme' });
    expect(target).toMatchObject({ apiKey: 'key-123', tls: true, metadata: { 'x-tenant': 'acme' } });
  });

  it('mTLS from files: the pair and the CA are read, checked and passed on, with SNI', () => {
    const target = resolveTemporalTarget({ ...mtls, TEMPORAL_TLS_SERVER_NAME: 'localhost' });
    expect(target.tls).toMatchObject({ serverNameOverride: 'localhost', clientCertPair: { crt: expect.any(Buffer), key: expect.any(Buffer) }, serverRootCACertificate: expect.any(Buffer) });
    expect(target.tlsSettings).toEqual(['TEMPORAL_TLS_CLIENT_CERT_PATH', 'TEMPORAL_TLS_CLIENT_KEY_PATH', 'TEMPORAL_TLS_SERVER_CA_CERT_PATH', 'TEMPORAL_TLS_SERVER_NAME']);
  });

  it('an API key or header a gRPC header cannot carry is refused without printing it', () => {
    const secret = 'sk-live-abcdef123456';
    const message = refusal({ ...base, TEMPORAL_API_KEY: `${secret}\n` });
    expect(message).toBe('TEMPORAL_API_KEY holds whitespace or a control character (a trailing newline from a secret file?); only visible ASCII is allowed');
    expect(refusal({ ...base, TEMPORAL_GRPC_META_X_TOKEN: 'a\nb' })).toMatch(/^TEMPORAL_GRPC_META_X_TOKEN: the value holds a character/);
    expect(refusal({ ...base, TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'true' })).toMatch(/^TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: .*set TEMPORAL_TLS_SERVER_NAME/);
  });

  it('TEMPORAL_TLS=false turns TLS off even with an API key', () => {
    expect(resolveTemporalTarget({ ...base, TEMPORAL_API_KEY: 'k', TEMPORAL_TLS: 'false' }).tls).toBe(false);
  });

  it('a bad certificate or key stops startup naming the setting', () => {
    const notPem = join(dir, 'not-a-cert.pem');
    writeFileSync(notPem, 'hello\n');
    expect(refusal({ ...mtls, TEMPORAL_TLS_CLIENT_CERT_PATH: join(dir, 'missing.pem') })).toMatch(/^TEMPORAL_TLS_CLIENT_CERT_PATH: cannot read .*missing\.pem \(ENOENT\)/);
    expect(refusal({ ...mtls, TEMPORAL_TLS_CLIENT_CERT_PATH: notPem })).toMatch(/^TEMPORAL_TLS_CLIENT_CERT_PATH: not a PEM certificate/);
    expect(refusal({ ...mtls, TEMPORAL_TLS_CLIENT_KEY_PATH: notPem })).toMatch(/^TEMPORAL_TLS_CLIENT_KEY_PATH: not a PEM private key/);
    expect(refusal({ ...mtls, TEMPORAL_TLS_SERVER_CA_CERT_PATH: notPem })).toMatch(/^TEMPORAL_TLS_SERVER_CA_CERT_PATH: not a PEM certificate/);
    expect(refusal({ ...mtls, TEMPORAL_TLS_CLIENT_KEY_PATH: pki.rogueClient.key })).toBe('TEMPORAL_TLS_CLIENT_KEY_PATH: the key does not belong to the certificate in TEMPORAL_TLS_CLIENT_CERT_PATH');
    const { TEMPORAL_TLS_CLIENT_KEY_PATH: _key, ...certOnly } = mtls;
    expect(refusal(certOnly)).toMatch(/^TEMPORAL_TLS_CLIENT_CERT_PATH is set without a client key/);
    expect(refusal({ ...mtls, TEMPORAL_TLS_CLIENT_CERT_DATA: 'x' })).toMatch(/TEMPORAL_TLS_CLIENT_CERT_PATH|client_cert/);
  });

  it('a profile from the TOML file (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE); the environment overrides it', () => {
    const file = join(dir, 'temporal.toml');
    writeFileSync(
      file,
      [
        '[profile.prod]',
        'address = "prod.tmprl.example:7233"',
        'namespace = "threadbox-prod"',
        '[profile.prod.tls]',
        `client_cert_path = "${pki.client.cert}"`,
        `client_key_path = "${pki.client.key}"`,
        `server_ca_cert_path = "${pki.ca}"`,
        '[profile.broken.tls]',
        `client_cert_path = "${join(dir, 'gone.pem')}"`,
        `client_key_path = "${pki.client.key}"`,
      ].join('\n'),
    );
    const env = { HOME: dir, TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod' };
    const target = resolveTemporalTarget(env);
    expect(target).toMatchObject({ address: 'prod.tmprl.example:7233', namespace: 'threadbox-prod', tls: { clientCertPair: { crt: expect.any(Buffer) } } });
    expect(target.tlsSettings[0]).toBe(`tls.client_cert_path of profile "prod" in ${file}`);
    expect(resolveTemporalTarget({ ...env, TEMPORAL_NAMESPACE: 'other' }).namespace).toBe('other');
    expect(refusal({ ...env, TEMPORAL_PROFILE: 'broken', TEMPORAL_ADDRESS: 'x:1' })).toMatch(new RegExp(`^tls\\.client_cert_path of profile "broken" in ${file}: cannot read`));
    expect(refusal({ ...env, TEMPORAL_PROFILE: 'nope' })).toMatch(/TEMPORAL_PROFILE.*Profile 'nope' not found/);
    expect(refusal({ HOME: dir, TEMPORAL_CONFIG_FILE: join(dir, 'absent.toml') })).toMatch(/^TEMPORAL_CONFIG_FILE: .*absent\.toml does not exist/);
  });

  it('no address anywhere is refused, and a malformed one is named', () => {
    expect(refusal({ HOME: dir })).toMatch(/^TEMPORAL_ADDRESS is required/);
    expect(refusal({ HOME: dir, TEMPORAL_ADDRESS: 'no-port' })).toMatch(/^TEMPORAL_ADDRESS: "no-port" must be host:port/);
  });
});
