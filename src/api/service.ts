// What the routes ask for: submits go to the thread workflow by Update-With-Start; reads come from the store.
import { Client, WithStartWorkflowOperation, WorkflowNotFoundError, WorkflowUpdateFailedError, WorkflowUpdateStage } from '@temporalio/client';
import { ApplicationFailure, defineSearchAttributeKey } from '@temporalio/common';
import { createHash } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { AgentRegistry } from '../agent/agents.js';
import type { Store, ThreadRef } from '../store/store.js';
import type { EventSubscriber, OnEvents, Unsubscribe } from '../store/subscriber.js';
import { cancelRunUpdate, decideUpdate, interruptUpdate, submitUpdate, THREAD_WORKFLOW_TYPE, type ThreadWorkflow } from '../contract/messages.js';
import {
  durableRunId,
  threadWorkflowId,
  type CancelResult,
  type Decision,
  type InterruptResult,
  type SubmitInput,
  type SubmitResult,
} from '../contract/mailbox.js';
import type { OperationalCounts } from '../store/store.js';
import { ApiError, notFound } from './errors.js';
import { NotAdmitted, TemporalCalls, TemporalLink } from './temporal-calls.js';
import type { DurableMessageBody, SubmitBody } from './schemas.js';

const ThreadIdKey = defineSearchAttributeKey('ThreadId', 'KEYWORD');
/** Updates are started, then awaited: `calls` gives each step its own deadline. */
const ACCEPTED = { waitForStage: WorkflowUpdateStage.ACCEPTED };

export class ThreadboxService {
  constructor(
    readonly store: Store,
    private readonly temporal: Client,
    private readonly agents: AgentRegistry,
    private readonly taskQueue: string,
    private readonly subscriber: EventSubscriber,
    /** the bounded update calls; without it, this client's with the default bounds */
    private readonly calls = new TemporalCalls(temporal, new TemporalLink(), { maxInFlight: 64, maxInFlightPerWorkflow: 8 }),
  ) {}

  /** A page of a run's events after `after` (a seq). */
  async runEventsPage(tenant: string, runId: string, after: number, limit: number) {
    await this.getRun(tenant, runId);
    const items = await this.store.readEvents(runId, after, limit, tenant);
    return { items, nextCursor: items.length ? items[items.length - 1]!.seq : null };
  }

  /** A page of a thread's events after `after` (a global event id). */
  async threadEventsPage(ref: ThreadRef, after: number, limit: number) {
    await this.getThread(ref);
    const items = await this.store.readThreadEvents(ref, after, limit);
    return { items, nextCursor: items.length ? items[items.length - 1]!.id : null };
  }

  /**
   * Follows a run's events after `after`, in order, live. `open` is called once the run is known to
   * be this tenant's (so a 404 is still a plain JSON answer) and returns where events go. Resolves to
   * undefined when the run has ended and nothing is left to send.
   */
  async followRun(tenant: string, runId: string, after: number, open: () => OnEvents): Promise<Unsubscribe | undefined> {
    const run = await this.getRun(tenant, runId);
    const ended = run.status === 'done' && (await this.store.readEvents(runId, after, 1, tenant)).length === 0;
    const onEvents = open();
    return ended ? undefined : this.subscriber.subscribeRun(runId, after, onEvents, tenant);
  }

  async followThread(ref: ThreadRef, after: number, open: () => OnEvents): Promise<Unsubscribe> {
    await this.getThread(ref);
    return this.subscriber.subscribeThread(ref, after, open());
  }

  /**
   * A run id (the client's or a generated one) is claimed by the thread workflow in Postgres, where
   * (tenant, run id) is unique: of two concurrent claims one wins and the other is `409 conflict`.
   */
  async submitRun(ref: ThreadRef, body: SubmitBody, idempotencyKey?: string, metadata?: Record<string, unknown>): Promise<SubmitResult> {
    const requestHash = hashRequest({ kind: 'submit', threadId: ref.threadId, ...body, metadata });
    // A message id names one message of the thread: reusing one would leave the run unable to commit it.
    // (A retry of this very request, with its key or its runId, is answered by Temporal or the run id claim.)
    const clientIds = body.messages.flatMap((m) => (m.id ? [m.id] : []));
    const used = clientIds.length > 0 ? await this.store.findUsedMessageIds(ref, clientIds) : [];
    if (used.length > 0 && !(await this.isRetry(ref, requestHash, idempotencyKey, body.runId))) {
      throw new ApiError('conflict', `message id ${used[0]} is already used in thread ${ref.threadId}`);
    }
    return this.submit(ref, {
      runId: body.runId ?? uuidv7(),
      dispatchId: uuidv7(),
      mode: body.mode,
      agent: this.agentSettings(body.agentId),
      messages: body.messages.map((m) => ({ messageId: m.id ?? uuidv7(), role: m.role, content: m.content, ...(metadata ? { metadata } : {}) })),
      requestHash,
      ...(body.expectedRunId ? { expectedRunId: body.expectedRunId } : {}),
    }, idempotencyKey);
  }

