// TemporalCalls' refusals when a thread's line of updates is stuck: on the thread (thread_busy) or on
// Temporal (unavailable). The first update is still in flight: its start has not been answered.
import { status as grpcStatus, Metadata } from '@grpc/grpc-js';
import { Client, Connection, type WorkflowUpdateHandle } from '@temporalio/client';
import { afterEach, expect, it } from 'vitest';
import { TemporalCalls, TemporalLink } from '../../src/api/temporal-calls.js';

const connection = Connection.lazy({ address: '127.0.0.1:1' });
const client = new Client({ connection });
let release: () => void = () => {};

afterEach(() => release());

/** An update whose start is answered only when the test ends; it holds its place in the thread's line. */
function stuck(calls: TemporalCalls) {
  const pending = calls.update('thread-a', () => new Promise<WorkflowUpdateHandle<unknown>>((_, reject) => {
    release = () => reject(new Error('released'));
  }));
  pending.catch(() => {});
}

const refusal = (calls: TemporalCalls) => calls.update('thread-a', async () => { throw new Error('must not be called'); }).then(() => undefined, (err: { code: string; message: string }) => err);

it('a line whose oldest has waited past busyAfterMs refuses the next with thread_busy while Temporal answers', async () => {
  const calls = new TemporalCalls(client, new TemporalLink(), { maxInFlight: 16, maxInFlightPerWorkflow: 8, busyAfterMs: 40 });
  stuck(calls);
  await new Promise((r) => setTimeout(r, 60));
  expect(await refusal(calls)).toMatchObject({ code: 'thread_busy', message: expect.stringMatching(/working on an earlier request for 0\.\d s/) });
});

it('the same line is refused unavailable when a call found Temporal unreachable since its oldest started, even past the fail-fast window', async () => {
  const link = new TemporalLink();
  const calls = new TemporalCalls(client, link, { maxInFlight: 16, maxInFlightPerWorkflow: 8, busyAfterMs: 40 });
  stuck(calls);
  await new Promise((r) => setTimeout(r, 5));
  link.note({ code: grpcStatus.UNAVAILABLE, details: 'connect ECONNREFUSED 127.0.0.1:7233', metadata: new Metadata() });
  // Past FAIL_FAST_MS, within which every call fails fast whatever the line: the line's rule answers.
  await new Promise((r) => setTimeout(r, 1600));
  expect(await refusal(calls)).toMatchObject({ code: 'unavailable', message: 'temporal unavailable: unreachable (connect ECONNREFUSED 127.0.0.1:7233)' });
});

it('a full line is refused unavailable, not thread_busy, while the oldest retries an unreachable Temporal', async () => {
  const link = new TemporalLink();
  const calls = new TemporalCalls(client, link, { maxInFlight: 16, maxInFlightPerWorkflow: 1 });
  stuck(calls);
  expect(await refusal(calls)).toMatchObject({ code: 'thread_busy', message: expect.stringMatching(/1 requests are already in flight/) });
  link.note({ code: grpcStatus.UNAVAILABLE, details: 'connect ECONNREFUSED', metadata: new Metadata() });
  await new Promise((r) => setTimeout(r, 1600));
  expect(await refusal(calls)).toMatchObject({ code: 'unavailable' });
});
