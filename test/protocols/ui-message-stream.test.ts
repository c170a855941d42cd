// The UI-message encoder and the log-to-UIMessage conversion as pure functions: event fixtures in, chunks and
// messages out, read back by the AI SDK's own readUIMessageStream.
import { readUIMessageStream, type UIMessage, type UIMessageChunk } from 'ai';
import { describe, expect, it } from 'vitest';
import type { RunEvent, RunEventBody } from '../../src/contract/run-events.js';
import { UiMessageStreamEncoder } from '../../src/protocols/ui-message-stream.js';
import { toUIMessages, type LogMessage } from '../../src/protocols/ui-messages.js';
import { invalidChunks } from '../chat/node-chat.js';
import { visibleParts } from '../../playground/src/parts.js';

const meta = { runId: 'r1', threadId: 't1' };

/** Places bodies as the log would: seq from 1, the attempt of the step they belong to. */
function events(bodies: RunEventBody[]): RunEvent[] {
  let attempt = 1;
  return bodies.map((body, i) => {
    if (body.type === 'step_start') attempt = body.attempt;
    return { ...body, id: 100 + i, runId: 'r1', threadId: 't1', seq: i + 1, ts: '2026-12-01T00:00:00Z', attempt } as RunEvent;
  });
}

async function messageOf(chunks: UIMessageChunk[]): Promise<UIMessage> {
  const stream = new ReadableStream<UIMessageChunk>({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });
  let last: UIMessage | undefined;
  for await (const message of readUIMessageStream({ stream, terminateOnError: false })) last = message;
  return last!;
}

const start: RunEventBody[] = [{ type: 'run_start', dispatchId: 'd1', agentId: 'default' }];

describe('UiMessageStreamEncoder', () => {
  it('a plain answer: start, one text part per step, finish with the termination', async () => {
    const chunks = new UiMessageStreamEncoder(meta).encode(
      events([
        ...start,
        { type: 'step_start', step: 1, attempt: 1 },
        { type: 'text_delta', step: 1, delta: 'Echo: ' },
        { type: 'text_delta', step: 1, delta: 'hi' },
        { type: 'step_end', step: 1, finishReason: 'stop' },
        { type: 'run_finish', termination: { type: 'natural_end' } },
      ]),
    );
    expect(chunks.map((c) => c.type)).toEqual(['start', 'message-metadata', 'start-step', 'text-start', 'text-delta', 'text-delta', 'text-end', 'finish-step', 'finish']);
    expect(chunks[0]).toMatchObject({ messageId: 'r1' });
    expect(chunks.at(-1)).toMatchObject({ finishReason: 'stop', messageMetadata: { status: 'done', termination: { type: 'natural_end' } } });
    expect(await invalidChunks(chunks)).toEqual([]);
    const message = await messageOf(chunks);
    expect(message.parts.filter((p) => p.type === 'text')).toEqual([{ type: 'text', text: 'Echo: hi', state: 'done' }]);
  });

  it('a retried step keeps the failed attempt behind a data-stream-reset part, then the new attempt in its own step', async () => {
    const chunks = new UiMessageStreamEncoder(meta).encode(
      events([
        ...start,
        { type: 'step_start', step: 1, attempt: 1 },
        { type: 'text_delta', step: 1, delta: 'Ech' },
        { type: 'stream_reset', step: 1, attempt: 2 },
        { type: 'step_start', step: 1, attempt: 2 },
        { type: 'text_delta', step: 1, delta: 'Echo: again' },
        { type: 'step_end', step: 1, finishReason: 'stop' },
        { type: 'run_finish', termination: { type: 'natural_end' } },
      ]),
    );
    expect(await invalidChunks(chunks)).toEqual([]);
    const message = await messageOf(chunks);
    expect(message.parts.map((p) => p.type)).toEqual(['step-start', 'text', 'data-stream-reset', 'step-start', 'text']);
    expect(message.parts.filter((p) => p.type === 'text').map((p) => (p as { text: string }).text)).toEqual(['Ech', 'Echo: again']);
    // The playground shows the surviving attempt only.
    expect(visibleParts(message.parts).map((p) => (p.type === 'text' ? p.text : p.type))).toEqual(['step-start', 'Echo: again']);
  });

  it('a tool call needing approval: input, the request, then the output after the decision', async () => {
    const encoder = new UiMessageStreamEncoder(meta);
    const asked = encoder.encode(
      events([
        ...start,
        { type: 'step_start', step: 1, attempt: 1 },
        { type: 'tool_call_start', step: 1, toolCallId: 'c1', toolName: 'send_email' },
        { type: 'tool_call_delta', step: 1, toolCallId: 'c1', delta: '{"to":' },
        { type: 'tool_call_ready', step: 1, toolCallId: 'c1', toolName: 'send_email', input: { to: 'a@b.c' } },
        { type: 'step_end', step: 1, finishReason: 'tool-calls' },
        { type: 'tool_approval_requested', toolCallId: 'c1', toolName: 'send_email', input: { to: 'a@b.c' } },
      ]),
    );
    expect(encoder.pendingApprovals).toEqual(new Set(['c1']));
    const paused = [...asked, ...encoder.pause()];
    expect(await invalidChunks(paused)).toEqual([]);
    const waiting = await messageOf(paused);
    expect(waiting.parts.find((p) => p.type === 'dynamic-tool')).toMatchObject({ toolName: 'send_email', state: 'approval-requested', approval: { id: 'c1' } });
    expect(waiting.metadata).toMatchObject({ status: 'waiting' });
    const done = encoder.encode(events([{ type: 'tool_call_done', toolCallId: 'c1', toolName: 'send_email', outcome: 'denied', error: 'denied: no' }]));
    expect(done.map((c) => c.type)).toEqual(['message-metadata', 'tool-output-denied']);
    expect(encoder.pendingApprovals.size).toBe(0);
  });

  it('an interrupted run ends with abort and a failed one with error, each after metadata carrying the termination', async () => {
    const body = (termination: RunEventBody) => new UiMessageStreamEncoder(meta).encode(events([...start, { type: 'step_start', step: 1, attempt: 1 }, { type: 'text_delta', step: 1, delta: 'par' }, termination]));
    const interrupted = body({ type: 'run_finish', termination: { type: 'interrupted' } });
    expect(interrupted.slice(-4).map((c) => c.type)).toEqual(['text-end', 'finish-step', 'message-metadata', 'abort']);
    expect(interrupted.at(-2)).toMatchObject({ messageMetadata: { termination: { type: 'interrupted' } } });
    const failed = body({ type: 'run_finish', termination: { type: 'error', detail: 'model call failed' } });
    expect(failed.at(-1)).toEqual({ type: 'error', errorText: 'model call failed' });
    expect(await invalidChunks([...interrupted, ...failed])).toEqual([]);
  });
});

