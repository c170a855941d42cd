// The agent loop of one run: model step, then one activity per tool call, until the model is done.
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  getExternalWorkflowHandle,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { Termination } from '../src/contract/run-events.js';
import type { Activities } from '../activities/index.js';
import { decideUpdate, runEndedSignal, steerRunSignal, stopRunSignal } from '../src/contract/messages.js';
import { afterStepFence, type ApprovalTicket, type InputMessage, type RunWorkflowInput, type StopReason } from '../src/contract/mailbox.js';


// Regular, not local, activities: their completions are history events ordered with the signals
// and updates (stop, steer, decide) around them, which keeps replay deterministic.
const store = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '100 milliseconds', maximumInterval: '5 seconds', nonRetryableErrorTypes: ['illegal_transition', 'not_found'] },
});

const modelStepActivity = (step: number) =>
  proxyActivities<Activities>({
    summary: `model step ${step}`,
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: '10 seconds',
    // No attempt cap here: the activity gives the model's own errors MODEL_ATTEMPTS attempts and rides out store outages by time.
    retry: { initialInterval: '200 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds' },
  }).modelStep;

const toolActivity = (toolName: string) =>
  proxyActivities<Activities>({
    summary: `tool ${toolName}`,
    startToCloseTimeout: '15 minutes',
    heartbeatTimeout: '30 seconds',
    // No attempt cap here: the activity gives a failing call TOOL_ATTEMPTS attempts and rides out store outages by time.
    retry: { initialInterval: '500 milliseconds', maximumInterval: '10 seconds' },
  }).runTool;

/**
 * Patch of the v2 rules: a cancel from Temporal (an operator) ends the run `cancelled`; a run that ends
 * in error also closes its log (cancelled results for unanswered tool calls), so the next run's model
 * call is valid; the end report carries the agent. Executions begun before it keep the v1 rules.
 */
const RUN_V2 = 'run-v2';

export async function runWorkflow(input: RunWorkflowInput): Promise<Termination> {
  const { tenant, threadId, runId } = input;
  const ref = { tenant, threadId };
  const v2 = patched(RUN_V2);
  let stopReason: StopReason | undefined;
  let step = 0;
  const steered: InputMessage[] = [];
  const tickets = new Map<string, ApprovalTicket>();
  const loop = new CancellationScope();

  setHandler(stopRunSignal, ({ reason }) => {
    stopReason ??= reason;
    loop.cancel();
  }, { description: 'Stop the run: interrupted (by a foreground submit) or cancelled' });
  setHandler(steerRunSignal, ({ messages }) => void steered.push(...messages), {
    description: 'Messages for the run, applied at its next step boundary',
  });
  setHandler(
    decideUpdate,
    (decision) => {
      const ticket = tickets.get(decision.toolCallId)!;
      const duplicate = ticket.decision !== undefined;
      ticket.decision ??= { action: decision.action, reason: decision.reason };
      return { toolCallId: decision.toolCallId, duplicate };
    },
    {
      validator: (decision) => {
        const ticket = tickets.get(decision.toolCallId);
        if (!ticket || (ticket.decision && ticket.decision.action !== decision.action)) {
          throw ApplicationFailure.create({ type: 'no_pending_approval', message: `no approval is pending for tool call ${decision.toolCallId}` });
        }
      },
      description: 'Approve or deny a tool call the run is waiting on',
    },
  );

  async function applySteering() {
    const messages = steered.splice(0);
    await store.applySteering({ ref, runId, messages, fence: afterStepFence(step) });
  }

  async function waitForDecisions(pending: ApprovalTicket[]) {
    for (const ticket of pending) tickets.set(ticket.toolCallId, ticket);
    await store.awaitApproval({ runId, tenant, step, tickets: pending });
    setStatus('waiting');
    await condition(() => pending.every((t) => t.decision) || steered.length > 0);
    // New input supersedes the question: undecided calls are cancelled, the model sees the new messages.
    for (const ticket of pending) ticket.decision ??= { action: 'cancelled', reason: 'new input arrived while waiting' };
    await store.resumeRun({ runId, tenant });
    setStatus('running');
  }

  let termination: Termination;
  try {
    await store.startRun({ runId, tenant, carriedRunIds: input.carriedRunIds });
    setStatus('running');
    termination = await loop.run(async () => {
      for (;;) {
        if (steered.length) await applySteering();
        if (step >= input.agent.maxSteps) return { type: 'max_steps', detail: `stopped after ${input.agent.maxSteps} steps` } satisfies Termination;
        step += 1;
        const result = await modelStepActivity(step)({ tenant, threadId, runId, agentId: input.agent.agentId, step });
        await store.commitMessages({
          ref,
          messages: [
            { messageId: `${runId}:${step}:assistant`, role: 'assistant', content: result.text, runId, toolCalls: result.toolCalls.length ? result.toolCalls : undefined },
          ],
        });
        if (result.toolCalls.length === 0) {
          if (steered.length) continue; // steering arrived during the final answer: one more step
          return { type: 'natural_end' } satisfies Termination;
        }
        const needApproval = result.toolCalls.filter((c) => input.agent.approvalTools.includes(c.toolName));
        if (needApproval.length) await waitForDecisions(needApproval.map((c) => ({ ...c, step })));
        for (const call of result.toolCalls) {
          const decision = tickets.get(call.toolCallId)?.decision;
          const outcome = decision?.action === 'deny' ? 'denied' : decision?.action === 'cancelled' ? 'cancelled' : undefined;
          await toolActivity(call.toolName)({ tenant, threadId, runId, agentId: input.agent.agentId, step, call, outcome, reason: decision?.reason });
        }
      }
    });
  } catch (err) {
    if (isCancellation(err) && stopReason) termination = { type: stopReason };
    else if (v2 && isCancellation(err)) termination = { type: 'cancelled', detail: 'its workflow was cancelled in Temporal' };
    else termination = { type: 'error', detail: errorMessage(err) };
  }

  await CancellationScope.nonCancellable(async () => {
    if (termination.type === 'interrupted' || termination.type === 'cancelled' || (v2 && termination.type === 'error')) {
      await store.commitInterruptedStep({ tenant, threadId, runId, step });
    }
    await store.finishRun({ runId, tenant, termination, fence: afterStepFence(step) });
    setStatus(termination.type);
    const thread = getExternalWorkflowHandle(input.threadWorkflowId);
    const report = async (unappliedSteering: InputMessage[]) => {
      if (!v2) return thread.signal(runEndedSignal, { runId, termination, unappliedSteering });
      try {
        await thread.signal(runEndedSignal, { runId, termination, unappliedSteering, agent: input.agent });
      } catch {
        // The thread workflow is gone (an operator terminated it); its rebuild reads this run's record from
        // Postgres. Steering it would have queued is committed here, so no accepted message is lost.
        if (unappliedSteering.length) await store.commitMessages({ ref, messages: unappliedSteering.map((m) => ({ ...m, runId })) });
      }
    };
    await report(steered.splice(0));
    // Steering that raced the end of the run still reaches the thread, which queues it.
    while (steered.length) await report(steered.splice(0));
  });
  return termination;
}

function setStatus(status: string) {
  upsertSearchAttributes({ RunStatus: [status] });
}

function errorMessage(err: unknown): string {
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause) cause = cause.cause;
  return cause instanceof Error ? cause.message : String(cause);
}
