// The thread's mailbox lock: one change of the mailbox at a time, in arrival order.
import { condition } from '@temporalio/workflow';

/**
 * A lock for workflow code. A released lock stays free until the next waiter's condition runs, so the
 * thread's main loop (which starts a run only while the lock is free) competes with waiting handlers
 * exactly as the recorded histories did. A library mutex (async-mutex) hands the lock straight to the
 * next waiter instead: the order of commands would change and running threads would fail to replay.
 */
export class Lock {
  held = false;

  async run<T>(work: () => Promise<T>): Promise<T> {
    // Several waiters can wake in one activation: each re-checks before taking the lock.
    while (this.held) await condition(() => !this.held);
    this.held = true;
    try {
      return await work();
    } finally {
      this.held = false;
    }
  }
}
