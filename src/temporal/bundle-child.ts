// Bundles the workflow code into the file named by its argument. The worker runs it as a child process, so
// webpack's memory (about 100 MiB that the worker's heap would otherwise keep) leaves with the child.
import { writeFileSync } from 'node:fs';
import { bundleWorkflows } from './worker.js';

const out = process.argv[2];
if (!out) throw new Error('usage: bundle-child.ts <output file>');
writeFileSync(out, (await bundleWorkflows()).code);
