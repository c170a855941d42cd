// The API's calls to Temporal: bounded per workflow and per process, bounded in time, and answered in the contract's codes.
import { status as grpcStatus, type Interceptor, type StatusObject } from '@grpc/grpc-js';
import {
  defaultGrpcRetryOptions,
  isGrpcServiceError,
  makeGrpcRetryInterceptor,
  type Client,
  type ConnectionOptions,
  type WorkflowUpdateHandle,
} from '@temporalio/client';
import { ApiError } from './errors.js';

/**
 * A workflow handles its updates one at a time: a line whose oldest update has waited this long is full
 * whatever its length, since a newcomer would wait at least as long. This keeps answers within seconds
 * when the workflow is slow (a loaded worker), where the count alone would let a line of 8 wait 8 × as long.
 */
export const BUSY_AFTER_MS = 3000;
/** A call that has found Temporal unreachable for this long gives up: the answer is a 503 within about 4 s. */
export const UNREACHABLE_FOR_MS = 3500;
/**
 * How long a reachable Temporal has to take an update in (validated and accepted by the workflow: a
 * worker must be polling) before the answer is 503. Such an update may still be applied later.
 */
export const ACCEPT_WITHIN_MS = 10_000;
/** How long an accepted update has to complete; past it the answer is 503 and a retry with the same key gets the result. */
export const COMPLETE_WITHIN_MS = 30_000;
/** A call that failed to reach Temporal this recently makes the next ones fail at once instead of waiting out a deadline. */
export const FAIL_FAST_MS = 1500;
/**
 * An update that took longer than this to be answered (taken in and completed) shows Temporal or its
 * workers behind: fewer are let in. The whole answer counts, not only the take-in: a loaded worker takes
 * updates in at once and then is slow to run their activities, and every answer must stay within seconds.
 */
export const SLOW_ANSWER_MS = 1500;
/** However slow the takes, this many updates may be in flight in one API process. */
const MIN_IN_FLIGHT = 4;
/** Where the limit starts: a cold worker takes a first burst in slowly, and the limit grows as takes stay fast. */
const INITIAL_IN_FLIGHT = 16;
/** The most the gRPC channel waits between attempts to reconnect: Temporal's return is seen within about this long. */
const MAX_RECONNECT_BACKOFF_MS = 1000;

/** What this process's calls have lately seen of Temporal: the last time it could not be reached, until a call gets through. */
export class TemporalLink {
  private lastUnreachable?: { at: number; detail: string };

  /** Sees the status of every attempt of every call (the retry interceptor's decision point). */
  note(status: StatusObject) {
    if (status.code === grpcStatus.UNAVAILABLE) this.lastUnreachable = { at: Date.now(), detail: status.details };
    else if (status.code === grpcStatus.OK) this.lastUnreachable = undefined;
  }

  /** Why Temporal was unreachable within the last `ms`, if it was and no call has got through since. */
  unreachableWithin(ms: number): string | undefined {
    const last = this.lastUnreachable;
    return last && Date.now() - last.at < ms ? last.detail : undefined;
  }

  /** Why Temporal was unreachable at or after `since` (ms since the epoch), if it was and no call has got through since. */
  unreachableSince(since: number): string | undefined {
    const last = this.lastUnreachable;
    return last && last.at >= since ? last.detail : undefined;
  }
}

/**
 * The API's Connection options. Its channel retries a lost connection at least every second (grpc's
 * default backoff grows to two minutes, so a Temporal back for 20 s still looked down). Its calls
 * retry as the SDK's do, except that a retry never starts past the call's deadline (the SDK's would,
 * which is how a 4 s deadline became a 9 s wait), none starts once Temporal has been unreachable for
 * UNREACHABLE_FOR_MS (a reachable Temporal that is slow to answer is waited for, up to the deadline),
 * and RESOURCE_EXHAUSTED is not retried (the SDK backs off for up to a minute): a workflow whose
 * update slots are full, whose lock is taken or which is continuing as new is busy, and the client is
 * told so at once, as it is when Temporal sheds load.
 */
