// The agents config file (THREADBOX_CONFIG, JSON or YAML): parsed and validated once, at startup.
import { readFileSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../config.js';
import { resolveModel, type ProviderEnv } from './models.js';
import { builtinTools } from './tools.js';

/** An agent as the config defines it. */
export interface Agent {
  id: string;
  model: string;
  system?: string;
  tools: string[];
  maxSteps: number;
  temperature?: number;
  /** context budget of a model call; unset: DEFAULT_MAX_CONTEXT_MESSAGES / DEFAULT_MAX_CONTEXT_TOKENS (context.ts) */
  maxContextMessages?: number;
  maxContextTokens?: number;
}

export const DEFAULT_MAX_STEPS = 10;

const toolNames = Object.keys(builtinTools) as [string, ...string[]];

/** Model specs are resolved during validation so a bad one is reported with its field path, like any other mistake. */
function agentsFileSchema(env: ProviderEnv) {
  const modelSpec = z.string().min(1).superRefine((spec, ctx) => {
    try {
      resolveModel(spec, env);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });
  const agent = z
    .object({
      id: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must be 1–128 of [A-Za-z0-9._:-]'),
      // Omitted: THREADBOX_MODEL, so one variable can switch every agent's model.
      model: modelSpec.optional(),
      system: z.string().min(1).optional(),
      tools: z
        .array(z.enum(toolNames))
        .default(toolNames)
        .transform((names) => [...new Set(names)]),
      maxSteps: z.number().int().min(1).max(1000).default(DEFAULT_MAX_STEPS),
      temperature: z.number().min(0).max(2).optional(),
      // Omitted: the defaults of src/agent/context.ts. The model sees the newest messages that fit both.
      maxContextMessages: z.number().int().min(1).max(100_000).optional(),
      maxContextTokens: z.number().int().min(100).max(10_000_000).optional(),
    })
    .strict(); // a misspelt key is an error, not a silently ignored setting
  return z
    .object({ agents: z.array(agent).min(1, 'must define at least one agent') })
    .strict()
    .superRefine(({ agents }, ctx) => {
      const seen = new Set<string>();
      agents.forEach((a, i) => {
        if (seen.has(a.id)) ctx.addIssue({ code: 'custom', path: ['agents', i, 'id'], message: `duplicate agent id "${a.id}"` });
        seen.add(a.id);
      });
    });
}

/** Reads and validates the file; anything wrong throws a ConfigError naming the file and each field at fault. */
export function loadAgentsConfig(path: string, opts: { defaultModel: string; env?: ProviderEnv }): Agent[] {
  const file = resolve(path);
  const fail = (detail: string) => new ConfigError(`agents config ${file} (THREADBOX_CONFIG): ${detail}`);

  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw fail(`cannot be read: ${(err as Error).message}`);
  }
  let raw: unknown;
  const ext = extname(file).toLowerCase();
  try {
    if (ext === '.json') raw = JSON.parse(text);
    else if (ext === '.yaml' || ext === '.yml') raw = parseYaml(text);
    else throw new Error(`the name must end in .json, .yaml or .yml, not "${ext || '(none)'}"`);
  } catch (err) {
    throw fail((err as Error).message);
  }

  const parsed = agentsFileSchema(opts.env ?? process.env).safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `  ${issue.path.length ? issue.path.join('.') : '(file)'}: ${issue.message}`);
    throw fail(`invalid\n${problems.join('\n')}`);
  }
  return parsed.data.agents.map((a) => ({ ...a, model: a.model ?? opts.defaultModel }));
}
