// How a failed model step reads to Temporal: transient or permanent, the provider's failure or the store's.
import { ApplicationFailure } from '@temporalio/common';
import { APICallError } from '@ai-sdk/provider';
import { sanitizeText } from '../src/agent/sanitize.js';
import { describeStoreError, isRejectedData, isStoreOutage } from '../src/store/errors.js';
import { StoreError } from '../src/store/store.js';

/** Longest provider-asked retry delay (`retry-after`) that is honoured; longer ones fall back to the retry policy. */
const MAX_RETRY_AFTER_MS = 60_000;

// Providers word an overflowing prompt differently; all of them mean "retrying the same prompt cannot work".
const CONTEXT_OVERFLOW =
  /context[_ ]length|context window|maximum context|prompt is too long|input is too long|too many (input )?tokens|reduce the length/i;

// Errors of our own making (bad prompt or settings, no key): the same request fails the same way again.
const PERMANENT_SDK_ERRORS = new Set([
  'AI_InvalidPromptError',
  'AI_InvalidArgumentError',
  'AI_LoadAPIKeyError',
  'AI_LoadSettingError',
  'AI_NoSuchModelError',
  'AI_UnsupportedFunctionalityError',
]);

/**
 * Transient provider errors (429, 408, 5xx, timeouts, dropped connections, a stream cut short)
 * become retryable failures of type `model_transient`; the rest (400, 401, 403, 404, context
 * overflow) become non-retryable `model_permanent` failures that end the run with the
 * provider's own message. Anything unrecognised stays retryable: the retry policy caps it.
 *
 * The step also reads and writes the store: Postgres being unreachable is `store_unavailable`
 * (retryable; the detail names the store, not the model), data it refuses is a non-retryable
 * `store_rejected`, and a StoreError keeps its code as the type, retryable only for a lost race.
 */
export function classifyModelError(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (isStoreOutage(err)) {
    return ApplicationFailure.create({ message: `store unavailable: ${sanitizeText(describeStoreError(err))}`, type: 'store_unavailable' });
  }
  if (isRejectedData(err)) {
    return ApplicationFailure.create({ message: `store rejected the step's data: ${sanitizeText(describeStoreError(err))}`, type: 'store_rejected', nonRetryable: true });
  }
  if (err instanceof StoreError) {
    return ApplicationFailure.create({ message: `store: ${err.message}`, type: err.code, nonRetryable: err.code !== 'version_conflict' });
  }
  if (APICallError.isInstance(err)) {
    const status = err.statusCode;
    // A provider's message ends up in the run record: it must be storable too.
    const detail = sanitizeText(`model call failed${status ? ` (HTTP ${status})` : ''}: ${err.message}`);
    const details = [{ statusCode: status ?? null, url: err.url, responseBody: err.responseBody === undefined ? null : sanitizeText(err.responseBody.slice(0, 2000)) }];
    const transient =
      status === undefined || (status >= 200 && status < 300) ? err.isRetryable || !CONTEXT_OVERFLOW.test(err.message) : isTransientStatus(status);
    if (!transient) return ApplicationFailure.create({ message: detail, type: 'model_permanent', nonRetryable: true, details });
    return ApplicationFailure.create({ message: detail, type: 'model_transient', details, nextRetryDelay: retryAfterMs(err.responseHeaders) });
  }
  if (err instanceof Error && PERMANENT_SDK_ERRORS.has(err.name)) {
    return ApplicationFailure.create({ message: sanitizeText(`model call failed: ${err.message}`), type: 'model_permanent', nonRetryable: true });
  }
  // Mid-stream failures: a provider's in-band `{"error": …}` chunk, or the socket dropping under the body.
  const message = sanitizeText(err instanceof Error ? errorChainMessage(err) : providerErrorMessage(err));
  if (CONTEXT_OVERFLOW.test(message)) {
    return ApplicationFailure.create({ message: `model call failed: ${message}`, type: 'model_permanent', nonRetryable: true });
  }
  return ApplicationFailure.create({ message: `model call failed: ${message}`, type: 'model_transient' });
}

function isTransientStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** `retry-after-ms` (OpenAI) or `retry-after` in seconds or as an HTTP date; undefined when absent or unreasonable. */
export function retryAfterMs(headers: Record<string, string> | undefined): number | undefined {
  if (!headers) return undefined;
  const get = (name: string) => Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
  let ms: number | undefined;
  const millis = get('retry-after-ms');
  const after = get('retry-after');
  if (millis !== undefined && /^\d+(\.\d+)?$/.test(millis.trim())) ms = Number(millis);
  else if (after !== undefined && /^\d+(\.\d+)?$/.test(after.trim())) ms = Number(after) * 1000;
  else if (after !== undefined && !Number.isNaN(Date.parse(after))) ms = Date.parse(after) - Date.now();
  if (ms === undefined || ms < 0 || ms > MAX_RETRY_AFTER_MS) return undefined;
  return Math.max(1, Math.round(ms));
}

function errorChainMessage(err: Error): string {
  const parts = [err.message];
  const seen = new Set<unknown>([err]);
  for (let cause = err.cause; cause instanceof Error && !seen.has(cause); cause = cause.cause) {
    seen.add(cause);
    const code = (cause as { code?: unknown }).code;
    parts.push(typeof code === 'string' ? `${cause.message} (${code})` : cause.message);
  }
  return parts.join(': ');
}

function providerErrorMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'message' in err && typeof err.message === 'string') return err.message;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}
