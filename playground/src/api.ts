// What the page shares: the typed client (with the API key the page was given, if any) and small helpers.
import { ThreadboxClient } from '../../src/client/index.js';

export interface PageConfig {
  temporalUiUrl: string | null;
  namespace: string;
}

/** A server with API keys needs one: `?key=` once, kept in this browser. */
const fromUrl = new URLSearchParams(location.search).get('key');
if (fromUrl) localStorage.setItem('threadbox.apiKey', fromUrl);
export const apiKey = localStorage.getItem('threadbox.apiKey') ?? undefined;
export const authHeaders = (): Record<string, string> => (apiKey ? { authorization: `Bearer ${apiKey}` } : {});

export const client = new ThreadboxClient({ apiKey });

export const newId = (prefix: string) => `${prefix}-${crypto.randomUUID().slice(0, 8)}`;

export function temporalLink(config: PageConfig, workflowId: string): string | undefined {
  if (!config.temporalUiUrl) return undefined;
  const query = encodeURIComponent(`WorkflowId="${workflowId}"`);
  return `${config.temporalUiUrl}/namespaces/${encodeURIComponent(config.namespace)}/workflows?query=${query}`;
}
