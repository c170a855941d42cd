// A scripted OpenAI-compatible model server that records when it writes each token, so per-token
// delivery latency is measured exactly (same clock as the client) even when the model runs in
// another process. The user text `cadence <marker> <tokens> <ms>` asks for ` tok0 tok1 …`, one
// token every <ms>.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { clock } from '../testkit/sse.js';

export interface TimedProvider {
  /** for `openai-compatible:<baseURL>#timed` */
  baseURL: string;
  /** write time of each token of the reply to `cadence <marker> …`, in order */
  emitted(marker: string): number[];
  close(): Promise<void>;
}

export const cadenceText = (marker: string, tokens: number, ms: number) => `cadence ${marker} ${tokens} ${ms}`;

export async function startTimedProvider(): Promise<TimedProvider> {
  const emitted = new Map<string, number[]>();
  const sockets = new Set<Socket>();
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
    const match = /cadence (\S+) (\d+) (\d+)/.exec(lastUserText(body));
    if (!match) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'expected "cadence <marker> <tokens> <ms>"', type: 'invalid_request_error' } }));
      return;
    }
    const [, marker, tokens, ms] = match;
    const times: number[] = [];
    emitted.set(marker!, times);
    await streamTokens(res, body.model, Number(tokens), Number(ms), times);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    emitted: (marker) => emitted.get(marker) ?? [],
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function streamTokens(res: ServerResponse, model: string, tokens: number, ms: number, times: number[]) {
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: Record<string, unknown>, finishReason: string | null = null, extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({ id: 'chatcmpl-timed', object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finishReason }], ...extra })}\n\n`;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(chunk({ role: 'assistant', content: '' }));
  // Absolute deadlines: the cadence does not drift with timer lateness.
  const start = clock();
  for (let i = 0; i < tokens; i++) {
    const wait = start + (i + 1) * ms - clock();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (res.destroyed) return;
    times.push(clock());
    res.write(chunk({ content: ` tok${i}` }));
  }
  res.write(chunk({}, 'stop', { usage: { prompt_tokens: 1, completion_tokens: tokens, total_tokens: tokens + 1 } }));
  res.end('data: [DONE]\n\n');
}

function lastUserText(body: { messages?: { role: string; content: unknown }[] }): string {
  const last = (body.messages ?? []).filter((m) => m.role === 'user').at(-1);
  if (!last) return '';
  if (typeof last.content === 'string') return last.content;
  if (Array.isArray(last.content)) return last.content.map((p: { type?: string; text?: string }) => (p.type === 'text' ? p.text : '')).join('');
  return '';
}
