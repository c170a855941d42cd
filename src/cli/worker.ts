// `npm run worker`: the worker alone against DATABASE_URL and TEMPORAL_ADDRESS.
import { runAgainstExternalServices } from './run.js';

runAgainstExternalServices('worker');
