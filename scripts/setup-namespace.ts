// `npm run setup-namespace`: what an operator with the rights does once per namespace. Registers the
// namespace if the cluster lacks it (self-hosted), then creates threadbox's search attributes. It
// connects exactly as the worker does (TEMPORAL_ADDRESS, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE).
// Options: --retention-days N (a new namespace's history retention, default 30).
import { parseArgs } from 'node:util';
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time.js';
import { ConfigError } from '../src/config.js';
import { connectTo, connectionOptions, resolveTemporalTarget } from '../src/temporal/connection.js';
import { createSearchAttributes, SEARCH_ATTRIBUTES } from '../src/temporal/search-attributes.js';

const { values } = parseArgs({ options: { 'retention-days': { type: 'string', default: '30' } } });
const retentionDays = Number(values['retention-days']);

try {
  const target = resolveTemporalTarget(process.env);
  const connection = await connectTo(target, () => Connection.connect(connectionOptions(target)));
  try {
    const { namespace } = target;
    const exists = await connection.workflowService.describeNamespace({ namespace }).then(
      () => true,
      (err: { code?: number }) => {
        if (err.code === 5) return false; // NOT_FOUND
        throw err;
      },
    );
    if (!exists) {
      await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs(`${retentionDays} days`) });
      console.log(`registered namespace ${namespace} (retention ${retentionDays} days)`);
    }
    // A new namespace reaches every frontend's cache within seconds: until then it reads as not found.
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const created = await createSearchAttributes(connection.operatorService, namespace);
        console.log(created.length > 0 ? `created search attributes ${created.join(', ')} in ${namespace}` : `namespace ${namespace} already has ${SEARCH_ATTRIBUTES.join(', ')}`);
        break;
      } catch (err) {
        if ((err as { code?: number }).code !== 5 || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  } finally {
    await connection.close();
  }
} catch (err) {
  console.error(`setup-namespace: ${err instanceof ConfigError ? err.message : (err as Error).message}`);
  process.exit(1);
}
