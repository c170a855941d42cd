// The one retry-on-lost-race helper: how many tries, which errors, what is thrown at the end.
import { describe, expect, it } from 'vitest';
import { retryLostRaces } from '../../src/store/tx.js';

class Lost extends Error {}
const lost = (err: unknown) => err instanceof Lost;

describe('retryLostRaces', () => {
  it('work that wins after losing returns its result', async () => {
    let tries = 0;
    const result = await retryLostRaces(
      async () => {
        if (++tries < 3) throw new Lost('moved');
        return 'won';
      },
      { attempts: 8, lost },
    );
    expect(result).toBe('won');
    expect(tries).toBe(3);
  });

  it('work that keeps losing is tried exactly `attempts` times, then fails with the exhausted error (or its last loss)', async () => {
    let tries = 0;
    const keepsLosing = async () => {
      throw new Lost(`loss ${++tries}`);
    };
    await expect(retryLostRaces(keepsLosing, { attempts: 8, lost, pauseMs: () => 1, exhausted: (e) => new Error(`gave up after ${(e as Error).message}`) })).rejects.toThrow(
      'gave up after loss 8',
    );
    expect(tries).toBe(8);
    tries = 0;
    await expect(retryLostRaces(keepsLosing, { attempts: 3, lost })).rejects.toThrow('loss 3');
    expect(tries).toBe(3);
  });

  it('an error that is not a lost race is thrown at once', async () => {
    let tries = 0;
    await expect(
      retryLostRaces(
        async () => {
          tries++;
          throw new Error('refused');
        },
        { attempts: 8, lost },
      ),
    ).rejects.toThrow('refused');
    expect(tries).toBe(1);
  });
});
