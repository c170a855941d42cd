// Agents config and model specs: what starts, and how a mistake stops startup.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { AgentRegistry } from '../../src/agent/agents.js';
import { loadAgentsConfig } from '../../src/agent/config.js';
import { resolveModel } from '../../src/agent/models.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { startThreadbox } from '../../src/server.js';
import { plainTarget } from '../../src/temporal/connection.js';

const dir = mkdtempSync(join(tmpdir(), 'threadbox-agents-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
function file(name: string, content: string): string {
  const path = join(dir, `${++files}-${name}`);
  writeFileSync(path, content);
  return path;
}
const noKeys = {};

describe('model specs', () => {
  it('builds each provider from its spec and key', () => {
    expect(resolveModel('echo', noKeys)).toMatchObject({ provider: 'threadbox', modelId: 'echo' });
    expect(resolveModel('openai:gpt-4o-mini', { OPENAI_API_KEY: 'sk-test' })).toMatchObject({ modelId: 'gpt-4o-mini', provider: expect.stringMatching(/^openai/) });
    expect(resolveModel('anthropic:claude-sonnet-4-5', { ANTHROPIC_API_KEY: 'k' })).toMatchObject({ modelId: 'claude-sonnet-4-5', provider: expect.stringMatching(/^anthropic/) });
    // The model name may itself contain colons (Ollama tags); the key is optional for local servers.
    expect(resolveModel('openai-compatible:http://localhost:11434/v1#llama3.1:8b', noKeys)).toMatchObject({
      modelId: 'llama3.1:8b',
      provider: 'openai-compatible.chat',
    });
  });

  it('names the missing key variable', () => {
    expect(() => resolveModel('openai:gpt-4o', noKeys)).toThrow('model "openai:gpt-4o" needs OPENAI_API_KEY, which is not set');
    expect(() => resolveModel('anthropic:claude-x', { ANTHROPIC_API_KEY: '  ' })).toThrow('needs ANTHROPIC_API_KEY');
  });

  it('names an unknown provider and a malformed spec', () => {
    expect(() => resolveModel('gemini:pro', noKeys)).toThrow('model "gemini:pro" names an unknown provider "gemini"');
    expect(() => resolveModel('gpt-4o', noKeys)).toThrow('unknown provider "gpt-4o"');
    expect(() => resolveModel('openai:', { OPENAI_API_KEY: 'k' })).toThrow('model "openai:" is malformed: no model name');
    expect(() => resolveModel('openai-compatible:http://x/v1', noKeys)).toThrow('expected "#<model>"');
    expect(() => resolveModel('openai-compatible:not a url#m', noKeys)).toThrow('"not a url" is not a URL');
    expect(() => resolveModel('openai-compatible:ftp://x/v1#m', noKeys)).toThrow('not an http(s) URL');
    expect(() => resolveModel('openai-compatible:http://x/v1#', noKeys)).toThrow('no model name after "#"');
  });
});

describe('agents config', () => {
  it('without a file, has one default agent on THREADBOX_MODEL with every built-in tool', () => {
    const agents = AgentRegistry.fromConfig({ THREADBOX_MODEL: 'echo' }, noKeys);
    expect(agents.ids()).toEqual(['default']);
    expect(agents.get('default')).toEqual({ id: 'default', model: 'echo', tools: ['get_time', 'calculator', 'sleep', 'send_email'], maxSteps: 10 });
  });

  it('stops on a bad THREADBOX_MODEL, naming the variable', () => {
    expect(() => AgentRegistry.fromConfig({ THREADBOX_MODEL: 'openai:gpt-4o' }, noKeys)).toThrow(ConfigError);
    expect(() => AgentRegistry.fromConfig({ THREADBOX_MODEL: 'openai:gpt-4o' }, noKeys)).toThrow(/^THREADBOX_MODEL: .*OPENAI_API_KEY/);
  });

  it('reads YAML and JSON alike, filling in defaults', () => {
    const yaml = file(
      'agents.yaml',
      `agents:
  - id: helper
    model: echo
    system: |
      Be brief.
    tools: [calculator, calculator, get_time]
    maxSteps: 3
    temperature: 0.5
  - id: plain
`,
    );
    const registry = AgentRegistry.fromConfig({ THREADBOX_CONFIG: yaml, THREADBOX_MODEL: 'echo' }, noKeys);
    expect(registry.ids()).toEqual(['helper', 'plain']);
    expect(registry.get('helper')).toEqual({ id: 'helper', model: 'echo', system: 'Be brief.\n', tools: ['calculator', 'get_time'], maxSteps: 3, temperature: 0.5 });
    expect(registry.get('plain')).toEqual({ id: 'plain', model: 'echo', tools: ['get_time', 'calculator', 'sleep', 'send_email'], maxSteps: 10 });

    const json = file('agents.json', JSON.stringify({ agents: [{ id: 'default', model: 'openai-compatible:http://127.0.0.1:1/v1#m', tools: [] }] }));
    expect(loadAgentsConfig(json, { defaultModel: 'echo', env: noKeys })).toEqual([
      { id: 'default', model: 'openai-compatible:http://127.0.0.1:1/v1#m', tools: [], maxSteps: 10 },
    ]);
  });

  it.each([
    ['unknown tool', 'agents:\n  - id: a\n    tools: [calculator, rm_rf]\n', 'agents.0.tools.1: Invalid option'],
    ['misspelt key', 'agents:\n  - id: a\n    max_steps: 3\n', 'agents.0: Unrecognized key: "max_steps"'],
    ['missing id', 'agents:\n  - model: echo\n', 'agents.0.id:'],
    ['bad id', 'agents:\n  - id: "has space"\n', 'agents.0.id: must be 1–128 of'],
    ['duplicate id', 'agents:\n  - id: a\n  - id: a\n', 'agents.1.id: duplicate agent id "a"'],
    ['zero steps', 'agents:\n  - id: a\n    maxSteps: 0\n', 'agents.0.maxSteps:'],
    ['hot temperature', 'agents:\n  - id: a\n    temperature: 7\n', 'agents.0.temperature:'],
    ['no agents', 'agents: []\n', 'agents: must define at least one agent'],
    ['empty file', '', '(file): Invalid input: expected object'],
    ['unknown provider', 'agents:\n  - id: a\n  - id: b\n    model: "mistral:large"\n', 'agents.1.model: model "mistral:large" names an unknown provider "mistral"'],
    ['missing key', 'agents:\n  - id: a\n    model: "anthropic:claude-x"\n', 'agents.0.model: model "anthropic:claude-x" needs ANTHROPIC_API_KEY'],
    ['broken YAML', 'agents:\n  - id: [a\n', 'agents config'],
  ])('stops on a bad file (%s), naming the file and the field', (_, content, message) => {
    const path = file('bad.yaml', content);
    let error: unknown;
    try {
      AgentRegistry.fromConfig({ THREADBOX_CONFIG: path, THREADBOX_MODEL: 'echo' }, noKeys);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(path);
    expect((error as Error).message).toContain(message);
  });

  it('stops on a file it cannot read or parse', () => {
    expect(() => loadAgentsConfig(join(dir, 'absent.yaml'), { defaultModel: 'echo' })).toThrow(/absent\.yaml \(THREADBOX_CONFIG\): cannot be read: ENOENT/);
    expect(() => loadAgentsConfig(file('agents.toml', 'x = 1'), { defaultModel: 'echo' })).toThrow('must end in .json, .yaml or .yml, not ".toml"');
    expect(() => loadAgentsConfig(file('agents.json', '{"agents": ['), { defaultModel: 'echo' })).toThrow(/agents\.json \(THREADBOX_CONFIG\): .*JSON/);
  });

  it('blames THREADBOX_MODEL when an agent without a model inherits a bad one', () => {
    const path = file('inherit.yaml', 'agents:\n  - id: a\n');
    expect(() => AgentRegistry.fromConfig({ THREADBOX_CONFIG: path, THREADBOX_MODEL: 'openai:gpt-4o' }, noKeys)).toThrow(/^THREADBOX_MODEL .*OPENAI_API_KEY/);
  });

  it('keeps threadbox from starting: no API, no worker', async () => {
    const path = file('startup.json', JSON.stringify({ agents: [{ id: 'x', tools: ['format_disk'] }] }));
    const config = loadConfig({ THREADBOX_CONFIG: path, PORT: '0', LOG_LEVEL: 'silent' });
    await expect(
      startThreadbox(config, { databaseUrl: inject('databaseUrl'), temporal: plainTarget(inject('temporalAddress')), api: true, worker: true }),
    ).rejects.toThrow(/startup\.json \(THREADBOX_CONFIG\): invalid\n {2}agents\.0\.tools\.0: /);
  });
});
