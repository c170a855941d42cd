// Activities on run records: create, find, start, wait for approval, resume and finish a run.
import { Context } from '@temporalio/activity';
import type { Termination } from '../src/contract/run-events.js';
import type { Store, ThreadRef } from '../src/store/store.js';
import { toolResultFence, type ApprovalTicket, type InputMessage } from '../src/contract/mailbox.js';
import { storeCall } from './retry.js';

export function runRecordActivities(store: Store) {
  return {
    async createRun(args: {
      ref: ThreadRef;
      run: { runId: string; dispatchId: string; agentId: string; mode: string; epoch: number; input: InputMessage[]; workflowId?: string; requestHash?: string };
    }) {
      const run = await storeCall(() => store.createRun(args.ref, args.run));
      return { created: run.created, runId: run.runId, dispatchId: run.dispatchId, status: run.status };
    },

    /** Discards a run created for a submit that was then rejected: the rejected request writes nothing. */
    async discardRun(args: { ref: ThreadRef; runId: string }) {
      await storeCall(() => store.discardRun(args.ref, args.runId));
    },

    async findRun(args: { runId: string; tenant?: string }) {
      const run = await store.getRun(args.runId, args.tenant);
      return run ? { runId: run.runId, dispatchId: run.dispatchId, status: run.status, threadId: run.threadId, requestHash: run.requestHash } : null;
    },

    /** running → waiting, with a ticket per tool call and one `tool_approval_requested` event each. */
    async awaitApproval(args: { runId: string; step: number; tickets: ApprovalTicket[]; tenant?: string }) {
      const { runId, step, tickets, tenant } = args;
      const run = await store.getRun(runId, tenant);
      if (run?.status === 'waiting') return; // a retry after success
      await storeCall(() => store.setRunWaiting(runId, { tickets: tickets.map(({ toolCallId, toolName, input }) => ({ toolCallId, toolName, input })) }, tenant));
      await storeCall(() =>
        store.appendEvents(
          runId,
          toolResultFence(step),
          tickets.map((t) => ({ type: 'tool_approval_requested', toolCallId: t.toolCallId, toolName: t.toolName, input: t.input })),
          tenant,
        ),
      );
    },

    // `tenant` is absent only in activities scheduled by workflow code older than tenant-scoped run ids, whose run ids are unique.
    async resumeRun(args: { runId: string; tenant?: string }) {
      await storeCall(() => store.setRunWaiting(args.runId, null, args.tenant));
    },

    async startRun(args: { runId: string; carriedRunIds: string[]; tenant?: string }) {
      await storeCall(() => store.startRun(args.runId, args.carriedRunIds, args.tenant));
    },

    async finishRun(args: { runId: string; termination: Termination; fence?: number; tenant?: string }) {
      const error = args.termination.type === 'error' ? args.termination.detail : undefined;
      await storeCall(() => store.finishRun(args.runId, args.termination, { fence: args.fence, error, tenant: args.tenant }));
    },

    /** Finishes many runs the same way (the queue an interrupt superseded): one activity, not one per run. */
    async finishRuns(args: { tenant: string; runIds: string[]; termination: Termination }) {
      for (const runId of args.runIds) {
        await storeCall(() => store.finishRun(runId, args.termination, { tenant: args.tenant }));
        Context.current().heartbeat();
      }
    },
  };
}
