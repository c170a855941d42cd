// A span per Postgres statement, under the span of the code that asked for it, also when the pool is
// exhausted and a statement runs on a connection another caller released (pg-pool then calls it from
// that caller's context). A real Postgres, and OpenTelemetry's own in-memory exporter.
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { createPool } from '../../src/store/db.js';

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const pool = createPool(inject('databaseUrl'), 1, 0, true); // one connection: every caller but one waits for it
beforeAll(() => {
  provider.register();
});
afterAll(async () => {
  await pool.end();
  await provider.shutdown();
});

it('each caller’s statements are children of its own span, one span each, with the text and no values', async () => {
  const tracer = trace.getTracer('test');
  const callers = Array.from({ length: 6 }, (_, i) => `caller-${i}`);
  await Promise.all(
    callers.map((name, i) =>
      tracer.startActiveSpan(name, async (span) => {
        await pool.query('SELECT pg_sleep(0.02), $1::int AS n', [i]);
        const client = await pool.connect();
        try {
          await client.query('SELECT $1::text AS who', [name]);
        } finally {
          client.release();
        }
        span.end();
      }),
    ),
  );
  const spans = exporter.getFinishedSpans();
  for (const name of callers) {
    const caller = spans.find((s) => s.name === name)!;
    const children = spans.filter((s) => s.parentSpanId === caller.spanContext().spanId);
    expect(children.map((s) => s.attributes['db.query.text'])).toEqual(['SELECT pg_sleep(0.02), $1::int AS n', 'SELECT $1::text AS who']);
    expect(children.every((s) => s.name === 'pg SELECT' && s.spanContext().traceId === caller.spanContext().traceId)).toBe(true);
  }
  expect(spans.filter((s) => s.name.startsWith('pg '))).toHaveLength(2 * callers.length);
  expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain('caller-3"'); // values are never recorded
});

it('a failed statement ends its span with an error, and the error reaches the caller unchanged', async () => {
  exporter.reset();
  await expect(pool.query('SELECT * FROM no_such_table')).rejects.toMatchObject({ code: '42P01' });
  const [span] = exporter.getFinishedSpans();
  expect(span).toMatchObject({ name: 'pg SELECT', status: { code: 2, message: '42P01' } });
});