export function apiConnectionOptions(link: TemporalLink): ConnectionOptions {
  return {
    channelArgs: { 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': MAX_RECONNECT_BACKOFF_MS },
    interceptors: [retryWithinDeadline(link)],
  };
}

/** The SDK's retry interceptor, made per call so that it knows the call's deadline. */
function retryWithinDeadline(link: TemporalLink): Interceptor {
  const sdk = defaultGrpcRetryOptions();
  return (options, nextCall) => {
    const deadline = typeof options.deadline === 'number' ? options.deadline : (options.deadline?.getTime() ?? Infinity);
    let delay = 0;
    let unreachableSince: number | undefined;
    return makeGrpcRetryInterceptor({
      retryableDecider(attempt, status) {
        link.note(status);
        if (status.code === grpcStatus.RESOURCE_EXHAUSTED || !sdk.retryableDecider(attempt, status)) return false;
        delay = sdk.delayFunction(attempt, status);
        const retryAt = Date.now() + delay;
        unreachableSince = status.code === grpcStatus.UNAVAILABLE ? (unreachableSince ?? Date.now()) : undefined;
        if (unreachableSince !== undefined && retryAt >= unreachableSince + UNREACHABLE_FOR_MS) return false;
        return retryAt < deadline;
      },
      delayFunction: () => delay,
    })(options, nextCall);
  };
}

/** RESOURCE_EXHAUSTED causes that concern one workflow: its update slots, its lock, its continue-as-new. */
const WORKFLOW_BUSY = /in-flight updates|workflow is busy|workflow is closing/i;
const UNREACHABLE = new Set<number>([grpcStatus.UNAVAILABLE, grpcStatus.DEADLINE_EXCEEDED, grpcStatus.CANCELLED]);

/**
 * The gRPC status under an SDK error, if the error came from the transport. For an Update-With-Start
 * the SDK moves the failed operation's message into `message` and leaves its binary detail in `details`.
 */
function grpcCause(err: unknown): { code: number; details: string } | undefined {
  for (let e = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if (isGrpcServiceError(e)) return { code: e.code, details: /^[\x20-\x7e]*$/.test(e.details) && e.details ? e.details : e.message };
  }
  return undefined;
}

/** A readable line for a failed Temporal call: the gRPC status name and its details, or the error's message. */
export function describeTemporalError(err: unknown): string {
  const cause = grpcCause(err);
  if (!cause) return (err as Error)?.message ?? String(err);
  return `${grpcStatus[cause.code] ?? cause.code}: ${cause.details}`;
}

export interface TemporalCallLimits {
  /** updates one API process has in flight at most, over all workflows (fewer while Temporal is slow to take them in) */
  maxInFlight: number;
  /** updates one API process has in flight on one workflow at most; Temporal allows 10 per workflow */
  maxInFlightPerWorkflow: number;
  /** the age of a workflow's oldest in-flight update past which the workflow is busy */
  busyAfterMs?: number;
}

/**
 * Runs the API's workflow updates. Each waits in two steps, each with its own deadline: until the
 * workflow accepts it (Temporal reachable and the workflow answering), then until it completes.
 * Per workflow at most `maxInFlightPerWorkflow` run at once in this process, and none joins a line
 * whose oldest has waited `busyAfterMs`; one more is refused at once with `thread_busy`, or with
 * `unavailable` when a call has found Temporal unreachable since that oldest one started. Over all
 * workflows the limit adapts to how fast updates are answered (the workers' backlog): it halves when
 * one took over SLOW_ANSWER_MS (at most once per SLOW_ANSWER_MS) and grows by one after as many fast
 * ones as the limit, between MIN_IN_FLIGHT and `maxInFlight`, from INITIAL_IN_FLIGHT. A burst past what the workers take
 * in is refused at once with `rate_limited` rather than left to wait. Nothing refused reaches Temporal
 * (a NotAdmitted).
 */
export class TemporalCalls {
  /** per workflow, the start times of its updates in flight here, oldest first */
  private readonly inFlight = new Map<string, number[]>();
  private total = 0;
  private limit: number;
  private lastCut = 0;
  private fastSinceChange = 0;

  constructor(
    private readonly client: Client,
    private readonly link: TemporalLink,
    private readonly limits: TemporalCallLimits,
  ) {
    this.limit = Math.min(limits.maxInFlight, INITIAL_IN_FLIGHT);
  }

  async update<R>(workflowId: string, start: () => Promise<WorkflowUpdateHandle<R>>): Promise<R> {
    const unreachable = this.link.unreachableWithin(FAIL_FAST_MS);
    if (unreachable !== undefined) throw unreachableRefusal(unreachable);
    if (this.total >= this.limit) {
      throw new NotAdmitted('rate_limited', `this API instance has ${this.total} requests in flight to Temporal, as many as its workers take in now; retry after the Retry-After delay`, 1);
    }
    const line = this.inFlight.get(workflowId) ?? [];
    const started = Date.now();
    const waited = line.length > 0 ? started - line[0]! : 0;
    const full = line.length >= this.limits.maxInFlightPerWorkflow;
    if (full || waited > (this.limits.busyAfterMs ?? BUSY_AFTER_MS)) {
      // The line is stuck: on Temporal, if a call has found it unreachable since the oldest started (the
      // oldest is retrying, between attempts), else on the thread.
      const unreachable = this.link.unreachableSince(line[0]!);
      if (unreachable !== undefined) throw unreachableRefusal(unreachable);
      throw threadBusy(full ? `${line.length} requests are already in flight on this thread` : `the thread has been working on an earlier request for ${(waited / 1000).toFixed(1)} s`);
    }
    line.push(started);
    this.inFlight.set(workflowId, line);
    this.total++;
    try {
      const handle = await this.client.withDeadline(Date.now() + ACCEPT_WITHIN_MS, start).catch((err: unknown) => {
        throw transportError(err, `the request was not taken in within ${ACCEPT_WITHIN_MS / 1000} s (is a worker polling?); retry with the same Idempotency-Key`);
      });
      const result = await this.client.withDeadline(Date.now() + COMPLETE_WITHIN_MS, () => handle.result()).catch((err: unknown) => {
        throw transportError(err, `the request was accepted but not completed within ${COMPLETE_WITHIN_MS / 1000} s; retry with the same Idempotency-Key for its answer`);
      });
      this.adaptLimit(Date.now() - started);
      return result;
    } catch (err) {
      // A workflow's refusal is an answer and counts; an unreachable Temporal says nothing of the workers'
      // pace (and must keep being answered 503 unavailable, not 429).
      if (!(err instanceof ApiError && err.code === 'unavailable')) this.adaptLimit(Date.now() - started);
      throw err;
    } finally {
      this.total--;
      line.splice(line.indexOf(started), 1);
      if (line.length === 0) this.inFlight.delete(workflowId);
    }
  }

  /** TCP's congestion avoidance, with the time to answer as the signal: one more per limit's worth of fast answers, half on a slow one. */
  private adaptLimit(answerMs: number) {
    if (answerMs <= SLOW_ANSWER_MS) {
      if (++this.fastSinceChange < this.limit) return;
      this.limit = Math.min(this.limits.maxInFlight, this.limit + 1);
    } else {
      if (Date.now() - this.lastCut < SLOW_ANSWER_MS) return;
      this.limit = Math.max(MIN_IN_FLIGHT, Math.floor(this.limit / 2));
      this.lastCut = Date.now();
    }
    this.fastSinceChange = 0;
  }

  /** Readiness of Temporal: "ok", or why not, within `ms`. */
  async check(ms: number): Promise<string> {
    try {
      await this.client.withDeadline(Date.now() + ms, () => this.client.workflowService.getSystemInfo({}));
      return 'ok';
    } catch (err) {
      return `down: ${describeTemporalError(err)}`;
    }
  }
}

/** A refusal of a request that no workflow has seen: it wrote nothing, and its Idempotency-Key may be used afresh. */
export class NotAdmitted extends ApiError {}

const unreachableRefusal = (detail: string) => new NotAdmitted('unavailable', `temporal unavailable: unreachable (${detail})`);
const threadBusy = (why: string) => new NotAdmitted('thread_busy', `${why}; retry after the Retry-After delay`);
const temporalUnavailable = (why: string) => new ApiError('unavailable', `temporal unavailable: ${why}`);

/** Transport failures become the contract's codes; the workflow's own answers (rejections, not found) pass unchanged. */
function transportError(err: unknown, onDeadline: string): unknown {
  const cause = grpcCause(err);
  if (!cause) return err;
  if (cause.code === grpcStatus.RESOURCE_EXHAUSTED) {
    // Temporal refused the workflow's update (its slots full with other API processes' updates, its lock taken,
    // its continue-as-new under way): nothing was admitted.
    if (WORKFLOW_BUSY.test(cause.details)) return threadBusy(`Temporal refused the request: ${cause.details}`);
    return temporalUnavailable(describeTemporalError(err));
  }
  if (!UNREACHABLE.has(cause.code)) return err;
  return temporalUnavailable(cause.code === grpcStatus.UNAVAILABLE ? describeTemporalError(err) : onDeadline);
}
