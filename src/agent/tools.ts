// The built-in tool registry: schemas, executors, and their AI SDK declarations.
import { createHash } from 'node:crypto';
import { tool, type Tool } from 'ai';
import { z } from 'zod';

export type ToolContext = { signal: AbortSignal; heartbeat: (details?: unknown) => void };

export type ToolDefinition = {
  name: string;
  description: string;
  inputSchema: z.ZodType;
  needsApproval: boolean;
  // Method syntax keeps each tool's narrower input type assignable here.
  execute(input: unknown, ctx: ToolContext): Promise<unknown>;
};

export type ToolResult = { ok: true; output: unknown } | { ok: false; error: string };

function defineTool<S extends z.ZodType>(def: {
  name: string;
  description: string;
  inputSchema: S;
  needsApproval?: boolean;
  execute(input: z.output<S>, ctx: ToolContext): Promise<unknown>;
}): ToolDefinition {
  return { ...def, needsApproval: def.needsApproval ?? false };
}

/** Resolves after `ms`, or rejects with the signal's own reason so callers (Temporal activities) see their cancellation. */
export function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const reason = () => signal?.reason ?? new DOMException('This operation was aborted', 'AbortError');
    if (signal?.aborted) return reject(reason());
    const onAbort = () => {
      clearTimeout(timer);
      reject(reason());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

class CalculatorError extends Error {}

/** Where the parser stands in an arithmetic expression; whitespace is skipped before each look. */
class ExpressionCursor {
  pos = 0;
  constructor(readonly source: string) {}

  peek(): string | undefined {
    while (this.pos < this.source.length && /\s/.test(this.source[this.pos]!)) this.pos++;
    return this.source[this.pos];
  }

  fail(what: string): never {
    const { source, pos } = this;
    throw new CalculatorError(pos >= source.length ? `${what} at end of expression` : `${what} "${source[pos]}" at position ${pos + 1}`);
  }
}

/** Recursive descent over: expr = term (+|- term)*; term = unary (*|/|% unary)*; unary = -unary | power; power = primary (^ unary)?. */
export function evaluateArithmetic(source: string): number {
  const at = new ExpressionCursor(source);
  const expr = (): number => {
    let value = term();
    for (let op = at.peek(); op === '+' || op === '-'; op = at.peek()) {
      at.pos++;
      value = op === '+' ? value + term() : value - term();
    }
    return value;
  };
  const term = (): number => {
    let value = unary();
    for (let op = at.peek(); op === '*' || op === '/' || op === '%'; op = at.peek()) {
      at.pos++;
      const right = unary();
      if (op !== '*' && right === 0) throw new CalculatorError(op === '/' ? 'division by zero' : 'modulo by zero');
      value = op === '*' ? value * right : op === '/' ? value / right : value % right;
    }
    return value;
  };
  // Unary minus binds looser than ^, so -2^2 is -4 as in conventional notation.
  const unary = (): number => {
    const op = at.peek();
    if (op === '-' || op === '+') {
      at.pos++;
      return op === '-' ? -unary() : unary();
    }
    return power();
  };
  const power = (): number => {
    const base = primary();
    if (at.peek() !== '^') return base;
    at.pos++;
    return base ** unary();
  };
  const primary = (): number => {
    if (at.peek() === '(') {
      at.pos++;
      const value = expr();
      if (at.peek() !== ')') at.fail('expected ")" but found');
      at.pos++;
      return value;
    }
    const match = /^(\d+\.?\d*|\.\d+)/.exec(source.slice(at.pos));
    if (!match) return at.fail('expected a number but found');
    at.pos += match[0].length;
    return Number(match[0]);
  };

  if (at.peek() === undefined) throw new CalculatorError('empty expression');
  const result = expr();
  if (at.peek() !== undefined) at.fail('unexpected');
  if (!Number.isFinite(result)) throw new CalculatorError('result is not a finite number');
  return result;
}

export const builtinTools: Record<string, ToolDefinition> = Object.fromEntries(
  [
    defineTool({
      name: 'get_time',
      description: 'Returns the current time as an ISO-8601 UTC timestamp.',
      inputSchema: z.object({}),
      execute: async () => ({ iso: new Date().toISOString() }),
    }),
    defineTool({
      name: 'calculator',
      description: 'Evaluates an arithmetic expression with + - * / % ^, parentheses and decimals.',
      inputSchema: z.object({ expression: z.string().min(1).max(1000) }),
      execute: async ({ expression }) => ({ result: evaluateArithmetic(expression) }),
    }),
    defineTool({
      name: 'sleep',
      description: 'Waits for the given number of milliseconds (at most 10 minutes).',
      inputSchema: z.object({ ms: z.number().int().min(0).max(600_000) }),
      async execute({ ms }, ctx) {
        // Short slices keep heartbeats flowing so a long sleep is not mistaken for a dead worker.
        for (let slept = 0; slept < ms; ) {
          const slice = Math.min(1000, ms - slept);
          await abortableDelay(slice, ctx.signal);
          slept += slice;
          ctx.heartbeat({ slept });
        }
        return { slept: ms };
      },
    }),
    defineTool({
      name: 'send_email',
      description: 'Sends an email (simulated; requires approval).',
      inputSchema: z.object({ to: z.email(), subject: z.string().min(1).max(1000), body: z.string().max(100_000) }),
      needsApproval: true,
      // The id derives from the content so a retried activity reports the same message.
      execute: async ({ to, subject, body }) => ({
        sent: true,
        messageId: `${createHash('sha256').update(JSON.stringify([to, subject, body])).digest('hex').slice(0, 24)}@threadbox.local`,
      }),
    }),
  ].map((t) => [t.name, t]),
);

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
}

/** Runs a tool; bad names, bad input and tool failures come back as `ok: false`. Only cancellation (the signal's abort) rejects. */
export async function executeTool(name: string, rawInput: unknown, ctx: ToolContext): Promise<ToolResult> {
  const def = Object.hasOwn(builtinTools, name) ? builtinTools[name] : undefined;
  if (!def) return { ok: false, error: `unknown tool "${name}" (available: ${Object.keys(builtinTools).join(', ')})` };
  const parsed = def.inputSchema.safeParse(rawInput);
  if (!parsed.success) return { ok: false, error: `invalid input for ${name}: ${describeIssues(parsed.error)}` };
  try {
    return { ok: true, output: await def.execute(parsed.data, ctx) };
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    return { ok: false, error: `${name} failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** Declarations for the model only: no `execute`, because the workflow runs each tool call as its own activity. */
export function toAiSdkTools(names: string[]): Record<string, Tool> {
  return Object.fromEntries(
    names.map((name) => {
      const def = Object.hasOwn(builtinTools, name) ? builtinTools[name] : undefined;
      if (!def) throw new Error(`unknown tool "${name}" (available: ${Object.keys(builtinTools).join(', ')})`);
      return [name, tool({ description: def.description, inputSchema: def.inputSchema })];
    }),
  );
}
