// How a run workflow's closure (seen by its parent, or by asking Temporal) reads as a termination.
import { CancelledFailure, TerminatedFailure, TimeoutFailure } from '@temporalio/workflow';
import type { RunClosure } from '../src/contract/mailbox.js';
import type { Termination } from '../src/contract/run-events.js';

/** How a child run's failure reads as a termination. */
export function terminationOfFailure(err: unknown): Termination {
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause && !(cause instanceof TerminatedFailure || cause instanceof CancelledFailure || cause instanceof TimeoutFailure)) cause = cause.cause;
  if (cause instanceof TerminatedFailure) return { type: 'error', detail: `terminated${cause.message && cause.message !== 'Workflow execution terminated' ? `: ${cause.message}` : ''}` };
  if (cause instanceof CancelledFailure) return { type: 'cancelled', detail: 'its workflow was cancelled in Temporal' };
  if (cause instanceof TimeoutFailure) return { type: 'error', detail: 'its workflow timed out' };
  return { type: 'error', detail: `its workflow failed: ${cause instanceof Error ? cause.message : String(cause)}` };
}

export function terminationOfClosure(closure: RunClosure): Termination {
  switch (closure) {
    case 'cancelled':
      return { type: 'cancelled', detail: 'its workflow was cancelled in Temporal' };
    case 'terminated':
      return { type: 'error', detail: 'terminated' };
    case 'timed_out':
      return { type: 'error', detail: 'its workflow timed out' };
    case 'not_found':
      return { type: 'error', detail: 'its workflow no longer exists' };
    default:
      return { type: 'error', detail: `its workflow ${closure} without reporting its end` };
  }
}
