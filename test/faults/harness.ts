// What every fault scenario shares: its own Postgres and Temporal (restartable), API and worker
// processes, a crowd of resuming clients, and the checks that the thread ends as if nothing happened.
export { sleep } from '../../testkit/wait.js';
export { checkRuns, getJson } from './checks.js';
export { echoPrompt, randomBetween, startCrowd, type Crowd } from './crowd.js';
export { useFleet } from './fleet.js';
export { log, recordReport } from './report.js';
