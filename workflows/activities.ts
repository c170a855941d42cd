// The activities as the workflows call them, with their timeouts and retry policies (set here once).
import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

const STORE_RETRY = { initialInterval: '100 milliseconds', maximumInterval: '5 seconds', nonRetryableErrorTypes: ['illegal_transition', 'not_found'] };

// Regular activities: their completions are history events ordered with the updates and signals
// around them (submit, stop, steer, decide), which keeps replay of concurrent messages deterministic.
export const store = proxyActivities<Activities>({ startToCloseTimeout: '30 seconds', retry: STORE_RETRY });

/**
 * The same store calls as local activities: run by the worker inside the workflow task, no dispatch hop.
 * Only for reads (the rebuild's loadMailbox, before any handler may run): a local activity runs before its
 * workflow task completes, so when that task fails (an update or signal arrived as it closed) the effects
 * of a write would stand while the workflow, retried, decides afresh: a claimed run id no mailbox holds.
 */
export const localStore = proxyLocalActivities<Activities>({ startToCloseTimeout: '30 seconds', retry: STORE_RETRY });

export const modelStepActivity = (step: number) =>
  proxyActivities<Activities>({
    summary: `model step ${step}`,
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: '10 seconds',
    // No attempt cap here: the activity gives the model's own errors MODEL_ATTEMPTS attempts and rides out store outages by time.
    retry: { initialInterval: '200 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds' },
  }).modelStep;

export const toolActivity = (toolName: string) =>
  proxyActivities<Activities>({
    summary: `tool ${toolName}`,
    startToCloseTimeout: '15 minutes',
    heartbeatTimeout: '30 seconds',
    // No attempt cap here: the activity gives a failing call TOOL_ATTEMPTS attempts and rides out store outages by time.
    retry: { initialInterval: '500 milliseconds', maximumInterval: '10 seconds' },
  }).runTool;
