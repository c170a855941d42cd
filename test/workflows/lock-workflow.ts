// A workflow that exercises the mailbox Lock with concurrent updates (bundled by lock.test.ts only).
import { ApplicationFailure, allHandlersFinished, condition, defineQuery, defineUpdate, setHandler, sleep } from '@temporalio/workflow';
import { Lock } from '../../workflows/lock.js';

export const enterUpdate = defineUpdate<number, [{ id: number; fail?: boolean }]>('enter');
export const statsQuery = defineQuery<{ maxInside: number; order: number[]; held: boolean }>('stats');

export async function lockWorkflow(expected: number): Promise<number[]> {
  const lock = new Lock();
  let inside = 0;
  let maxInside = 0;
  const order: number[] = [];
  setHandler(enterUpdate, ({ id, fail }) =>
    lock.run(async () => {
      inside += 1;
      maxInside = Math.max(maxInside, inside);
      await sleep(10); // a timer inside the lock: other updates arrive and wait meanwhile
      inside -= 1;
      if (fail) throw ApplicationFailure.create({ message: `update ${id} failed inside the lock`, nonRetryable: true });
      order.push(id);
      return order.length;
    }),
  );
  setHandler(statsQuery, () => ({ maxInside, order, held: lock.held }));
  await condition(() => order.length === expected);
  await condition(allHandlersFinished);
  return order;
}
