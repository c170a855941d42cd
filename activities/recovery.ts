// Activities a thread workflow uses to recover: whether a run workflow still runs, and the mailbox from Postgres.
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { AgentRegistry } from '../src/agent/agents.js';
import type { Store, ThreadRef } from '../src/store/store.js';
import type { Dispatch, RunClosure, StoredMailbox } from '../src/contract/mailbox.js';

/** How a described workflow's status reads as a run's closure. */
const CLOSURES: Record<string, RunClosure> = {
  RUNNING: 'running',
  COMPLETED: 'completed',
  CANCELLED: 'cancelled',
  TERMINATED: 'terminated',
  TIMED_OUT: 'timed_out',
  FAILED: 'failed',
  CONTINUED_AS_NEW: 'running',
};

/** `temporal` is optional: without it every run counts as running. */
export function recoveryActivities({ store, agents, temporal }: { store: Store; agents: AgentRegistry; temporal?: Client }) {
  return {
    /** Whether a run workflow still runs, and if not how it closed. */
    async probeRun(args: { workflowId: string }): Promise<RunClosure> {
      if (!temporal) return 'running';
      try {
        const { status } = await temporal.workflow.getHandle(args.workflowId).describe();
        return CLOSURES[status.name] ?? 'failed';
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return 'not_found';
        throw err;
      }
    },

    /** The mailbox of a thread whose workflow state was lost (terminated), from Postgres. */
    async loadMailbox(args: { ref: ThreadRef }): Promise<StoredMailbox> {
      const rows = await store.loadMailboxRows(args.ref);
      const toDispatch = (r: (typeof rows.open)[number]): Dispatch => ({
        runId: r.runId,
        dispatchId: r.dispatchId,
        mode: r.mode as Dispatch['mode'],
        // An agent removed from the config since: the run fails at its first step with a clear error.
        agent: agents.settings(r.agentId) ?? { agentId: r.agentId, maxSteps: 1, approvalTools: [] },
        epoch: r.epoch,
        carriedRunIds: [],
        workflowId: r.workflowId,
      });
      const active = rows.open.find((r) => r.status === 'running' || r.status === 'waiting');
      const queue = rows.open.filter((r) => r.status === 'queued').map(toDispatch);
      // Input of superseded runs travels with the first queued run, as it did before; with none, it is committed now.
      if (queue[0]) queue[0].carriedRunIds = rows.pendingOfEnded;
      return { epoch: rows.epoch, active: active ? toDispatch(active) : null, queue, orphanedRunIds: queue[0] ? [] : rows.pendingOfEnded };
    },
  };
}
