// Records the workflow histories of the committed workflow code into test/histories/<commit>/, for the replay
// test: a real Postgres and Temporal dev server, the API driven over HTTP, a worker on this checkout's workflows/.
// Run it in a clean checkout of the commit to record (see test/histories/README.md):
//   npx tsx test/histories/record.ts [--out <dir>] [scenario …]
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { loadConfig } from '../../src/config.js';
import type { DevServices } from '../../src/infra/dev-services.js';
import { startThreadbox, type Running } from '../../src/server.js';
import { bundleWorkflows } from '../../src/temporal/worker.js';
import { startScratchServices } from '../../testkit/services.js';
import { Api } from './api.js';
import { scenarios, SUGGEST_CONTINUE_AS_NEW, type Ctx, type Scenario } from './scenarios.js';
import { recordThread } from './thread-histories.js';
import { plainTarget } from '../../src/temporal/connection.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const log = (line: string) => console.log(`[record] ${line}`);

interface Written {
  folder: string;
  what: string;
  files: string[];
}

async function main() {
  const { commit, outDir, chosen } = chooseRecording(process.argv.slice(2));
  const stops: (() => Promise<void>)[] = [];
  try {
    const services = await startScratchServices('threadbox-record-', {
      log,
      dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': SUGGEST_CONTINUE_AS_NEW },
    });
    stops.push(services.stop);
    log(`recording commit ${commit} into ${outDir}`);
    const written: Written[] = [];
    const ctx = await startRecorder(commit, services, stops, async (folder, what, threadId) => {
      const files = await recordThread(ctx.temporal, ctx.api, threadId, join(outDir, folder));
      written.push({ folder, what, files });
      log(`${folder}: ${files.join(', ')}`);
    });
    for (const scenario of chosen) {
      const started = Date.now();
      await scenario.run(ctx);
      log(`${scenario.name} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    writeFileSync(join(outDir, 'README.md'), describeRecording(commit, written));
    log(`wrote ${written.reduce((n, w) => n + w.files.length, 0)} histories into ${relative(process.cwd(), outDir) || '.'}`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err) => console.error(err));
  }
}

/** The commit to record (this clean checkout's), where to, and which scenarios: `[--out <dir>] [scenario …]`. */
function chooseRecording(args: string[]): { commit: string; outDir: string; chosen: Scenario[] } {
  const outFlag = args.indexOf('--out');
  const commit = git('rev-parse', '--short=7', 'HEAD');
  if (git('status', '--porcelain', '--', 'workflows')) {
    throw new Error('workflows/ has uncommitted changes: record from a clean checkout of a commit (a git worktree), never from edited code');
  }
  const outDir = resolve(outFlag >= 0 ? args.splice(outFlag, 2)[1]! : join(repoRoot, 'test', 'histories', commit));
  if (existsSync(outDir)) throw new Error(`${outDir} exists: a recording is never overwritten (remove it only if it is your own unfinished one)`);
  const chosen = args.length ? scenarios.filter((s) => args.includes(s.name)) : scenarios;
  if (chosen.length !== (args.length || scenarios.length)) throw new Error(`unknown scenario in ${args.join(' ')}; known: ${scenarios.map((s) => s.name).join(', ')}`);
  return { commit, outDir, chosen };
}

/** The API and a worker on this checkout's workflows/ (stoppable and startable again), and the scenarios' context. */
async function startRecorder(commit: string, services: DevServices, stops: (() => Promise<void>)[], record: Ctx['record']): Promise<Ctx> {
  const config = loadConfig({ PORT: '0', LOG_LEVEL: 'warn', TEMPORAL_TASK_QUEUE: `record-${commit}` });
  const on = { databaseUrl: services.databaseUrl, temporal: plainTarget(services.temporalAddress) };
  const workflowBundle = await bundleWorkflows();
  const apiProcess = await startThreadbox(config, { ...on, api: true, worker: false });
  stops.push(apiProcess.stop);
  let worker: Running | undefined = await startThreadbox(config, { ...on, api: false, worker: true, workflowBundle });
  stops.push(() => worker?.stop() ?? Promise.resolve());
  const connection = await Connection.connect({ address: services.temporalAddress });
  stops.push(() => connection.close());
  return {
    api: new Api(apiProcess.url!),
    temporal: new Client({ connection }),
    record,
    log,
    async stopWorker() {
      await worker?.stop();
      worker = undefined;
    },
    async startWorker() {
      worker = await startThreadbox(config, { ...on, api: false, worker: true, workflowBundle });
    },
  };
}

function describeRecording(commit: string, written: Written[]): string {
  const subject = git('log', '-1', '--format=%s', 'HEAD');
  const lines = [
    `# Histories recorded on ${commit}`,
    '',
    `Workflow code of commit ${commit} ("${subject}"), recorded ${new Date().toISOString().slice(0, 10)} by test/histories/record.ts`,
    `with \`limit.historyCount.suggestContinueAsNew=${SUGGEST_CONTINUE_AS_NEW}\`. Files: \`thread.json\` (or \`thread-<n>.json\` per`,
    'execution across continue-as-new), `run-<n>-<termination or status>.json` for the n-th run of the thread',
    '(runs that never started have no workflow, hence the gaps).',
    '',
    '| folder | scenario | files |',
    '|---|---|---|',
  ];
  for (const { folder, what, files } of written) lines.push(`| ${folder} | ${what.replace(/\|/g, '\\|')} | ${files.join(', ')} |`);
  return lines.join('\n') + '\n';
}

function git(...args: string[]): string {
  return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8' }).trim();
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
