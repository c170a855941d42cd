// Everything the workflows ask the world to do: the committed log, run records and the agent's model and tools.
import type { Client } from '@temporalio/client';
import type { AgentRegistry } from '../src/agent/agents.js';
import type { Store } from '../src/store/store.js';
import { closingActivities } from './closing.js';
import { messageActivities } from './messages.js';
import { modelStepActivities } from './model-step.js';
import { recoveryActivities } from './recovery.js';
import { runRecordActivities } from './runs.js';
import { toolActivities } from './tools.js';

export interface ActivityDeps {
  store: Store;
  agents: AgentRegistry;
  /** asks Temporal whether a run workflow still runs (probeRun); without it every run counts as running */
  temporal?: Client;
}

/** Workflows call activities by these names, and recorded histories replay them: a name never changes. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...runRecordActivities(deps.store),
    ...messageActivities(deps.store),
    ...closingActivities(deps.store),
    ...recoveryActivities(deps),
    ...modelStepActivities(deps),
    ...toolActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
