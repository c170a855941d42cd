// The workflow bundle's entry: every workflow type the worker registers.
export { threadWorkflow } from './thread.js';
export { runWorkflow } from './run.js';
