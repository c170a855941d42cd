// OpenTelemetry spans for the statements of a pool's connections (when tracing is on: src/telemetry.ts).
// Every statement goes through a connection's `query`, so wrapping that one method gives each statement
// one span, under the span active where it was asked for: the HTTP request in the API, the activity in
// the worker. The pool's own `query` borrows a connection and calls it from a callback, which may run in
// whatever context released the connection; so `pool.query` carries its caller's context along, on the
// statement's config object, to where the span is made.
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type pg from 'pg';

const tracer = () => trace.getTracer('threadbox-store');

type Callback = (err: Error | null, result?: pg.QueryResult) => void;

const CALLER = Symbol('threadbox.caller-context');

/** The context `pool.query` was called in, when it put one on the statement. */
function callerOf(first: unknown) {
  return first && typeof first === 'object' ? (first as { [CALLER]?: ReturnType<typeof context.active> })[CALLER] : undefined;
}

function statementOf(first: unknown): string {
  const text = typeof first === 'string' ? first : typeof (first as { text?: unknown })?.text === 'string' ? (first as { text: string }).text : '';
  return text.replace(/\s+/g, ' ').trim();
}

function finish(span: Span, err: Error | null | undefined, result: pg.QueryResult | undefined) {
  if (err) {
    span.recordException(err);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as { code?: string }).code ?? err.message });
  } else if (result && typeof result.rowCount === 'number') {
    span.setAttribute('db.response.returned_rows', result.rowCount);
  }
  span.end();
}

export function traceQueries(pool: pg.Pool): void {
  const poolQuery = pool.query as (...args: unknown[]) => unknown;
  (pool as { query: unknown }).query = function carried(this: pg.Pool, ...args: unknown[]) {
    const first = args[0];
    // Plain statements only: a submittable (a cursor) is passed on as it is.
    if (typeof first === 'string') args[0] = { text: first, [CALLER]: context.active() };
    else if (first && typeof first === 'object' && typeof (first as { submit?: unknown }).submit !== 'function') args[0] = { ...first, [CALLER]: context.active() };
    return poolQuery.apply(this, args);
  };
  pool.on('connect', (client) => {
    const query = client.query as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = function traced(this: pg.PoolClient, ...args: unknown[]) {
      const statement = statementOf(args[0]);
      const span = tracer().startSpan(
        `pg ${statement.split(' ')[0]?.toUpperCase() || 'query'}`,
        { kind: SpanKind.CLIENT, attributes: { 'db.system': 'postgresql', 'db.query.text': statement.slice(0, 1000) } },
        callerOf(args[0]) ?? context.active(),
      );
      const at = args.findIndex((a) => typeof a === 'function');
      if (at >= 0) {
        const callback = args[at] as Callback;
        args[at] = (err: Error | null, result?: pg.QueryResult) => {
          finish(span, err, result);
          callback(err, result);
        };
        return query.apply(this, args);
      }
      const result = context.with(trace.setSpan(context.active(), span), () => query.apply(this, args));
      if (result && typeof (result as Promise<pg.QueryResult>).then === 'function') {
        return (result as Promise<pg.QueryResult>).then(
          (r) => {
            finish(span, null, r);
            return r;
          },
          (err: Error) => {
            finish(span, err, undefined);
            throw err;
          },
        );
      }
      span.end(); // a submittable (a cursor, a stream): its rows come later, untimed
      return result;
    };
  });
}
