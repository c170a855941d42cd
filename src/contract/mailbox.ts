// The mailbox's shared shapes: what the API, the workflows and the activities pass each other; ids and fences.
// Types and pure functions only, so the workflow sandbox can import it.
import type { Termination } from './run-events.js';

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
  /** hash of the request (the API's): the same run id claimed with another request is a conflict */
  requestHash?: string;
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
  /** steering delivered to this run while active: committed by the thread if the run dies without applying it */
  steered?: InputMessage[];
  /** the run's workflow id; absent on dispatches made before run ids were tenant-scoped (`run:<runId>`) */
  workflowId?: string;
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
  /** the run's agent, so late steering is queued for it whatever the thread's state (absent from older runs) */
  agent?: AgentSettings;
}

/** What the store knows of a thread's mailbox: how a terminated thread workflow is rebuilt. */
export interface StoredMailbox {
  epoch: number;
  active: Dispatch | null;
  queue: Dispatch[];
  /** input of runs that ended without starting and without an heir: committed at once */
  orphanedRunIds: string[];
}

export type StopReason = 'interrupted' | 'cancelled';

/** How a run workflow closed, as its parent (or a liveness check) saw it. */
export type RunClosure = 'completed' | 'cancelled' | 'terminated' | 'timed_out' | 'failed' | 'not_found' | 'running';

/**
 * Where a string cannot be stored in Postgres (a NUL character or an unpaired surrogate), the
 * path of the first such field; undefined when everything is storable. Pure: also used in workflows.
 */
export function unstorableField(value: unknown, path = 'input'): string | undefined {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) return `${path} contains a NUL character`;
    if (!value.isWellFormed()) return `${path} contains an unpaired surrogate`;
    return undefined;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = unstorableField(value[i], `${path}.${i}`);
      if (found) return found;
    }
    return undefined;
  }
  if (value && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) {
      const found = unstorableField(key, `${path} key`) ?? unstorableField(v, `${path}.${key}`);
      if (found) return found;
    }
  }
  return undefined;
}

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
/** The workflow id of a run made before run ids were tenant-scoped. */
export const runWorkflowId = (runId: string) => `run:${runId}`;
/** A run's workflow id: run ids are unique within a tenant, so the tenant is part of it. */
export const tenantRunWorkflowId = (tenant: string, runId: string) => `run:${tenant}:${runId}`;
export const workflowIdOf = (dispatch: Pick<Dispatch, 'runId' | 'workflowId'>) => dispatch.workflowId ?? runWorkflowId(dispatch.runId);
export const durableRunId = (messageId: string) => `durable-msg-${messageId}`;
/** The id of the answer a run's step commits (its text and tool calls): one per step, so a retry commits it once. */
export const assistantMessageId = (runId: string, step: number) => `${runId}:${step}:assistant`;
/** A step's answer as the log keeps it: its text, and its tool calls when it made any. */
export const assistantReply = <C>(runId: string, step: number, text: string, toolCalls: C[]) => ({
  messageId: assistantMessageId(runId, step),
  role: 'assistant' as const,
  content: text,
  runId,
  toolCalls: toolCalls.length ? toolCalls : undefined,
});
/** The id of a tool call's result message. */
export const toolMessageId = (runId: string, step: number, toolCallId: string) => `${runId}:${step}:tool:${toolCallId}`;

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
