// The HTTP API as the history recorder's scenarios drive it: submits as a careful client makes them, and waits
// on what the API reports.
import { postRetrying, requestJson, type JsonResponse } from '../../testkit/http.js';
import { eventually } from '../../testkit/wait.js';

export interface RunRecord {
  runId: string;
  status: string;
  termination: { type: string } | null;
  createdAt: string;
}

export class Api {
  private count = 0;
  constructor(private readonly url: string) {}

  newThreadId(prefix: string): string {
    return `${prefix}-${++this.count}-${Date.now().toString(36)}`;
  }

  request(method: string, path: string, body?: unknown): Promise<JsonResponse> {
    return requestJson(this.url + path, method, body);
  }

  /** A submit as a careful client makes it (see `postRetrying`): accepted, 202. */
  async submit(threadId: string, content: string, extra: Record<string, unknown> = {}): Promise<{ runId: string; status: string }> {
    return expectHttp(await postRetrying(`${this.url}/v1/threads/${threadId}/runs`, { messages: [{ role: 'user', content }], ...extra }), 202);
  }

  async waitForEvent(runId: string, type: string): Promise<any> {
    return eventually(async () => {
      const page = await this.request('GET', `/v1/runs/${runId}/events?limit=1000`);
      return page.body?.items?.find((e: { type: string }) => e.type === type);
    }, 30_000, `${type} on run ${runId}`);
  }

  async waitForRunStatus(runId: string, status: string, timeoutMs = 30_000): Promise<RunRecord> {
    return eventually(async () => {
      const run = await this.request('GET', `/v1/runs/${runId}`);
      return run.body?.status === status ? (run.body as RunRecord) : undefined;
    }, timeoutMs, `run ${runId} ${status}`);
  }

  async expectTermination(runId: string, type: string, timeoutMs = 30_000): Promise<void> {
    const run = await this.waitForRunStatus(runId, 'done', timeoutMs);
    if (run.termination?.type !== type) throw new Error(`run ${runId} ended ${JSON.stringify(run.termination)}, expected ${type}`);
  }
}

export function expectHttp(response: JsonResponse, status: number): any {
  if (response.status !== status) throw new Error(`expected HTTP ${status}, got ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body;
}

export function expectStatus(result: { status: string }, status: string) {
  if (result.status !== status) throw new Error(`expected a ${status} submit, got ${JSON.stringify(result)}`);
}
