// Request log fields: which thread and run a request concerns, as soon as it is known.
import type { FastifyRequest } from 'fastify';

const LOGGED = Symbol('threadbox.loggedIds');

/** Adds threadId/runId to every later log line of this request (the "request completed" line included), once each. */
export function logIds(request: FastifyRequest, ids: { threadId?: string | undefined; runId?: string | undefined }) {
  const holder = request as FastifyRequest & { [LOGGED]?: Set<string> };
  const logged = (holder[LOGGED] ??= new Set());
  const fresh: Record<string, string> = {};
  for (const [name, value] of Object.entries(ids)) {
    if (value === undefined || logged.has(name)) continue;
    logged.add(name);
    fresh[name] = value;
  }
  if (Object.keys(fresh).length > 0) (request.log as unknown as { setBindings(b: Record<string, string>): void }).setBindings(fresh);
}
