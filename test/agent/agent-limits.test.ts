// Per-agent limits in real runs: the tools an agent may call, and its step budget.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startStack, uniqueId, type Stack } from '../stack.js';

let stack: Stack;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'threadbox-limits-'));
  const configPath = join(dir, 'threadbox.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      agents: [
        { id: 'default', model: 'echo' },
        { id: 'limited', model: 'echo', tools: ['calculator'], maxSteps: 3 },
        { id: 'one-step', model: 'echo', tools: ['calculator'], maxSteps: 1 },
      ],
    }),
  );
  stack = await startStack({ env: { THREADBOX_CONFIG: configPath } });
});
afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function run(agentId: string, content: string) {
  const threadId = uniqueId(agentId);
  const { runId } = (await stack.request('POST', `/v1/threads/${threadId}/runs`, { agentId, messages: [{ content }] })).body;
  const record = await eventually(async () => {
    const r = await stack.store.getRun(runId);
    return r?.status === 'done' ? r : undefined;
  });
  return { record, log: await stack.store.loadCommittedMessages({ tenant: 'default', threadId }), events: await stack.store.readEvents(runId, 0, 1000) };
}

describe('agent limits', () => {
  it('a built-in tool outside the agent list is refused as a tool error, not run', async () => {
    const r = await run('limited', '/tool get_time {}');
    expect(r.record.termination).toEqual({ type: 'natural_end' });
    expect(JSON.parse(r.log[2]!.content)).toEqual({ error: 'tool "get_time" is not available to agent "limited"' });
  });

  it('an approval-needing tool outside the agent list neither waits for approval nor runs', async () => {
    const r = await run('limited', '/tool send_email {"to":"a@b.co","subject":"s","body":"b"}');
    expect(r.record.termination).toEqual({ type: 'natural_end' });
    expect(r.events.some((e) => e.type === 'tool_approval_requested')).toBe(false);
    expect(JSON.parse(r.log[2]!.content).error).toContain('not available');
  });

  it('a run that exhausts its step budget ends with max_steps', async () => {
    const r = await run('one-step', '/tool calculator {"expression":"6*7"}');
    expect(r.record.termination).toMatchObject({ type: 'max_steps' });
    expect(r.log.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    expect(r.log[2]!.content).toBe('{"result":42}');
  });
});
