// The fault suite's global setup: makes sure the Temporal CLI exists (each scenario starts its own
// dev server), and at the end prints one table of every scenario's report.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { findTemporalCli } from '../../src/infra/temporal-cli.js';
import type { ScenarioReport } from './report.js';

declare module 'vitest' {
  export interface ProvidedContext {
    faultReportsDir: string;
  }
}

export default function setup(project: TestProject) {
  findTemporalCli({ build: true, log: (line) => console.log(`[faults] ${line}`) });
  const dir = mkdtempSync(join(tmpdir(), 'threadbox-fault-reports-'));
  project.provide('faultReportsDir', dir);
  return () => {
    const reports: ScenarioReport[] = readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f): ScenarioReport => JSON.parse(readFileSync(join(dir, f), 'utf8')))
      .sort((a, b) => parseInt(a.scenario, 10) - parseInt(b.scenario, 10) || a.scenario.localeCompare(b.scenario));
    console.log(`\n${faultTable(reports)}\n`);
    rmSync(dir, { recursive: true, force: true });
  };
}

export function faultTable(reports: ScenarioReport[]): string {
  const header = ['scenario', 'runs', 'faults', 'completed', 'op-terminated', 'not ended', 'lost', 'doubled', 'gaps', 'dup events', 'text ≠', 'wedged threads', 'resets', 'resumes', 'submit retries', '429/503 (slowest s)', 's'];
  const rows = reports.map((r) => [
    r.scenario,
    r.runsDriven,
    r.faultsInjected,
    r.runsCompleted,
    r.terminatedByOperator,
    r.runsNotEnded,
    r.messagesLost,
    r.messagesDoubled,
    r.streamGaps,
    r.duplicateEvents,
    r.textMismatches,
    r.wedgedThreads,
    r.streamResets,
    r.reconnects,
    r.submitRetries,
    r.refusals ? `${r.refusals} (${(r.slowestRefusalMs / 1000).toFixed(1)})` : '0',
    r.seconds,
  ].map(String));
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((row) => row[c]!.length)));
  const line = (row: string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return ['fault injection', line(header), ...rows.map(line)].join('\n');
}
