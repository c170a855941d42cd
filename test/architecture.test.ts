// The house drawn from imports (.dependency-cruiser.cjs): no cycle, workflows/ behind the worker, the contract as the floor.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

interface Cruise {
  summary: { violations: { rule: { name: string }; from: string; to: string; cycle?: unknown[] }[]; totalCruised: number };
  modules: { source: string; dependencies: { resolved: string; couldNotResolve: boolean }[] }[];
}

function cruise(): Cruise {
  const args = ['--config', '.dependency-cruiser.cjs', '--output-type', 'json', 'src', 'workflows', 'activities', 'test', 'bench', 'testkit', 'scripts'];
  // depcruise exits non-zero when there are violations; its JSON is on stdout either way.
  try {
    return JSON.parse(execFileSync('node_modules/.bin/depcruise', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }));
  } catch (err) {
    const stdout = (err as { stdout?: string }).stdout;
    if (!stdout) throw err;
    return JSON.parse(stdout);
  }
}

describe('import graph', () => {
  const graph = cruise();

  it('breaks none of the rules: no cycle, nothing outside the worker imports workflows/, workflows/ import only the contract', () => {
    const violations = graph.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`);
    expect(violations).toEqual([]);
  });

  it('reads the real graph: .js specifiers resolve to the .ts sources', () => {
    expect(graph.summary.totalCruised).toBeGreaterThan(100);
    const thread = graph.modules.find((m) => m.source === 'workflows/thread.ts');
    expect(thread?.dependencies.map((d) => d.resolved)).toContain('src/contract/messages.ts');
    const api = graph.modules.find((m) => m.source === 'src/api/service.ts');
    expect(api?.dependencies.map((d) => d.resolved)).toContain('src/contract/messages.ts');
    expect(graph.modules.flatMap((m) => m.dependencies).filter((d) => d.couldNotResolve)).toEqual([]);
  });
});
