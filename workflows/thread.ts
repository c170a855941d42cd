// The mailbox of one thread: submits, interrupts and cancels come in as updates (or signals); runs go out as child workflows.
import {
  ApplicationFailure,
  CancelledFailure,
  ParentClosePolicy,
  TerminatedFailure,
  TimeoutFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  currentUpdateInfo,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { Mailbox } from './mailbox.js';
import { runWorkflow } from './run.js';
import {
  cancelRunUpdate,
  interruptSignal,
  interruptUpdate,
  mailboxQuery,
  runEndedSignal,
  steerRunSignal,
  stopRunSignal,
  submitSignal,
  submitUpdate,
} from '../src/contract/messages.js';
import type { Termination } from '../src/contract/run-events.js';
import {
  tenantRunWorkflowId,
  unstorableField,
  workflowIdOf,
  type AgentSettings,
  type CancelResult,
  type Dispatch,
  type InputMessage,
  type InterruptResult,
  type RunClosure,
  type RunEnded,
  type StopReason,
  type SubmitInput,
  type SubmitResult,
  type ThreadWorkflowInput,
} from '../src/contract/mailbox.js';

/** How long a foreground submit waits for the run it interrupts to settle. */
const SETTLE_TIMEOUT = '5 seconds';
/** Results kept for retried submits across continue-as-new. */
const RECENT_RESULTS = 500;
/**
 * Patch of the v2 rules: the thread learns that a run ended from the child's closure too (an operator
 * may terminate or cancel it), late steering is always queued, steering of an interrupted or
 * cancelled run is superseded input, and a thread started without state is rebuilt from Postgres.
 * Executions that began before it keep the v1 rules until they continue-as-new.
 */
const MAILBOX_V2 = 'mailbox-v2';

/** Work the mailbox owes after a run ended, done under the lock, in arrival order. */
type Cleanup =
  /** a run closed without reporting (terminated, cancelled or timed out in Temporal): close its record and log */
  | { kind: 'closed'; dispatch: Dispatch; termination: Termination }
  /** steering the run returned unapplied; `superseded` when the run was interrupted or cancelled */
  | { kind: 'steering'; agent: AgentSettings; messages: InputMessage[]; superseded: boolean };

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
  const v2 = patched(MAILBOX_V2);
  const cleanups: Cleanup[] = [];
  /** runs started by this execution, whose closure it sees; others (carried over or rebuilt) are probed */
  const watched = new Set<string>();
  /** agents of runs that ended, for steering they return late */
  const endedAgents = new Map<string, AgentSettings>();
  // A thread without state is new, or its workflow was terminated: Postgres has its queue. Nothing else
  // touches the mailbox until it is rebuilt.
  const rebuild = v2 && !input.state;
  if (rebuild) busy = true;

  setHandler(submitUpdate, (submit) => exclusive(() => submitWithIdempotency(submit)), {
    validator: validateSubmit,
    description: 'Submit messages: interrupt the active run (default), queue behind it, or steer it',
  });
  setHandler(cancelRunUpdate, ({ runId }) => exclusive(() => cancelRun(runId)), { description: 'Cancel a queued or active run' });
  setHandler(interruptUpdate, () => exclusive(() => interruptThread()), { description: 'Cancel the active run and supersede the queue' });
  setHandler(submitSignal, (submit) => void exclusive(() => submitWithIdempotency(checked(submit))).catch((err) => log.warn('signalled submit rejected', { err })), {
    description: 'Submit for callers that cannot wait for an update (other workflows); same logic as the update',
  });
  setHandler(interruptSignal, () => void exclusive(() => interruptThread()).catch((err) => log.warn('signalled interrupt failed', { err })), {
    description: 'Interrupt for callers that cannot wait for an update',
  });
  setHandler(mailboxQuery, () => mailbox.snapshot(), { description: 'The queue, the active run and the epoch' });
  setHandler(runEndedSignal, (ended) => (v2 ? onRunEnded(ended) : void onRunEndedV1(ended)), { description: 'A run workflow reports that it ended' });

  /** Signals have no validator: a signalled submit the store could not keep is dropped with a warning. */
  function checked(submit: SubmitInput): SubmitInput {
    if (v2) validateSubmit(submit);
    return submit;
  }

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
    return v2 ? handleSubmitV2(submit) : handleSubmitV1(submit);
  }

  /**
   * v2: the run id is claimed in Postgres before anything else changes, so of two concurrent claims
   * one wins and the other is refused with nothing done; a repeat of the same request gets the
   * first answer. A foreground submit whose interrupted run will not settle discards its claim.
   */
  async function handleSubmitV2(submit: SubmitInput): Promise<SubmitResult> {
    const ids = { threadId, runId: submit.runId, dispatchId: submit.dispatchId };
    const dispatch = { runId: submit.runId, dispatchId: submit.dispatchId, mode: submit.mode, agent: submit.agent, workflowId: tenantRunWorkflowId(tenant, submit.runId) };
    await probeActive();

    if (submit.mode === 'steer') {
      const active = mailbox.active;
      if (active && (!submit.expectedRunId || submit.expectedRunId === active.runId) && (await steer(active, submit))) {
        return { ...ids, runId: active.runId, status: 'steered' };
      }
    }

    const epoch = submit.mode === 'interrupt' ? mailbox.epoch + 1 : mailbox.epoch;
    const run = { ...dispatch, agentId: submit.agent.agentId, input: submit.messages, epoch, ...(submit.requestHash ? { requestHash: submit.requestHash } : {}) };
    const claim = await store.createRun({ ref, run });
    if (!claim.created) {
      return { ...ids, dispatchId: claim.dispatchId, status: claim.status === 'queued' ? 'queued' : 'running', duplicate: true };
    }

    if (submit.mode === 'interrupt') {
      try {
        await settleActive('interrupted');
      } catch (err) {
        await store.discardRun({ ref, runId: submit.runId });
        throw err;
      }
      // Steering the interrupted run returned is superseded input: committed just ahead of this run's.
      const steeringRunIds = await absorbCleanups('carry');
      const { superseded } = mailbox.putFirst(dispatch, steeringRunIds);
      const runIds = [...superseded.map((d) => d.runId), ...steeringRunIds];
      if (runIds.length) await store.finishRuns({ tenant, runIds, termination: { type: 'superseded', detail: `superseded by ${submit.runId}` } });
      return { ...ids, status: 'running' };
    }

    const wasIdle = mailbox.idle;
    mailbox.enqueue(dispatch);
    // Steering that found no run to join is reported as queued, even when it starts at once.
    return { ...ids, status: wasIdle && submit.mode === 'queue' ? 'running' : 'queued' };
  }

  async function handleSubmitV1(submit: SubmitInput): Promise<SubmitResult> {
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
      await getExternalWorkflowHandle(workflowIdOf(active)).signal(steerRunSignal, { messages: submit.messages });
      if (v2) mailbox.recordSteering(active.runId, submit.messages);
      return true;
    } catch {
      if (v2) await runGone(active);
      return false;
    }
  }

  /** Signals a stop to the active run; a run that cannot be signalled is gone, and is closed as such. */
  async function signalStop(active: Dispatch, reason: StopReason) {
    try {
      await getExternalWorkflowHandle(workflowIdOf(active)).signal(stopRunSignal, { reason });
    } catch {
      if (v2) await runGone(active);
    }
  }

  /** A run this execution cannot watch (carried over continue-as-new, or rebuilt): asks Temporal whether it still runs. */
  async function probeActive() {
    const active = mailbox.active;
    if (!active || !mailbox.activeStarted || watched.has(active.runId)) return;
    const closure = await store.probeRun({ workflowId: workflowIdOf(active) });
    if (closure !== 'running') runClosed(active, terminationOfClosure(closure));
  }

  async function runGone(active: Dispatch) {
    const closure = await store.probeRun({ workflowId: workflowIdOf(active) });
    runClosed(active, terminationOfClosure(closure === 'running' ? 'not_found' : closure));
  }

  /** The run closed; unless it reported its end first, the mailbox releases it and its record is closed under the lock. */
  function runClosed(dispatch: Dispatch, termination: Termination) {
    if (!mailbox.isActive(dispatch.runId)) return;
    endedAgents.set(dispatch.runId, dispatch.agent);
    mailbox.runEnded(dispatch.runId);
    cleanups.push({ kind: 'closed', dispatch, termination });
  }

  /**
   * Does the work ended runs left: closes the records of runs that died without reporting, and turns
   * steering they returned into runs. `carry` (a foreground submit): every steering batch is
   * superseded input, returned for the new run to commit ahead of its own. `commit` (an interrupt):
   * committed now. `normal`: steering of interrupted or cancelled runs is committed now, the rest
   * goes first in line.
   */
  async function absorbCleanups(mode: 'carry' | 'commit' | 'normal'): Promise<string[]> {
    const carried: string[] = [];
    const firstInLine: Omit<Dispatch, 'epoch' | 'carriedRunIds'>[] = [];
    while (cleanups.length > 0) {
      const cleanup = cleanups.shift()!;
      if (cleanup.kind === 'closed') {
        const { dispatch, termination } = cleanup;
        await store.closeRun({ ref, runId: dispatch.runId, carriedRunIds: dispatch.carriedRunIds, termination, steered: dispatch.steered ?? [] });
        continue;
      }
      const runId = uuid4();
      const dispatch = { runId, dispatchId: uuid4(), mode: 'steer' as const, agent: cleanup.agent, workflowId: tenantRunWorkflowId(tenant, runId) };
      await store.createRun({ ref, run: { ...dispatch, agentId: cleanup.agent.agentId, input: cleanup.messages, epoch: mailbox.epoch } });
      if (mode === 'carry') carried.push(dispatch.runId);
      else if (mode === 'commit' || cleanup.superseded) {
        await store.commitPendingInput({ ref, runIds: [dispatch.runId] });
        await store.finishRun({ runId: dispatch.runId, tenant, termination: { type: 'superseded', detail: 'steering of a run that was stopped' } });
      } else firstInLine.push(dispatch);
    }
    for (const dispatch of firstInLine.reverse()) mailbox.enqueueFirst(dispatch);
    return carried;
  }

  /** Stops the active run and waits for it to settle; rejects, changing nothing, if it will not. */
  async function settleActive(reason: StopReason): Promise<string | null> {
    const active = mailbox.active;
    if (!active) return null;
    await condition(() => mailbox.activeStarted || !mailbox.isActive(active.runId));
    if (mailbox.isActive(active.runId)) await signalStop(active, reason);
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
        await signalStop(mailbox.active!, 'cancelled');
        return { runId, status: 'cancel_requested' };
      }
    }
    const removed = mailbox.removeQueued(runId);
    if (removed) {
      await store.finishRun({ runId, tenant, termination: { type: 'cancelled', detail: 'cancelled before it started' } });
      if (removed.orphanedCarriedRunIds.length) await store.commitPendingInput({ ref, runIds: removed.orphanedCarriedRunIds });
      return { runId, status: 'cancel_requested' };
    }
    throw ApplicationFailure.create({ type: 'run_not_active', message: `run ${runId} is not queued or running` });
  }

  async function interruptThread(): Promise<InterruptResult> {
    const cancelledRunId = await settleActive('interrupted');
    if (v2) await absorbCleanups('commit');
    const superseded = mailbox.supersedeQueue();
    // No run supersedes them, so their input is committed now (before they are marked ended): an accepted message is never dropped.
    const runIds = superseded.flatMap((d) => [...d.carriedRunIds, d.runId]);
    if (runIds.length) await store.commitPendingInput({ ref, runIds });
    const termination = { type: 'superseded', detail: 'the thread was interrupted' } as const;
    if (v2 && superseded.length) await store.finishRuns({ tenant, runIds: superseded.map((d) => d.runId), termination });
    if (!v2) for (const old of superseded) await store.finishRun({ runId: old.runId, tenant, termination });
    return { threadId, cancelledRunId, supersededRunIds: superseded.map((d) => d.runId) };
  }

  /** v2: the mailbox releases the run at once; steering it returned waits for the lock as a cleanup. */
  function onRunEnded(ended: RunEnded) {
    const active = mailbox.isActive(ended.runId) ? mailbox.active : null;
    const agent = ended.agent ?? active?.agent ?? endedAgents.get(ended.runId) ?? mailbox.queue[0]?.agent;
    if (active) {
      endedAgents.set(ended.runId, active.agent);
      if (endedAgents.size > 100) endedAgents.delete(endedAgents.keys().next().value!);
      mailbox.runEnded(ended.runId);
    }
    if (ended.unappliedSteering.length === 0) return;
    if (!agent) {
      log.error('steering returned by a run of unknown agent was dropped', { runId: ended.runId });
      return;
    }
    const superseded = ended.termination.type === 'interrupted' || ended.termination.type === 'cancelled';
    cleanups.push({ kind: 'steering', agent, messages: ended.unappliedSteering, superseded });
  }

  async function onRunEndedV1(ended: RunEnded) {
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
  if (rebuild) {
    try {
      const stored = await store.loadMailbox({ ref });
      mailbox.restore(stored);
      if (stored.orphanedRunIds.length) await store.commitPendingInput({ ref, runIds: stored.orphanedRunIds });
      await probeActive();
    } finally {
      busy = false;
    }
  }
  for (;;) {
    await condition(() => startable() || (cleanups.length > 0 && !busy) || canContinueAsNew());
    if (cleanups.length > 0 && !busy) {
      await exclusive(() => absorbCleanups('normal'));
      continue;
    }
    if (canContinueAsNew()) {
      await condition(allHandlersFinished);
      // While handlers finished, a run may have reported its end with steering (a cleanup) or a handler
      // may have left work: that is done first, or it would not reach the next execution.
      if (v2 && !canContinueAsNew()) continue;
      return continueAsNew<typeof threadWorkflow>({
        tenant,
        threadId,
        state: { mailbox: mailbox.snapshot(), recentResults: [...recentResults] },
      });
    }
    // Re-checked: a handler may have taken the lock between the wake-up and now.
    if (!startable()) continue;
    const next = mailbox.takeNext()!;
    const start = startChild(runWorkflow, {
      workflowId: workflowIdOf(next),
      args: [{ tenant, threadId, runId: next.runId, dispatchId: next.dispatchId, agent: next.agent, carriedRunIds: next.carriedRunIds, threadWorkflowId: workflowInfo().workflowId }],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      staticSummary: `run ${next.runId} for agent ${next.agent.agentId}`,
      searchAttributes: { ThreadId: [threadId], ThreadboxRunId: [next.runId], AgentId: [next.agent.agentId], RunStatus: ['queued'] },
    });
    if (!v2) {
      await start;
      mailbox.markStarted(next.runId);
      continue;
    }
    try {
      const child = await start;
      mailbox.markStarted(next.runId);
      watched.add(next.runId);
      // However the run closes (its own end, or an operator's terminate or cancel), the mailbox hears of it.
      child.result().then(
        (termination) => runClosed(next, termination),
        (err) => runClosed(next, terminationOfFailure(err)),
      ).finally(() => watched.delete(next.runId));
    } catch (err) {
      // Started before this execution was rebuilt: it runs, and reports to this workflow id when it ends.
      if ((err as Error).name !== 'WorkflowExecutionAlreadyStartedError') throw err;
      mailbox.markStarted(next.runId);
    }
  }

  function canContinueAsNew() {
    return workflowInfo().continueAsNewSuggested && !busy && cleanups.length === 0 && (mailbox.active === null || mailbox.activeStarted);
  }
}

