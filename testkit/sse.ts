// The one SSE client of the tests, the fault clients and the bench: eventsource-parser reads the frames,
// and every frame carries the time its chunk arrived.
import { createParser } from 'eventsource-parser';

/** One thing the server sent: an event (`data`, with its `id` and `event`), a `retry` hint or a comment. */
export interface SseFrame {
  id?: string;
  event?: string;
  data?: string;
  retry?: number;
  comment?: string;
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable with Postgres timestamps on the same host. */
export const clock = () => performance.timeOrigin + performance.now();

/**
 * Reads an SSE body to its end, calling `onFrame` with each frame and the time the chunk that
 * completed it arrived (and `onBytes` on every chunk, keepalives included). Resolves when the
 * server ends the stream; rejects when the connection breaks.
 */
export async function readSse(
  body: ReadableStream<Uint8Array>,
  onFrame: (frame: SseFrame, at: number) => void,
  onBytes?: (at: number) => void,
): Promise<void> {
  let at = 0;
  const parser = createParser({
    onEvent: ({ id, event, data }) => onFrame({ id, event, data }, at),
    onRetry: (retry) => onFrame({ retry }, at),
    onComment: (comment) => onFrame({ comment }, at),
  });
  const decoder = new TextDecoder();
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    at = clock();
    onBytes?.(at);
    parser.feed(decoder.decode(chunk, { stream: true }));
  }
}

export interface SseConnection {
  status: number;
  contentType: string | null;
  frames: SseFrame[];
  /** resolves when the server ends the stream (or `close()` aborts it) */
  done: Promise<void>;
  /** resolves once `count` event frames have arrived */
  waitForEvents(count: number, timeoutMs?: number): Promise<SseFrame[]>;
  close(): void;
}

/** Opens a stream and collects its frames as they arrive, as a browser's EventSource would parse them. */
export async function openSse(url: string, init: RequestInit = {}): Promise<SseConnection> {
  const controller = new AbortController();
  const response = await fetch(url, {
    ...init,
    signal: controller.signal,
    headers: { accept: 'text/event-stream', ...(init.headers as Record<string, string>) },
  });
  const frames: SseFrame[] = [];
  const waiters: (() => void)[] = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  const done = (async () => {
    if (!response.body || !response.headers.get('content-type')?.includes('text/event-stream')) return;
    await readSse(response.body, (frame) => {
      frames.push(frame);
      wake();
    }).catch(() => {}); // aborted by close()
    wake();
  })();
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    frames,
    done,
    async waitForEvents(count, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (eventFrames(frames).length < count) {
        if (Date.now() > deadline) throw new Error(`only ${eventFrames(frames).length} of ${count} SSE events arrived`);
        await Promise.race([new Promise<void>((r) => waiters.push(r)), new Promise((r) => setTimeout(r, 100))]);
      }
      return eventFrames(frames);
    },
    close: () => controller.abort(),
  };
}

export const eventFrames = (frames: SseFrame[]) => frames.filter((f) => f.event !== undefined);
export const payloads = (frames: SseFrame[]) => eventFrames(frames).map((f) => JSON.parse(f.data!));
