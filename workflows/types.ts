// Types shared by the workflows, the activities and the API (types only: safe in the workflow sandbox).
import type { Termination } from '../src/events.js';

export type SubmitMode = 'interrupt' | 'queue' | 'steer';

export interface InputMessage {
  messageId: string;
  role: 'user' | 'system';
  content: string;
  metadata?: Record<string, unknown>;
}

export interface AgentSettings {
  agentId: string;
  maxSteps: number;
}

export interface SubmitInput {
  runId: string;
  dispatchId: string;
  mode: SubmitMode;
  agent: AgentSettings;
  messages: InputMessage[];
  expectedRunId?: string;
}

export interface SubmitResult {
  threadId: string;
  runId: string;
  dispatchId: string;
  status: 'running' | 'queued' | 'steered';
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

export interface ThreadWorkflowInput {
  tenant: string;
  threadId: string;
  mailbox?: MailboxState;
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
}

export type StopReason = 'interrupted' | 'cancelled';

export const threadWorkflowId = (tenant: string, threadId: string) => `thread:${tenant}:${threadId}`;
export const runWorkflowId = (runId: string) => `run:${runId}`;
