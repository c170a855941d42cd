// The rules of one thread's mailbox: submits, steering, stops, cancels and the ends of runs, over the Mailbox state.
import { ApplicationFailure, condition, currentUpdateInfo, getExternalWorkflowHandle, log, uuid4 } from '@temporalio/workflow';
import { steerRunSignal, stopRunSignal } from '../src/contract/messages.js';
import type { Termination } from '../src/contract/run-events.js';
import {
  tenantRunWorkflowId,
  workflowIdOf,
  type AgentSettings,
  type CancelResult,
  type Dispatch,
  type InputMessage,
  type InterruptResult,
  type RunEnded,
  type StopReason,
  type SubmitInput,
  type SubmitResult,
  type ThreadWorkflowInput,
} from '../src/contract/mailbox.js';
import { localStore, store } from './activities.js';
import { terminationOfClosure } from './closures.js';
import { Lock } from './lock.js';
import { Mailbox } from './mailbox.js';

/** How long a foreground submit waits for the run it interrupts to settle. */
const SETTLE_TIMEOUT = '5 seconds';
/** Results kept for retried submits across continue-as-new. */
const RECENT_RESULTS = 500;

/** Work the mailbox owes after a run ended, done under the lock, in arrival order. */
export type Cleanup =
  /** a run closed without reporting (terminated, cancelled or timed out in Temporal): close its record and log */
  | { kind: 'closed'; dispatch: Dispatch; termination: Termination }
  /** steering the run returned unapplied; `superseded` when the run was interrupted or cancelled */
  | { kind: 'steering'; agent: AgentSettings; messages: InputMessage[]; superseded: boolean };

/**
 * The mailbox of one thread execution with its rules. `v2` (the `mailbox-v2` patch) selects today's
 * rules; executions begun before it keep the v1 ones (thread-v1.ts) until they continue-as-new.
 */
export class ThreadMailbox {
  readonly ref: { tenant: string; threadId: string };
  readonly mailbox: Mailbox;
  readonly recentResults: Map<string, SubmitResult>;
  readonly lock = new Lock();
  readonly cleanups: Cleanup[] = [];
  /** runs started by this execution, whose closure it sees; others (carried over or rebuilt) are probed */
  readonly watched = new Set<string>();
  /** agents of runs that ended, for steering they return late */
  private readonly endedAgents = new Map<string, AgentSettings>();

  constructor(
    input: ThreadWorkflowInput,
    readonly v2: boolean,
    /** the `local-mailbox-load` patch: the rebuild reads Postgres by local activity */
    readonly local = false,
  ) {
    this.ref = { tenant: input.tenant, threadId: input.threadId };
    this.mailbox = new Mailbox(input.state?.mailbox);
    this.recentResults = new Map(input.state?.recentResults ?? []);
  }

  /** A repeated update id (a retried request) gets the first answer, across continue-as-new. */
  async submitWithIdempotency(submit: SubmitInput, handle: (submit: SubmitInput) => Promise<SubmitResult>): Promise<SubmitResult> {
    const key = currentUpdateInfo()?.id;
    const earlier = key ? this.recentResults.get(key) : undefined;
    if (earlier) return earlier;
    const result = await handle(submit);
    if (key) {
      this.recentResults.set(key, result);
      if (this.recentResults.size > RECENT_RESULTS) this.recentResults.delete(this.recentResults.keys().next().value!);
    }
    return result;
  }

  /**
   * v2: the run id is claimed in Postgres before anything else changes, so of two concurrent claims
   * one wins and the other is refused with nothing done; a repeat of the same request gets the
   * first answer. A foreground submit whose interrupted run will not settle discards its claim.
   */
  async handleSubmit(submit: SubmitInput): Promise<SubmitResult> {
    const { ref, mailbox } = this;
    const ids = { threadId: ref.threadId, runId: submit.runId, dispatchId: submit.dispatchId };
    const dispatch = { runId: submit.runId, dispatchId: submit.dispatchId, mode: submit.mode, agent: submit.agent, workflowId: tenantRunWorkflowId(ref.tenant, submit.runId) };
    await this.probeActive();

    if (submit.mode === 'steer') {
      const active = mailbox.active;
      if (active && (!submit.expectedRunId || submit.expectedRunId === active.runId) && (await this.steer(active, submit))) {
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
        await this.settleActive('interrupted');
      } catch (err) {
        await store.discardRun({ ref, runId: submit.runId });
        throw err;
      }
      // Steering the interrupted run returned is superseded input: committed just ahead of this run's.
      const steeringRunIds = await this.absorbCleanups('carry');
      const { superseded } = mailbox.putFirst(dispatch, steeringRunIds);
      const runIds = [...superseded.map((d) => d.runId), ...steeringRunIds];
      if (runIds.length) await store.finishRuns({ tenant: ref.tenant, runIds, termination: { type: 'superseded', detail: `superseded by ${submit.runId}` } });
      return { ...ids, status: 'running' };
    }

    const wasIdle = mailbox.idle;
    mailbox.enqueue(dispatch);
    // Steering that found no run to join is reported as queued, even when it starts at once.
    return { ...ids, status: wasIdle && submit.mode === 'queue' ? 'running' : 'queued' };
  }