  /** A durable cross-thread message: run `durable-msg-<messageId>`; a redelivery returns the first result. */
  async deliverDurableMessage(ref: ThreadRef, body: DurableMessageBody): Promise<SubmitResult & { duplicate: boolean }> {
    // Message ids are the tenant's own: the run id claim (tenant, `durable-msg-<messageId>`) tells a
    // redelivery (same thread, same message: the first result) from a conflict (another thread: 409
    // conflict; another text: 409 idempotency_conflict). Another tenant's ids are invisible.
    const runId = durableRunId(body.messageId);
    const result = await this.submit(ref, {
      runId,
      dispatchId: uuidv7(),
      mode: 'queue',
      durable: true,
      requestHash: hashRequest({ kind: 'durable', threadId: ref.threadId, ...body }),
      agent: this.agentSettings(body.agentId),
      messages: [{ messageId: body.messageId, role: 'user', content: body.text, ...(body.senderAgentId ? { metadata: { senderAgentId: body.senderAgentId } } : {}) }],
    });
    return { ...result, duplicate: result.duplicate ?? false };
  }

  async cancelRun(tenant: string, runId: string): Promise<CancelResult> {
    const run = await this.getRun(tenant, runId);
    if (run.status === 'done') throw new ApiError('run_not_active', `run ${runId} already ended (${run.termination?.type})`);
    try {
      // With start: a thread workflow an operator terminated is rebuilt from Postgres, its queue intact, and answers.
      const ref = { tenant, threadId: run.threadId };
      return await this.calls.update(threadWorkflowId(tenant, run.threadId), () =>
        this.temporal.workflow.startUpdateWithStart(cancelRunUpdate, { args: [{ runId }], startWorkflowOperation: this.startThread(ref), ...ACCEPTED }),
      );
    } catch (err) {
      throw toApiError(err);
    }
  }

  async interruptThread(ref: ThreadRef): Promise<InterruptResult> {
    await this.getThread(ref);
    try {
      return await this.calls.update(threadWorkflowId(ref.tenant, ref.threadId), () =>
        this.temporal.workflow.startUpdateWithStart(interruptUpdate, { args: [], startWorkflowOperation: this.startThread(ref), ...ACCEPTED }),
      );
    } catch (err) {
      throw toApiError(err);
    }
  }

  async decide(tenant: string, runId: string, decision: Decision): Promise<{ runId: string; toolCallId: string; duplicate: boolean }> {
    const run = await this.getRun(tenant, runId);
    if (run.status === 'done') throw new ApiError('no_pending_approval', `run ${runId} has ended; no approval is pending`);
    try {
      const handle = this.temporal.workflow.getHandle(run.workflowId);
      const result = await this.calls.update(handle.workflowId, () => handle.startUpdate(decideUpdate, { args: [decision], ...ACCEPTED }));
      return { runId, ...result };
    } catch (err) {
      throw toApiError(err, 'no_pending_approval');
    }
  }

  async listDispatches(ref: ThreadRef) {
    await this.getThread(ref);
    return this.store.listDispatches(ref);
  }

  private agentSettings(agentId = 'default') {
    const settings = this.agents.settings(agentId);
    if (!settings) throw new ApiError('invalid_request', `unknown agent "${agentId}" (known: ${this.agents.ids().join(', ')})`);
    return settings;
  }

