// Temporal's OpenTelemetry workflow interceptors, for the executions that began with them. Bundled into
// every worker (src/temporal/worker.ts), whether tracing is on or not, so the workflow code is one.
//
// Executions recorded before them must replay exactly as they ran: the interceptors' extra awaits
// reorder commands in those histories (test/workflows/histories.test.ts showed it). So each execution
// decides once, at its first handler (start, update or signal), with patched(TRACING_PATCH): a new
// execution records the marker and is traced for its whole life; one that replays from an older
// history finds no marker and runs without them, as it did.
//
// Queries and update validators are never traced: they run when a worker answers them, not when it
// replays the history, and a span takes its ids from the workflow's seeded random numbers, so a
// traced validator shifted every later uuid4() of the execution (a late steer's run id) between the
// first run and its replay. test/histories' steer-late recording showed it.
import { OpenTelemetryInboundInterceptor, OpenTelemetryInternalsInterceptor, OpenTelemetryOutboundInterceptor } from '@temporalio/interceptors-opentelemetry/lib/workflow/index.js';
import { patched, type WorkflowInterceptorsFactory } from '@temporalio/workflow';

export const TRACING_PATCH = 'otel-tracing';

export const interceptors: WorkflowInterceptorsFactory = () => {
  let traced: boolean | undefined;
  const decide = () => (traced ??= patched(TRACING_PATCH));
  const on = () => traced === true;
  let otel: { inbound: OpenTelemetryInboundInterceptor; outbound: OpenTelemetryOutboundInterceptor; internals: OpenTelemetryInternalsInterceptor } | undefined;
  // Constructed only when traced: constructing them registers a tracer in the sandbox.
  const tracing = () => (otel ??= { inbound: new OpenTelemetryInboundInterceptor(), outbound: new OpenTelemetryOutboundInterceptor(), internals: new OpenTelemetryInternalsInterceptor() });
  return {
    inbound: [
      {
        execute: (input, next) => (decide() ? tracing().inbound.execute(input, next) : next(input)),
        handleSignal: (input, next) => (decide() ? tracing().inbound.handleSignal(input, next) : next(input)),
        handleUpdate: (input, next) => (decide() ? tracing().inbound.handleUpdate(input, next) : next(input)),
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
