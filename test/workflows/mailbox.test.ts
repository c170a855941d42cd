// The mailbox rules on their own, without a server.
import { describe, expect, it } from 'vitest';
import { Mailbox } from '../../workflows/mailbox.js';

const agent = { agentId: 'default', maxSteps: 10, approvalTools: [] };
const d = (runId: string, mode: 'interrupt' | 'queue' | 'steer' = 'queue') => ({ runId, dispatchId: `d-${runId}`, mode, agent });

describe('Mailbox', () => {
  it('queues background submits in FIFO order behind the active run', () => {
    const mailbox = new Mailbox();
    mailbox.enqueue(d('r1'));
    mailbox.enqueue(d('r2'));
    expect(mailbox.takeNext()?.runId).toBe('r1');
    expect(mailbox.takeNext()).toBeUndefined(); // r1 is active
    mailbox.runEnded('r1');
    expect(mailbox.takeNext()?.runId).toBe('r2');
  });

  it('foreground submit supersedes queued runs and carries their input ahead of its own', () => {
    const mailbox = new Mailbox();
    mailbox.enqueue(d('q1'));
    mailbox.enqueue(d('q2'));
    const { dispatch, superseded } = mailbox.putFirst(d('f1', 'interrupt'));
    expect(superseded.map((s) => s.runId)).toEqual(['q1', 'q2']);
    expect(dispatch).toMatchObject({ runId: 'f1', epoch: 1, carriedRunIds: ['q1', 'q2'] });
    expect(mailbox.queue.map((q) => q.runId)).toEqual(['f1']);
  });

  it('a second foreground submit carries what the first carried', () => {
    const mailbox = new Mailbox();
    mailbox.enqueue(d('q1'));
    mailbox.putFirst(d('f1', 'interrupt'));
    const { dispatch } = mailbox.putFirst(d('f2', 'interrupt'));
    expect(dispatch.carriedRunIds).toEqual(['q1', 'f1']);
    expect(dispatch.epoch).toBe(2);
  });

  it('cancelling a queued run hands the runs it carried to the next in line', () => {
    const mailbox = new Mailbox();
    mailbox.enqueue(d('q1'));
    mailbox.putFirst(d('f1', 'interrupt'));
    mailbox.enqueue(d('q2'));
    const removed = mailbox.removeQueued('f1');
    expect(removed?.orphanedCarriedRunIds).toEqual([]);
    expect(mailbox.queue[0]).toMatchObject({ runId: 'q2', carriedRunIds: ['q1'] });
  });

  it('cancelling the last queued run returns the runs it carried, to commit at once', () => {
    const mailbox = new Mailbox();
    mailbox.enqueue(d('q1'));
    mailbox.putFirst(d('f1', 'interrupt'));
    expect(mailbox.removeQueued('f1')?.orphanedCarriedRunIds).toEqual(['q1']);
    expect(mailbox.removeQueued('nope')).toBeUndefined();
  });

  it('survives a snapshot round trip, as continue-as-new carries it', () => {
    const mailbox = new Mailbox();
    mailbox.enqueue(d('a'));
    mailbox.takeNext();
    mailbox.markStarted('a');
    mailbox.enqueue(d('b'));
    const copy = new Mailbox(structuredClone(mailbox.snapshot()));
    expect(copy.active?.runId).toBe('a');
    expect(copy.activeStarted).toBe(true);
    expect(copy.queue.map((q) => q.runId)).toEqual(['b']);
    expect(copy.idle).toBe(false);
  });

  it('late steering goes first in line', () => {
    const mailbox = new Mailbox();
    mailbox.enqueue(d('q1'));
    mailbox.enqueueFirst(d('s1', 'steer'));
    expect(mailbox.queue.map((q) => q.runId)).toEqual(['s1', 'q1']);
  });
});
