// The HTTP contract's shapes, as zod schemas: they validate requests and generate the OpenAPI document.
import { z } from 'zod';
import { DISPATCH_STATUSES, MESSAGE_STATUSES, RUN_STATUSES, THREAD_STATUSES, runEventSchema, terminationSchema, usageSchema } from '../contract/run-events.js';

/**
 * A string Postgres can keep: `text` refuses NUL, and an unpaired UTF-16 surrogate has no UTF-8 form.
 * Every string a request carries is one of these; the message names the field it is found in.
 */
export const storableString = z
  .string()
  .refine((s) => !s.includes('\u0000'), { message: 'contains a NUL character', abort: true })
  // In a `u` regex a surrogate pair is one code point, so only unpaired halves match.
  .refine((s) => !/\p{Surrogate}/u.test(s), { message: 'contains an unpaired UTF-16 surrogate', abort: true });

export const id = storableString.regex(/^[A-Za-z0-9._:-]{1,128}$/, 'ids are 1–128 of [A-Za-z0-9._:-]');

export const errorBody = z.object({ error: z.string(), code: z.string() }).meta({ id: 'Error' });

export const inputMessage = z.strictObject({
  id: id.optional(),
  role: z.enum(['user', 'system']).default('user'),
  content: storableString.max(256 * 1024, 'a message is at most 256 KiB'),
});

export const submitBody = z.strictObject({
  messages: z
    .array(inputMessage)
    .min(1, 'at least one message')
    .max(100, 'at most 100 messages')
    .refine((messages) => {
      const ids = messages.flatMap((m) => (m.id ? [m.id] : []));
      return new Set(ids).size === ids.length;
    }, 'message ids must be unique within a submit'),
  agentId: id.optional(),
  mode: z.enum(['interrupt', 'queue', 'steer']).default('interrupt'),
  expectedRunId: id.optional(),
  runId: id.optional(),
});
export type SubmitBody = z.infer<typeof submitBody>;

export const submitResponse = z.object({
  threadId: z.string(),
  runId: z.string(),
  dispatchId: z.string(),
  status: z.enum(['running', 'queued', 'steered']),
});

/** Routes that take no body still refuse one with fields: a misspelt call must not act as a bare one. */
export const noBody = z.strictObject({}).nullish();

export const threadParams = z.object({ threadId: id });
export const runParams = z.object({ runId: id });

const toolCall = z.object({ toolCallId: z.string(), toolName: z.string(), input: z.unknown() });

export const message = z.object({
  seq: z.number(),
  id: z.string(),
  role: z.enum(['user', 'assistant', 'tool', 'system']),
  content: z.string(),
  toolCalls: z.array(toolCall).optional(),
  toolCallId: z.string().optional(),
  runId: z.string().optional(),
  status: z.enum(MESSAGE_STATUSES),
  metadata: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
});

/** A cursor or count in a query string: decimal digits only (no `0x10`, `1e3` or empty value that Number() would take). */
const wholeNumber = storableString.regex(/^\d{1,15}$/, 'a non-negative whole number').transform(Number);
const pageLimit = wholeNumber.pipe(z.number().min(1).max(1000));

export const messagesQuery = z.strictObject({
  after: wholeNumber.default(0),
  limit: pageLimit.default(100),
});

export const messagesPage = z.object({ items: z.array(message), nextCursor: z.number().nullable() });

export const thread = z.object({
  threadId: z.string(),
  status: z.enum(THREAD_STATUSES),
  version: z.number(),
  activeRunId: z.string().nullable(),
  queuedRunIds: z.array(z.string()),
  latestRunId: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const termination = terminationSchema;

export const run = z.object({
  runId: z.string(),
  threadId: z.string(),
  agentId: z.string(),
  dispatchId: z.string(),
  mode: z.string(),
  status: z.enum(RUN_STATUSES),
  termination: termination.nullable(),
  inputMessageIds: z.array(z.string()),
  waiting: z.unknown(),
  steps: z.number(),
  usage: usageSchema,
  error: z.string().nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  updatedAt: z.string(),
  /** the run's Temporal workflow: what to look for in the Temporal UI */
  workflowId: z.string(),
});

export const health = z.object({
  status: z.enum(['ok', 'unavailable']),
  postgres: z.string(),
  temporal: z.string(),
});

export const durableMessageBody = z.strictObject({
  messageId: id,
  text: storableString.min(1).max(256 * 1024, 'a message is at most 256 KiB'),
  senderAgentId: id.optional(),
  agentId: id.optional(),
});
export type DurableMessageBody = z.infer<typeof durableMessageBody>;

export const durableMessageResponse = submitResponse.extend({ duplicate: z.boolean() });

export const decisionBody = z.strictObject({
  toolCallId: id,
  action: z.enum(['approve', 'deny']),
  reason: storableString.max(4096).optional(),
});

export const decisionResponse = z.object({ runId: z.string(), toolCallId: z.string(), duplicate: z.boolean() });

export const cancelResponse = z.object({ runId: z.string(), status: z.literal('cancel_requested') });

export const interruptResponse = z.object({ threadId: z.string(), cancelledRunId: z.string().nullable(), supersededRunIds: z.array(z.string()) });

export const dispatch = z.object({
  dispatchId: z.string(),
  runId: z.string(),
  status: z.enum(DISPATCH_STATUSES),
  mode: z.string(),
  epoch: z.number(),
  attempts: z.number(),
  lastError: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const eventsQuery = z.strictObject({
  after: wholeNumber.optional(),
  limit: pageLimit.default(100),
});

export const runEvent = runEventSchema.meta({ id: 'RunEvent' });

export const eventsPage = z.object({ items: z.array(runEvent), nextCursor: z.number().nullable() });

export const awakenRunBody = z.strictObject({
  threadId: id.optional(),
  agentId: id.optional(),
  messages: submitBody.shape.messages,
});

/**
 * A UIMessage as `useChat` posts it. Only the newest message is acted on (and its strings checked as
 * storable there): older ones are the client's copy of the thread, which the server already holds.
 */
const uiPart = z.looseObject({ type: z.string(), text: z.unknown().optional(), state: z.unknown().optional() });
export const uiMessageInput = z.looseObject({ id: z.string(), role: z.enum(['system', 'user', 'assistant']), parts: z.array(uiPart).max(10_000) });
export type UiMessageInput = z.infer<typeof uiMessageInput>;

/** DefaultChatTransport's request: `id` is the thread id; the fields a `useChat` app adds to `body` pass through (mode, agentId). */
export const chatBody = z.looseObject({
  id,
  messages: z.array(uiMessageInput).min(1, 'at least one message').max(10_000, 'at most 10,000 messages'),
  trigger: z.enum(['submit-message', 'regenerate-message']),
  messageId: z.string().optional(),
  mode: submitBody.shape.mode,
  agentId: id.optional(),
});
export type ChatBody = z.infer<typeof chatBody>;

/** The committed log as AI SDK UIMessages: described loosely (the AI SDK's own type is the reference). */
export const uiMessagesResponse = z.array(z.object({ id: z.string(), role: z.enum(['system', 'user', 'assistant']), parts: z.array(z.unknown()), metadata: z.unknown().optional() }));
