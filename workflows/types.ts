// Types shared by the workflows, the activities and the API (types only: safe in the workflow sandbox).
import type { Termination } from '../src/events.js';

export type SubmitMode = 'interrupt' | 'queue' | 'steer';

export interface InputMessage {
  messageId: string;
  role: 'user' | 'system';
  content: string;
  metadata?: Record<string, unknown>;
}

/** What a run needs to know of its agent; resolved from the agents config by the API. */
export interface AgentSettings {
  agentId: string;
  maxSteps: number;
  /** tools whose calls wait for an approve/deny decision */
  approvalTools: string[];
}

export interface SubmitInput {
  runId: string;
  dispatchId: string;
  mode: SubmitMode;
  agent: AgentSettings;
  messages: InputMessage[];
  expectedRunId?: string;
  /** durable cross-thread message: a redelivery returns the first result */
  durable?: boolean;
}

export interface SubmitResult {
  threadId: string;
  runId: string;
  dispatchId: string;
  status: 'running' | 'queued' | 'steered';
  duplicate?: boolean;
}

export interface CancelResult {
  runId: string;
  status: 'cancel_requested';
}

export interface InterruptResult {
  threadId: string;
  cancelledRunId: string | null;
  supersededRunIds: string[];
}

export interface Dispatch {
  runId: string;
  dispatchId: string;
  mode: SubmitMode;
  agent: AgentSettings;
  epoch: number;
  /** runs this one superseded: their pending input is committed ahead of this run's */
  carriedRunIds: string[];
}

export interface MailboxState {
  epoch: number;
  queue: Dispatch[];
  active: Dispatch | null;
}

/** What continue-as-new carries from one thread workflow run to the next. */
export interface ThreadState {
  mailbox: MailboxState;
  /** idempotency key → result, for retried submits that reach a later workflow run */
  recentResults: [string, SubmitResult][];
}

export interface ThreadWorkflowInput {
  tenant: string;
  threadId: string;
  state?: ThreadState;
}

export interface RunWorkflowInput {
  tenant: string;
  threadId: string;
  runId: string;
  dispatchId: string;
  agent: AgentSettings;
  carriedRunIds: string[];
  threadWorkflowId: string;
}

export interface RunEnded {
  runId: string;
  termination: Termination;
  /** steering that reached the run too late to be applied: the thread queues it as a new run */
  unappliedSteering: InputMessage[];
}

export type StopReason = 'interrupted' | 'cancelled';

export interface Decision {
  toolCallId: string;
  action: 'approve' | 'deny';
  reason?: string;
}

export interface ApprovalTicket {
  toolCallId: string;
  toolName: string;
  input: unknown;
  step: number;
  decision?: { action: 'approve' | 'deny' | 'cancelled'; reason?: string };
}

export const threadWorkflowId = (tenant: string, threadId: string) => `thread:${tenant}:${threadId}`;
export const runWorkflowId = (runId: string) => `run:${runId}`;
export const durableRunId = (messageId: string) => `durable-msg-${messageId}`;

/*
 * Event-log writer fences (the store rejects a writer below the run's current fence): a step's model
 * call writes at step × 1000 + attempt, that step's tool results at step × 1000 + 999, and whatever
 * comes after the step at (step + 1) × 1000, which shuts out any zombie attempt of it.
 */
export const modelStepFence = (step: number, attempt: number) => step * 1000 + attempt;
export const toolResultFence = (step: number) => step * 1000 + 999;
export const afterStepFence = (step: number) => (step + 1) * 1000;
/** The attempt a writer's fence stands for: a model step's own, else 1. */
export const attemptOfFence = (fence: number) => {
  const attempt = fence % 1000;
  return attempt >= 1 && attempt < 999 ? attempt : 1;
};
