// The built-in offline `echo` model: deterministic replies steered by directives, for demos and tests.
import {
  APICallError,
  type LanguageModelV3,
  type LanguageModelV3CallOptions,
  type LanguageModelV3Content,
  type LanguageModelV3FinishReason,
  type LanguageModelV3Message,
  type LanguageModelV3Prompt,
  type LanguageModelV3StreamPart,
  type LanguageModelV3ToolResultOutput,
  type LanguageModelV3Usage,
} from '@ai-sdk/provider';
import { abortableDelay } from './tools.js';

export const MAX_LONG_TOKENS = 100_000;
export const MAX_SLOW_MS = 60_000;

export type EchoDirectives = {
  slowMs: number;
  longTokens?: number;
  failAttempts: number;
  tool?: { name: string; input: string };
};

export type ParsedUserText = { ok: true; directives: EchoDirectives; text: string } | { ok: false; error: string };

const DIRECTIVE = /^\/(slow|long|tool|fail)(?=\s|$)/;

/** Strips the leading directives off a user text; a malformed one makes the whole parse fail with a readable reason. */
export function parseDirectives(userText: string): ParsedUserText {
  const directives: EchoDirectives = { slowMs: 0, failAttempts: 0 };
  let rest = userText.trimStart();
  const takeWord = () => {
    const word = /^\S*/.exec(rest)![0];
    rest = rest.slice(word.length).trimStart();
    return word;
  };
  const wholeNumber = (directive: string, what: string, min: number) => {
    const word = takeWord();
    if (!/^\d+$/.test(word) || Number(word) < min) throw new Error(`${directive} expects ${what}, got "${word}"`);
    return Number(word);
  };
  try {
    for (let m = DIRECTIVE.exec(rest); m; m = DIRECTIVE.exec(rest)) {
      rest = rest.slice(m[0].length).trimStart();
      if (m[1] === 'slow') directives.slowMs = Math.min(wholeNumber('/slow', 'a whole number of milliseconds', 0), MAX_SLOW_MS);
      else if (m[1] === 'long') directives.longTokens = Math.min(wholeNumber('/long', 'a positive number of tokens', 1), MAX_LONG_TOKENS);
      else if (m[1] === 'fail') directives.failAttempts = wholeNumber('/fail', 'a whole number of attempts', 0);
      else {
        const name = takeWord();
        if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(name)) throw new Error(`/tool expects a tool name, got "${name}"`);
        const input = rest.slice(0, jsonValueLength(rest));
        rest = rest.slice(input.length).trimStart();
        let args: unknown;
        try {
          args = JSON.parse(input);
        } catch {
          throw new Error(`/tool ${name} expects JSON object arguments, got "${input}"`);
        }
        if (typeof args !== 'object' || args === null || Array.isArray(args)) {
          throw new Error(`/tool ${name} expects JSON object arguments, got "${input}"`);
        }
        directives.tool = { name, input };
      }
    }
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  return { ok: true, directives, text: rest };
}

// JSON arguments may contain spaces, so find where a balanced object ends rather than splitting on whitespace.
function jsonValueLength(s: string): number {
  if (s[0] !== '{' && s[0] !== '[') return /^\S*/.exec(s)![0].length;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if ((c === '}' || c === ']') && --depth === 0) return i + 1;
  }
  return s.length;
}

const words = (text: string) => text.split(/\s+/).filter(Boolean);

function toolOutputText(output: LanguageModelV3ToolResultOutput): string {
  switch (output.type) {
    case 'text':
    case 'error-text':
      return output.value;
    case 'json':
    case 'error-json':
      return JSON.stringify(output.value);
    case 'execution-denied':
      return output.reason ? `execution denied: ${output.reason}` : 'execution denied';
    case 'content':
      return output.value.map((p) => (p.type === 'text' ? p.text : `[${p.type}]`)).join(' ');
  }
}

function messageText(message: LanguageModelV3Message): string {
  if (message.role === 'system') return message.content;
  return message.content
    .map((part) => {
      if (part.type === 'text' || part.type === 'reasoning') return part.text;
      if (part.type === 'tool-call') return typeof part.input === 'string' ? part.input : JSON.stringify(part.input);
      if (part.type === 'tool-result') return toolOutputText(part.output);
      return '';
    })
    .join(' ');
}

function attemptOf(options: LanguageModelV3CallOptions): number {
  const attempt = options.providerOptions?.echo?.attempt;
  return typeof attempt === 'number' && Number.isInteger(attempt) && attempt >= 1 ? attempt : 1;
}

/** `Echo:` then one ` word` per token; `/long` pads with ` w<position>` or truncates to exactly n tokens. */
export function replyTokens(text: string, longTokens?: number): string[] {
  const tokens = ['Echo:', ...words(text).map((w) => ` ${w}`)];
  if (longTokens === undefined) return tokens;
  return Array.from({ length: longTokens }, (_, i) => tokens[i] ?? ` w${i + 1}`);
}

type Unit = { delayed: boolean; parts: LanguageModelV3StreamPart[] };

