// The scenarios the history recorder drives, each over the HTTP API, each recording the thread it leaves.
import type { Client } from '@temporalio/client';
import { sleep } from '../../testkit/wait.js';
import { expectHttp, expectStatus, type Api } from './api.js';
import { runEndedSignals, threadHistories, waitUntilSettled } from './thread-histories.js';

/** Small, so that a thread continues-as-new after a dozen submits (the test suite uses 400). */
export const SUGGEST_CONTINUE_AS_NEW = 150;
const SEND_EMAIL = '/tool send_email {"to":"a@b.c","subject":"s","body":"b"}';

export interface Scenario {
  name: string;
  run(ctx: Ctx): Promise<void>;
}

export interface Ctx {
  api: Api;
  /** Writes every execution of the thread's workflow and of its runs' workflows, as they stand now, into `folder`. */
  record(folder: string, what: string, threadId: string): Promise<void>;
  stopWorker(): Promise<void>;
  startWorker(): Promise<void>;
  temporal: Client;
  log(line: string): void;
}

export const scenarios: Scenario[] = [
  {
    name: 'interrupt',
    async run({ api, record }) {
      const threadId = api.newThreadId('interrupt');
      const first = await api.submit(threadId, '/slow 100 /long 200 first');
      await api.waitForEvent(first.runId, 'text_delta');
      for (const text of ['q1', 'q2', 'q3']) expectStatus(await api.submit(threadId, text, { mode: 'queue' }), 'queued');
      const last = await api.submit(threadId, 'last');
      await api.expectTermination(first.runId, 'interrupted');
      await api.expectTermination(last.runId, 'natural_end');
      await record('interrupt', 'an interrupting submit (mode interrupt, the default) stops the streaming run and supersedes 3 queued runs', threadId);
    },
  },
  {
    name: 'queue-fifo',
    async run({ api, record }) {
      const threadId = api.newThreadId('queue');
      const runs = [];
      for (const text of ['/slow 20 /long 10 one', 'two', 'three']) runs.push(await api.submit(threadId, text, { mode: 'queue' }));
      for (const run of runs) await api.expectTermination(run.runId, 'natural_end');
      await record('queue-fifo', 'three queue submits run one after another in arrival order', threadId);
    },
  },
  {
    name: 'steer',
    async run({ api, record }) {
      const threadId = api.newThreadId('steer');
      const first = await api.submit(threadId, '/slow 100 /long 30 story');
      await api.waitForEvent(first.runId, 'text_delta');
      expectStatus(await api.submit(threadId, 'also this', { mode: 'steer', expectedRunId: first.runId }), 'steered');
      await api.expectTermination(first.runId, 'natural_end');
      await api.waitForEvent(first.runId, 'steering_applied');
      await record('steer', 'a steer submit with expectedRunId is applied to the active run at its next step boundary', threadId);
    },
  },
  {
    name: 'steer-late',
    async run({ api, record, temporal, log }) {
      // The race is timing-bound: tries run 4 at a time (the load widens the window), until one thread shows a
      // run that signalled runEnded twice with steering, or 10 batches have run. Every other steer names no
      // expectedRunId, so it steers whichever run is active: each run's end is another chance.
      const attempt = async (): Promise<{ threadId: string; shows: string; carrying: number; twice: boolean }> => {
        const threadId = api.newThreadId('steer-late');
        const first = await api.submit(threadId, '/slow 5 /long 4 go');
        const steers = [];
        for (let i = 0; i < 20; i++) {
          steers.push(api.submit(threadId, `late ${i}`, { mode: 'steer', ...(i % 2 ? {} : { expectedRunId: first.runId }) }));
          await sleep(4);
        }
        await Promise.all(steers);
        await waitUntilSettled(temporal, api, threadId);
        const ended = runEndedSignals(await threadHistories(temporal, threadId));
        const carrying = ended.filter((s) => s.unappliedSteering > 0).length;
        const perRun = new Map<string, number>();
        for (const s of ended) perRun.set(s.runId, (perRun.get(s.runId) ?? 0) + 1);
        const twice = [...perRun.values()].some((n) => n > 1);
        const shows = `${ended.length} runEnded signals, ${carrying} carrying steering, ${twice ? 'two from one run' : 'one per run'}`;
        log(`steer-late ${threadId}: ${shows}`);
        return { threadId, shows, carrying, twice };
      };
      let kept: { threadId: string; shows: string } | undefined;
      for (let batch = 0; batch < 10; batch++) {
        const tries = await Promise.all([attempt(), attempt(), attempt(), attempt()]);
        kept = tries.find((t) => t.twice && t.carrying > 0) ?? kept ?? tries.find((t) => t.carrying > 0);
        if (tries.some((t) => t.twice && t.carrying > 0)) break;
      }
      if (!kept) throw new Error('no try produced a runEnded signal carrying steering');
      await record(
        'steer-late',
        `20 steer submits (every other one with expectedRunId of the first run) fired 4 ms apart at a short run; those arriving as a run ends reach the thread in runEnded, or queue as runs of their own. This thread: ${kept.shows}`,
        kept.threadId,
      );
    },
  },
  {
    name: 'approval',
    async run({ api, record }) {
      const approved = api.newThreadId('approve');
      const waiting = await api.submit(approved, SEND_EMAIL);
      const request = await api.waitForEvent(waiting.runId, 'tool_approval_requested');
      await api.waitForRunStatus(waiting.runId, 'waiting');
      await record('approval-waiting', 'a run waits for the approval of a send_email call; recorded while it waits (open histories)', approved);
      expectHttp(await api.request('POST', `/v1/runs/${waiting.runId}/decisions`, { toolCallId: request.toolCallId, action: 'approve' }), 202);
      await api.expectTermination(waiting.runId, 'natural_end');
      await record('approval-approve', 'the run of approval-waiting, approved: the email is sent and the run answers', approved);

      const denied = api.newThreadId('deny');
      const run = await api.submit(denied, SEND_EMAIL);
      const deny = await api.waitForEvent(run.runId, 'tool_approval_requested');
      expectHttp(await api.request('POST', `/v1/runs/${run.runId}/decisions`, { toolCallId: deny.toolCallId, action: 'deny', reason: 'not now' }), 202);
      await api.expectTermination(run.runId, 'natural_end');
      await record('approval-deny', 'a send_email call denied with a reason: the model sees the denial and answers', denied);
    },
  },
  {
    name: 'cancel',
    async run({ api, record }) {
      const threadId = api.newThreadId('cancel');
      const active = await api.submit(threadId, '/slow 100 /long 100 active');
      const queued = await api.submit(threadId, 'queued, then cancelled', { mode: 'queue' });
      const behind = await api.submit(threadId, 'behind', { mode: 'queue' });
      await api.waitForEvent(active.runId, 'text_delta');
      expectHttp(await api.request('POST', `/v1/runs/${queued.runId}/cancel`), 202);
      await api.expectTermination(queued.runId, 'cancelled');
      expectHttp(await api.request('POST', `/v1/runs/${active.runId}/cancel`), 202);
      await api.expectTermination(active.runId, 'cancelled');
      await api.expectTermination(behind.runId, 'natural_end');
      await record('cancel', 'POST /v1/runs/{id}/cancel of a queued run, then of the active (streaming) run; the run queued behind them runs', threadId);
    },
  },
  {
    name: 'thread-interrupt',
    async run({ api, record }) {
      const threadId = api.newThreadId('thread-interrupt');
      const active = await api.submit(threadId, '/slow 100 /long 100 active');
      const queued = await api.submit(threadId, 'queued', { mode: 'queue' });
      await api.waitForEvent(active.runId, 'text_delta');
      const interrupted = expectHttp(await api.request('POST', `/v1/threads/${threadId}/interrupt`), 202);
      if (interrupted.cancelledRunId !== active.runId) throw new Error(`interrupt cancelled ${interrupted.cancelledRunId}, not ${active.runId}`);
      await api.expectTermination(active.runId, 'interrupted');
      await api.expectTermination(queued.runId, 'superseded');
      await record('thread-interrupt', 'POST /v1/threads/{id}/interrupt cancels the active run and supersedes the queued one', threadId);
    },
  },
  {
    name: 'concurrent-submits',
    async run({ api, record }) {
      // Ten submits at once in every mode: their claims (local activities since the local-claims patch)
      // are ordered only by the thread's handler lock, and replay must find them in that order.
      const threadId = api.newThreadId('concurrent');
      const first = await api.submit(threadId, '/slow 50 /long 40 first');
      const modes = ['queue', 'steer', 'queue', 'interrupt', 'queue', 'steer', 'queue', 'queue', 'steer', 'queue'] as const;
      const runs = await Promise.all(modes.map((mode, i) => api.submit(threadId, `/slow 20 /long 5 concurrent ${i}`, { mode })));
      for (const run of [first, ...runs]) await api.waitForRunStatus(run.runId, 'done');
      await record('concurrent-submits', 'ten submits at once (queue, steer, interrupt) while a run streams; every run ends', threadId);
    },
  },
  {
    name: 'stop-before-first-step',
    async run({ api, record }) {
      // The interrupt lands before the first run's model step (which starts it since start-in-first-step) gets going.
      const threadId = api.newThreadId('early-stop');
      const [first, second] = await Promise.all([api.submit(threadId, 'stopped at once'), sleep(5).then(() => api.submit(threadId, 'the interrupt'))]);
      await api.waitForRunStatus(first!.runId, 'done');
      await api.expectTermination(second!.runId, 'natural_end');
      await record('stop-before-first-step', 'an interrupting submit right behind the first one: the first run may be stopped before its first step', threadId);
    },
  },
  {
    name: 'durable-mailbox',
    async run({ api, record }) {
      const threadId = api.newThreadId('durable');
      const message = { messageId: `${threadId}-msg`, text: '/slow 50 /long 20 delivered', senderAgentId: 'scheduler' };
      const first = expectHttp(await api.request('POST', `/v1/threads/${threadId}/mailbox`, message), 201);
      const again = expectHttp(await api.request('POST', `/v1/threads/${threadId}/mailbox`, message), 200);
      if (!again.duplicate || again.runId !== first.runId) throw new Error('a redelivery was not answered as a duplicate of the first');
      await api.expectTermination(first.runId, 'natural_end');
      expectHttp(await api.request('POST', `/v1/threads/${threadId}/mailbox`, message), 200);
      await record('durable-mailbox', 'a durable mailbox message (201), redelivered while its run is in flight and again after it ended (200, duplicate)', threadId);
    },
  },
  {
    name: 'continue-as-new',
    async run({ api, record, temporal }) {
      const threadId = api.newThreadId('can');
      const waiting = await api.submit(threadId, SEND_EMAIL);
      const request = await api.waitForEvent(waiting.runId, 'tool_approval_requested');
      const queued = [];
      for (let i = 0; (await threadHistories(temporal, threadId)).length < 2; i++) {
        if (i === 40) throw new Error('the thread did not continue-as-new after 40 queue submits');
        queued.push(await api.submit(threadId, `behind ${i}`, { mode: 'queue' }));
      }
      expectHttp(await api.request('POST', `/v1/runs/${waiting.runId}/decisions`, { toolCallId: request.toolCallId, action: 'approve' }), 202);
      await api.expectTermination(waiting.runId, 'natural_end');
      for (const run of queued) await api.expectTermination(run.runId, 'natural_end');
      await record(
        'continue-as-new',
        `the thread continues-as-new (suggested at ${SUGGEST_CONTINUE_AS_NEW} events) while a run waits for approval with ${queued.length} queue submits behind it; then the approval and the queue complete`,
        threadId,
      );
    },
  },
  {
    name: 'tool-calculator',
    async run({ api, record }) {
      const threadId = api.newThreadId('calculator');
      const run = await api.submit(threadId, '/tool calculator {"expression":"6*7"}');
      await api.expectTermination(run.runId, 'natural_end');
      await record('tool-calculator', 'a run calls the calculator tool and answers with its result (two model steps)', threadId);
    },
  },
  {
    name: 'stopped-mid-run',
    async run({ api, record, stopWorker, startWorker }) {
      const threadId = api.newThreadId('midrun');
      const active = await api.submit(threadId, '/slow 100 /long 150 midrun');
      const behind = await api.submit(threadId, 'behind', { mode: 'queue' });
      await api.waitForEvent(active.runId, 'text_delta');
      await stopWorker();
      await record('stopped-mid-run', 'the worker shut down while a run streams, a run queued behind it; recorded while no worker runs (open histories)', threadId);
      await startWorker();
      await api.expectTermination(active.runId, 'natural_end', 90_000);
      await api.expectTermination(behind.runId, 'natural_end');
      await record('stopped-mid-run-resumed', 'the thread of stopped-mid-run after a new worker finished both runs', threadId);
    },
  },
];
