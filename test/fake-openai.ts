// A real HTTP server speaking OpenAI's streaming chat-completions protocol, scripted per request, for tests that cannot call a paid API.
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type FakeReply =
  /** `text` streamed one word per chunk. `cutAfterTokens` destroys the socket after that many, as a dropped connection does. */
  | { text: string; tokenDelayMs?: number; firstByteDelayMs?: number; cutAfterTokens?: number; usage?: { prompt_tokens: number; completion_tokens: number } }
  /** Tool calls whose JSON arguments arrive split over `argumentChunks` deltas, the way OpenAI streams them. */
  | { toolCalls: { name: string; arguments: string; id?: string }[]; argumentChunks?: number }
  /** An HTTP error with OpenAI's error body. */
  | { status: number; message?: string; code?: string; headers?: Record<string, string> };

export interface FakeRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: any;
  /** the text of the last user message, which scripts match on */
  userText: string;
  reply: FakeReply | undefined;
  /** `performance.now()` stamps */
  receivedAt: number;
  /** the response was written to the end */
  finishedAt?: number;
  /** the response closed before its end: the client went away */
  abortedAt?: number;
  /** the TCP connection that carried the request closed */
  socketClosedAt?: number;
}

export interface FakeOpenAI {
  /** base URL for `openai-compatible:<baseURL>#<model>`, ending in /v1 */
  baseURL: string;
  requests: FakeRequest[];
  /** Replies, in order, to the requests whose last user message contains `match`. */
  script(match: string, ...replies: FakeReply[]): void;
  requestsFor(match: string): FakeRequest[];
  close(): Promise<void>;
}

export async function startFakeOpenAI(): Promise<FakeOpenAI> {
  const scripts: { match: string; replies: FakeReply[] }[] = [];
  const requests: FakeRequest[] = [];
  const sockets = new Set<Socket>();
  let nextId = 1;

  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let body: any;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      body = undefined;
    }
    const userText = lastUserText(body);
    const script = scripts.find((s) => userText.includes(s.match) && s.replies.length > 0);
    const reply = script?.replies.shift();
    const recorded: FakeRequest = { path: req.url ?? '', headers: req.headers, body, userText, reply, receivedAt: performance.now() };
    requests.push(recorded);
    const socket = req.socket;
    if (socket.destroyed) recorded.socketClosedAt = performance.now();
    else socket.once('close', () => (recorded.socketClosedAt = performance.now()));
    res.once('close', () => {
      if (res.writableFinished) recorded.finishedAt = performance.now();
      else recorded.abortedAt = performance.now();
    });

    if (req.method !== 'POST' || req.url !== '/v1/chat/completions' || body === undefined) {
      return sendError(res, { status: 404, message: `fake-openai serves POST /v1/chat/completions with a JSON body, not ${req.method} ${req.url}` });
    }
    if (!reply) return sendError(res, { status: 400, message: `fake-openai: no scripted reply for "${userText.slice(0, 200)}"` });
    if ('status' in reply) return sendError(res, reply);
    if (!body.stream) return sendError(res, { status: 400, message: 'fake-openai only streams: send "stream": true' });
    await streamReply(res, body, reply, `chatcmpl-${nextId++}`);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    script(match, ...replies) {
      scripts.push({ match, replies });
    },
    requestsFor(match) {
      return requests.filter((r) => r.userText.includes(match));
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function sendError(res: ServerResponse, reply: { status: number; message?: string; code?: string; headers?: Record<string, string> }) {
  const type = reply.status === 429 ? 'rate_limit_exceeded' : reply.status >= 500 ? 'server_error' : 'invalid_request_error';
  res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
  res.end(JSON.stringify({ error: { message: reply.message ?? `fake-openai status ${reply.status}`, type, param: null, code: reply.code ?? null } }));
}

async function streamReply(res: ServerResponse, body: any, reply: Exclude<FakeReply, { status: number }>, id: string) {
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: body.model, system_fingerprint: 'fp_fake', choices, ...extra })}\n\n`;
  const delta = (d: Record<string, unknown>, finishReason: string | null = null) => chunk([{ index: 0, delta: d, logprobs: null, finish_reason: finishReason }]);
  const open = () => !res.destroyed && !res.writableEnded;
  const write = (frame: string) => open() && res.write(frame);
  const promptTokens = JSON.stringify(body.messages ?? []).split(/\s+/).length;

  if ('text' in reply && reply.firstByteDelayMs) await sleep(reply.firstByteDelayMs);
  if (!open()) return;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });

  let completionTokens = 0;
  let finishReason: string;
  if ('text' in reply) {
    write(delta({ role: 'assistant', content: '' }));
    const tokens = reply.text.split(/(?=\s)/).filter(Boolean);
    for (const token of tokens) {
      if (reply.cutAfterTokens !== undefined && completionTokens >= reply.cutAfterTokens) {
        res.socket?.destroy();
        return;
      }
      if (reply.tokenDelayMs) await sleep(reply.tokenDelayMs);
      if (!open()) return;
      write(delta({ content: token }));
      completionTokens++;
    }
    finishReason = 'stop';
  } else {
    write(delta({ role: 'assistant', content: null }));
    for (const [index, call] of reply.toolCalls.entries()) {
      write(delta({ tool_calls: [{ index, id: call.id ?? `call_${id}_${index + 1}`, type: 'function', function: { name: call.name, arguments: '' } }] }));
      for (const piece of split(call.arguments, reply.argumentChunks ?? 3)) {
        write(delta({ tool_calls: [{ index, function: { arguments: piece } }] }));
        completionTokens++;
      }
    }
    finishReason = 'tool_calls';
  }
  write(delta({}, finishReason));
  if (body.stream_options?.include_usage) {
    const usage = ('text' in reply && reply.usage) || { prompt_tokens: promptTokens, completion_tokens: completionTokens };
    write(chunk([], { usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } }));
  }
  write('data: [DONE]\n\n');
  if (open()) res.end();
}

function lastUserText(body: any): string {
  const messages: any[] = Array.isArray(body?.messages) ? body.messages : [];
  const last = messages.filter((m) => m?.role === 'user').at(-1);
  if (!last) return '';
  if (typeof last.content === 'string') return last.content;
  if (Array.isArray(last.content)) return last.content.map((p: any) => (p?.type === 'text' ? p.text : '')).join('');
  return '';
}

function split(s: string, pieces: number): string[] {
  const size = Math.max(1, Math.ceil(s.length / pieces));
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
