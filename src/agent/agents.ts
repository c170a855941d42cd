// Agents: which model, system prompt, tools and step budget a run uses.
import type { LanguageModelV3 } from '@ai-sdk/provider';
import { ConfigError } from '../config.js';
import { DEFAULT_MAX_STEPS, loadAgentsConfig, type Agent } from './config.js';

export type { Agent };
import { resolveModel, type ProviderEnv } from './models.js';
import { builtinTools } from './tools.js';
import type { AgentSettings } from '../contract/mailbox.js';

export { resolveModel } from './models.js';

export class AgentRegistry {
  private readonly agents: Map<string, Agent>;
  private readonly models = new Map<string, LanguageModelV3>();

  constructor(
    agents: Agent[],
    private readonly env: ProviderEnv = process.env,
  ) {
    this.agents = new Map(agents.map((a) => [a.id, a]));
    for (const agent of agents) this.modelFor(agent); // an unknown provider or a missing key fails at startup, not mid-run
  }

  /** Without a config file: one agent, `default`, on THREADBOX_MODEL with every built-in tool. */
  static withDefaults(model = 'echo', env: ProviderEnv = process.env): AgentRegistry {
    try {
      return new AgentRegistry([{ id: 'default', model, tools: Object.keys(builtinTools), maxSteps: DEFAULT_MAX_STEPS }], env);
    } catch (err) {
      throw new ConfigError(`THREADBOX_MODEL: ${(err as Error).message}`);
    }
  }

  /** The agents of THREADBOX_CONFIG when set, else the default agent. */
  static fromConfig(config: { THREADBOX_CONFIG?: string; THREADBOX_MODEL: string }, env: ProviderEnv = process.env): AgentRegistry {
    if (!config.THREADBOX_CONFIG) return AgentRegistry.withDefaults(config.THREADBOX_MODEL, env);
    const agents = loadAgentsConfig(config.THREADBOX_CONFIG, { defaultModel: config.THREADBOX_MODEL, env });
    try {
      return new AgentRegistry(agents, env);
    } catch (err) {
      // Only an agent that took THREADBOX_MODEL can still fail here: the file's own specs were checked while parsing it.
      throw new ConfigError(`THREADBOX_MODEL (the model of agents in ${config.THREADBOX_CONFIG} that name none): ${(err as Error).message}`);
    }
  }

  get(agentId: string): Agent | undefined {
    return this.agents.get(agentId);
  }

  /** What a run needs to know of its agent. A call to a tool outside the agent's list never waits for approval: runTool refuses it. */
  settings(agentId: string): AgentSettings | undefined {
    const agent = this.agents.get(agentId);
    if (!agent) return undefined;
    return { agentId, maxSteps: agent.maxSteps, approvalTools: agent.tools.filter((name) => builtinTools[name]?.needsApproval) };
  }

  ids(): string[] {
    return [...this.agents.keys()];
  }

  modelFor(agent: Agent): LanguageModelV3 {
    let model = this.models.get(agent.model);
    if (!model) {
      model = resolveModel(agent.model, this.env);
      this.models.set(agent.model, model);
    }
    return model;
  }
}
