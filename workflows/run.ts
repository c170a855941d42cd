// The agent loop of one run: model step, then one activity per tool call, until the model is done.
import {
  ApplicationFailure,
  CancellationScope,
  defineSignal,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { Termination } from '../src/events.js';
import type { Activities } from '../activities/index.js';
import type { RunEnded, RunWorkflowInput, StopReason } from './types.js';

export const stopRunSignal = defineSignal<[{ reason: StopReason }]>('stop');
export const runEndedSignal = defineSignal<[RunEnded]>('runEnded');

const store = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '100 milliseconds', maximumInterval: '5 seconds', nonRetryableErrorTypes: ['illegal_transition', 'not_found'] },
});

const modelStepActivity = (step: number) =>
  proxyActivities<Activities>({
    summary: `model step ${step}`,
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: '10 seconds',
    retry: { initialInterval: '200 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 6 },
  }).modelStep;

export async function runWorkflow(input: RunWorkflowInput): Promise<Termination> {
  const { tenant, threadId, runId } = input;
  let stopReason: StopReason | undefined;
  let step = 0;
  const loop = new CancellationScope();
  setHandler(stopRunSignal, ({ reason }) => {
    stopReason ??= reason;
    loop.cancel();
  });

  let termination: Termination;
  try {
    await store.startRun({ runId, carriedRunIds: input.carriedRunIds, agentId: input.agent.agentId, dispatchId: input.dispatchId });
    setStatus('running');
    termination = await loop.run(async () => {
      while (step < input.agent.maxSteps) {
        step += 1;
        const result = await modelStepActivity(step)({ tenant, threadId, runId, agentId: input.agent.agentId, step });
        await store.commitMessages({
          ref: { tenant, threadId },
          messages: [{ messageId: `${runId}:${step}:assistant`, role: 'assistant', content: result.text, runId, toolCalls: result.toolCalls.length ? result.toolCalls : undefined }],
        });
        if (result.toolCalls.length === 0) return { type: 'natural_end' } satisfies Termination;
        for (const call of result.toolCalls) {
          await proxyActivities<Activities>({
            summary: `tool ${call.toolName}`,
            startToCloseTimeout: '15 minutes',
            heartbeatTimeout: '30 seconds',
            retry: { initialInterval: '500 milliseconds', maximumAttempts: 3 },
          }).runTool({ tenant, threadId, runId, step, call });
        }
      }
      return { type: 'max_steps', detail: `stopped after ${input.agent.maxSteps} steps` } satisfies Termination;
    });
  } catch (err) {
    if (isCancellation(err) && stopReason) termination = { type: stopReason };
    else termination = { type: 'error', detail: errorMessage(err) };
  }

  await CancellationScope.nonCancellable(async () => {
    if (termination.type === 'interrupted' || termination.type === 'cancelled') {
      await store.commitInterruptedStep({ tenant, threadId, runId, step });
    }
    await store.finishRun({ runId, termination, fence: (step + 1) * 1000 });
    setStatus(termination.type);
    await getExternalWorkflowHandle(input.threadWorkflowId).signal(runEndedSignal, { runId, termination });
  });
  return termination;
}

function setStatus(status: string) {
  upsertSearchAttributes({ RunStatus: [status] });
}

function errorMessage(err: unknown): string {
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause) cause = cause.cause;
  if (cause instanceof ApplicationFailure || cause instanceof Error) return cause.message;
  return String(cause);
}
