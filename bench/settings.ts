// The bench's command line: every count it runs (`--quick` divides them by 10), and its progress lines on stderr.
import { parseArgs } from 'node:util';

const options = {
  runs: { type: 'string', default: '200' }, // submit → first byte/token samples per side
  'latency-threads': { type: 'string', default: '20' },
  'token-runs': { type: 'string', default: '6' },
  'token-count': { type: 'string', default: '50' },
  'token-slow-ms': { type: 'string', default: '50' },
  interrupts: { type: 'string', default: '50' },
  cancels: { type: 'string', default: '50' },
  'throughput-threads': { type: 'string', default: '50' },
  'throughput-runs-per-thread': { type: 'string', default: '6' },
  'long-tokens': { type: 'string', default: '20000' },
  'idle-threads': { type: 'string', default: '10000' },
  'timeline-runs': { type: 'string', default: '30' }, // new-thread runs whose median gives the hop timeline
  'waiting-runs': { type: 'string', default: '100' },
  'scale-samples': { type: 'string', default: '50' },
  quick: { type: 'boolean', default: false }, // every count divided by 10: a smoke run
  'skip-store': { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const;
const { values: flags } = parseArgs({ options });

if (flags.help) {
  const usage = Object.entries(options).filter(([name]) => name !== 'help').map(([name, o]) => `  --${name}${o.type === 'string' ? ` <n> (default ${o.default})` : ''}`);
  console.log(['npm run bench -- [options]: see README.md, "npm run bench"', ...usage].join('\n'));
  process.exit(0);
}

const count = (name: keyof typeof flags) => {
  const n = Number(flags[name]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return flags.quick ? Math.max(2, Math.ceil(n / 10)) : n;
};

export const settings = {
  runs: count('runs'),
  latencyThreads: count('latency-threads'),
  tokenRuns: count('token-runs'),
  tokenCount: Number(flags['token-count']),
  tokenSlowMs: Number(flags['token-slow-ms']),
  interrupts: count('interrupts'),
  cancels: count('cancels'),
  throughputThreads: count('throughput-threads'),
  throughputRunsPerThread: Number(flags['throughput-runs-per-thread']),
  longTokens: count('long-tokens'),
  idleThreads: count('idle-threads'),
  timelineRuns: count('timeline-runs'),
  waitingRuns: count('waiting-runs'),
  scaleSamples: count('scale-samples'),
};
export type Settings = typeof settings;

export const skipStore = flags['skip-store'];

export const started = Date.now();
export const progress = (line: string) => console.error(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
