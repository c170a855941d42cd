// An SSE reader that timestamps every frame on arrival; shared by the benchmarks and the fault-injection clients.

export interface SseFrame {
  id?: string;
  event?: string;
  data?: string;
  retry?: number;
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable with Postgres timestamps on the same host. */
export const clock = () => performance.timeOrigin + performance.now();

/**
 * Reads an SSE body to its end, calling `onFrame` with each frame and the time its last byte
 * arrived (and `onBytes` on every chunk, keepalives included). Resolves when the server ends the
 * stream; rejects when the connection breaks.
 */
export async function readSse(
  body: ReadableStream<Uint8Array>,
  onFrame: (frame: SseFrame, at: number) => void,
  onBytes?: (at: number) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    const at = clock();
    onBytes?.(at);
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = parseFrame(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (frame) onFrame(frame, at);
    }
  }
}

/** One frame's fields; undefined for a comment-only frame (a keepalive). */
function parseFrame(text: string): SseFrame | undefined {
  const frame: SseFrame = {};
  let fields = 0;
  for (const line of text.split('\n')) {
    const match = /^(id|event|data|retry): ?(.*)$/.exec(line);
    if (!match) continue;
    fields++;
    const [, field, value] = match;
    if (field === 'retry') frame.retry = Number(value);
    else if (field === 'data') frame.data = frame.data === undefined ? value : `${frame.data}\n${value}`;
    else frame[field as 'id' | 'event'] = value;
  }
  return fields ? frame : undefined;
}
