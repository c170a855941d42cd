// Agents: which model, system prompt, tools and step budget a run uses.
import type { LanguageModelV3 } from '@ai-sdk/provider';
import { createEchoModel } from './echo.js';
import { builtinTools } from './tools.js';

export interface Agent {
  id: string;
  model: string;
  system?: string;
  tools: string[];
  maxSteps: number;
  temperature?: number;
}

export class AgentRegistry {
  private readonly agents: Map<string, Agent>;
  private readonly models = new Map<string, LanguageModelV3>();

  constructor(agents: Agent[]) {
    this.agents = new Map(agents.map((a) => [a.id, a]));
    for (const agent of agents) this.modelFor(agent); // an unknown provider fails at startup, not mid-run
  }

  static withDefaults(model = 'echo'): AgentRegistry {
    return new AgentRegistry([{ id: 'default', model, tools: Object.keys(builtinTools), maxSteps: 10 }]);
  }

  get(agentId: string): Agent | undefined {
    return this.agents.get(agentId);
  }

  ids(): string[] {
    return [...this.agents.keys()];
  }

  modelFor(agent: Agent): LanguageModelV3 {
    let model = this.models.get(agent.model);
    if (!model) {
      model = resolveModel(agent.model);
      this.models.set(agent.model, model);
    }
    return model;
  }
}

export function resolveModel(spec: string): LanguageModelV3 {
  if (spec === 'echo') return createEchoModel();
  throw new Error(`unknown model "${spec}" (THREADBOX_MODEL): this build knows "echo"`);
}
