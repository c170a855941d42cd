// `npm run api`: the api alone against DATABASE_URL and TEMPORAL_ADDRESS.
import { loadConfig } from '../config.js';
import { startThreadbox } from '../server.js';
import { main, requireVar } from './run.js';

main(async () => {
  const config = loadConfig();
  const running = await startThreadbox(config, {
    databaseUrl: requireVar(config.DATABASE_URL, 'DATABASE_URL'),
    temporalAddress: requireVar(config.TEMPORAL_ADDRESS, 'TEMPORAL_ADDRESS'),
    api: true,
    worker: false,
  });
  console.log(`threadbox api ready${running.url ? ` on ${running.url}` : ''} (task queue ${config.TEMPORAL_TASK_QUEUE})`);
  return running.stop;
});
