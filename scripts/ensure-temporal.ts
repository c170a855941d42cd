// Finds or builds the `temporal` CLI and says which one it used (`npm run ensure-temporal`; .ci/run calls it).
import { findTemporalCli, temporalCliVersion } from '../src/infra/temporal-cli.js';

const cli = findTemporalCli({ build: true, log: (line) => console.log(line) });
if (cli.source === 'sdk-download') {
  console.log('temporal CLI: none found and no Go toolchain; the Temporal SDK will download its dev server (needs internet)');
} else {
  console.log(`temporal CLI: ${cli.source} ${cli.path} (${temporalCliVersion(cli)})`);
}
