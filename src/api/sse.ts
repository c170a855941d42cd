// Server-sent events: a pure frame encoder over RunEvent, and one open stream with its limits.
import type { FastifyReply } from 'fastify';
import type { RunEvent } from '../events.js';

/** Which number a stream's `id:` carries: a run stream's `seq`, a thread stream's global `id`. */
export type CursorOf = (event: RunEvent) => number;
export const runCursor: CursorOf = (e) => e.seq;
export const threadCursor: CursorOf = (e) => e.id;

export function encodeEvent(event: RunEvent, cursorOf: CursorOf): string {
  return `id: ${cursorOf(event)}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

export const encodeComment = (text: string) => `: ${text}\n\n`;
export const encodeRetry = (ms: number) => `retry: ${ms}\n\n`;

export interface SseOptions {
  heartbeatMs: number;
  /** past this many unsent bytes the client is too slow: it is disconnected and can resume */
  maxBufferedBytes: number;
}

export class SseStream {
  closed = false;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly closeListeners: (() => void)[] = [];

  constructor(
    private readonly reply: FastifyReply,
    private readonly cursorOf: CursorOf,
    private readonly options: SseOptions,
  ) {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
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

  /** Ends the stream; with `retryMs`, tells the client when to reconnect (a server going away). */
  end(retryMs?: number) {
    if (this.closed) return;
    if (retryMs !== undefined) this.reply.raw.write(encodeRetry(retryMs));
    this.reply.raw.end();
    this.close();
  }

  private write(chunk: string) {
    if (this.closed) return;
    this.reply.raw.write(chunk);
    if (this.reply.raw.writableLength > this.options.maxBufferedBytes) {
      // A client that does not read must not grow our memory: it resumes from its last id.
      this.reply.raw.destroy();
      this.close();
    }
  }

  private close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    for (const listener of this.closeListeners.splice(0)) listener();
  }
}