  /** Delivers steering to the active run; false when it has already ended (the caller queues instead). */
  async steer(active: Dispatch, submit: SubmitInput): Promise<boolean> {
    const { mailbox } = this;
    await condition(() => mailbox.activeStarted || !mailbox.isActive(active.runId));
    if (!mailbox.isActive(active.runId)) return false;
    try {
      await getExternalWorkflowHandle(workflowIdOf(active)).signal(steerRunSignal, { messages: submit.messages });
      if (this.v2) mailbox.recordSteering(active.runId, submit.messages);
      return true;
    } catch {
      if (this.v2) await this.runGone(active);
      return false;
    }
  }

  /** Signals a stop to the active run; a run that cannot be signalled is gone, and is closed as such. */
  async signalStop(active: Dispatch, reason: StopReason) {
    try {
      await getExternalWorkflowHandle(workflowIdOf(active)).signal(stopRunSignal, { reason });
    } catch {
      if (this.v2) await this.runGone(active);
    }
  }

  /** A run this execution cannot watch (carried over continue-as-new, or rebuilt): asks Temporal whether it still runs. */
  async probeActive() {
    const active = this.mailbox.active;
    if (!active || !this.mailbox.activeStarted || this.watched.has(active.runId)) return;
    const closure = await store.probeRun({ workflowId: workflowIdOf(active) });
    if (closure !== 'running') this.runClosed(active, terminationOfClosure(closure));
  }

  private async runGone(active: Dispatch) {
    const closure = await store.probeRun({ workflowId: workflowIdOf(active) });
    this.runClosed(active, terminationOfClosure(closure === 'running' ? 'not_found' : closure));
  }

  /** The run closed; unless it reported its end first, the mailbox releases it and its record is closed under the lock. */
  runClosed(dispatch: Dispatch, termination: Termination) {
    if (!this.mailbox.isActive(dispatch.runId)) return;
    this.endedAgents.set(dispatch.runId, dispatch.agent);
    this.mailbox.runEnded(dispatch.runId);
    this.cleanups.push({ kind: 'closed', dispatch, termination });
  }

  /**
   * Does the work ended runs left: closes the records of runs that died without reporting, and turns
   * steering they returned into runs. `carry` (a foreground submit): every steering batch is
   * superseded input, returned for the new run to commit ahead of its own. `commit` (an interrupt):
   * committed now. `normal`: steering of interrupted or cancelled runs is committed now, the rest
   * goes first in line.
   */
  async absorbCleanups(mode: 'carry' | 'commit' | 'normal'): Promise<string[]> {
    const { ref, mailbox } = this;
    const carried: string[] = [];
    const firstInLine: Omit<Dispatch, 'epoch' | 'carriedRunIds'>[] = [];
    while (this.cleanups.length > 0) {
      const cleanup = this.cleanups.shift()!;
      if (cleanup.kind === 'closed') {
        const { dispatch, termination } = cleanup;
        await store.closeRun({ ref, runId: dispatch.runId, carriedRunIds: dispatch.carriedRunIds, termination, steered: dispatch.steered ?? [] });
        continue;
      }
      const runId = uuid4();
      const dispatch = { runId, dispatchId: uuid4(), mode: 'steer' as const, agent: cleanup.agent, workflowId: tenantRunWorkflowId(ref.tenant, runId) };
      await store.createRun({ ref, run: { ...dispatch, agentId: cleanup.agent.agentId, input: cleanup.messages, epoch: mailbox.epoch } });
      if (mode === 'carry') carried.push(dispatch.runId);
      else if (mode === 'commit' || cleanup.superseded) {
        await store.commitPendingInput({ ref, runIds: [dispatch.runId] });
        await store.finishRun({ runId: dispatch.runId, tenant: ref.tenant, termination: { type: 'superseded', detail: 'steering of a run that was stopped' } });
      } else firstInLine.push(dispatch);
    }
    for (const dispatch of firstInLine.reverse()) mailbox.enqueueFirst(dispatch);
    return carried;
  }