describe('toUIMessages', () => {
  const log: LogMessage[] = [
    { id: 'u1', role: 'user', content: 'send it', runId: 'r1', status: 'complete', metadata: {} },
    { id: 'r1:1:assistant', role: 'assistant', content: '', runId: 'r1', status: 'complete', metadata: {}, toolCalls: [{ toolCallId: 'c1', toolName: 'send_email', input: { to: 'a@b.c' } }] },
    { id: 'r1:1:tool:c1', role: 'tool', content: '{"sent":true}', toolCallId: 'c1', runId: 'r1', status: 'complete', metadata: { toolName: 'send_email', outcome: 'ok' } },
    { id: 'r1:2:assistant', role: 'assistant', content: 'Sent.', runId: 'r1', status: 'complete', metadata: {} },
    { id: 'u2', role: 'user', content: 'again', runId: 'r2', status: 'complete', metadata: {} },
    { id: 'r2:1:assistant', role: 'assistant', content: 'Ag', runId: 'r2', status: 'interrupted', metadata: {} },
    { id: 'r3:input', role: 'user', content: 'again', runId: 'r3', status: 'complete', metadata: { regenerateOf: 'r2' } },
    { id: 'r3:1:assistant', role: 'assistant', content: 'Again!', runId: 'r3', status: 'complete', metadata: {} },
  ];
  const runs = [
    { runId: 'r1', threadId: 't1', agentId: 'default', status: 'done' as const, termination: { type: 'natural_end' as const } },
    { runId: 'r2', threadId: 't1', agentId: 'default', status: 'done' as const, termination: { type: 'interrupted' as const } },
    { runId: 'r3', threadId: 't1', agentId: 'default', status: 'done' as const, termination: { type: 'natural_end' as const } },
  ];

  it('merges each run into one assistant message with tool parts carrying their results; a regenerated answer replaces the old one', () => {
    const messages = toUIMessages(log, runs);
    expect(messages.map((m) => [m.role, m.id])).toEqual([
      ['user', 'u1'],
      ['assistant', 'r1'],
      ['user', 'u2'],
      ['assistant', 'r3'],
    ]);
    expect(messages[1]!.parts).toEqual([
      { type: 'step-start' },
      { type: 'dynamic-tool', toolCallId: 'c1', toolName: 'send_email', input: { to: 'a@b.c' }, state: 'output-available', output: { sent: true } },
      { type: 'step-start' },
      { type: 'text', text: 'Sent.', state: 'done' },
    ]);
    expect(messages[1]!.metadata).toMatchObject({ runId: 'r1', termination: { type: 'natural_end' } });
  });

  it('marks an interrupted answer', () => {
    const messages = toUIMessages(log.slice(0, 6), runs);
    expect(messages.at(-1)!.metadata).toMatchObject({ runId: 'r2', interrupted: true, termination: { type: 'interrupted' } });
  });
});
