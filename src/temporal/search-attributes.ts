// threadbox's search attributes: the workflows set them, the Temporal UI and operators filter by them.
// A namespace must have them before a worker starts; who creates them depends on who may.
import proto from '@temporalio/proto';
import type { OperatorService } from '@temporalio/client';
import { ConfigError } from '../config.js';
import { refused, type TemporalTarget } from './connection.js';

export const SEARCH_ATTRIBUTES = ['ThreadId', 'ThreadboxRunId', 'AgentId', 'RunStatus'] as const;

const KEYWORD = proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;

/** The attributes of SEARCH_ATTRIBUTES the namespace lacks. */
export async function missingSearchAttributes(operator: OperatorService, namespace: string): Promise<string[]> {
  const existing = await operator.listSearchAttributes({ namespace });
  const known = new Set(Object.keys({ ...existing.customAttributes, ...existing.systemAttributes }));
  return SEARCH_ATTRIBUTES.filter((name) => !known.has(name));
}

/** Creates the missing attributes (as Keyword); needs the rights of a namespace admin. Resolves to the names created. */
export async function createSearchAttributes(operator: OperatorService, namespace: string): Promise<string[]> {
  const missing = await missingSearchAttributes(operator, namespace);
  if (missing.length === 0) return [];
  await operator.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing.map((name) => [name, KEYWORD])) });
  return missing;
}

/** The commands an operator runs to create `missing`, with the connection flags the Temporal CLI takes. */
export function createCommands(target: TemporalTarget, missing: string[]): string[] {
  return missing.map((name) => `temporal operator search-attribute create --address ${target.address} --namespace ${target.namespace} --name ${name} --type Keyword`);
}

/**
 * The worker's start check: never creates anything (a production namespace is the operator's), and
 * refuses to start when an attribute is missing, since every workflow would then fail at its first
 * upsert. Credentials that may use the namespace but not list its attributes (PERMISSION_DENIED, as
 * some cloud keys) are let through with a warning.
 */
export async function checkSearchAttributes(operator: OperatorService, target: TemporalTarget, warn: (line: string) => void = console.warn): Promise<void> {
  let missing: string[];
  try {
    missing = await missingSearchAttributes(operator, target.namespace);
  } catch (err) {
    // Unauthenticated after the namespace check passed: the credentials went bad; say which.
    if ((err as { code?: number }).code === 16) throw refused(target, (err as Error).message);
    warn(`could not list the search attributes of namespace ${target.namespace} (${(err as Error).message}); assuming ${SEARCH_ATTRIBUTES.join(', ')} exist`);
    return;
  }
  if (missing.length === 0) return;
  throw new ConfigError(
    [
      `namespace ${target.namespace} lacks the search attribute${missing.length > 1 ? 's' : ''} ${missing.join(', ')}; the worker does not create them. An operator runs:`,
      ...createCommands(target, missing).map((command) => `  ${command}`),
      '(add the TLS or API key flags your cluster needs; or `npm run setup-namespace` with the same environment as the worker; on Temporal Cloud: tcld namespace search-attributes add)',
    ].join('\n'),
  );
}
