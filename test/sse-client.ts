// A minimal SSE client over fetch, for tests: parses frames as a browser's EventSource would.
export interface Frame {
  id?: string;
  event?: string;
  data?: string;
  retry?: number;
  comment?: string;
}

export interface SseConnection {
  status: number;
  contentType: string | null;
  frames: Frame[];
  /** resolves when the server ends the stream */
  done: Promise<void>;
  /** resolves once `count` event frames have arrived */
  waitForEvents(count: number, timeoutMs?: number): Promise<Frame[]>;
  close(): void;
}

export async function openSse(url: string, init: RequestInit = {}): Promise<SseConnection> {
  const controller = new AbortController();
  const response = await fetch(url, {
    ...init,
    signal: controller.signal,
    headers: { accept: 'text/event-stream', ...(init.headers as Record<string, string>) },
  });
  const frames: Frame[] = [];
  const waiters: (() => void)[] = [];
  const done = (async () => {
    if (!response.body || !response.headers.get('content-type')?.includes('text/event-stream')) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          frames.push(parseFrame(buffer.slice(0, end)));
          buffer = buffer.slice(end + 2);
          for (const w of waiters.splice(0)) w();
        }
      }
    } catch {
      // aborted by close()
    }
    for (const w of waiters.splice(0)) w();
  })();
  const events = () => frames.filter((f) => f.event !== undefined);
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    frames,
    done,
    async waitForEvents(count, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (events().length < count) {
        if (Date.now() > deadline) throw new Error(`only ${events().length} of ${count} SSE events arrived`);
        await Promise.race([new Promise<void>((r) => waiters.push(r)), new Promise((r) => setTimeout(r, 100))]);
      }
      return events();
    },
    close: () => controller.abort(),
  };
}

function parseFrame(text: string): Frame {
  const frame: Frame = {};
  for (const line of text.split('\n')) {
    if (line.startsWith(':')) frame.comment = line.slice(1).trim();
    const match = /^(id|event|data|retry): ?(.*)$/.exec(line);
    if (!match) continue;
    const [, field, value] = match;
    if (field === 'retry') frame.retry = Number(value);
    else if (field === 'data') frame.data = frame.data === undefined ? value : `${frame.data}\n${value}`;
    else frame[field as 'id' | 'event'] = value;
  }
  return frame;
}

export const eventFrames = (frames: Frame[]) => frames.filter((f) => f.event !== undefined);
export const payloads = (frames: Frame[]) => eventFrames(frames).map((f) => JSON.parse(f.data!));
