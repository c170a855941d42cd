// Which provider failures Temporal retries and which end the run at once.
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { APICallError, InvalidPromptError, InvalidResponseDataError } from '@ai-sdk/provider';
import { classifyModelError, retryAfterMs } from '../../activities/model-errors.js';

const apiError = (statusCode: number | undefined, message = `status ${statusCode}`, extra: Partial<ConstructorParameters<typeof APICallError>[0]> = {}) =>
  new APICallError({ message, url: 'http://provider/v1/chat/completions', requestBodyValues: {}, statusCode, ...extra });

function classify(err: unknown): ApplicationFailure {
  const failure = classifyModelError(err);
  if (!(failure instanceof ApplicationFailure)) throw new Error(`not an ApplicationFailure: ${String(failure)}`);
  return failure;
}

describe('model error classification', () => {
  it.each([408, 409, 429, 500, 502, 503, 504, 529])('retries HTTP %i', (status) => {
    expect(classify(apiError(status))).toMatchObject({ type: 'model_transient', nonRetryable: false });
  });

  it.each([400, 401, 403, 404, 413, 422])('fails HTTP %i once, keeping the provider message', (status) => {
    const failure = classify(apiError(status, 'Incorrect API key provided'));
    expect(failure).toMatchObject({ type: 'model_permanent', nonRetryable: true });
    expect(failure.message).toBe(`model call failed (HTTP ${status}): Incorrect API key provided`);
  });

  it('fails a context overflow once, whichever way the provider reports it', () => {
    expect(classify(apiError(400, "This model's maximum context length is 8192 tokens"))).toMatchObject({ nonRetryable: true });
    expect(classify({ message: 'prompt is too long: 210000 tokens > 200000 maximum', type: 'invalid_request_error' })).toMatchObject({
      type: 'model_permanent',
      nonRetryable: true,
    });
  });

  it('retries dropped connections and refused connects', () => {
    const dropped = new TypeError('terminated', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) });
    const failure = classify(dropped);
    expect(failure).toMatchObject({ type: 'model_transient', nonRetryable: false });
    expect(failure.message).toBe('model call failed: terminated: other side closed (UND_ERR_SOCKET)');
    const refused = apiError(undefined, 'Cannot connect to API: connect ECONNREFUSED 127.0.0.1:1', { isRetryable: true });
    expect(classify(refused)).toMatchObject({ type: 'model_transient', nonRetryable: false });
  });

  it('retries a stream cut short and an in-band server error', () => {
    expect(classify(new InvalidResponseDataError({ data: undefined, message: 'Response stream ended without a finish reason.' }))).toMatchObject({
      nonRetryable: false,
    });
    expect(classify({ message: 'The server had an error while processing your request.', type: 'server_error' })).toMatchObject({
      type: 'model_transient',
      message: 'model call failed: The server had an error while processing your request.',
    });
  });

  it('fails errors of our own making once', () => {
    expect(classify(new InvalidPromptError({ prompt: '', message: 'messages must not be empty' }))).toMatchObject({ type: 'model_permanent', nonRetryable: true });
  });

  it('passes an ApplicationFailure through untouched', () => {
    const failure = ApplicationFailure.nonRetryable('already decided', 'whatever');
    expect(classifyModelError(failure)).toBe(failure);
  });

  it('honours a provider-asked retry delay within reason', () => {
    expect(classify(apiError(429, 'slow down', { responseHeaders: { 'retry-after-ms': '250' } })).nextRetryDelay).toBe(250);
    expect(classify(apiError(429, 'slow down', { responseHeaders: { 'Retry-After': '2' } })).nextRetryDelay).toBe(2000);
    expect(classify(apiError(429, 'slow down')).nextRetryDelay).toBeUndefined();
    expect(retryAfterMs({ 'retry-after': '3600' })).toBeUndefined(); // an hour: leave it to the retry policy
    expect(retryAfterMs({ 'retry-after': new Date(Date.now() + 5000).toUTCString() })).toBeGreaterThan(3000);
    expect(retryAfterMs({ 'retry-after': 'soon' })).toBeUndefined();
  });
});
