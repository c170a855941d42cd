// The one event union every stream carries, and the status lists, as zod schemas: the TypeScript types,
// the OpenAPI document, the metrics labels and the store's checks all derive from here.
import { z } from 'zod';

export const TERMINATION_TYPES = ['natural_end', 'cancelled', 'interrupted', 'superseded', 'error', 'max_steps'] as const;
export const terminationSchema = z.object({ type: z.enum(TERMINATION_TYPES), detail: z.string().optional() });
export type TerminationType = (typeof TERMINATION_TYPES)[number];
export type Termination = z.infer<typeof terminationSchema>;

/** A run's record: queued until its workflow starts it, waiting while a tool call needs a decision. */
export const RUN_STATUSES = ['queued', 'running', 'waiting', 'done'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
/** A thread's status, derived from its runs. */
export const THREAD_STATUSES = ['idle', 'queued', 'running', 'waiting'] as const;
export type ThreadStatus = (typeof THREAD_STATUSES)[number];
/** Statuses of a run that is in progress (what `threadbox_runs_active` counts). */
export const ACTIVE_RUN_STATUSES = ['running', 'waiting'] as const satisfies readonly RunStatus[];
export const DISPATCH_STATUSES = ['queued', 'running', 'done', 'cancelled', 'superseded'] as const;
export type DispatchStatus = (typeof DISPATCH_STATUSES)[number];
export const MESSAGE_STATUSES = ['complete', 'interrupted'] as const;
export const TOOL_OUTCOMES = ['ok', 'error', 'denied', 'cancelled'] as const;

export const usageSchema = z.object({
  inputTokens: z.number().optional(),
  outputTokens: z.number().optional(),
  /** time spent in model calls */
  inferenceMs: z.number().optional(),
});
export type Usage = z.infer<typeof usageSchema>;

const event = <T extends string, S extends z.ZodRawShape>(type: T, shape: S) => z.object({ type: z.literal(type), ...shape });

/** What a writer hands to the event log; the log adds runId, threadId, seq and ts. */
export const runEventBodySchema = z.discriminatedUnion('type', [
  event('run_queued', { dispatchId: z.string(), mode: z.string() }),
  event('run_start', { dispatchId: z.string(), agentId: z.string() }),
  event('step_start', { step: z.number(), attempt: z.number() }),
  event('text_delta', { step: z.number(), delta: z.string() }),
  event('reasoning_delta', { step: z.number(), delta: z.string() }),
  event('tool_call_start', { step: z.number(), toolCallId: z.string(), toolName: z.string() }),
  event('tool_call_delta', { step: z.number(), toolCallId: z.string(), delta: z.string() }),
  event('tool_call_ready', { step: z.number(), toolCallId: z.string(), toolName: z.string(), input: z.unknown() }),
  event('tool_approval_requested', { toolCallId: z.string(), toolName: z.string(), input: z.unknown() }),
  event('tool_call_done', { toolCallId: z.string(), toolName: z.string(), output: z.unknown().optional(), error: z.string().optional(), outcome: z.enum(TOOL_OUTCOMES) }),
  event('steering_applied', { messageIds: z.array(z.string()) }),
  event('stream_reset', { step: z.number(), attempt: z.number() }),
  event('step_end', { step: z.number(), finishReason: z.string(), usage: usageSchema.optional() }),
  event('run_finish', { termination: terminationSchema }),
]);
export type RunEventBody = z.infer<typeof runEventBodySchema>;
export type RunEventType = RunEventBody['type'];
export const RUN_EVENT_TYPES = runEventBodySchema.options.map((o) => o.shape.type.value) as RunEventType[];

/** Where an event sits: global order across runs (the cursor of thread-wide streams), its run and its order in it. */
export const eventPlacementSchema = z.object({ id: z.number(), runId: z.string(), threadId: z.string(), seq: z.number(), ts: z.string(), attempt: z.number() });
export const runEventSchema = z.discriminatedUnion(
  'type',
  runEventBodySchema.options.map((o) => o.extend(eventPlacementSchema.shape)) as unknown as [z.ZodObject, ...z.ZodObject[]],
);
export type RunEvent = RunEventBody & z.infer<typeof eventPlacementSchema>;
