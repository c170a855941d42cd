// What the routes ask for: submits go to the thread workflow by Update-With-Start; reads come from the store.
import { Client, WithStartWorkflowOperation, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure, defineSearchAttributeKey } from '@temporalio/common';
import { v7 as uuidv7 } from 'uuid';
import type { AgentRegistry } from '../agent/agents.js';
import { builtinTools } from '../agent/tools.js';
import type { Store, ThreadRef } from '../store/store.js';
import type { EventSubscriber, OnEvents, Unsubscribe } from '../store/subscriber.js';
import { decideUpdate } from '../../workflows/run.js';
import { cancelRunUpdate, interruptUpdate, submitUpdate, type threadWorkflow } from '../../workflows/thread.js';
import {
  durableRunId,
  runWorkflowId,
  threadWorkflowId,
  type CancelResult,
  type Decision,
  type InterruptResult,
  type SubmitInput,
  type SubmitResult,
} from '../../workflows/types.js';
import type { OperationalCounts } from '../store/store.js';
import { ApiError, notFound } from './errors.js';
import type { DurableMessageBody, SubmitBody } from './schemas.js';

const ThreadIdKey = defineSearchAttributeKey('ThreadId', 'KEYWORD');

export class ThreadboxService {
  constructor(
    private readonly store: Store,
    private readonly temporal: Client,
    private readonly agents: AgentRegistry,
    private readonly taskQueue: string,
    private readonly subscriber: EventSubscriber,
  ) {}

  /** A page of a run's events after `after` (a seq). */
  async runEventsPage(tenant: string, runId: string, after: number, limit: number) {
    await this.getRun(tenant, runId);
    const items = await this.store.readEvents(runId, after, limit);
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
    const ended = run.status === 'done' && (await this.store.readEvents(runId, after, 1)).length === 0;
    const onEvents = open();
    return ended ? undefined : this.subscriber.subscribeRun(runId, after, onEvents);
  }

  async followThread(ref: ThreadRef, after: number, open: () => OnEvents): Promise<Unsubscribe> {
    await this.getThread(ref);
    return this.subscriber.subscribeThread(ref, after, open());
  }

  async submitRun(ref: ThreadRef, body: SubmitBody, idempotencyKey?: string): Promise<SubmitResult> {
    if (body.runId) await this.assertRunIdFree(ref, body.runId, idempotencyKey !== undefined);
    return this.submit(ref, {
      runId: body.runId ?? uuidv7(),
      dispatchId: uuidv7(),
      mode: body.mode,
      agent: this.agentSettings(body.agentId),
      messages: body.messages.map((m) => ({ messageId: m.id ?? uuidv7(), role: m.role, content: m.content })),
      ...(body.expectedRunId ? { expectedRunId: body.expectedRunId } : {}),
    }, idempotencyKey);
  }

  /** A durable cross-thread message: run `durable-msg-<messageId>`; a redelivery returns the first result. */
  async deliverDurableMessage(ref: ThreadRef, body: DurableMessageBody): Promise<SubmitResult & { duplicate: boolean }> {
    const runId = durableRunId(body.messageId);
    const owner = await this.store.findRunOwner(runId);
    // A redelivery to the same thread is the workflow's to answer (the first result); the same id
    // sent to another thread, maybe another tenant's, must not be taken for it.
    if (owner && !isOwnedBy(owner, ref)) {
      throw new ApiError('invalid_request', `messageId ${body.messageId} was already delivered to another thread; message ids must be unique`);
    }
    const result = await this.submit(ref, {
      runId,
      dispatchId: uuidv7(),
      mode: 'queue',
      durable: true,
      agent: this.agentSettings(body.agentId),
      messages: [{ messageId: body.messageId, role: 'user', content: body.text, ...(body.senderAgentId ? { metadata: { senderAgentId: body.senderAgentId } } : {}) }],
    });
    return { ...result, duplicate: result.duplicate ?? false };
  }

  async cancelRun(tenant: string, runId: string): Promise<CancelResult> {
    const run = await this.getRun(tenant, runId);
    if (run.status === 'done') throw new ApiError('run_not_active', `run ${runId} already ended (${run.termination?.type})`);
    try {
      return await this.temporal.workflow.getHandle(threadWorkflowId(tenant, run.threadId)).executeUpdate(cancelRunUpdate, { args: [{ runId }] });
    } catch (err) {
      throw toApiError(err);
    }
  }

