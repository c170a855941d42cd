// What the routes ask for: submits go to the thread workflow by Update-With-Start; reads come from the store.
import { Client, WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure, defineSearchAttributeKey } from '@temporalio/common';
import { v7 as uuidv7 } from 'uuid';
import type { AgentRegistry } from '../agent/agents.js';
import type { Store, ThreadRef } from '../store/store.js';
import { submitUpdate, type threadWorkflow } from '../../workflows/thread.js';
import { threadWorkflowId, type SubmitInput, type SubmitResult } from '../../workflows/types.js';
import { ApiError, notFound } from './errors.js';
import type { SubmitBody } from './schemas.js';

const ThreadIdKey = defineSearchAttributeKey('ThreadId', 'KEYWORD');

export class ThreadboxService {
  constructor(
    private readonly store: Store,
    private readonly temporal: Client,
    private readonly agents: AgentRegistry,
    private readonly taskQueue: string,
  ) {}

  async submitRun(ref: ThreadRef, body: SubmitBody, idempotencyKey?: string): Promise<SubmitResult> {
    const agentId = body.agentId ?? 'default';
    const agent = this.agents.get(agentId);
    if (!agent) throw new ApiError('invalid_request', `unknown agent "${agentId}" (known: ${this.agents.ids().join(', ')})`);
    const input: SubmitInput = {
      runId: body.runId ?? uuidv7(),
      dispatchId: uuidv7(),
      mode: body.mode,
      agent: { agentId, maxSteps: agent.maxSteps },
      messages: body.messages.map((m) => ({ messageId: m.id ?? uuidv7(), role: m.role, content: m.content })),
      ...(body.expectedRunId ? { expectedRunId: body.expectedRunId } : {}),
    };
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

  /** Readiness: each dependency is "ok" or says why it is not. */
  async health(): Promise<{ status: 'ok' | 'unavailable'; postgres: string; temporal: string }> {
    const check = (work: Promise<unknown>) =>
      withTimeout(work, 2000).then(
        () => 'ok',
        (err: Error) => `down: ${err.message}`,
      );
    const [postgres, temporal] = await Promise.all([
      check(this.store.pool.query('SELECT 1')),
      check(this.temporal.workflowService.getSystemInfo({})),
    ]);
    return { status: postgres === 'ok' && temporal === 'ok' ? 'ok' : 'unavailable', postgres, temporal };
  }
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  return Promise.race([work, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref())]);
}

function toApiError(err: unknown): unknown {
  if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure) {
    if (err.cause.type === 'active_run_conflict') return new ApiError('active_run_conflict', err.cause.message);
    return new ApiError('invalid_request', err.cause.message);
  }
  if (err instanceof WorkflowUpdateFailedError) return new ApiError('invalid_request', (err.cause as Error | undefined)?.message ?? err.message);
  return err;
}
