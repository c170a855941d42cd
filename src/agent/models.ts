// Turns a model spec (`echo`, `openai:<model>`, `anthropic:<model>`, `openai-compatible:<baseURL>#<model>`) into an AI SDK model.
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import type { LanguageModelV3 } from '@ai-sdk/provider';
import { createEchoModel } from './echo.js';

/** Where provider keys (OPENAI_API_KEY, ANTHROPIC_API_KEY, OPENAI_COMPATIBLE_API_KEY) are read: `process.env` unless a test says otherwise. */
export type ProviderEnv = Record<string, string | undefined>;

export const MODEL_SPEC_FORMS = 'echo, openai:<model>, anthropic:<model>, openai-compatible:<baseURL>#<model>';

export class ModelSpecError extends Error {}

/**
 * Builds the model for a spec. Everything that can be known without calling the provider is
 * checked here, so a typo or a missing key stops startup instead of failing the first run.
 */
export function resolveModel(spec: string, env: ProviderEnv = process.env): LanguageModelV3 {
  if (spec === 'echo') return createEchoModel();
  const colon = spec.indexOf(':');
  const provider = colon < 0 ? spec : spec.slice(0, colon);
  const rest = colon < 0 ? '' : spec.slice(colon + 1);
  const malformed = (why: string) => new ModelSpecError(`model "${spec}" is malformed: ${why} (forms: ${MODEL_SPEC_FORMS})`);

  switch (provider) {
    case 'openai': {
      if (!rest.trim()) throw malformed('no model name after "openai:"');
      return createOpenAI({ apiKey: requireKey(spec, env, 'OPENAI_API_KEY') })(rest);
    }
    case 'anthropic': {
      if (!rest.trim()) throw malformed('no model name after "anthropic:"');
      return createAnthropic({ apiKey: requireKey(spec, env, 'ANTHROPIC_API_KEY') })(rest);
    }
    case 'openai-compatible': {
      // Split at the last '#': model names such as `llama3.1:8b` contain colons, base URLs rarely contain '#'.
      const hash = rest.lastIndexOf('#');
      if (hash < 0) throw malformed('expected "#<model>" after the base URL');
      const baseURL = rest.slice(0, hash);
      const modelId = rest.slice(hash + 1);
      if (!modelId.trim()) throw malformed('no model name after "#"');
      let url: URL;
      try {
        url = new URL(baseURL);
      } catch {
        throw malformed(`"${baseURL}" is not a URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw malformed(`"${baseURL}" is not an http(s) URL`);
      const apiKey = env.OPENAI_COMPATIBLE_API_KEY?.trim() || undefined; // local servers (Ollama, vLLM) take none
      return createOpenAICompatible({
        name: 'openai-compatible',
        baseURL: baseURL.replace(/\/+$/, ''),
        apiKey,
        // Without it the server sends no usage chunk and the run record would show zero tokens.
        includeUsage: true,
      }).chatModel(modelId);
    }
    default:
      throw new ModelSpecError(`model "${spec}" names an unknown provider "${provider}" (forms: ${MODEL_SPEC_FORMS})`);
  }
}

function requireKey(spec: string, env: ProviderEnv, name: 'OPENAI_API_KEY' | 'ANTHROPIC_API_KEY'): string {
  const key = env[name]?.trim();
  if (!key) throw new ModelSpecError(`model "${spec}" needs ${name}, which is not set`);
  return key;
}
