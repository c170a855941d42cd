// The mailbox of one thread: submits, interrupts and cancels come in as updates (or signals); runs go out as child workflows.
import { ApplicationFailure, ParentClosePolicy, allHandlersFinished, condition, continueAsNew, log, patched, setHandler, startChild, workflowInfo } from '@temporalio/workflow';
import {
  cancelRunUpdate,
  interruptSignal,
  interruptUpdate,
  mailboxQuery,
  runEndedSignal,
  submitSignal,
  submitUpdate,
} from '../src/contract/messages.js';
import { unstorableField, workflowIdOf, type Dispatch, type SubmitInput, type SubmitResult, type ThreadWorkflowInput } from '../src/contract/mailbox.js';
import { terminationOfFailure } from './closures.js';
import { runWorkflow } from './run.js';
import { ThreadMailbox } from './thread-mailbox.js';
import { activeTraceContext, withTraceContext, type TraceContext } from './tracing.js';
import { handleSubmitV1, onRunEndedV1 } from './thread-v1.js';

/**
 * Patch of the v2 rules: the thread learns that a run ended from the child's closure too (an operator
 * may terminate or cancel it), late steering is always queued, steering of an interrupted or
 * cancelled run is superseded input, and a thread started without state is rebuilt from Postgres.
 * Executions that began before it keep the v1 rules until they continue-as-new.
 */
const MAILBOX_V2 = 'mailbox-v2';
/**
 * Patch: a thread started without state reads its mailbox by local activity (one dispatch hop fewer before a
 * new thread's first run). Only this read: a local activity's effects stand even when its workflow task
 * fails and is retried, so store calls that write (createRun) stay regular activities.
 */
const LOCAL_MAILBOX_LOAD = 'local-mailbox-load';

export async function threadWorkflow(input: ThreadWorkflowInput): Promise<void> {
  const v2 = patched(MAILBOX_V2);
  const tm = new ThreadMailbox(input, v2, v2 && patched(LOCAL_MAILBOX_LOAD));
  // A thread without state is new, or its workflow was terminated: Postgres has its queue. Nothing else
  // touches the mailbox until it is rebuilt.
  const rebuild = tm.v2 && !input.state;
  if (rebuild) tm.lock.held = true;
  const origins: Origins = new Map();
  listen(tm, origins);
  if (rebuild) {
    try {
      await tm.rebuild();
    } finally {
      tm.lock.held = false;
    }
  }
  for (;;) {
    const suggested = () => workflowInfo().continueAsNewSuggested;
    await condition(() => tm.startable() || tm.hasCleanups() || tm.canContinueAsNew(suggested()));
    if (tm.hasCleanups()) {
      await tm.lock.run(() => tm.absorbCleanups('normal'));
      continue;
    }
    if (tm.canContinueAsNew(suggested())) {
      await condition(allHandlersFinished);
      // While handlers finished, a run may have reported its end with steering (a cleanup) or a handler
      // may have left work: that is done first, or it would not reach the next execution.
      if (tm.v2 && !tm.canContinueAsNew(suggested())) continue;
      return continueAsNew<typeof threadWorkflow>({
        tenant: input.tenant,
        threadId: input.threadId,
        state: { mailbox: tm.mailbox.snapshot(), recentResults: [...tm.recentResults] },
      });
    }
    // Re-checked: a handler may have taken the lock between the wake-up and now.
    if (!tm.startable()) continue;
    const next = tm.mailbox.takeNext()!;
    await startedFrom(origins, next.runId, () => startNext(tm, next));
  }
}

/**
 * The trace context of each submit (the update's span, when the execution is traced: workflows/tracing.ts),
 * so the run it asked for is traced under the request that asked, not under the thread's first one. In
 * memory only; it records nothing in the history. A run queued across a continue-as-new starts under
 * the thread's own span.
 */
type Origins = Map<string, TraceContext | undefined>;

function startedFrom<T>(origins: Origins, runId: string, start: () => T): T {
  const origin = origins.get(runId);
  origins.delete(runId);
  return withTraceContext(origin, start);
}

