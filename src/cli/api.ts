// `npm run api`: the API alone against DATABASE_URL and TEMPORAL_ADDRESS.
import { runAgainstExternalServices } from './run.js';

runAgainstExternalServices('api');
