// The one event union every stream carries; SSE and JSON pages are encoders over it.

export type TerminationType = 'natural_end' | 'cancelled' | 'interrupted' | 'superseded' | 'error' | 'max_steps';
export interface Termination {
  type: TerminationType;
  detail?: string;
}

export interface Usage {
  inputTokens?: number;
  outputTokens?: number;
  /** time spent in model calls */
  inferenceMs?: number;
}

/** What a writer hands to the event log; the log adds runId, threadId, seq and ts. */
export type RunEventBody =
  | { type: 'run_queued'; dispatchId: string; mode: string }
  | { type: 'run_start'; dispatchId: string; agentId: string }
  | { type: 'step_start'; step: number; attempt: number }
  | { type: 'text_delta'; step: number; delta: string }
  | { type: 'reasoning_delta'; step: number; delta: string }
  | { type: 'tool_call_start'; step: number; toolCallId: string; toolName: string }
  | { type: 'tool_call_delta'; step: number; toolCallId: string; delta: string }
  | { type: 'tool_call_ready'; step: number; toolCallId: string; toolName: string; input: unknown }
  | { type: 'tool_approval_requested'; toolCallId: string; toolName: string; input: unknown }
  | { type: 'tool_call_done'; toolCallId: string; toolName: string; output?: unknown; error?: string; outcome: 'ok' | 'error' | 'denied' | 'cancelled' }
  | { type: 'steering_applied'; messageIds: string[] }
  | { type: 'stream_reset'; step: number; attempt: number }
  | { type: 'step_end'; step: number; finishReason: string; usage?: Usage }
  | { type: 'run_finish'; termination: Termination };

export type RunEventType = RunEventBody['type'];

export type RunEvent = RunEventBody & {
  id: number; // global order across runs, the cursor of thread-wide streams
  runId: string;
  threadId: string;
  seq: number;
  ts: string;
  attempt: number;
};