function validateSubmit(submit: SubmitInput) {
  if (submit.messages.length === 0) throw new Error('a submit needs at least one message');
  if (submit.agent.maxSteps < 1) throw new Error('maxSteps must be at least 1');
  const unstorable = unstorableField(submit.messages, 'messages');
  if (unstorable) throw ApplicationFailure.create({ type: 'invalid_request', message: unstorable, nonRetryable: true });
}

/** How a child run's failure reads as a termination. */
function terminationOfFailure(err: unknown): Termination {
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause && !(cause instanceof TerminatedFailure || cause instanceof CancelledFailure || cause instanceof TimeoutFailure)) cause = cause.cause;
  if (cause instanceof TerminatedFailure) return { type: 'error', detail: `terminated${cause.message && cause.message !== 'Workflow execution terminated' ? `: ${cause.message}` : ''}` };
  if (cause instanceof CancelledFailure) return { type: 'cancelled', detail: 'its workflow was cancelled in Temporal' };
  if (cause instanceof TimeoutFailure) return { type: 'error', detail: 'its workflow timed out' };
  return { type: 'error', detail: `its workflow failed: ${cause instanceof Error ? cause.message : String(cause)}` };
}

function terminationOfClosure(closure: RunClosure): Termination {
  switch (closure) {
    case 'cancelled':
      return { type: 'cancelled', detail: 'its workflow was cancelled in Temporal' };
    case 'terminated':
      return { type: 'error', detail: 'terminated' };
    case 'timed_out':
      return { type: 'error', detail: 'its workflow timed out' };
    case 'not_found':
      return { type: 'error', detail: 'its workflow no longer exists' };
    default:
      return { type: 'error', detail: `its workflow ${closure} without reporting its end` };
  }
}