  /** Stops the active run and waits for it to settle; rejects, changing nothing, if it will not. */
  async settleActive(reason: StopReason): Promise<string | null> {
    const { mailbox } = this;
    const active = mailbox.active;
    if (!active) return null;
    await condition(() => mailbox.activeStarted || !mailbox.isActive(active.runId));
    if (mailbox.isActive(active.runId)) await this.signalStop(active, reason);
    if (!(await condition(() => !mailbox.isActive(active.runId), SETTLE_TIMEOUT))) {
      throw ApplicationFailure.create({
        type: 'active_run_conflict',
        message: `run ${active.runId} did not stop within ${SETTLE_TIMEOUT}; nothing was submitted`,
        nonRetryable: true,
      });
    }
    return active.runId;
  }

  async cancelRun(runId: string): Promise<CancelResult> {
    const { mailbox, ref } = this;
    if (mailbox.isActive(runId)) {
      await condition(() => mailbox.activeStarted || !mailbox.isActive(runId));
      if (mailbox.isActive(runId)) {
        await this.signalStop(mailbox.active!, 'cancelled');
        return { runId, status: 'cancel_requested' };
      }
    }
    const removed = mailbox.removeQueued(runId);
    if (removed) {
      await store.finishRun({ runId, tenant: ref.tenant, termination: { type: 'cancelled', detail: 'cancelled before it started' } });
      if (removed.orphanedCarriedRunIds.length) await store.commitPendingInput({ ref, runIds: removed.orphanedCarriedRunIds });
      return { runId, status: 'cancel_requested' };
    }
    throw ApplicationFailure.create({ type: 'run_not_active', message: `run ${runId} is not queued or running` });
  }

  async interruptThread(): Promise<InterruptResult> {
    const { mailbox, ref, v2 } = this;
    const cancelledRunId = await this.settleActive('interrupted');
    if (v2) await this.absorbCleanups('commit');
    const superseded = mailbox.supersedeQueue();
    // No run supersedes them, so their input is committed now (before they are marked ended): an accepted message is never dropped.
    const runIds = superseded.flatMap((d) => [...d.carriedRunIds, d.runId]);
    if (runIds.length) await store.commitPendingInput({ ref, runIds });
    const termination = { type: 'superseded', detail: 'the thread was interrupted' } as const;
    if (v2 && superseded.length) await store.finishRuns({ tenant: ref.tenant, runIds: superseded.map((d) => d.runId), termination });
    if (!v2) for (const old of superseded) await store.finishRun({ runId: old.runId, tenant: ref.tenant, termination });
    return { threadId: ref.threadId, cancelledRunId, supersededRunIds: superseded.map((d) => d.runId) };
  }

  /** v2: the mailbox releases the run at once; steering it returned waits for the lock as a cleanup. */
  onRunEnded(ended: RunEnded) {
    const { mailbox, endedAgents } = this;
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
    this.cleanups.push({ kind: 'steering', agent, messages: ended.unappliedSteering, superseded });
  }

  /** A thread without state is new, or its workflow was terminated: Postgres has its queue. */
  async rebuild() {
    const stored = await (this.local ? localStore : store).loadMailbox({ ref: this.ref });
    this.mailbox.restore(stored);
    if (stored.orphanedRunIds.length) await store.commitPendingInput({ ref: this.ref, runIds: stored.orphanedRunIds });
    await this.probeActive();
  }

  /** The next run starts only while no handler holds the mailbox: a foreground submit mid-way must see the run it supersedes still queued. */
  startable() {
    return this.mailbox.active === null && this.mailbox.queue.length > 0 && !this.lock.held;
  }

  hasCleanups() {
    return this.cleanups.length > 0 && !this.lock.held;
  }

  canContinueAsNew(suggested: boolean) {
    const { mailbox } = this;
    return suggested && !this.lock.held && this.cleanups.length === 0 && (mailbox.active === null || mailbox.activeStarted);
  }
}
