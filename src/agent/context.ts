// The context policy: which part of a long thread a model call sees.
import type { CommittedMessage } from '../store/store.js';

export const DEFAULT_MAX_CONTEXT_MESSAGES = 1_000;
export const DEFAULT_MAX_CONTEXT_TOKENS = 100_000;

export interface ContextBudget {
  /** most committed messages one model call sees */
  maxMessages: number;
  /** most estimated tokens of the system prompt and those messages together */
  maxTokens: number;
}

export function contextBudget(agent: { maxContextMessages?: number; maxContextTokens?: number }): ContextBudget {
  return {
    maxMessages: agent.maxContextMessages ?? DEFAULT_MAX_CONTEXT_MESSAGES,
    maxTokens: agent.maxContextTokens ?? DEFAULT_MAX_CONTEXT_TOKENS,
  };
}

// Role markers and separators a provider adds around each message.
const MESSAGE_OVERHEAD_TOKENS = 4;

/**
 * A provider-independent estimate: UTF-8 bytes / 4. About chars / 4 for English, and closer than
 * that for scripts that take a token or more per character; the store can sum it without
 * decoding the text (octet_length).
 */
export function estimateTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, 'utf8') / 4);
}

export function estimateMessageTokens(m: Pick<CommittedMessage, 'content' | 'toolCalls'>): number {
  return MESSAGE_OVERHEAD_TOKENS + estimateTokens(m.content) + (m.toolCalls?.length ? estimateTokens(JSON.stringify(m.toolCalls)) : 0);
}

/**
 * The newest messages of `history` (oldest first, as the log reads) that fit the budget next to
 * the system prompt. The newest message is always kept, with the tool call it answers when it
 * is a tool result, even over the budget: the provider then says the prompt is too long, which
 * ends the run with a readable error instead of a model call that silently lacks its input.
 * The window then
 * - drops tool results whose assistant tool call fell outside it (a provider refuses a result
 *   without its call; a call in the window always has its results, they are newer), and
 * - starts at a user turn when it holds one, so it never opens with the tail of an older answer.
 */
export function contextWindow(history: CommittedMessage[], budget: ContextBudget, systemPrompt = ''): CommittedMessage[] {
  let tokens = systemPrompt ? estimateTokens(systemPrompt) + MESSAGE_OVERHEAD_TOKENS : 0;
  let start = history.length;
  while (start > 0 && history.length - start < budget.maxMessages) {
    const cost = estimateMessageTokens(history[start - 1]!);
    if (start < history.length && tokens + cost > budget.maxTokens) break;
    tokens += cost;
    start--;
  }
  start = Math.min(start, newestExchangeStart(history));
  let window = history.slice(start);
  const calls = new Set(window.flatMap((m) => (m.role === 'assistant' ? (m.toolCalls ?? []).map((c) => c.toolCallId) : [])));
  window = window.filter((m) => m.role !== 'tool' || (m.toolCallId !== undefined && calls.has(m.toolCallId)));
  const firstUser = window.findIndex((m) => m.role === 'user');
  return firstUser > 0 ? window.slice(firstUser) : window;
}

/** Where the newest message's exchange begins: the assistant message whose calls the trailing tool results answer, else the newest message. */
function newestExchangeStart(history: CommittedMessage[]): number {
  let i = history.length - 1;
  if (i < 0) return 0;
  while (i > 0 && history[i]!.role === 'tool') i--;
  return history[i]?.role === 'assistant' ? i : history.length - 1;
}
