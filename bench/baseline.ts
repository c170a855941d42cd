// The baseline: a model through the AI SDK's streamText, straight onto an SSE response, with no Temporal and
// no Postgres. The echo model, or (`model: "timed"`) the timed provider over HTTP.
import { randomUUID } from 'node:crypto';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { streamText } from 'ai';
import Fastify, { type FastifyInstance } from 'fastify';
import { createEchoModel } from '../src/agent/echo.js';
import type { TimedProvider } from './timed-provider.js';

export async function startBaseline(timed: TimedProvider): Promise<{ url: string; app: FastifyInstance }> {
  const echo = createEchoModel();
  const timedModel = createOpenAICompatible({ name: 'timed', baseURL: timed.baseURL, includeUsage: true }).chatModel('timed');
  const app = Fastify({ logger: false });
  app.post('/baseline/runs', async (request, reply) => {
    const { messages, model } = request.body as { messages: { role: 'user'; content: string }[]; model?: 'timed' };
    const runId = randomUUID();
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform' });
    raw.flushHeaders();
    let seq = 0;
    const send = (type: string, data: Record<string, unknown> = {}) => {
      seq++;
      raw.write(`id: ${seq}\nevent: ${type}\ndata: ${JSON.stringify({ type, runId, seq, ts: new Date().toISOString(), ...data })}\n\n`);
    };
    const aborted = new AbortController();
    raw.on('close', () => aborted.abort());
    send('run_start');
    const result = streamText({ model: model === 'timed' ? timedModel : echo, messages, abortSignal: aborted.signal, maxRetries: 0, onError: () => {} });
    for await (const part of result.fullStream) {
      if (part.type === 'text-delta') send('text_delta', { delta: part.text });
    }
    send('run_finish', { termination: { type: aborted.signal.aborted ? 'cancelled' : 'natural_end' } });
    raw.end();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  return { url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, app };
}
