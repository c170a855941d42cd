// The bench's output: a table of the latencies against the baseline and every other figure (stdout), and the
// machine the figures came from.
import { cpus, loadavg, totalmem } from 'node:os';
import { findTemporalCli, temporalCliVersion } from '../src/infra/temporal-cli.js';
import { settings } from './settings.js';
import { round } from './stats.js';

const LABELS: [string, string][] = [
  ['first_byte', 'submit → first SSE byte (response headers)'],
  ['first_event', 'submit → first SSE event'],
  ['first_token', 'submit → first token'],
  ['run_total', 'submit → run_finish (5-token reply)'],
  ['token_emit_to_client', `token: model emits → client (1 per ${settings.tokenSlowMs} ms)`],
  ['token_commit_to_client', 'token: Postgres commit → client'],
  ['interrupt', 'interrupt: foreground submit → old run_finish'],
  ['cancel', 'cancel: POST cancel → run_finish'],
  ['cancel_to_last_token', 'cancel → last token written (≈ abort)'],
  ['first_event_with_idle_threads', `submit → first event, ${settings.idleThreads} threads exist`],
  ['first_token_with_idle_threads', `submit → first token, evicted idle thread (${settings.idleThreads} exist)`],
  ['first_token_cached_thread', 'submit → first token, the same thread again (cached)'],
];

export function printTable(figures: Record<string, unknown>) {
  const rows: string[][] = [['latency (ms)', 'threadbox p50', 'p99', 'baseline p50', 'p99']];
  for (const [key, label] of LABELS) {
    if (figures[`${key}_p50_ms`] === undefined) continue;
    const base = figures[`baseline_${key}_p50_ms`];
    rows.push([label, String(figures[`${key}_p50_ms`]), String(figures[`${key}_p99_ms`]), base === undefined ? '–' : String(base), base === undefined ? '–' : String(figures[`baseline_${key}_p99_ms`])]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  console.log(line(rows[0]!));
  for (const r of rows.slice(1)) console.log(line(r));
  console.log('');
  const shown = new Set(LABELS.flatMap(([k]) => [`${k}_p50_ms`, `${k}_p99_ms`, `baseline_${k}_p50_ms`, `baseline_${k}_p99_ms`]));
  const rest = Object.entries(figures).filter(([k, v]) => !shown.has(k) && typeof v === 'number');
  const width = Math.max(...rest.map(([k]) => k.length));
  for (const [k, v] of rest) console.log(`${k.padEnd(width)}  ${v}`);
}

/** The machine and its load: figures from a shared machine are read against these. */
export function machine(loadStart: number) {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memory_gib: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    temporal_cli: temporalCliVersion(findTemporalCli({ build: false })),
    load_avg_1m_start: round(loadStart),
    load_avg_1m_end: round(loadavg()[0]!),
  };
}

/** The median new-thread run, milestone by milestone: where each hop's time goes. */
export function printTimeline(hops: { at_ms: number; gap_ms: number; where: string; what: string }[], firstTokenMs: number) {
  console.log('');
  console.log(`hop timeline of the median run on a new thread (first token at ${firstTokenMs} ms):`);
  console.log(`${'at ms'.padStart(8)}  ${'+ms'.padStart(6)}  ${'where'.padEnd(8)}  what`);
  for (const h of hops) console.log(`${h.at_ms.toFixed(1).padStart(8)}  ${h.gap_ms.toFixed(1).padStart(6)}  ${h.where.padEnd(8)}  ${h.what}`);
  console.log('');
}
