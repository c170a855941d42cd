// The AI SDK's own chat (AbstractChat, what useChat wraps) and its DefaultChatTransport, run in Node against the API.
// The only thing added is the state holder React would provide, and a record of every chunk the transport parsed.
import { AbstractChat, DefaultChatTransport, lastAssistantMessageIsCompleteWithApprovalResponses, uiMessageChunkSchema, type ChatState, type ChatStatus, type UIMessage, type UIMessageChunk } from 'ai';
import { safeValidateTypes } from '@ai-sdk/provider-utils';

class PlainState implements ChatState<UIMessage> {
  status: ChatStatus = 'ready';
  error: Error | undefined;
  constructor(public messages: UIMessage[] = []) {}
  pushMessage = (message: UIMessage) => void (this.messages = [...this.messages, message]);
  popMessage = () => void (this.messages = this.messages.slice(0, -1));
  replaceMessage = (index: number, message: UIMessage) => void (this.messages = this.messages.map((m, i) => (i === index ? message : m)));
  snapshot = <T>(thing: T): T => structuredClone(thing);
}

/** A DefaultChatTransport that keeps every chunk it parsed, and can cut its response after `cutAfter` chunks like a dropped network. */
export class RecordingTransport extends DefaultChatTransport<UIMessage> {
  readonly chunks: UIMessageChunk[] = [];
  cutAfter?: number;

  protected override processResponseStream(stream: ReadableStream<Uint8Array>): ReadableStream<UIMessageChunk> {
    const chunks = this.chunks;
    let seen = 0;
    const take = () => this.cutAfter;
    const clear = () => (this.cutAfter = undefined);
    return super.processResponseStream(stream).pipeThrough(
      new TransformStream<UIMessageChunk, UIMessageChunk>({
        transform(chunk, controller) {
          chunks.push(chunk);
          controller.enqueue(chunk);
          const cut = take();
          if (cut !== undefined && ++seen >= cut) {
            clear();
            // what fetch raises when the connection drops mid-body: useChat treats it as resumable
            controller.error(new TypeError('network error: connection reset'));
          }
        },
      }),
    );
  }
}

export class NodeChat extends AbstractChat<UIMessage> {
  readonly recorder: RecordingTransport;
  constructor(opts: { url: string; threadId: string; headers: Record<string, string>; messages?: UIMessage[]; body?: Record<string, unknown> }) {
    const transport = new RecordingTransport({ api: `${opts.url}/v1/chat`, headers: opts.headers, body: opts.body });
    super({
      id: opts.threadId,
      transport,
      state: new PlainState(opts.messages),
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
    });
    this.recorder = transport;
  }

  get last(): UIMessage {
    return this.messages[this.messages.length - 1]!;
  }
}

/** Each chunk checked against the AI SDK's UI-message chunk schema, as a separate pass over what was recorded. */
export async function invalidChunks(chunks: UIMessageChunk[]): Promise<string[]> {
  const bad: string[] = [];
  for (const chunk of chunks) {
    const result = await safeValidateTypes({ value: chunk, schema: uiMessageChunkSchema });
    if (!result.success) bad.push(JSON.stringify(chunk));
  }
  return bad;
}

export const textOf = (message: UIMessage) => message.parts.flatMap((p) => (p.type === 'text' ? [p.text] : [])).join('');

/** Retries an assertion until it holds, or rethrows its last failure after `timeoutMs`. */
export async function until(assertion: () => void, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return assertion();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}
