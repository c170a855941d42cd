// The mailbox of one thread: submits, interrupts and cancels come in as updates; runs go out as child workflows.
import {
  ApplicationFailure,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineUpdate,
  getExternalWorkflowHandle,
  proxyLocalActivities,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { Mailbox } from './mailbox.js';
import { runEndedSignal, runWorkflow, stopRunSignal } from './run.js';
import { runWorkflowId, type Dispatch, type MailboxState, type StopReason, type SubmitInput, type SubmitResult, type ThreadWorkflowInput } from './types.js';

export const submitUpdate = defineUpdate<SubmitResult, [SubmitInput]>('submit');
export const mailboxQuery = defineQuery<MailboxState>('mailbox');

/** How long a foreground submit waits for the run it interrupts to settle. */
const SETTLE_TIMEOUT = '5 seconds';

const store = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '100 milliseconds', maximumInterval: '5 seconds', nonRetryableErrorTypes: ['illegal_transition', 'not_found'] },
});

export async function threadWorkflow(input: ThreadWorkflowInput): Promise<void> {
  const { tenant, threadId } = input;
  const mailbox = new Mailbox(input.mailbox);
  let submitting = false; // submits run one at a time, in arrival order

  setHandler(submitUpdate, (submit) => serialized(() => handleSubmit(submit)), {
    validator: validateSubmit,
    description: 'Submit messages: interrupt the active run (default), queue behind it, or steer it',
  });
  setHandler(mailboxQuery, () => mailbox.snapshot(), { description: 'The queue, the active run and the epoch' });
  setHandler(runEndedSignal, ({ runId }) => mailbox.runEnded(runId), { description: 'A run workflow reports that it ended' });

  async function serialized<T>(work: () => Promise<T>): Promise<T> {
    await condition(() => !submitting);
    submitting = true;
    try {
      return await work();
    } finally {
      submitting = false;
    }
  }

  async function handleSubmit(submit: SubmitInput): Promise<SubmitResult> {
    const ids = { threadId, runId: submit.runId, dispatchId: submit.dispatchId };
    const dispatch = { runId: submit.runId, dispatchId: submit.dispatchId, mode: submit.mode, agent: submit.agent };
    const record = { ...dispatch, agentId: submit.agent.agentId, input: submit.messages };
    if (submit.mode === 'interrupt') {
      const active = mailbox.active;
      if (active) {
        await stopActive(active, 'interrupted');
        if (!(await condition(() => !mailbox.isActive(active.runId), SETTLE_TIMEOUT))) {
          throw ApplicationFailure.create({
            type: 'active_run_conflict',
            message: `run ${active.runId} did not stop within ${SETTLE_TIMEOUT}; nothing was submitted`,
            nonRetryable: true,
          });
        }
      }
      await store.createRun({ ref: { tenant, threadId }, run: { ...record, epoch: mailbox.epoch + 1 } });
      const { superseded } = mailbox.putFirst(dispatch);
      for (const old of superseded) {
        await store.finishRun({ runId: old.runId, termination: { type: 'superseded', detail: `superseded by ${submit.runId}` } });
      }
      return { ...ids, status: 'running' };
    }
    await store.createRun({ ref: { tenant, threadId }, run: { ...record, epoch: mailbox.epoch } });
    const wasIdle = mailbox.idle;
    mailbox.enqueue(dispatch);
    return { ...ids, status: wasIdle ? 'running' : 'queued' };
  }

  async function stopActive(active: Dispatch, reason: StopReason) {
    await condition(() => mailbox.activeStarted || !mailbox.isActive(active.runId));
    if (mailbox.isActive(active.runId)) {
      await getExternalWorkflowHandle(runWorkflowId(active.runId)).signal(stopRunSignal, { reason });
    }
  }

  for (;;) {
    await condition(() => (mailbox.active === null && mailbox.queue.length > 0) || canContinueAsNew());
    if (canContinueAsNew()) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof threadWorkflow>({ tenant, threadId, mailbox: mailbox.snapshot() });
    }
    const next = mailbox.takeNext();
    if (!next) continue;
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
    return workflowInfo().continueAsNewSuggested && !submitting && mailbox.active === null;
  }
}

function validateSubmit(submit: SubmitInput) {
  if (submit.messages.length === 0) throw new Error('a submit needs at least one message');
  if (submit.agent.maxSteps < 1) throw new Error('maxSteps must be at least 1');
}
