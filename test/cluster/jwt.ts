// API keys as Temporal's default claim mapper reads them: RS256 JWTs whose `permissions` claim lists
// `<namespace>:<role>`, checked against the keys a JWKS endpoint serves (a real local HTTP server).
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';

export interface KeyIssuer {
  jwksUrl: string;
  /** a key granting `permissions`, valid for an hour */
  issue(permissions: string[]): string;
  close(): Promise<void>;
}

const base64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

export async function startKeyIssuer(): Promise<KeyIssuer> {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = 'threadbox-test';
  const jwks = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }] });
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(jwks);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    jwksUrl: `http://127.0.0.1:${port}/jwks.json`,
    issue: (permissions) => jwt(privateKey, kid, { sub: 'threadbox', permissions, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 3600 }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function jwt(key: KeyObject, kid: string, claims: Record<string, unknown>): string {
  const signed = `${base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid }))}.${base64url(JSON.stringify(claims))}`;
  return `${signed}.${base64url(sign('RSA-SHA256', Buffer.from(signed), key))}`;
}
