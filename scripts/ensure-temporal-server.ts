// Finds or builds the Temporal server and its SQL tool for the cluster suite (`npm run ensure-temporal-server`; .ci/run calls it).
import { ensureTemporalServer } from '../src/infra/temporal-server-build.js';

const built = ensureTemporalServer((line) => console.log(line));
console.log(`temporal server ${built.version}: ${built.server}${built.builtInSeconds === undefined ? ' (cached)' : ` (built in ${built.builtInSeconds} s)`}`);
