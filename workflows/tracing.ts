// Temporal's OpenTelemetry workflow interceptors, for the executions that began with them. Bundled into
// every worker (src/temporal/worker.ts), whether tracing is on or not, so the workflow code is one.
//
// Executions recorded before them must replay exactly as they ran: the interceptors' extra awaits
// reorder commands in those histories (test/workflows/histories.test.ts showed it). So each execution
// decides once, at its first handler (start, update or signal), with patched(TRACING_PATCH): a new
// execution records the marker and is traced for its whole life; one that replays from an older
// history finds no marker and runs without them, as it did.
//
// Since the otel-tracing-when-asked patch, an execution is traced only when the call that began it
// carried a trace context (the `_tracer-data` header, which the API's and the thread's interceptors
// add only while tracing is on). Untraced, the interceptors are not applied at all: with them every
// cached execution kept an AsyncLocalStorage of its own, which the worker thread walks for each promise
// it makes, and with tracing off that cost memory in proportion to the cache (the bench's worker RSS
// with 600 idle threads: 1,973 MiB with them, 733 without) and halved throughput, for spans that went nowhere.
//
// Queries and update validators are never traced: they run when a worker answers them, not when it
// replays the history, and a span takes its ids from the workflow's seeded random numbers, so a
// traced validator shifted every later uuid4() of the execution (a late steer's run id) between the
// first run and its replay. test/histories' steer-late recording showed it.
//
// The OpenTelemetry modules are loaded (require, evaluated synchronously where it is called) only by an
// execution that is traced: the worker's reusable V8 context evaluates the bundle's modules for each
// cached execution, and imported at the top they cost every cached workflow their memory, traced or not
// (the bench's worker RSS before its scale phase / with 600 idle threads: 736 / 734 MiB with them
// imported, 645 / 567 MiB loaded on use; `--idle-threads 600` runs, one after the other).
import type * as OtelApi from '@opentelemetry/api';
import type * as OtelWorkflow from '@temporalio/interceptors-opentelemetry/lib/workflow/index.js';
import { patched, type WorkflowInterceptorsFactory } from '@temporalio/workflow';

/* eslint-disable @typescript-eslint/no-require-imports -- loaded on first use only: see above */
const otelWorkflow = () => require('@temporalio/interceptors-opentelemetry/lib/workflow/index.js') as typeof OtelWorkflow;
const otelApi = () => require('@opentelemetry/api') as typeof OtelApi;
/* eslint-enable @typescript-eslint/no-require-imports */

/** This execution's active trace context, when it is traced (undefined otherwise). */
export type TraceContext = OtelApi.Context;
/** Whether this execution is traced: decided at its first handler (the module is evaluated per execution). */
let traced: boolean | undefined;
export function activeTraceContext(): TraceContext | undefined {
  return traced ? otelApi().context.active() : undefined;
}
/** Runs `fn` in `ctx` (a context activeTraceContext gave); without one, just runs it. */
export function withTraceContext<T>(ctx: TraceContext | undefined, fn: () => T): T {
  return ctx ? otelApi().context.with(ctx, fn) : fn();
}

export const TRACING_PATCH = 'otel-tracing';
export const TRACING_WHEN_ASKED_PATCH = 'otel-tracing-when-asked';
const TRACE_HEADER = '_tracer-data';

/** Whether the execution is traced, decided at its first handler from that handler's headers. */
function decideTracing(headers: Record<string, unknown>): boolean {
  if (!patched(TRACING_PATCH)) return false;
  // Executions that began between the two patches were traced whatever their headers: they replay so.
  return !patched(TRACING_WHEN_ASKED_PATCH) || headers[TRACE_HEADER] !== undefined;
}

export const interceptors: WorkflowInterceptorsFactory = () => {
  const decide = (headers: Record<string, unknown>) => (traced ??= decideTracing(headers));
  const on = () => traced === true;
  let otel: { inbound: OtelWorkflow.OpenTelemetryInboundInterceptor; outbound: OtelWorkflow.OpenTelemetryOutboundInterceptor; internals: OtelWorkflow.OpenTelemetryInternalsInterceptor } | undefined;
  // Constructed only when traced: constructing them registers a tracer in the sandbox.
  const tracing = () => {
    if (otel) return otel;
    const m = otelWorkflow();
    return (otel = { inbound: new m.OpenTelemetryInboundInterceptor(), outbound: new m.OpenTelemetryOutboundInterceptor(), internals: new m.OpenTelemetryInternalsInterceptor() });
  };
  return {
    inbound: [
      {
        execute: (input, next) => (decide(input.headers) ? tracing().inbound.execute(input, next) : next(input)),
        handleSignal: (input, next) => (decide(input.headers) ? tracing().inbound.handleSignal(input, next) : next(input)),
        handleUpdate: (input, next) => (decide(input.headers) ? tracing().inbound.handleUpdate(input, next) : next(input)),
      },
    ],
    outbound: [
      {
        scheduleActivity: (input, next) => (on() ? tracing().outbound.scheduleActivity(input, next) : next(input)),
        scheduleLocalActivity: (input, next) => (on() ? tracing().outbound.scheduleLocalActivity(input, next) : next(input)),
        startChildWorkflowExecution: (input, next) => (on() ? tracing().outbound.startChildWorkflowExecution(input, next) : next(input)),
        continueAsNew: (input, next) => (on() ? tracing().outbound.continueAsNew(input, next) : next(input)),
        signalWorkflow: (input, next) => (on() ? tracing().outbound.signalWorkflow(input, next) : next(input)),
        getLogAttributes: (input, next) => (on() ? tracing().outbound.getLogAttributes(input, next) : next(input)),
      },
    ],
    internals: [{ dispose: (input, next) => (otel ? otel.internals.dispose(input, next) : next(input)) }],
  };
};