/** The thread's handlers: each change of the mailbox under its lock, in arrival order. */
function listen(tm: ThreadMailbox, origins: Origins) {
  /**
   * Called as a handler is entered, while its update's or signal's context is the active one. A retried
   * or conflicting submit of a run id already known keeps the first one's; a submit that started no run
   * of its own (steered, a duplicate, refused) leaves nothing behind.
   */
  const traced = (s: SubmitInput, result: Promise<SubmitResult>) => {
    if (origins.has(s.runId)) return result;
    origins.set(s.runId, activeTraceContext());
    result.then(
      (r) => (r.status === 'steered' || r.duplicate || r.runId !== s.runId) && origins.delete(s.runId),
      () => origins.delete(s.runId),
    );
    return result;
  };
  const submit = async (s: SubmitInput): Promise<SubmitResult> => (tm.v2 ? tm.handleSubmit(s) : handleSubmitV1(tm, s));
  /** Signals have no validator: a signalled submit the store could not keep is dropped with a warning. */
  const checked = (s: SubmitInput) => {
    if (tm.v2) validateSubmit(s);
    return s;
  };
  const submitted = (s: SubmitInput) => traced(s, tm.lock.run(() => tm.submitWithIdempotency(s, submit)));
  setHandler(submitUpdate, submitted, {
    validator: validateSubmit,
    description: 'Submit messages: interrupt the active run (default), queue behind it, or steer it',
  });
  setHandler(cancelRunUpdate, ({ runId }) => tm.lock.run(() => tm.cancelRun(runId)), { description: 'Cancel a queued or active run' });
  setHandler(interruptUpdate, () => tm.lock.run(() => tm.interruptThread()), { description: 'Cancel the active run and supersede the queue' });
  const signalled = (s: SubmitInput) => traced(s, tm.lock.run(() => tm.submitWithIdempotency(checked(s), submit)));
  setHandler(submitSignal, (s) => void signalled(s).catch((err) => log.warn('signalled submit rejected', { err })), {
    description: 'Submit for callers that cannot wait for an update (other workflows); same logic as the update',
  });
  setHandler(interruptSignal, () => void tm.lock.run(() => tm.interruptThread()).catch((err) => log.warn('signalled interrupt failed', { err })), {
    description: 'Interrupt for callers that cannot wait for an update',
  });
  setHandler(mailboxQuery, () => tm.mailbox.snapshot(), { description: 'The queue, the active run and the epoch' });
  setHandler(runEndedSignal, (ended) => (tm.v2 ? tm.onRunEnded(ended) : void onRunEndedV1(tm, ended)), { description: 'A run workflow reports that it ended' });
}

/** Starts the run first in line as a child workflow and, in v2, watches how it closes. */
async function startNext(tm: ThreadMailbox, next: Dispatch) {
  const { tenant, threadId } = tm.ref;
  const start = startChild(runWorkflow, {
    workflowId: workflowIdOf(next),
    args: [{ tenant, threadId, runId: next.runId, dispatchId: next.dispatchId, agent: next.agent, carriedRunIds: next.carriedRunIds, threadWorkflowId: workflowInfo().workflowId }],
    parentClosePolicy: ParentClosePolicy.ABANDON,
    staticSummary: `run ${next.runId} for agent ${next.agent.agentId}`,
    searchAttributes: { ThreadId: [threadId], ThreadboxRunId: [next.runId], AgentId: [next.agent.agentId], RunStatus: ['queued'] },
  });
  if (!tm.v2) {
    await start;
    tm.mailbox.markStarted(next.runId);
    return;
  }
  try {
    const child = await start;
    tm.mailbox.markStarted(next.runId);
    tm.watched.add(next.runId);
    // However the run closes (its own end, or an operator's terminate or cancel), the mailbox hears of it.
    child.result().then(
      (termination) => tm.runClosed(next, termination),
      (err) => tm.runClosed(next, terminationOfFailure(err)),
    ).finally(() => tm.watched.delete(next.runId));
  } catch (err) {
    // Started before this execution was rebuilt: it runs, and reports to this workflow id when it ends.
    if ((err as Error).name !== 'WorkflowExecutionAlreadyStartedError') throw err;
    tm.mailbox.markStarted(next.runId);
  }
}

function validateSubmit(submit: SubmitInput) {
  if (submit.messages.length === 0) throw new Error('a submit needs at least one message');
  if (submit.agent.maxSteps < 1) throw new Error('maxSteps must be at least 1');
  const unstorable = unstorableField(submit.messages, 'messages');
  if (unstorable) throw ApplicationFailure.create({ type: 'invalid_request', message: unstorable, nonRetryable: true });
}
