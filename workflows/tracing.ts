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
import { OpenTelemetryInboundInterceptor, OpenTelemetryInternalsInterceptor, OpenTelemetryOutboundInterceptor } from '@temporalio/interceptors-opentelemetry/lib/workflow/index.js';
import { patched, type WorkflowInterceptorsFactory } from '@temporalio/workflow';

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
  let traced: boolean | undefined;
  const decide = (headers: Record<string, unknown>) => (traced ??= decideTracing(headers));
  const on = () => traced === true;
  let otel: { inbound: OpenTelemetryInboundInterceptor; outbound: OpenTelemetryOutboundInterceptor; internals: OpenTelemetryInternalsInterceptor } | undefined;
  // Constructed only when traced: constructing them registers a tracer in the sandbox.
  const tracing = () => (otel ??= { inbound: new OpenTelemetryInboundInterceptor(), outbound: new OpenTelemetryOutboundInterceptor(), internals: new OpenTelemetryInternalsInterceptor() });
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