  /** Reaches the thread workflow, starting it when it is new (or was terminated: it then rebuilds from Postgres). */
  private startThread(ref: ThreadRef) {
    return new WithStartWorkflowOperation<ThreadWorkflow>(THREAD_WORKFLOW_TYPE, {
      workflowId: threadWorkflowId(ref.tenant, ref.threadId),
      taskQueue: this.taskQueue,
      args: [{ tenant: ref.tenant, threadId: ref.threadId }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: [{ key: ThreadIdKey, value: ref.threadId }],
      staticSummary: `thread ${ref.threadId}`,
    });
  }

  /** The thread a key's first submit went to: a retry of `POST /v1/runs` without a threadId goes to the same one. */
  threadOfKey(tenant: string, key: string): Promise<string | undefined> {
    return this.store.threadOfSubmitKey(tenant, key);
  }

  private async submit(ref: ThreadRef, input: SubmitInput, idempotencyKey?: string): Promise<SubmitResult> {
    const workflowId = threadWorkflowId(ref.tenant, ref.threadId);
    const startWorkflowOperation = this.startThread(ref);
    // A key replayed with another request is a conflict, not a replay: Temporal would answer it with the
    // first request's result. The key stays bound to its first request, refused or not (Temporal keeps
    // that answer for the update id), except when the API itself turned it away before Temporal saw it.
    const claimed = idempotencyKey !== undefined && (await this.claimKey(ref, idempotencyKey, input.requestHash!));
    try {
      // The update id is the Idempotency-Key: a retry gets the first submit's answer, also after a 503.
      return await this.calls.update(workflowId, () =>
        this.temporal.workflow.startUpdateWithStart(submitUpdate, {
          args: [input],
          updateId: idempotencyKey ?? uuidv7(),
          startWorkflowOperation,
          ...ACCEPTED,
        }),
      );
    } catch (err) {
      const apiError = toApiError(err);
      if (claimed && apiError instanceof NotAdmitted) await this.store.releaseSubmitKey(ref.tenant, idempotencyKey!).catch(() => {});
      throw apiError;
    }
  }

  /** Whether a request was seen before: its key, or its run id, already carries this very request. */
  private async isRetry(ref: ThreadRef, requestHash: string, key?: string, runId?: string): Promise<boolean> {
    if (key && (await this.store.submitKeyHash(ref.tenant, key)) === requestHash) return true;
    return runId !== undefined && (await this.store.getRun(runId, ref.tenant))?.requestHash === requestHash;
  }

  /** true when this request is the key's first use, false for a replay of the same request; a different request is 409. */
  private async claimKey(ref: ThreadRef, key: string, requestHash: string): Promise<boolean> {
    const claim = await this.store.claimSubmitKey(ref, key, requestHash);
    if (claim === 'conflict') throw new ApiError('idempotency_conflict', `Idempotency-Key ${key} was already used with a different request`);
    return claim === 'claimed';
  }

  async getThread(ref: ThreadRef) {
    const thread = await this.store.getThread(ref);
    if (!thread) throw notFound(`thread ${ref.threadId}`);
    return thread;
  }

  listThreads(tenant: string) {
    return this.store.listThreads(tenant);
  }

  async listMessages(ref: ThreadRef, after: number, limit: number) {
    await this.getThread(ref);
    const items = await this.store.loadCommittedMessages(ref, after, limit + 1);
    const page = items.slice(0, limit);
    return { items: page, nextCursor: items.length > limit ? page[page.length - 1]!.seq : null };
  }

  async getRun(tenant: string, runId: string) {
    const run = await this.store.getRun(runId, tenant);
    if (!run) throw notFound(`run ${runId}`);
    return run;
  }

  async listRuns(ref: ThreadRef) {
    await this.getThread(ref);
    return this.store.listRuns(ref);
  }

  /** The run and dispatch counts behind /metrics. */
  operationalCounts(): Promise<OperationalCounts> {
    return withTimeout(this.store.readOperationalCounts(), 2000);
  }

  /** Readiness: each dependency is "ok" or says why it is not. */
  async health(): Promise<{ status: 'ok' | 'unavailable'; postgres: string; temporal: string }> {
    const check = (work: Promise<unknown>) =>
      withTimeout(work, 2000).then(
        () => 'ok',
        (err: Error) => `down: ${err.message}`,
      );
    // The deadline also ends the client's own retries of a refused connection, which would otherwise
    // keep going in the background long after this check has answered.
    const [postgres, temporal] = await Promise.all([
      check(this.store.pool.query('SELECT 1')),
      this.calls.check(1500),
    ]);
    return { status: postgres === 'ok' && temporal === 'ok' ? 'ok' : 'unavailable', postgres, temporal };
  }
}

/** A stable hash of a request's content: what tells a retry of it from another request under the same id or key. */
function hashRequest(request: Record<string, unknown>): string {
  const canonical = (value: unknown): unknown =>
    Array.isArray(value) ? value.map(canonical) : value && typeof value === 'object' ? Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, canonical(v)])) : value;
  return createHash('sha256').update(JSON.stringify(canonical(request))).digest('hex');
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  return Promise.race([work, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref())]);
}

const CONFLICTS = new Set(['active_run_conflict', 'no_pending_approval', 'run_not_active', 'conflict', 'idempotency_conflict', 'invalid_request']);

/** Maps a rejected update to the contract's codes; `whenGone` is the code for a workflow that has completed. */
function toApiError(err: unknown, whenGone: 'run_not_active' | 'no_pending_approval' = 'run_not_active'): unknown {
  if (err instanceof ApiError) return err;
  if (err instanceof WorkflowUpdateFailedError) {
    // The handler's own refusal, or a store activity's (a run id claimed by another thread), under the activity failure.
    for (let cause: unknown = err.cause; cause instanceof Error; cause = cause.cause) {
      if (cause instanceof ApplicationFailure && cause.type && CONFLICTS.has(cause.type)) return new ApiError(cause.type as 'active_run_conflict', cause.message);
    }
    return new ApiError('invalid_request', err.cause?.message ?? err.message);
  }
  if (err instanceof WorkflowNotFoundError || /workflow execution already completed/i.test((err as Error)?.message ?? '')) {
    return new ApiError(whenGone, whenGone === 'run_not_active' ? 'the run is not active' : 'no approval is pending: the run has ended');
  }
  return err;
}
