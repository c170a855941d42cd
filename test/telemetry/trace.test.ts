// One trace follows a submit end to end: an API process and a worker process with OTEL_EXPORTER_OTLP_ENDPOINT
// set export to a real local OTLP/HTTP receiver; the model is a real local HTTP server speaking OpenAI's
// protocol. The spans form one tree: the HTTP request, the Temporal client call, the thread and run
// workflows, their activities, their Postgres statements, and the model's HTTP call.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { requestJson } from '../../testkit/http.js';
import { spawnThreadbox, type ThreadboxProcess } from '../../testkit/processes.js';
import { eventually } from '../../testkit/wait.js';
import { startFakeOpenAI, type FakeOpenAI } from '../fake-openai.js';

interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
}

/** An OTLP/HTTP trace receiver (JSON encoding, what @opentelemetry/exporter-trace-otlp-http sends). */
async function startReceiver(): Promise<{ url: string; spans: ReceivedSpan[]; close(): Promise<void> }> {
  const spans: ReceivedSpan[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (req.url === '/v1/traces' && req.headers['content-type']?.includes('json')) {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      for (const rs of body.resourceSpans ?? []) {
        const service = rs.resource?.attributes?.find((a: { key: string }) => a.key === 'service.name')?.value?.stringValue ?? '?';
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            const attributes = Object.fromEntries((s.attributes ?? []).map((a: { key: string; value: Record<string, unknown> }) => [a.key, Object.values(a.value)[0]]));
            spans.push({ service, traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name, kind: s.kind, attributes });
          }
        }
      }
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, spans, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

let receiver: Awaited<ReturnType<typeof startReceiver>>;
let fake: FakeOpenAI;
const processes: ThreadboxProcess[] = [];
let api: ThreadboxProcess;

beforeAll(async () => {
  receiver = await startReceiver();
  fake = await startFakeOpenAI();
  const env = (service: string) => ({
    DATABASE_URL: inject('databaseUrl'),
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    THREADBOX_MODEL: `openai-compatible:${fake.baseURL}#fake-model`,
    OPENAI_COMPATIBLE_API_KEY: 'test',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_SERVICE_NAME: service,
  });
  const queue = { TEMPORAL_TASK_QUEUE: `trace-${randomUUID()}` };
  const [worker, apiProcess] = await Promise.all([spawnThreadbox('worker', { ...env('threadbox-worker'), ...queue }), spawnThreadbox('api', { ...env('threadbox-api'), ...queue })]);
  processes.push(worker, apiProcess);
  api = apiProcess;
});
afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop()));
  await fake?.close();
  await receiver?.close();
});

/** The spans of one trace as an indented tree, children in arrival order; a span's statements on one line. */
function tree(spans: ReceivedSpan[]): string {
  const byParent = new Map<string, ReceivedSpan[]>();
  for (const s of spans) byParent.set(s.parentSpanId, [...(byParent.get(s.parentSpanId) ?? []), s]);
  const ids = new Set(spans.map((s) => s.spanId));
  const lines: string[] = [];
  const walk = (s: ReceivedSpan, depth: number) => {
    lines.push(`${'  '.repeat(depth)}${s.name}  [${s.service}]`);
    const children = byParent.get(s.spanId) ?? [];
    const statements = children.filter((c) => c.name.startsWith('pg '));
    if (statements.length > 0) lines.push(`${'  '.repeat(depth + 1)}${statements.length} × pg (${[...new Set(statements.map((c) => c.name.slice(3)))].join(', ')})  [${statements[0]!.service}]`);
    for (const child of children) if (!child.name.startsWith('pg ')) walk(child, depth + 1);
  };
  for (const root of spans.filter((s) => !ids.has(s.parentSpanId))) {
    if (root.parentSpanId) lines.push(`(parent ${root.parentSpanId} not exported yet)`);
    walk(root, root.parentSpanId ? 1 : 0);
  }
  return lines.join('\n');
}

const HTTP_SUBMIT = 'POST /v1/threads/:threadId/runs';

async function submit(threadId: string, content: string): Promise<string> {
  const response = await requestJson(`${api.url}/v1/threads/${threadId}/runs`, 'POST', { messages: [{ role: 'user', content }], mode: 'queue' });
  expect(response.status).toBe(202);
  return response.body.runId;
}