/** The closing part; its usage counts each word of the prompt as an input token. */
function finishPart(prompt: LanguageModelV3Prompt, output: number, reason: LanguageModelV3FinishReason['unified']): LanguageModelV3StreamPart {
  const input = prompt.reduce((n, m) => n + words(messageText(m)).length, 0);
  const usage: LanguageModelV3Usage = {
    inputTokens: { total: input, noCache: input, cacheRead: 0, cacheWrite: 0 },
    outputTokens: { total: output, text: output, reasoning: 0 },
  };
  return { type: 'finish', usage, finishReason: { unified: reason, raw: reason } };
}

function planReply(options: LanguageModelV3CallOptions): { units: Unit[]; slowMs: number } {
  const { prompt } = options;
  const lastUser = prompt.filter((m) => m.role === 'user').at(-1);
  const last = prompt.at(-1);
  const parsed = parseDirectives(lastUser ? messageText(lastUser) : '');

  const attempt = attemptOf(options);
  if (parsed.ok && attempt <= parsed.directives.failAttempts) {
    throw new APICallError({
      message: `echo: simulated transient failure on attempt ${attempt} of ${parsed.directives.failAttempts} failing`,
      url: 'echo://threadbox',
      requestBodyValues: { attempt },
      statusCode: 503,
      isRetryable: true,
    });
  }

  const finish = (output: number, reason: LanguageModelV3FinishReason['unified']) => finishPart(prompt, output, reason);
  const start: Unit = { delayed: false, parts: [{ type: 'stream-start', warnings: [] }] };

  const slowMs = parsed.ok ? parsed.directives.slowMs : 0;
  const tool = parsed.ok ? parsed.directives.tool : undefined;
  if (tool && last === lastUser) {
    // Numbering from the calls already in the conversation keeps ids unique within a thread yet reproducible.
    const priorCalls = prompt.flatMap((m) => (m.role === 'assistant' ? m.content.filter((p) => p.type === 'tool-call') : []));
    const id = `call_${priorCalls.length + 1}`;
    const units: Unit[] = [
      start,
      {
        delayed: true,
        parts: [
          { type: 'tool-input-start', id, toolName: tool.name },
          { type: 'tool-input-delta', id, delta: tool.input },
          { type: 'tool-input-end', id },
          { type: 'tool-call', toolCallId: id, toolName: tool.name, input: tool.input },
        ],
      },
      { delayed: false, parts: [finish(1, 'tool-calls')] },
    ];
    return { units, slowMs };
  }

  let text: string;
  if (!parsed.ok) text = `invalid directive: ${parsed.error}`;
  else if (last?.role === 'tool') text = last.content.map((p) => (p.type === 'tool-result' ? toolOutputText(p.output) : '')).join(' ');
  else text = parsed.text;
  const tokens = replyTokens(text, parsed.ok ? parsed.directives.longTokens : undefined);
  const id = 'txt_0';
  const units: Unit[] = [
    start,
    ...tokens.map((delta, i): Unit => ({
      delayed: true,
      parts: i === 0 ? [{ type: 'text-start', id }, { type: 'text-delta', id, delta }] : [{ type: 'text-delta', id, delta }],
    })),
    { delayed: false, parts: [{ type: 'text-end', id }, finish(tokens.length, 'stop')] },
  ];
  return { units, slowMs };
}

export function createEchoModel(): LanguageModelV3 {
  const model: LanguageModelV3 = {
    specificationVersion: 'v3',
    provider: 'threadbox',
    modelId: 'echo',
    supportedUrls: {},

    async doStream(options) {
      const signal = options.abortSignal;
      const abortReason = () => signal?.reason ?? new DOMException('This operation was aborted', 'AbortError');
      if (signal?.aborted) throw abortReason();
      const { units, slowMs } = planReply(options);
      // Stops pending delays when the consumer cancels, so no timer outlives the stream.
      const cancelled = new AbortController();
      const delaySignal = signal ? AbortSignal.any([signal, cancelled.signal]) : cancelled.signal;
      let next = 0;
      const stream = new ReadableStream<LanguageModelV3StreamPart>({
        async pull(controller) {
          const unit = units[next++];
          if (!unit) return controller.close();
          if (unit.delayed && slowMs > 0) await abortableDelay(slowMs, delaySignal);
          if (signal?.aborted) throw abortReason();
          for (const part of unit.parts) controller.enqueue(part);
        },
        cancel() {
          cancelled.abort();
        },
      });
      return { stream };
    },

    async doGenerate(options) {
      const { stream } = await model.doStream(options);
      const content: LanguageModelV3Content[] = [];
      let text = '';
      let finish: Extract<LanguageModelV3StreamPart, { type: 'finish' }> | undefined;
      const reader = stream.getReader();
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        const part = r.value;
        if (part.type === 'text-delta') text += part.delta;
        else if (part.type === 'tool-call') content.push(part);
        else if (part.type === 'finish') finish = part;
      }
      if (text) content.unshift({ type: 'text', text });
      return { content, finishReason: finish!.finishReason, usage: finish!.usage, warnings: [] };
    },
  };
  return model;
}
