// What one model call sees: the thread's newest messages within the agent's budget, as the AI SDK's messages.
import type { ModelMessage } from 'ai';
import type { Agent } from '../src/agent/agents.js';
import { contextBudget, contextWindow } from '../src/agent/context.js';
import type { CommittedMessage, Store, ThreadRef } from '../src/store/store.js';

/**
 * What one model call sees of the thread: the newest messages within the agent's context budget
 * (see contextWindow), read newest first from the store, never the whole thread.
 */
export async function loadContext(store: Store, ref: ThreadRef, agent: Agent): Promise<CommittedMessage[]> {
  const budget = contextBudget(agent);
  let recent = await store.loadRecentMessages(ref, { limit: budget.maxMessages, maxContentBytes: budget.maxTokens * 4 });
  // A budget smaller than the newest exchange held only tool results: read back to the call they answer.
  for (let limit = recent.length * 2 + 16; recent.length > 0 && recent.every((m) => m.role === 'tool'); limit *= 2) {
    const more = await store.loadRecentMessages(ref, { limit, maxContentBytes: Number.MAX_SAFE_INTEGER });
    if (more.length === recent.length) break; // the thread holds nothing older
    recent = more;
  }
  return contextWindow(recent, budget, agent.system);
}

/** The committed log as the AI SDK's model messages. */
export function toModelMessages(history: CommittedMessage[]): ModelMessage[] {
  return history.map((m): ModelMessage => {
    switch (m.role) {
      case 'system':
        return { role: 'system', content: m.content };
      case 'user':
        return { role: 'user', content: m.content };
      case 'assistant':
        return {
          role: 'assistant',
          content: [
            ...(m.content ? [{ type: 'text' as const, text: m.content }] : []),
            ...(m.toolCalls ?? []).map((c) => ({ type: 'tool-call' as const, toolCallId: c.toolCallId, toolName: c.toolName, input: c.input })),
          ],
        };
      case 'tool': {
        const toolName = String(m.metadata.toolName ?? 'unknown');
        const outcome = m.metadata.outcome;
        const output =
          outcome === 'ok'
            ? { type: 'json' as const, value: JSON.parse(m.content) }
            : outcome === 'denied'
              ? { type: 'execution-denied' as const, reason: m.content }
              : { type: 'error-text' as const, value: m.content };
        return { role: 'tool', content: [{ type: 'tool-result', toolCallId: m.toolCallId ?? '', toolName, output }] };
      }
    }
  });
}
