// The v1 mailbox rules, kept for thread executions begun before the `mailbox-v2` patch (until they continue-as-new).
import { uuid4 } from '@temporalio/workflow';
import type { RunEnded, SubmitInput, SubmitResult } from '../src/contract/mailbox.js';
import { store } from './activities.js';
import type { ThreadMailbox } from './thread-mailbox.js';

export async function handleSubmitV1(tm: ThreadMailbox, submit: SubmitInput): Promise<SubmitResult> {
  const { ref, mailbox } = tm;
  const ids = { threadId: ref.threadId, runId: submit.runId, dispatchId: submit.dispatchId };
  const dispatch = { runId: submit.runId, dispatchId: submit.dispatchId, mode: submit.mode, agent: submit.agent };
  const run = { ...dispatch, agentId: submit.agent.agentId, input: submit.messages };

  if (submit.durable) {
    const existing = await store.findRun({ runId: submit.runId });
    if (existing) return { threadId: ref.threadId, runId: existing.runId, dispatchId: existing.dispatchId, status: existing.status === 'queued' ? 'queued' : 'running', duplicate: true };
  }

  if (submit.mode === 'steer') {
    const active = mailbox.active;
    if (active && (!submit.expectedRunId || submit.expectedRunId === active.runId) && (await tm.steer(active, submit))) {
      return { ...ids, runId: active.runId, status: 'steered' };
    }
  }

  if (submit.mode === 'interrupt') {
    await tm.settleActive('interrupted');
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

export async function onRunEndedV1(tm: ThreadMailbox, ended: RunEnded) {
  const { mailbox, ref } = tm;
  const endedDispatch = mailbox.isActive(ended.runId) ? mailbox.active : null;
  mailbox.runEnded(ended.runId);
  if (ended.unappliedSteering.length === 0 || !endedDispatch) return;
  await tm.lock.run(async () => {
    const settings = endedDispatch.agent;
    const dispatch = { runId: uuid4(), dispatchId: uuid4(), mode: 'steer' as const, agent: settings };
    await store.createRun({ ref, run: { ...dispatch, agentId: settings.agentId, input: ended.unappliedSteering, epoch: mailbox.epoch } });
    mailbox.enqueueFirst(dispatch);
  });
}
