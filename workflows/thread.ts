// The mailbox of one thread: submits, interrupts and cancels come in as updates (or signals); runs go out as child workflows.
import {
  ApplicationFailure,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  currentUpdateInfo,
  defineQuery,
  defineSignal,
  defineUpdate,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setHandler,
  startChild,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { Mailbox } from './mailbox.js';
import { runEndedSignal, runWorkflow, steerRunSignal, stopRunSignal } from './run.js';
import {
  runWorkflowId,
  type CancelResult,
  type Dispatch,
  type InterruptResult,
  type MailboxState,
  type RunEnded,
  type StopReason,
  type SubmitInput,
  type SubmitResult,
  type ThreadWorkflowInput,
} from './types.js';

export const submitUpdate = defineUpdate<SubmitResult, [SubmitInput]>('submit');
export const cancelRunUpdate = defineUpdate<CancelResult, [{ runId: string }]>('cancelRun');
export const interruptUpdate = defineUpdate<InterruptResult, []>('interrupt');
export const submitSignal = defineSignal<[SubmitInput]>('submit');
export const interruptSignal = defineSignal<[]>('interrupt');
export const mailboxQuery = defineQuery<MailboxState>('mailbox');

/** How long a foreground submit waits for the run it interrupts to settle. */
const SETTLE_TIMEOUT = '5 seconds';
/** Results kept for retried submits across continue-as-new. */
const RECENT_RESULTS = 500;

// Regular, not local, activities: their completions are history events ordered with the updates
// and signals around them, which keeps replay of concurrent submits deterministic.
const store = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '100 milliseconds', maximumInterval: '5 seconds', nonRetryableErrorTypes: ['illegal_transition', 'not_found'] },
});

