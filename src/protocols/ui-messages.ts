// The committed log as the AI SDK's UIMessage[]: what a page passes to `useChat` as its initial messages.
// Each run's assistant and tool messages become one assistant message (id = run id) whose parts follow the
// steps: text, and a tool part per call merged with its result, as the run's live UI-message stream built it.
import type { DynamicToolUIPart, UIMessage } from 'ai';
import type { Termination } from '../contract/run-events.js';
import type { RunMessageMetadata } from './ui-message-stream.js';

/** The fields of a committed message this reads (the API's message shape). */
export interface LogMessage {
  id: string;
  role: 'user' | 'assistant' | 'tool' | 'system';
  content: string;
  toolCalls?: { toolCallId: string; toolName: string; input: unknown }[];
  toolCallId?: string;
  runId?: string;
  status: 'complete' | 'interrupted';
  metadata: Record<string, unknown>;
}

export interface LogRun {
  runId: string;
  threadId: string;
  agentId: string;
  status: RunMessageMetadata['status'];
  termination: Termination | null;
}

export type ThreadUIMessage = UIMessage<RunMessageMetadata & { interrupted?: boolean; regenerateOf?: string }>;

/** Marks an input message that regenerates an earlier run's answer: neither that answer nor the repeated question is shown again. */
export const REGENERATE_OF = 'regenerateOf';

export function toUIMessages(log: LogMessage[], runs: LogRun[]): ThreadUIMessage[] {
  const runsById = new Map(runs.map((r) => [r.runId, r]));
  const replaced = new Set(log.flatMap((m) => (typeof m.metadata[REGENERATE_OF] === 'string' ? [m.metadata[REGENERATE_OF] as string] : [])));
  const out: ThreadUIMessage[] = [];
  const answers = new Map<string, ThreadUIMessage>();
  for (const message of log) {
    if (message.role === 'user' || message.role === 'system') {
      if (message.metadata[REGENERATE_OF] !== undefined) continue;
      out.push({ id: message.id, role: message.role, parts: [{ type: 'text', text: message.content }] });
      continue;
    }
    const runId = message.runId ?? message.id;
    if (replaced.has(runId)) continue;
    let answer = answers.get(runId);
    if (!answer) {
      answer = { id: runId, role: 'assistant', parts: [], metadata: runMetadata(runId, runsById.get(runId)) };
      answers.set(runId, answer);
      out.push(answer);
    }
    if (message.role === 'assistant') addStep(answer, message);
    else addToolResult(answer, message);
  }
  return out;
}

function runMetadata(runId: string, run: LogRun | undefined): ThreadUIMessage['metadata'] {
  if (!run) return { runId, threadId: '' };
  return { runId, threadId: run.threadId, agentId: run.agentId, status: run.status, ...(run.termination ? { termination: run.termination } : {}) };
}

function addStep(answer: ThreadUIMessage, message: LogMessage) {
  answer.parts.push({ type: 'step-start' });
  if (message.content) answer.parts.push({ type: 'text', text: message.content, state: 'done' });
  if (message.status === 'interrupted') answer.metadata = { ...answer.metadata!, interrupted: true };
  for (const call of message.toolCalls ?? []) {
    answer.parts.push({ type: 'dynamic-tool', toolCallId: call.toolCallId, toolName: call.toolName, state: 'input-available', input: call.input });
  }
}

function addToolResult(answer: ThreadUIMessage, message: LogMessage) {
  const index = answer.parts.findIndex((p) => p.type === 'dynamic-tool' && p.toolCallId === message.toolCallId);
  if (index < 0) return;
  const call = answer.parts[index] as DynamicToolUIPart;
  const base = { type: 'dynamic-tool' as const, toolCallId: call.toolCallId, toolName: call.toolName, input: call.input };
  const outcome = message.metadata.outcome;
  let part: DynamicToolUIPart;
  if (outcome === 'ok') part = { ...base, state: 'output-available', output: parseJson(message.content) };
  else if (outcome === 'denied') part = { ...base, state: 'output-denied', approval: { id: call.toolCallId, approved: false, reason: message.content } };
  else part = { ...base, state: 'output-error', errorText: errorText(message.content) };
  answer.parts[index] = part;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function errorText(content: string): string {
  const parsed = parseJson(content);
  return parsed && typeof parsed === 'object' && typeof (parsed as { error?: unknown }).error === 'string' ? (parsed as { error: string }).error : content;
}
