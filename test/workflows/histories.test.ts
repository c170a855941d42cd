// Every recorded history in test/histories/ replays on today's workflow code. Threads live for months, so a
// deploy meets executions started on every older commit: a change that would break one fails here, by file.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { historyFromJSON } from '../histories/history-json.js';
import { Worker } from '@temporalio/worker';
import { describe, expect, inject, it } from 'vitest';

const corpus = fileURLToPath(new URL('../histories', import.meta.url));
const historyFiles = (readdirSync(corpus, { recursive: true }) as string[]).filter((file) => file.endsWith('.json')).sort();

describe('recorded workflow histories', () => {
  it('the corpus holds thread and run histories', () => {
    expect(historyFiles.some((file) => /(^|\/)thread(-\d+)?\.json$/.test(file))).toBe(true);
    expect(historyFiles.some((file) => /(^|\/)run-\d+-[a-z_]+\.json$/.test(file))).toBe(true);
  });

  it('every history replays on the current workflow bundle without a determinism error', async () => {
    // The file's path stands in for the workflow id, so a failure names the history that broke.
    const histories = historyFiles.map((file) => ({ workflowId: file, history: historyFromJSON(JSON.parse(readFileSync(join(corpus, file), 'utf8'))) }));
    const failures: string[] = [];
    let replayed = 0;
    for await (const result of Worker.runReplayHistories({ workflowBundle: { code: readFileSync(inject('workflowBundlePath'), 'utf8') } }, histories)) {
      replayed += 1;
      if (result.error) failures.push(`${result.workflowId}: ${result.error.name}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
    expect(replayed).toBe(historyFiles.length);
  }, 180_000);
});
