// Every environment variable threadbox reads, parsed once at startup.
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);

/** A Temporal frontend address, `host:port` (src/temporal/connection.ts checks a profile's with it too). */
export const HOST_PORT = /^[^\s:]+:\d+$/;

const apiKeys = z
  .string()
  .default('')
  .transform((raw, ctx) => {
    const keys = new Map<string, string>();
    for (const entry of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
      const [key, tenant, ...rest] = entry.split(':');
      if (!key || !tenant || rest.length > 0 || !/^[A-Za-z0-9._-]{1,128}$/.test(tenant)) {
        ctx.addIssue({ code: 'custom', message: `entry "${entry.slice(0, 20)}…" must be key:tenant` });
        return z.NEVER;
      }
      keys.set(key, tenant);
    }
    return keys;
  });

/** `*` allows any origin; otherwise a comma-separated list of exact origins; empty: no CORS headers at all. */
const corsOrigins = z
  .string()
  .default('')
  .transform((raw, ctx): string[] | '*' => {
    const origins = raw.split(',').map((s) => s.trim()).filter(Boolean);
    if (origins.includes('*')) return '*';
    for (const origin of origins) {
      if (!/^https?:\/\/[^/\s]+$/.test(origin)) {
        ctx.addIssue({ code: 'custom', message: `"${origin}" is not an origin like https://app.example.com (scheme and host, no path)` });
        return z.NEVER;
      }
    }
    return origins;
  });

export const envSchema = z.object({
  DATABASE_URL: z.url().optional(),
  // Connections a process keeps to Postgres (one pool, shared by its API and worker; the API holds one more for LISTEN).
  THREADBOX_PG_POOL_SIZE: z.coerce.number().int().min(2).max(1000).default(20),
  // Every statement's bound on the server (0: none); a stuck query then frees its connection.
  THREADBOX_PG_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).max(3_600_000).default(60_000),
  // The Temporal connection (address, namespace, API key, TLS, profile) is read by src/temporal/connection.ts
  // through @temporalio/envconfig; these two are also checked here, so a typo fails with the rest.
  TEMPORAL_ADDRESS: z.string().regex(HOST_PORT, 'must be host:port').optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).optional(),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('threadbox'),
  TEMPORAL_CLI_PATH: z.string().min(1).optional(),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: port.default(3000),
  THREADBOX_DATA_DIR: z.string().min(1).default('.threadbox'),
  THREADBOX_PG_PORT: port.default(54329),
  THREADBOX_TEMPORAL_PORT: port.default(7233),
  THREADBOX_TEMPORAL_UI_PORT: port.default(8233),
  /** the Temporal Web UI the playground links each run to (npm run dev sets its own) */
  THREADBOX_TEMPORAL_UI_URL: z.url().optional(),
  THREADBOX_API_KEYS: apiKeys,
  THREADBOX_MODEL: z.string().min(1).default('echo'),
  THREADBOX_CONFIG: z.string().min(1).optional(),
  THREADBOX_SSE_HEARTBEAT_MS: z.coerce.number().int().min(10).default(15_000),
  THREADBOX_SSE_MAX_BUFFER_BYTES: z.coerce.number().int().min(1024).default(1024 * 1024),
  THREADBOX_SSE_MAX_PER_KEY: z.coerce.number().int().min(1).default(50),
  THREADBOX_RATE_LIMIT_PER_MIN: z.coerce.number().int().min(1).default(1200),
  THREADBOX_CORS_ORIGINS: corsOrigins,
  // Temporal admits 10 in-flight updates per workflow (history.maxInFlightUpdates); each API process stays below it.
  THREADBOX_MAX_INFLIGHT_PER_THREAD: z.coerce.number().int().min(1).max(1000).default(8),
  THREADBOX_MAX_INFLIGHT_UPDATES: z.coerce.number().int().min(4).max(100_000).default(64),
  // Workflows a worker keeps in memory; the least recently used idle thread is evicted and replays on its next message.
  THREADBOX_WORKFLOW_CACHE_SIZE: z.coerce.number().int().min(0).max(100_000).default(500),
  THREADBOX_DRAIN_TIMEOUT_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Config = z.infer<typeof envSchema>;

export class ConfigError extends Error {}

/** Parses the environment; a bad value throws a ConfigError naming each variable at fault. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const blanksRemoved = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(blanksRemoved);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
  throw new ConfigError(`invalid configuration:\n${problems.join('\n')}`);
}
