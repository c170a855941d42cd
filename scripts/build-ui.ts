// Builds what the browser and packaged clients load: the playground page (dist/playground) and threadbox/client
// (dist/client). `--if-stale` builds only when a source is newer than what was built (npm run dev, the tests).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'vite';

const root = new URL('..', import.meta.url).pathname;
const targets = [
  { name: 'playground', output: 'dist/playground/index.html', sources: ['playground', 'src/client', 'src/contract'], config: 'playground/vite.config.ts' },
  { name: 'threadbox/client', output: 'dist/client/index.js', sources: ['src/client'], config: 'src/client/vite.config.ts' },
];

const newest = (path: string): number => {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((entry) => newest(join(path, entry))));
};

const onlyStale = process.argv.includes('--if-stale');
for (const target of targets) {
  const output = join(root, target.output);
  const stale = !existsSync(output) || Math.max(...target.sources.map((s) => newest(join(root, s)))) > statSync(output).mtimeMs;
  if (onlyStale && !stale) continue;
  const startedAt = Date.now();
  await build({ configFile: join(root, target.config), logLevel: 'warn' });
  console.log(`built ${target.name} in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
}
