// The AI SDK chat protocol on the mailbox: what a `useChat` POST means (a submit, decisions, a regenerate),
// which run its answer streams, and the thread's log as UIMessage[].
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Store, ThreadRef } from '../store/store.js';
import { REGENERATE_OF, toUIMessages, type ThreadUIMessage } from '../protocols/ui-messages.js';
import { ApiError } from './errors.js';
import { id, storableString, type ChatBody, type UiMessageInput } from './schemas.js';
import type { ThreadboxService } from './service.js';

/** What a chat request's answer is: a run's stream (from `after`), or, for steering, just word that it was applied. */
export type ChatAnswer = { runId: string; after: number; submitted: boolean } | { steeredInto: string };

const MAX_TEXT = 256 * 1024;
/** each response is an update to the run's workflow: a request may not fan out without bound */
const MAX_DECISIONS = 100;
/** A chat message id becomes part of its run's id (`run-<id>`), which must stay a valid id. */
const chatMessageId = id.max(120, 'a chat message id is at most 120 characters');
const userText = storableString.min(1, 'the message has no text').max(MAX_TEXT, 'a message is at most 256 KiB');

export class ChatService {
  constructor(
    private readonly threadbox: ThreadboxService,
    private readonly store: Store,
  ) {}

  async answer(tenant: string, body: ChatBody): Promise<ChatAnswer> {
    const ref = { tenant, threadId: body.id };
    if (body.trigger === 'regenerate-message') return this.regenerate(ref, body);
    const index = body.messages.length - 1;
    const newest = body.messages[index]!;
    if (newest.role === 'assistant') return this.decide(ref, newest, index);
    if (newest.role !== 'user') throw new ApiError('invalid_request', `messages[${index}]: the newest message must be the user's (or the assistant's with approval responses)`);
    const messageId = parse(chatMessageId, newest.id, `messages[${index}].id`);
    const content = textOf(newest, index);
    const runId = `run-${messageId}`;
    const result = await this.threadbox.submitRun(ref, { messages: [{ id: messageId, role: 'user', content }], mode: body.mode, agentId: body.agentId, runId }, `chat-${messageId}`);
    if (result.status === 'steered') return { steeredInto: result.runId };
    return { runId: result.runId, after: 0, submitted: true };
  }

  /** The thread's log as UIMessage[]; a run still going is left out (its stream replays it whole). */
  async uiMessages(ref: ThreadRef): Promise<ThreadUIMessage[]> {
    await this.threadbox.getThread(ref);
    const [log, runs] = await Promise.all([this.wholeLog(ref), this.store.listRuns(ref)]);
    const live = new Set(runs.filter((r) => r.status !== 'done').map((r) => r.runId));
    return toUIMessages(log.filter((m) => !(m.role !== 'user' && m.role !== 'system' && m.runId && live.has(m.runId))), runs);
  }

  /** The run a resuming client should see: the thread's active one, if any. */
  async activeRun(ref: ThreadRef): Promise<string | undefined> {
    const thread = await this.store.getThread(ref);
    return thread?.activeRunId ?? undefined;
  }