  async interruptThread(ref: ThreadRef): Promise<InterruptResult> {
    await this.getThread(ref);
    try {
      return await this.temporal.workflow.getHandle(threadWorkflowId(ref.tenant, ref.threadId)).executeUpdate(interruptUpdate);
    } catch (err) {
      throw toApiError(err);
    }
  }

  async decide(tenant: string, runId: string, decision: Decision): Promise<{ runId: string; toolCallId: string; duplicate: boolean }> {
    const run = await this.getRun(tenant, runId);
    if (run.status === 'done') throw new ApiError('no_pending_approval', `run ${runId} has ended; no approval is pending`);
    try {
      const result = await this.temporal.workflow.getHandle(runWorkflowId(runId)).executeUpdate(decideUpdate, { args: [decision] });
      return { runId, ...result };
    } catch (err) {
      throw toApiError(err, 'no_pending_approval');
    }
  }

  async listDispatches(ref: ThreadRef) {
    await this.getThread(ref);
    return this.store.listDispatches(ref);
  }

  /**
   * Run ids are global (the runs table's key, the run workflow's id), not per tenant: a run id taken
   * by another thread, maybe another tenant's, must never reach the workflow, which would take that
   * run for its own. One of this thread's run ids passes only with an Idempotency-Key: a retry, which
   * the workflow answers with its first result.
   */
  private async assertRunIdFree(ref: ThreadRef, runId: string, isRetry: boolean) {
    const owner = await this.store.findRunOwner(runId);
    if (!owner) return;
    if (!isOwnedBy(owner, ref)) {
      throw new ApiError('invalid_request', `runId ${runId} is already used by another thread; omit runId to get a generated one`);
    }
    if (!isRetry) throw new ApiError('invalid_request', `run ${runId} already exists; a retried submit must carry the same Idempotency-Key`);
  }

  private agentSettings(agentId = 'default') {
    const agent = this.agents.get(agentId);
    if (!agent) throw new ApiError('invalid_request', `unknown agent "${agentId}" (known: ${this.agents.ids().join(', ')})`);
    // A call to a tool outside the agent's list never waits for approval: runTool refuses it.
    return { agentId, maxSteps: agent.maxSteps, approvalTools: agent.tools.filter((name) => builtinTools[name]?.needsApproval) };
  }

  private async submit(ref: ThreadRef, input: SubmitInput, idempotencyKey?: string): Promise<SubmitResult> {
    const workflowId = threadWorkflowId(ref.tenant, ref.threadId);
    const startWorkflowOperation = new WithStartWorkflowOperation<typeof threadWorkflow>('threadWorkflow', {
      workflowId,
      taskQueue: this.taskQueue,
      args: [{ tenant: ref.tenant, threadId: ref.threadId }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: [{ key: ThreadIdKey, value: ref.threadId }],
      staticSummary: `thread ${ref.threadId}`,
    });
    try {
      return await this.temporal.workflow.executeUpdateWithStart(submitUpdate, {
        args: [input],
        updateId: idempotencyKey ?? uuidv7(),
        startWorkflowOperation,
      });
    } catch (err) {
      throw toApiError(err);
    }
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
      check(this.temporal.withDeadline(Date.now() + 1500, () => this.temporal.workflowService.getSystemInfo({}))),
    ]);
    return { status: postgres === 'ok' && temporal === 'ok' ? 'ok' : 'unavailable', postgres, temporal };
  }
}

const isOwnedBy = (owner: ThreadRef, ref: ThreadRef) => owner.tenant === ref.tenant && owner.threadId === ref.threadId;

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  return Promise.race([work, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref())]);
}

const CONFLICTS = new Set(['active_run_conflict', 'no_pending_approval', 'run_not_active']);

/** Maps a rejected update to the contract's codes; `whenGone` is the code for a workflow that has completed. */
function toApiError(err: unknown, whenGone: 'run_not_active' | 'no_pending_approval' = 'run_not_active'): unknown {
  if (err instanceof WorkflowUpdateFailedError) {
    const cause = err.cause;
    if (cause instanceof ApplicationFailure && cause.type && CONFLICTS.has(cause.type)) return new ApiError(cause.type as 'active_run_conflict', cause.message);
    return new ApiError('invalid_request', (cause as Error | undefined)?.message ?? err.message);
  }
  if (err instanceof WorkflowNotFoundError || /workflow execution already completed/i.test((err as Error)?.message ?? '')) {
    return new ApiError(whenGone, whenGone === 'run_not_active' ? 'the run is not active' : 'no approval is pending: the run has ended');
  }
  return err;
}
