// The agent loop of one run: model step, then one activity per tool call, until the model is done.
import { ApplicationFailure, CancellationScope, condition, getExternalWorkflowHandle, isCancellation, patched, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import { decideUpdate, runEndedSignal, steerRunSignal, stopRunSignal } from '../src/contract/messages.js';
import { afterStepFence, assistantReply, type ApprovalTicket, type InputMessage, type RunWorkflowInput, type StopReason } from '../src/contract/mailbox.js';
import type { Termination } from '../src/contract/run-events.js';
import { modelStepActivity, store, toolActivity } from './activities.js';

/**
 * Patch of the v2 rules: a cancel from Temporal (an operator) ends the run `cancelled`; a run that ends
 * in error also closes its log (cancelled results for unanswered tool calls), so the next run's model
 * call is valid; the end report carries the agent. Executions begun before it keep the v1 rules.
 */
const RUN_V2 = 'run-v2';
/**
 * Patch: the first model step starts the run itself (commits its input, then streams), one activity
 * hop fewer before the first token; and the run ends with one closing activity (endRun: the input of a
 * run stopped before its first step, the interrupted step's salvage and the finish), not two.
 */
const START_IN_FIRST_STEP = 'start-in-first-step';
/**
 * Patch: each model step commits its own reply (the activity commits the assistant message after its
 * last event, idempotent by the message id), not a commitMessages activity after it: one activity and
 * one workflow task fewer per step.
 */
const COMMIT_IN_STEP = 'commit-in-step';

export async function runWorkflow(input: RunWorkflowInput): Promise<Termination> {
  const run = new Run(input, patched(RUN_V2));
  run.listen();
  let termination: Termination;
  try {
    if (patched(START_IN_FIRST_STEP)) run.started = run.twoClosingActivities = false;
    else await store.startRun({ runId: input.runId, tenant: input.tenant, carriedRunIds: input.carriedRunIds });
    run.commitInStep = patched(COMMIT_IN_STEP);
    setStatus('running');
    termination = await run.loop.run(() => run.steps());
  } catch (err) {
    termination = run.terminationOf(err);
  }
  await CancellationScope.nonCancellable(() => run.end(termination));
  return termination;
}

/** One run's state: the step it is at, steering not yet applied, approvals it waits for. */
class Run {
  readonly ref: { tenant: string; threadId: string };
  readonly loop = new CancellationScope();
  /** whether the run's input is known committed (its record left `queued`) */
  started = true;
  /** before the start-in-first-step patch: the run ends with commitInterruptedStep and finishRun, not endRun */
  twoClosingActivities = true;
  /** since the commit-in-step patch: the model step commits its reply */
  commitInStep = false;
  private stopReason: StopReason | undefined;
  private step = 0;
  private readonly steered: InputMessage[] = [];
  private readonly tickets = new Map<string, ApprovalTicket>();

  constructor(
    private readonly input: RunWorkflowInput,
    private readonly v2: boolean,
  ) {
    this.ref = { tenant: input.tenant, threadId: input.threadId };
  }

  listen() {
    setHandler(stopRunSignal, ({ reason }) => {
      this.stopReason ??= reason;
      this.loop.cancel();
    }, { description: 'Stop the run: interrupted (by a foreground submit) or cancelled' });
    setHandler(steerRunSignal, ({ messages }) => void this.steered.push(...messages), {
      description: 'Messages for the run, applied at its next step boundary',
    });
    setHandler(
      decideUpdate,
      (decision) => {
        const ticket = this.tickets.get(decision.toolCallId)!;
        const duplicate = ticket.decision !== undefined;
        ticket.decision ??= { action: decision.action, reason: decision.reason };
        return { toolCallId: decision.toolCallId, duplicate };
      },
      {
        validator: (decision) => {
          const ticket = this.tickets.get(decision.toolCallId);
          if (!ticket || (ticket.decision && ticket.decision.action !== decision.action)) {
            throw ApplicationFailure.create({ type: 'no_pending_approval', message: `no approval is pending for tool call ${decision.toolCallId}` });
          }
        },
        description: 'Approve or deny a tool call the run is waiting on',
      },
    );
  }

  /** Model step, tool calls, again, until the model answers without tool calls (or the step budget is spent). */
  async steps(): Promise<Termination> {
    const { input, ref, steered } = this;
    const { tenant, threadId, runId } = input;
    for (;;) {
      if (steered.length) await this.applySteering();
      if (this.step >= input.agent.maxSteps) return { type: 'max_steps', detail: `stopped after ${input.agent.maxSteps} steps` } satisfies Termination;
      const step = (this.step += 1);
      const start = this.started ? undefined : { carriedRunIds: input.carriedRunIds };
      const commit = this.commitInStep || undefined;
      const result = await modelStepActivity(step)({ tenant, threadId, runId, agentId: input.agent.agentId, step, start, commit });
      this.started = true;
      if (!commit) await store.commitMessages({ ref, messages: [assistantReply(runId, step, result.text, result.toolCalls)] });
      if (result.toolCalls.length === 0) {
        if (steered.length) continue; // steering arrived during the final answer: one more step
        return { type: 'natural_end' } satisfies Termination;
      }
      const needApproval = result.toolCalls.filter((c) => input.agent.approvalTools.includes(c.toolName));
      if (needApproval.length) await this.waitForDecisions(needApproval.map((c) => ({ ...c, step })));
      for (const call of result.toolCalls) {
        const decision = this.tickets.get(call.toolCallId)?.decision;
        const outcome = decision?.action === 'deny' ? 'denied' : decision?.action === 'cancelled' ? 'cancelled' : undefined;
        await toolActivity(call.toolName)({ tenant, threadId, runId, agentId: input.agent.agentId, step, call, outcome, reason: decision?.reason });
      }
    }
  }

  private async applySteering() {
    // Steering that arrives before the first step goes after the run's input: the run starts first.
    if (!this.started) await this.ensureStarted();
    const messages = this.steered.splice(0);
    await store.applySteering({ ref: this.ref, runId: this.input.runId, messages, fence: afterStepFence(this.step) });
  }

  private async waitForDecisions(pending: ApprovalTicket[]) {
    const { runId, tenant } = this.input;
    for (const ticket of pending) this.tickets.set(ticket.toolCallId, ticket);
    await store.awaitApproval({ runId, tenant, step: this.step, tickets: pending });
    setStatus('waiting');
    await condition(() => pending.every((t) => t.decision) || this.steered.length > 0);
    // New input supersedes the question: undecided calls are cancelled, the model sees the new messages.
    for (const ticket of pending) ticket.decision ??= { action: 'cancelled', reason: 'new input arrived while waiting' };
    await store.resumeRun({ runId, tenant });
    setStatus('running');
  }

  private async ensureStarted() {
    const { runId, tenant, carriedRunIds } = this.input;
    await store.startRun({ runId, tenant, carriedRunIds });
    this.started = true;
  }

  terminationOf(err: unknown): Termination {
    if (isCancellation(err) && this.stopReason) return { type: this.stopReason };
    if (this.v2 && isCancellation(err)) return { type: 'cancelled', detail: 'its workflow was cancelled in Temporal' };
    return { type: 'error', detail: errorMessage(err) };
  }

  /** Closes the log and the record, then tells the thread (with any steering left unapplied). */
  async end(termination: Termination) {
    const { tenant, threadId, runId } = this.input;
    const closeStep = termination.type === 'interrupted' || termination.type === 'cancelled' || (this.v2 && termination.type === 'error');
    if (this.twoClosingActivities) {
      if (closeStep) await store.commitInterruptedStep({ tenant, threadId, runId, step: this.step });
      await store.finishRun({ runId, tenant, termination, fence: afterStepFence(this.step) });
    } else {
      // Stopped or failed before its first step started it: its input is committed all the same.
      const start = this.started ? undefined : { carriedRunIds: this.input.carriedRunIds };
      await store.endRun({ tenant, threadId, runId, step: this.step, termination, closeStep, start });
    }
    setStatus(termination.type);
    await this.report(termination, this.steered.splice(0));
    // Steering that raced the end of the run still reaches the thread, which queues it.
    while (this.steered.length) await this.report(termination, this.steered.splice(0));
  }

  private async report(termination: Termination, unappliedSteering: InputMessage[]) {
    const { runId } = this.input;
    const thread = getExternalWorkflowHandle(this.input.threadWorkflowId);
    if (!this.v2) return thread.signal(runEndedSignal, { runId, termination, unappliedSteering });
    try {
      await thread.signal(runEndedSignal, { runId, termination, unappliedSteering, agent: this.input.agent });
    } catch {
      // The thread workflow is gone (an operator terminated it); its rebuild reads this run's record from
      // Postgres. Steering it would have queued is committed here, so no accepted message is lost.
      if (unappliedSteering.length) await store.commitMessages({ ref: this.ref, messages: unappliedSteering.map((m) => ({ ...m, runId })) });
    }
  }
}

function setStatus(status: string) {
  upsertSearchAttributes({ RunStatus: [status] });
}

function errorMessage(err: unknown): string {
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause) cause = cause.cause;
  return cause instanceof Error ? cause.message : String(cause);
}
