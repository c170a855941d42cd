// What a fault scenario tells: its log lines as it goes, and at the end one report that the global
// teardown collects into the suite's table.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';
import type { DrivenRun } from './client.js';
import type { Fleet } from './fleet.js';

export const log = (line: string) => console.log(`[faults ${new Date().toISOString().slice(11, 23)}] ${line}`);

export interface ScenarioReport {
  scenario: string;
  runsDriven: number;
  faultsInjected: number;
  runsCompleted: number;
  runsNotEnded: number;
  messagesLost: number;
  messagesDoubled: number;
  streamGaps: number;
  duplicateEvents: number;
  textMismatches: number;
  /** runs an operator terminated in Temporal: they end `error` ("terminated"), counted apart from lost or not ended */
  terminatedByOperator: number;
  /** threads on which a fresh submit did not complete within 30 s, or that kept a run not done */
  wedgedThreads: number;
  reconnects: number;
  submitRetries: number;
  /** submit answers 429 or 503 (each told the client to come back), and the slowest of them */
  refusals: number;
  slowestRefusalMs: number;
  /** the refusals by status and code, e.g. `503 unavailable` */
  refusalCodes: Record<string, number>;
  /** stream_reset events clients saw: steps that a fault made start over */
  streamResets: number;
  seconds: number;
  problems: string[];
}

export function emptyReport(scenario: string, runsDriven: number, faultsInjected: number, seconds: number): ScenarioReport {
  return {
    scenario,
    runsDriven,
    faultsInjected,
    runsCompleted: 0,
    runsNotEnded: 0,
    messagesLost: 0,
    messagesDoubled: 0,
    streamGaps: 0,
    duplicateEvents: 0,
    textMismatches: 0,
    terminatedByOperator: 0,
    wedgedThreads: 0,
    reconnects: 0,
    submitRetries: 0,
    refusals: 0,
    slowestRefusalMs: 0,
    refusalCodes: {},
    streamResets: 0,
    seconds: Math.round(seconds),
    problems: [],
  };
}

/** Notes a problem of one run, with the tail of its client's log (the first 40 problems are kept). */
export function noteProblem(report: ScenarioReport, run: DrivenRun, what: string) {
  if (report.problems.length < 40) report.problems.push(`${run.threadId} run ${run.runId ?? '(never accepted)'}: ${what}${run.errors.length ? `\n      client log: ${run.errors.slice(-6).join('\n                  ')}` : ''}`);
}

/** Writes the report where the global teardown collects it, and logs it now. */
export function recordReport(report: ScenarioReport, fleet?: Fleet) {
  writeFileSync(join(inject('faultReportsDir'), `${report.scenario.replace(/[^A-Za-z0-9]+/g, '-')}.json`), JSON.stringify(report, null, 2));
  log(`${report.scenario}: ${JSON.stringify({ ...report, problems: report.problems.length })}`);
  for (const [kind, count] of Object.entries(report.refusalCodes)) log(`  refused ${count} × ${kind}`);
  for (const p of report.problems) log(`  problem: ${p}`);
  if (report.problems.length && fleet) log(`process output:\n${fleet.outputs()}`);
}
