// Activities that commit messages to a thread's log: a run's output, input left pending, steering.
import type { NewMessage, Store, ThreadRef } from '../src/store/store.js';
import type { InputMessage } from '../src/contract/mailbox.js';
import { storeCall } from './retry.js';

export function messageActivities(store: Store) {
  return {
    async commitMessages(args: { ref: ThreadRef; messages: NewMessage[] }) {
      const result = await storeCall(() => store.commitMessages(args.ref, args.messages));
      return { firstSeq: result.firstSeq, lastSeq: result.lastSeq };
    },

    /** Commits the pending input of runs that ended without starting (superseded by an interrupt). */
    async commitPendingInput(args: { ref: ThreadRef; runIds: string[] }) {
      await storeCall(() => store.commitPendingInput(args.ref, args.runIds));
    },

    /** Commits steered messages before the next model call and announces them. */
    async applySteering(args: { ref: ThreadRef; runId: string; messages: InputMessage[]; fence: number }) {
      const { runId } = args;
      const committed = await storeCall(() => store.commitMessages(args.ref, args.messages.map((m) => ({ ...m, runId }))));
      if (!committed.duplicate) {
        await storeCall(() => store.appendEvents(runId, args.fence, [{ type: 'steering_applied', messageIds: committed.messageIds }], args.ref.tenant));
      }
    },
  };
}
