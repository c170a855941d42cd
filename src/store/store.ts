// The store as one object on one pool: each call goes to the module that owns its table (messages,
// runs and the dispatch view of them, events, threads, submit keys), whose functions say what they do.
import type pg from 'pg';
import type { RunEvent, RunEventBody, Termination, Usage } from '../contract/run-events.js';
import * as dispatches from './dispatches.js';
import * as events from './events.js';
import * as log from './messages.js';
import { AppendQueues, type NewMessage } from './messages.js';
import * as runs from './runs.js';
import type { NewRun } from './runs.js';
import * as submitKeys from './submit-keys.js';
import * as threads from './threads.js';
import type { ThreadRef } from './threads.js';

export { StoreError } from './errors.js';
export type { CommittedMessage, NewMessage, ToolCall } from './messages.js';
export type { OperationalCounts } from './runs.js';
export type { ThreadRef } from './threads.js';

export class Store {
  private readonly appendQueues = new AppendQueues();

  constructor(readonly pool: pg.Pool) {}

  // ---- the committed log (messages.ts) --------------------------------------------------

  commitMessages(ref: ThreadRef, messages: NewMessage[]) {
    return this.appendQueues.run(ref, () => log.commitMessages(this.pool, ref, messages));
  }

  loadCommittedMessages(ref: ThreadRef, afterSeq?: number, limit?: number) {
    return log.loadCommittedMessages(this.pool, ref, afterSeq, limit);
  }

  loadRecentMessages(ref: ThreadRef, opts: { limit: number; maxContentBytes: number }) {
    return log.loadRecentMessages(this.pool, ref, opts);
  }

  loadRunMessages(ref: ThreadRef, runId: string) {
    return log.loadRunMessages(this.pool, ref, runId);
  }

  findUsedMessageIds(ref: ThreadRef, ids: string[]) {
    return log.findUsedMessageIds(this.pool, ref, ids);
  }

  // ---- threads (threads.ts) -------------------------------------------------------------

  getThread(ref: ThreadRef) {
    return threads.getThread(this.pool, ref);
  }

  listThreads(tenant: string, limit?: number, afterThreadId?: string) {
    return threads.listThreads(this.pool, tenant, limit, afterThreadId);
  }

  // ---- runs (runs.ts) and their dispatches (dispatches.ts) -------------------------------

  createRun(ref: ThreadRef, run: NewRun) {
    return runs.createRun(this.pool, ref, run);
  }

  discardRun(ref: ThreadRef, runId: string) {
    return runs.discardRun(this.pool, ref, runId);
  }

  startRun(runId: string, carriedRunIds?: string[], tenant?: string) {
    return runs.startRun(this.pool, runId, carriedRunIds, tenant);
  }

  setRunWaiting(runId: string, waiting: unknown | null, tenant?: string) {
    return runs.setRunWaiting(this.pool, runId, waiting, tenant);
  }

  recordStep(runId: string, step: number, usage: Usage, tenant?: string) {
    return runs.recordStep(this.pool, runId, step, usage, tenant);
  }

  finishRun(runId: string, termination: Termination, opts?: { error?: string; fence?: number; tenant?: string }) {
    return runs.finishRun(this.pool, runId, termination, opts);
  }

  commitPendingInput(ref: ThreadRef, runIds: string[]) {
    return runs.commitPendingInput(this.pool, ref, runIds);
  }

  getRun(runId: string, tenant?: string) {
    return runs.getRun(this.pool, runId, tenant);
  }

  listRuns(ref: ThreadRef) {
    return runs.listRuns(this.pool, ref);
  }

  readOperationalCounts() {
    return runs.readOperationalCounts(this.pool);
  }

  loadMailboxRows(ref: ThreadRef) {
    return dispatches.loadMailboxRows(this.pool, ref);
  }

  listDispatches(ref: ThreadRef) {
    return dispatches.listDispatches(this.pool, ref);
  }

  // ---- submit keys (submit-keys.ts) -----------------------------------------------------

  claimSubmitKey(ref: ThreadRef, key: string, requestHash: string) {
    return submitKeys.claimSubmitKey(this.pool, ref, key, requestHash);
  }

  submitKeyHash(tenant: string, key: string) {
    return submitKeys.submitKeyHash(this.pool, tenant, key);
  }

  threadOfSubmitKey(tenant: string, key: string) {
    return submitKeys.threadOfSubmitKey(this.pool, tenant, key);
  }

  releaseSubmitKey(tenant: string, key: string) {
    return submitKeys.releaseSubmitKey(this.pool, tenant, key);
  }

  // ---- the event log (events.ts) --------------------------------------------------------

  appendEvents(runId: string, fence: number, body: RunEventBody[], tenant?: string) {
    return events.appendEvents(this.pool, runId, fence, body, tenant);
  }

  readEvents(runId: string, afterSeq?: number, limit?: number, tenant?: string) {
    return events.readEvents(this.pool, runId, afterSeq, limit, tenant);
  }

  lastEventSeq(runId: string, type: RunEvent['type'], tenant: string) {
    return events.lastEventSeq(this.pool, runId, type, tenant);
  }

  readThreadEvents(ref: ThreadRef, afterId?: number, limit?: number) {
    return events.readThreadEvents(this.pool, ref, afterId, limit);
  }
}
