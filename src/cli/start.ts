// `npm start`: the API and the worker against DATABASE_URL and TEMPORAL_ADDRESS.
import { runAgainstExternalServices } from './run.js';

runAgainstExternalServices('start');
