// The tool activity: runs one tool call (or records a decision not to) and commits its result.
import { Context } from '@temporalio/activity';
import type { RunEventBody } from '../src/contract/run-events.js';
import type { AgentRegistry } from '../src/agent/agents.js';
import { sanitizeJson, sanitizeText } from '../src/agent/sanitize.js';
import { builtinTools, executeTool } from '../src/agent/tools.js';
import type { Store, ToolCall } from '../src/store/store.js';
import { toolMessageId, toolResultFence } from '../src/contract/mailbox.js';
import { storeCall, TOOL_ATTEMPTS, withRetryBudget } from './retry.js';

interface ToolArgs {
  tenant: string;
  threadId: string;
  runId: string;
  agentId: string;
  step: number;
  call: ToolCall;
  outcome?: 'denied' | 'cancelled';
  reason?: string;
}

export function toolActivities({ store, agents }: { store: Store; agents: AgentRegistry }) {
  return {
    async runTool(args: ToolArgs) {
      return withRetryBudget(() => runToolOnce(store, agents, args), TOOL_ATTEMPTS, 'tool_failed');
    },
  };
}

/**
 * Runs one tool call (or records that it was denied or cancelled) and commits its result;
 * a failing tool is a result the model reads, not a failed run.
 */
async function runToolOnce(store: Store, agents: AgentRegistry, args: ToolArgs) {
  const { call } = args;
  const ctx = Context.current();
  if (args.outcome) {
    const error = args.outcome === 'denied' ? `denied${args.reason ? `: ${args.reason}` : ''}` : 'cancelled: new input arrived';
    await recordToolResult(store, args, { type: 'tool_call_done', toolCallId: call.toolCallId, toolName: call.toolName, outcome: args.outcome, error }, error);
    return;
  }
  // An unknown tool gets executeTool's own message; a known one outside the agent's list is refused.
  const allowed = !Object.hasOwn(builtinTools, call.toolName) || (agents.get(args.agentId)?.tools.includes(call.toolName) ?? false);
  const result = allowed
    ? await executeTool(call.toolName, call.input, { signal: ctx.cancellationSignal, heartbeat: (d) => ctx.heartbeat(d) })
    : ({ ok: false, error: `tool "${call.toolName}" is not available to agent "${args.agentId}"` } as const);
  await recordToolResult(
    store,
    args,
    result.ok
      ? { type: 'tool_call_done', toolCallId: call.toolCallId, toolName: call.toolName, outcome: 'ok', output: result.output }
      : { type: 'tool_call_done', toolCallId: call.toolCallId, toolName: call.toolName, outcome: 'error', error: result.error },
    JSON.stringify(result.ok ? result.output : { error: result.error }),
  );
}

/** Commits a tool message and, unless a retry already did, its `tool_call_done` event. */
async function recordToolResult(
  store: Store,
  args: { tenant: string; threadId: string; runId: string; step: number; call: ToolCall },
  done: Extract<RunEventBody, { type: 'tool_call_done' }>,
  content: string,
) {
  const { call, runId, step } = args;
  // A tool's output (or a decision's reason) is data from outside: kept as Postgres can store it, never fatal.
  done = sanitizeJson(done) as typeof done;
  const committed = await storeCall(() =>
    store.commitMessages({ tenant: args.tenant, threadId: args.threadId }, [
      {
        messageId: toolMessageId(runId, step, call.toolCallId),
        role: 'tool',
        content: sanitizeText(content),
        toolCallId: call.toolCallId,
        runId,
        metadata: { toolName: call.toolName, outcome: done.outcome },
      },
    ]),
  );
  if (committed.duplicate) return; // a retry after the result was committed and announced
  await storeCall(() => store.appendEvents(runId, toolResultFence(step), [done], args.tenant));
}
