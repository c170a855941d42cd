// The Temporal messages of the two workflows: what the API sends and the workflows handle. Defined once,
// imported by both sides (definitions only: the workflow code stays behind the worker).
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type {
  CancelResult,
  Decision,
  InputMessage,
  InterruptResult,
  MailboxState,
  RunEnded,
  StopReason,
  SubmitInput,
  SubmitResult,
  ThreadWorkflowInput,
} from './mailbox.js';

/** The thread workflow's type, for the client's typed calls (registered by the worker as `threadWorkflow`). */
export type ThreadWorkflow = (input: ThreadWorkflowInput) => Promise<void>;
export const THREAD_WORKFLOW_TYPE = 'threadWorkflow';

// The thread's mailbox.
export const submitUpdate = defineUpdate<SubmitResult, [SubmitInput]>('submit');
export const cancelRunUpdate = defineUpdate<CancelResult, [{ runId: string }]>('cancelRun');
export const interruptUpdate = defineUpdate<InterruptResult, []>('interrupt');
export const submitSignal = defineSignal<[SubmitInput]>('submit');
export const interruptSignal = defineSignal<[]>('interrupt');
export const mailboxQuery = defineQuery<MailboxState>('mailbox');
/** A run workflow reports to its thread that it ended. */
export const runEndedSignal = defineSignal<[RunEnded]>('runEnded');

// One run.
export const stopRunSignal = defineSignal<[{ reason: StopReason }]>('stop');
export const steerRunSignal = defineSignal<[{ messages: InputMessage[] }]>('steer');
export const decideUpdate = defineUpdate<{ toolCallId: string; duplicate: boolean }, [Decision]>('decide');