/**
 * The trace of the submit of `content`: the model request for it carried a W3C `traceparent` (undici's
 * instrumentation), whose trace id names the trace; complete once its run's spans have arrived.
 */
async function traceOf(content: string) {
  return eventually(async () => {
    const traceparent = fake.requestsFor(content)[0]?.headers.traceparent;
    if (typeof traceparent !== 'string') return undefined;
    const traceId = traceparent.split('-')[1];
    const trace = receiver.spans.filter((s) => s.traceId === traceId);
    const http = trace.find((s) => s.name === HTTP_SUBMIT);
    const modelCall = trace.find((s) => s.kind === 3 && String(s.attributes['url.full'] ?? '').startsWith(fake.baseURL));
    return http && modelCall && trace.some((s) => s.name === 'RunWorkflow:runWorkflow') ? { http, trace, modelCall } : undefined;
  }, 30_000, `the trace of "${content}"`);
}

function ancestryOf(trace: ReceivedSpan[], s: ReceivedSpan): ReceivedSpan[] {
  const byId = new Map(trace.map((t) => [t.spanId, t]));
  const chain = [s];
  for (let p = byId.get(s.parentSpanId); p; p = byId.get(p.parentSpanId)) chain.push(p);
  return chain;
}

it('one trace per submit: HTTP request → Temporal update → thread and run workflows → activities → the model HTTP call', async () => {
  const threadId = `trace-${randomUUID()}`;
  const first = `traced-${randomUUID().slice(0, 8)}`;
  fake.script(first, { text: 'a traced answer' });
  const runId = await submit(threadId, first);
  const { http, trace, modelCall } = await traceOf(first);
  console.log(`trace ${http.traceId} (run ${runId}), ${trace.length} spans:\n${tree(trace)}`);

  const ancestry = (s: ReceivedSpan) => ancestryOf(trace, s);
  const names = (s: ReceivedSpan) => ancestry(s).map((a) => a.name);
  expect(http).toMatchObject({ service: 'threadbox-api', kind: 2, parentSpanId: '' }); // SERVER, the root
  // The model's HTTP call, from the worker process, reaches the API's HTTP span through every layer.
  expect(modelCall.service).toBe('threadbox-worker');
  expect(names(modelCall)).toEqual([
    'POST',
    'RunActivity:modelStep',
    'StartActivity:modelStep',
    'RunWorkflow:runWorkflow',
    'StartChildWorkflow:runWorkflow',
    'HandleUpdate:submit',
    'UpdateWithStartWorkflow:submit',
    HTTP_SUBMIT,
  ]);
  expect(names(trace.find((s) => s.name === 'RunActivity:createRun')!)).toEqual(['RunActivity:createRun', 'StartActivity:createRun', 'HandleUpdate:submit', 'UpdateWithStartWorkflow:submit', HTTP_SUBMIT]);
  // Each statement is a span under the activity that ran it (a submit's request itself writes nothing).
  const statements = trace.filter((s) => s.name.startsWith('pg '));
  for (const activity of ['RunActivity:createRun', 'RunActivity:modelStep', 'RunActivity:endRun']) {
    expect(statements.some((s) => names(s).includes(activity)), `a statement under ${activity}`).toBe(true);
  }
  expect(statements.every((s) => s.attributes['db.system'] === 'postgresql' && typeof s.attributes['db.query.text'] === 'string')).toBe(true);
  // Every span hangs off the HTTP span, but for the thread workflow's own span: it lasts as long as the
  // thread (months), so it is exported when the thread continues as new; what its main loop does
  // (loading the mailbox of a new thread) hangs off it meanwhile.
  const roots = new Set(trace.map((s) => ancestry(s).at(-1)!));
  const open = [...roots].filter((r) => r !== http);
  expect(open.map((r) => r.parentSpanId).filter((id, i, all) => all.indexOf(id) === i)).toHaveLength(open.length > 0 ? 1 : 0);
  for (const r of open) expect(['StartActivity:loadMailbox', 'RunActivity:loadMailbox']).toContain(r.name);

  // A second submit to the same (now running) thread: its run is traced under its own request.
  const second = `traced-again-${randomUUID().slice(0, 8)}`;
  fake.script(second, { text: 'another traced answer' });
  await submit(threadId, second);
  const again = await traceOf(second);
  expect(again.http.traceId).not.toBe(http.traceId);
  expect(ancestryOf(again.trace, again.modelCall).at(-1)).toBe(again.http);
});