  /** Approval responses (`approval-responded` tool parts) become decisions; the answer is the run's continuation. */
  private async decide(ref: ThreadRef, message: UiMessageInput, index: number): Promise<ChatAnswer> {
    const runId = parse(id, message.id, `messages[${index}].id`);
    const responses = message.parts.flatMap((part, p) => {
      if (part.state !== 'approval-responded') return [];
      const response = approvalResponse.safeParse(part);
      if (!response.success) throw new ApiError('invalid_request', `messages[${index}].parts[${p}]: ${response.error.issues[0]?.message}`);
      return [response.data];
    });
    if (responses.length === 0) throw new ApiError('invalid_request', `messages[${index}]: an assistant message carries nothing to submit without an approval response`);
    if (responses.length > MAX_DECISIONS) throw new ApiError('invalid_request', `messages[${index}]: at most ${MAX_DECISIONS} approval responses at once`);
    const run = await this.threadbox.getRun(ref.tenant, runId);
    if (run.threadId !== ref.threadId) throw new ApiError('not_found', `run ${runId} not found in thread ${ref.threadId}`);
    // All or nothing: a response to a call the run is not waiting for refuses the request before any decision.
    if (run.status === 'waiting') {
      const asked = new Set(awaitedToolCallIds(run.waiting));
      const stray = responses.find((r) => !asked.has(r.toolCallId));
      if (stray) throw new ApiError('no_pending_approval', `run ${runId} is not waiting for a decision on tool call ${stray.toolCallId}`);
    }
    for (const r of responses) {
      const decision = { toolCallId: r.toolCallId, action: r.approval.approved ? ('approve' as const) : ('deny' as const), ...(r.approval.reason ? { reason: r.approval.reason } : {}) };
      try {
        await this.threadbox.decide(ref.tenant, runId, decision);
      } catch (err) {
        // A repeated request after the run went on: its stream shows what the decision led to.
        if (!(err instanceof ApiError && err.code === 'no_pending_approval' && (await this.threadbox.getRun(ref.tenant, runId)).status === 'done')) throw err;
      }
    }
    return { runId, after: await this.store.lastEventSeq(runId, 'tool_approval_requested', ref.tenant), submitted: false };
  }

  /**
   * The last user message again, as a new run that replaces an earlier answer (the request's `messageId`,
   * else the thread's latest run). Its ids derive from what it regenerates: a repeated request is the same run.
   */
  private async regenerate(ref: ThreadRef, body: ChatBody): Promise<ChatAnswer> {
    const index = body.messages.findLastIndex((m) => m.role === 'user');
    if (index < 0) throw new ApiError('invalid_request', 'messages: regenerating needs a user message to answer');
    const question = body.messages[index]!;
    const content = textOf(question, index);
    const named = body.messageId !== undefined && body.messageId !== question.id ? parse(id, body.messageId, 'messageId') : undefined;
    const replaces = named ?? (await this.store.getThread(ref))?.latestRunId ?? undefined;
    const runId = `regen-${createHash('sha256').update(`${ref.threadId}\u0000${replaces ?? ''}\u0000${question.id}`).digest('hex').slice(0, 32)}`;
    const metadata = replaces ? { [REGENERATE_OF]: replaces } : undefined;
    const messages = [{ id: `${runId}:input`, role: 'user' as const, content }];
    const result = await this.threadbox.submitRun(ref, { messages, mode: body.mode, agentId: body.agentId, runId }, `chat-${runId}`, metadata);
    if (result.status === 'steered') return { steeredInto: result.runId };
    return { runId: result.runId, after: 0, submitted: true };
  }

  private async wholeLog(ref: ThreadRef) {
    const log = [];
    for (let after = 0; ; ) {
      const page = await this.store.loadCommittedMessages(ref, after, 1000);
      log.push(...page);
      if (page.length < 1000) return log;
      after = page[page.length - 1]!.seq;
    }
  }
}

/** The tool calls a waiting run's record says it awaits decisions on (`waiting.tickets`). */
export function awaitedToolCallIds(waiting: unknown): string[] {
  return ((waiting as { tickets?: { toolCallId: string }[] } | null)?.tickets ?? []).map((t) => t.toolCallId);
}

const approvalResponse = z.object({
  toolCallId: id,
  approval: z.object({ id: storableString, approved: z.boolean(), reason: storableString.max(4096).optional() }),
});

/** A user message's text parts, joined: what the submit commits. */
function textOf(message: UiMessageInput, index: number): string {
  const text = message.parts.flatMap((part) => (part.type === 'text' && typeof part.text === 'string' ? [part.text] : [])).join('\n');
  return parse(userText, text, `messages[${index}].parts`);
}

function parse<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new ApiError('invalid_request', `${field}: ${result.error.issues[0]?.message}`);
  return result.data;
}