export async function threadWorkflow(input: ThreadWorkflowInput): Promise<void> {
  const { tenant, threadId } = input;
  const ref = { tenant, threadId };
  const mailbox = new Mailbox(input.state?.mailbox);
  const recentResults = new Map(input.state?.recentResults ?? []);
  let busy = false; // mailbox changes run one at a time, in arrival order

  setHandler(submitUpdate, (submit) => exclusive(() => submitWithIdempotency(submit)), {
    validator: validateSubmit,
    description: 'Submit messages: interrupt the active run (default), queue behind it, or steer it',
  });
  setHandler(cancelRunUpdate, ({ runId }) => exclusive(() => cancelRun(runId)), { description: 'Cancel a queued or active run' });
  setHandler(interruptUpdate, () => exclusive(() => interruptThread()), { description: 'Cancel the active run and supersede the queue' });
  setHandler(submitSignal, (submit) => void exclusive(() => submitWithIdempotency(submit)).catch((err) => log.warn('signalled submit rejected', { err })), {
    description: 'Submit for callers that cannot wait for an update (other workflows); same logic as the update',
  });
  setHandler(interruptSignal, () => void exclusive(() => interruptThread()).catch((err) => log.warn('signalled interrupt failed', { err })), {
    description: 'Interrupt for callers that cannot wait for an update',
  });
  setHandler(mailboxQuery, () => mailbox.snapshot(), { description: 'The queue, the active run and the epoch' });
  setHandler(runEndedSignal, (ended) => void onRunEnded(ended), { description: 'A run workflow reports that it ended' });

  async function exclusive<T>(work: () => Promise<T>): Promise<T> {
    // Several waiters can wake in one activation: each re-checks before taking the lock.
    while (busy) await condition(() => !busy);
    busy = true;
    try {
      return await work();
    } finally {
      busy = false;
    }
  }

  async function submitWithIdempotency(submit: SubmitInput): Promise<SubmitResult> {
    const key = currentUpdateInfo()?.id;
    const earlier = key ? recentResults.get(key) : undefined;
    if (earlier) return earlier;
    const result = await handleSubmit(submit);
    if (key) {
      recentResults.set(key, result);
      if (recentResults.size > RECENT_RESULTS) recentResults.delete(recentResults.keys().next().value!);
    }
    return result;
  }

  async function handleSubmit(submit: SubmitInput): Promise<SubmitResult> {
    const ids = { threadId, runId: submit.runId, dispatchId: submit.dispatchId };
    const dispatch = { runId: submit.runId, dispatchId: submit.dispatchId, mode: submit.mode, agent: submit.agent };
    const run = { ...dispatch, agentId: submit.agent.agentId, input: submit.messages };

    if (submit.durable) {
      const existing = await store.findRun({ runId: submit.runId });
      if (existing) return { threadId, runId: existing.runId, dispatchId: existing.dispatchId, status: existing.status === 'queued' ? 'queued' : 'running', duplicate: true };
    }

    if (submit.mode === 'steer') {
      const active = mailbox.active;
      if (active && (!submit.expectedRunId || submit.expectedRunId === active.runId) && (await steer(active, submit))) {
        return { ...ids, runId: active.runId, status: 'steered' };
      }
    }

    if (submit.mode === 'interrupt') {
      await settleActive('interrupted');
      await store.createRun({ ref, run: { ...run, epoch: mailbox.epoch + 1 } });
      const { superseded } = mailbox.putFirst(dispatch);
      for (const old of superseded) {
        await store.finishRun({ runId: old.runId, termination: { type: 'superseded', detail: `superseded by ${submit.runId}` } });
      }
      return { ...ids, status: 'running' };
    }

    await store.createRun({ ref, run: { ...run, epoch: mailbox.epoch } });
    const wasIdle = mailbox.idle;
    mailbox.enqueue(dispatch);
    // Steering that found no run to join is reported as queued, even when it starts at once.
    return { ...ids, status: wasIdle && submit.mode === 'queue' ? 'running' : 'queued' };
  }

  /** Delivers steering to the active run; false when it has already ended (the caller queues instead). */
  async function steer(active: Dispatch, submit: SubmitInput): Promise<boolean> {
    await condition(() => mailbox.activeStarted || !mailbox.isActive(active.runId));
    if (!mailbox.isActive(active.runId)) return false;
    try {
      await getExternalWorkflowHandle(runWorkflowId(active.runId)).signal(steerRunSignal, { messages: submit.messages });
      return true;
    } catch {
      return false;
    }
  }

  /** Stops the active run and waits for it to settle; rejects, changing nothing, if it will not. */
  async function settleActive(reason: StopReason): Promise<string | null> {
    const active = mailbox.active;
    if (!active) return null;
    await condition(() => mailbox.activeStarted || !mailbox.isActive(active.runId));
    if (mailbox.isActive(active.runId)) {
      await getExternalWorkflowHandle(runWorkflowId(active.runId)).signal(stopRunSignal, { reason }).catch(() => {});
    }
    if (!(await condition(() => !mailbox.isActive(active.runId), SETTLE_TIMEOUT))) {
      throw ApplicationFailure.create({
        type: 'active_run_conflict',
        message: `run ${active.runId} did not stop within ${SETTLE_TIMEOUT}; nothing was submitted`,
        nonRetryable: true,
      });
    }
    return active.runId;
  }

  async function cancelRun(runId: string): Promise<CancelResult> {
    if (mailbox.isActive(runId)) {
      await condition(() => mailbox.activeStarted || !mailbox.isActive(runId));
      if (mailbox.isActive(runId)) {
        await getExternalWorkflowHandle(runWorkflowId(runId)).signal(stopRunSignal, { reason: 'cancelled' }).catch(() => {});
        return { runId, status: 'cancel_requested' };
      }
    }
    const removed = mailbox.removeQueued(runId);
    if (removed) {
      await store.finishRun({ runId, termination: { type: 'cancelled', detail: 'cancelled before it started' } });
      if (removed.orphanedCarriedRunIds.length) await store.commitPendingInput({ ref, runIds: removed.orphanedCarriedRunIds });
      return { runId, status: 'cancel_requested' };
    }
    throw ApplicationFailure.create({ type: 'run_not_active', message: `run ${runId} is not queued or running` });
  }

  async function interruptThread(): Promise<InterruptResult> {
    const cancelledRunId = await settleActive('interrupted');
    const superseded = mailbox.supersedeQueue();
    // No run supersedes them, so their input is committed now (before they are marked ended): an accepted message is never dropped.
    const runIds = superseded.flatMap((d) => [...d.carriedRunIds, d.runId]);
    if (runIds.length) await store.commitPendingInput({ ref, runIds });
    for (const old of superseded) {
      await store.finishRun({ runId: old.runId, termination: { type: 'superseded', detail: 'the thread was interrupted' } });
    }
    return { threadId, cancelledRunId, supersededRunIds: superseded.map((d) => d.runId) };
  }

  async function onRunEnded(ended: RunEnded) {
    const endedDispatch = mailbox.isActive(ended.runId) ? mailbox.active : null;
    mailbox.runEnded(ended.runId);
    if (ended.unappliedSteering.length === 0 || !endedDispatch) return;
    await exclusive(async () => {
      const settings = endedDispatch.agent;
      const dispatch = { runId: uuid4(), dispatchId: uuid4(), mode: 'steer' as const, agent: settings };
      await store.createRun({ ref, run: { ...dispatch, agentId: settings.agentId, input: ended.unappliedSteering, epoch: mailbox.epoch } });
      mailbox.enqueueFirst(dispatch);
    });
  }

  // The next run starts only while no handler holds the mailbox: a foreground submit that is
  // mid-way must see the run it supersedes still queued, not half-started.
  const startable = () => mailbox.active === null && mailbox.queue.length > 0 && !busy;
  for (;;) {
    await condition(() => startable() || canContinueAsNew());
    if (canContinueAsNew()) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof threadWorkflow>({
        tenant,
        threadId,
        state: { mailbox: mailbox.snapshot(), recentResults: [...recentResults] },
      });
    }
    // Re-checked: a handler may have taken the lock between the wake-up and now.
    if (!startable()) continue;
    const next = mailbox.takeNext()!;
    await startChild(runWorkflow, {
      workflowId: runWorkflowId(next.runId),
      args: [{ tenant, threadId, runId: next.runId, dispatchId: next.dispatchId, agent: next.agent, carriedRunIds: next.carriedRunIds, threadWorkflowId: workflowInfo().workflowId }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      staticSummary: `run ${next.runId} for agent ${next.agent.agentId}`,
      searchAttributes: { ThreadId: [threadId], ThreadboxRunId: [next.runId], AgentId: [next.agent.agentId], RunStatus: ['queued'] },
    });
    mailbox.markStarted(next.runId);
  }

  function canContinueAsNew() {
    return workflowInfo().continueAsNewSuggested && !busy && (mailbox.active === null || mailbox.activeStarted);
  }
}

function validateSubmit(submit: SubmitInput) {
  if (submit.messages.length === 0) throw new Error('a submit needs at least one message');
  if (submit.agent.maxSteps < 1) throw new Error('maxSteps must be at least 1');
}
