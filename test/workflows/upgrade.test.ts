// A deploy meets threads mid-run: a thread started on the workflow code of each recorded commit
// (test/histories/<commit>/), whose worker stops while a run streams, finishes on today's code.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkflowBundle } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startThreadbox, type Running } from '../../src/server.js';
import { bundleWorkflows } from '../../src/temporal/worker.js';
import { tenantRunWorkflowId } from '../../src/contract/mailbox.js';
import { eventually, startStack, uniqueId, type Stack } from '../stack.js';
import { plainTarget } from '../../src/temporal/connection.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const recordedCommits = readdirSync(join(repoRoot, 'test', 'histories'), { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && /^[0-9a-f]{7,40}$/.test(entry.name))
  .map((entry) => entry.name);

function git(...args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } catch (err) {
    const detail = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
    throw new Error(`the upgrade test reads old workflow code with git, and \`git ${args.join(' ')}\` failed: ${detail}. It needs git and a clone with full history (not shallow).`);
  }
}

/** Specifiers a file imports as values: `import type` and imports of types only are erased by the bundler. */
function valueImports(source: string): string[] {
  const specifiers: string[] = [];
  for (const m of source.matchAll(/^\s*(import|export)\s+(type\s+)?([^'";]*?)\s*(?:from\s*)?['"]([^'"]+)['"]/gm)) {
    const [, , typeOnly, clause = '', specifier] = m;
    if (typeOnly) continue;
    const names = /^\{([^}]*)\}$/.exec(clause.trim())?.[1];
    if (names !== undefined && names.split(',').every((n) => !n.trim() || n.trim().startsWith('type '))) continue;
    specifiers.push(specifier!);
  }
  return specifiers;
}

/**
 * The workflows/ of `commit`, written into a temp dir inside the repo (so @temporalio/workflow resolves from
 * node_modules), with any file outside workflows/ that they import as a value, then bundled.
 */
async function bundleWorkflowsAt(commit: string, into: string): Promise<WorkflowBundle> {
  const pending = git('ls-tree', '-r', '--name-only', commit, '--', 'workflows/').split('\n').filter((p) => p.endsWith('.ts'));
  if (!pending.includes('workflows/index.ts')) throw new Error(`commit ${commit} has no workflows/index.ts`);
  const extracted = new Set<string>();
  while (pending.length) {
    const path = pending.pop()!;
    if (extracted.has(path)) continue;
    const source = git('show', `${commit}:${path}`);
    mkdirSync(join(into, dirname(path)), { recursive: true });
    writeFileSync(join(into, path), source);
    extracted.add(path);
    for (const specifier of valueImports(source).filter((s) => s.startsWith('.'))) {
      pending.push(posix.normalize(posix.join(posix.dirname(path), specifier)).replace(/\.js$/, '.ts'));
    }
  }
  return bundleWorkflows(join(into, 'workflows', 'index.ts'));
}

const tempRoot = join(repoRoot, '.old-workflows'); // gitignored
let stack: Stack;
let taskQueue: string;
const workers: Running[] = [];
beforeAll(async () => {
  taskQueue = uniqueId('upgrade');
  stack = await startStack({ worker: false, taskQueue });
});
afterAll(async () => {
  for (const worker of workers) await worker.stop();
  await stack?.stop();
});

async function startWorker(workflowBundle: WorkflowBundle): Promise<Running> {
  const config = loadConfig({ PORT: '0', LOG_LEVEL: 'warn', TEMPORAL_TASK_QUEUE: taskQueue });
  const worker = await startThreadbox(config, {
    databaseUrl: inject('databaseUrl'),
    temporal: plainTarget(inject('temporalAddress')),
    api: false,
    worker: true,
    workflowBundle,
  });
  workers.push(worker);
  return worker;
}

/** The first failed workflow task of these workflows: a replay of old history that the new code broke. */
async function failedWorkflowTask(workflowIds: string[]): Promise<string | undefined> {
  for (const workflowId of workflowIds) {
    const history = await stack.temporal.workflow.getHandle(workflowId).fetchHistory().catch(() => undefined);
    const failed = history?.events?.find((e) => e.workflowTaskFailedEventAttributes);
    if (failed) return `${workflowId}: ${failed.workflowTaskFailedEventAttributes!.failure?.message}`;
  }
  return undefined;
}

async function runDone(runId: string, watch: string[], timeoutMs = 60_000) {
  return eventually(async () => {
    const run = await stack.store.getRun(runId);
    if (run?.status === 'done') return run;
    const failure = await failedWorkflowTask(watch);
    if (failure) throw new Error(`a workflow task failed on the current code: ${failure}`);
    return undefined;
  }, timeoutMs, `run ${runId} to end`);
}

describe('upgrade from recorded commits', () => {
  it('test/histories holds at least one recording commit', () => {
    expect(recordedCommits.length).toBeGreaterThan(0);
  });

  it.each(recordedCommits)('a run started on the workflows of %s, stopped mid-run, finishes on the current code', async (commit) => {
    mkdirSync(tempRoot, { recursive: true });
    const dir = mkdtempSync(join(tempRoot, `${commit}-`));
    try {
      const oldWorker = await startWorker(await bundleWorkflowsAt(commit, dir));
      const threadId = uniqueId('upgrade');
      const submit = (content: string, mode: string) =>
        stack.request('POST', `/v1/threads/${threadId}/runs`, { messages: [{ role: 'user', content }], mode });
      const first = await submit('/slow 100 /long 40 upgrade', 'interrupt');
      const behind = await submit('behind', 'queue');
      expect([first.status, behind.status]).toEqual([202, 202]);
      expect(behind.body.status).toBe('queued');
      await eventually(async () => (await stack.store.readEvents(first.body.runId, 0, 1000)).find((e) => e.type === 'text_delta'), 20_000, 'the first token');

      await oldWorker.stop(); // mid-run: the thread and its run have histories written by the old code
      expect((await stack.store.getRun(first.body.runId))?.status).toBe('running');
      await startWorker({ code: readFileSync(inject('workflowBundlePath'), 'utf8') });

      const watch = [`thread:default:${threadId}`, `run:${first.body.runId}`, tenantRunWorkflowId('default', first.body.runId)];
      expect((await runDone(first.body.runId, watch)).termination).toEqual({ type: 'natural_end' });
      expect((await runDone(behind.body.runId, watch)).termination).toEqual({ type: 'natural_end' });
      const log = await stack.store.loadCommittedMessages({ tenant: 'default', threadId });
      expect(log.map((m) => [m.role, m.content.split(' ').slice(0, 2).join(' ')])).toEqual([
        ['user', '/slow 100'],
        ['assistant', 'Echo: upgrade'],
        ['user', 'behind'],
        ['assistant', 'Echo: behind'],
      ]);
      expect(log.filter((m) => m.runId === first.body.runId && m.role === 'assistant')).toHaveLength(1);
      expect(log[1]!.content.trim().split(' ')).toHaveLength(40); // the 40 tokens of "Echo: upgrade w3 … w40", once
    } finally {
      rmSync(dir, { recursive: true, force: true });
      if (readdirSync(tempRoot).length === 0) rmdirSync(tempRoot);
    }
  }, 180_000);
});
