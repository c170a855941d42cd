// OpenTelemetry traces: on when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set,
// exported over OTLP/HTTP (the exporter reads the standard OTEL_* variables: headers, timeout, …). One
// trace follows a submit: the HTTP request (src/api/plugins/tracing.ts), the Temporal client call, the
// thread and run workflows and their activities (Temporal's interceptors), and the model's HTTP calls
// (undici, i.e. fetch). Off, nothing is set up and the workflows' spans go nowhere.
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider, NoopSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-node';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry/lib/client/index.js';
import {
  makeWorkflowExporter,
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
} from '@temporalio/interceptors-opentelemetry/lib/worker/index.js';
import type { ClientInterceptors } from '@temporalio/client';
import type { InjectedSinks, WorkerInterceptors } from '@temporalio/worker';

export interface Telemetry {
  enabled: boolean;
  /** the Temporal client's interceptors (the API's submits, interrupts, cancels) */
  clientInterceptors: ClientInterceptors | undefined;
  /** the worker's activity interceptors and the sink the workflows' spans leave the sandbox by */
  worker: { interceptors: WorkerInterceptors; sinks: InjectedSinks<never> };
  /** flushes what is buffered, then stops exporting */
  shutdown(): Promise<void>;
}

let started: Telemetry | undefined;

/** The process's telemetry, set up once (a process may run the API and the worker). */
export function startTelemetry(env: NodeJS.ProcessEnv = process.env): Telemetry {
  if (started) return started;
  const enabled = Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) && env.OTEL_SDK_DISABLED !== 'true';
  const resource = new Resource({ 'service.name': env.OTEL_SERVICE_NAME || 'threadbox' });
  let processor: SpanProcessor = new NoopSpanProcessor();
  let shutdown = async () => {};
  if (enabled) {
    processor = new BatchSpanProcessor(new OTLPTraceExporter(), { scheduledDelayMillis: 500 });
    const provider = new NodeTracerProvider({ resource, spanProcessors: [processor] });
    provider.register();
    const unregister = registerInstrumentations({ instrumentations: [new UndiciInstrumentation()] });
    shutdown = async () => {
      unregister();
      await provider.shutdown();
    };
  }
  const telemetry: Telemetry = {
    enabled,
    clientInterceptors: enabled ? { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } : undefined,
    worker: {
      interceptors: enabled
        ? { activity: [(ctx) => ({ inbound: new OpenTelemetryActivityInboundInterceptor(ctx), outbound: new OpenTelemetryActivityOutboundInterceptor(ctx) })] }
        : {},
      sinks: { exporter: makeWorkflowExporter(processor, resource) } as unknown as InjectedSinks<never>,
    },
    shutdown,
  };
  started = telemetry;
  return telemetry;
}
