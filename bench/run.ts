// `npm run bench`: threadbox against a no-durability baseline (the same echo model behind a plain
// Fastify SSE route), plus throughput, scale and the store benchmarks. Progress goes to stderr; stdout
// gets a table and, as its last line, one JSON object with every figure and the machine.
import { loadavg } from 'node:os';
import { rssMiB } from '../testkit/processes.js';
import { machine, printTable, printTimeline } from './print.js';
import { measureCancels, measureFirstBytes, measureInterrupts, measureTokenDelivery } from './scenarios/latency.js';
import { measureScale, measureThroughput, measureTokensPerSecond } from './scenarios/load.js';
import { measureTimeline, type Hop } from './scenarios/timeline.js';
import { progress, settings, skipStore, started } from './settings.js';
import { startStack, type Stack } from './stack.js';
import { round } from './stats.js';
import { benchStore } from './store.js';

async function main() {
  const loadStart = loadavg()[0]!;
  progress(`settings ${JSON.stringify(settings)}`);
  const stack = await startStack();
  let figures: Record<string, number>;
  let timeline: { hop_timeline: Hop[]; timeline_first_token_ms: number };
  try {
    progress(`hop timeline: the median of ${settings.timelineRuns} runs on new threads…`);
    timeline = await measureTimeline(stack);
    figures = await measureAll(stack);
  } finally {
    await stack.stop();
  }
  const result = { ...figures, ...timeline, duration_s: Math.round((Date.now() - started) / 1000), settings, machine: machine(loadStart) };
  printTable(figures);
  printTimeline(timeline.hop_timeline, timeline.timeline_first_token_ms);
  console.log(JSON.stringify(result));
}

/** Every scenario in turn on one stack, then the store benchmarks once the worker is gone. */
async function measureAll(stack: Stack): Promise<Record<string, number>> {
  // The worker as it starts, before its first task.
  const figures: Record<string, number> = { worker_rss_fresh_mib: rssMiB(stack.worker.pid) };
  progress(`submit → first byte/token, ${settings.runs} runs per side…`);
  Object.assign(figures, await measureFirstBytes(stack));
  // Durability's cost: threadbox's figure minus the baseline's, percentile by percentile.
  for (const p of ['p50', 'p99']) figures[`first_token_overhead_${p}_ms`] = round(figures[`first_token_${p}_ms`]! - figures[`baseline_first_token_${p}_ms`]!);
  progress('per-token delivery…');
  Object.assign(figures, await measureTokenDelivery(stack));
  progress(`interrupt latency, ${settings.interrupts} interrupts…`);
  Object.assign(figures, await measureInterrupts(stack));
  progress(`cancel latency, ${settings.cancels} cancels…`);
  Object.assign(figures, await measureCancels(stack));
  progress(`throughput, ${settings.throughputThreads} threads × ${settings.throughputRunsPerThread} queued runs…`);
  Object.assign(figures, await measureThroughput(stack));
  progress(`tokens per second, /long ${settings.longTokens}…`);
  Object.assign(figures, await measureTokensPerSecond(stack));
  Object.assign(figures, await measureScale(stack));
  await stack.worker.stop();
  if (!skipStore) {
    progress('store benchmarks…');
    Object.assign(figures, await benchStore(stack.databaseUrl));
  }
  return figures;
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
