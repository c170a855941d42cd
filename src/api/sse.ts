// Server-sent events: a pure frame encoder over RunEvent, and one open stream with its limits.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RunEvent } from '../contract/run-events.js';

/** Which number a stream's `id:` carries: a run stream's `seq`, a thread stream's global `id`. */
export type CursorOf = (event: RunEvent) => number;
export const runCursor: CursorOf = (e) => e.seq;
export const threadCursor: CursorOf = (e) => e.id;

export const wantsEventStream = (request: FastifyRequest) => (request.headers.accept ?? '').includes('text/event-stream');

export function encodeEvent(event: RunEvent, cursorOf: CursorOf): string {
  return `id: ${cursorOf(event)}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

export const encodeComment = (text: string) => `: ${text}\n\n`;
export const encodeRetry = (ms: number) => `retry: ${ms}\n\n`;

export interface SseOptions {
  heartbeatMs: number;
  /** a client with more than this many bytes still unsent when more is to be written is too slow: it is disconnected and can resume */
  maxBufferedBytes: number;
  onSlowClient?: () => void;
}

export class SseStream {
  closed = false;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly closeListeners: (() => void)[] = [];

  constructor(
    private readonly reply: FastifyReply,
    private readonly cursorOf: CursorOf,
    private readonly options: SseOptions,
    headers: Record<string, string> = {},
  ) {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    raw.flushHeaders();
    this.heartbeat = setInterval(() => this.write(encodeComment('keepalive')), options.heartbeatMs);
    raw.on('close', () => this.close());
  }

  onClose(listener: () => void) {
    if (this.closed) listener();
    else this.closeListeners.push(listener);
  }

  send(events: RunEvent[]) {
    if (events.length) this.write(events.map((e) => encodeEvent(e, this.cursorOf)).join(''));
  }

  /** Frames another encoder made (the AI SDK's UI-message stream). */
  sendFrames(frames: string) {
    if (frames) this.write(frames);
  }

  /** Ends the stream; with `retryMs`, tells the client when to reconnect (a server going away). */
  end(retryMs?: number) {
    if (this.closed) return;
    const raw = this.reply.raw;
    if (retryMs === undefined) raw.end();
    else {
      // A server going away: the connection must not linger as an idle keep-alive that delays its close.
      raw.end(encodeRetry(retryMs), () => raw.socket?.end());
    }
    this.close();
  }

  private write(chunk: string) {
    if (this.closed) return;
    // Judged before writing: one batch (a page of a replay) may be larger than the limit by itself;
    // a client is too slow when it has not taken what was written before.
    if (this.reply.raw.writableLength > this.options.maxBufferedBytes) {
      // It must not grow our memory: it resumes from its last id. A reset (not a FIN) also drops
      // what the kernel still holds for it.
      const socket = this.reply.raw.socket;
      if (socket && typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
      else this.reply.raw.destroy();
      this.options.onSlowClient?.();
      this.close();
      return;
    }
    this.reply.raw.write(chunk);
  }

  private close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    for (const listener of this.closeListeners.splice(0)) listener();
  }
}
