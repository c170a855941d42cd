// Shared by the entry points: config errors print one readable message; signals stop everything once.
import { ConfigError } from '../config.js';

export function main(start: () => Promise<() => Promise<void>>) {
  let stopping = false;
  let stop: (() => Promise<void>) | undefined;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping…`);
    await stop?.();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  start().then(
    (s) => {
      stop = s;
      if (stopping) void s().then(() => process.exit(0));
    },
    async (err) => {
      console.error(err instanceof ConfigError ? `threadbox: ${err.message}` : err);
      process.exit(1);
    },
  );
}

export function requireVar(value: string | undefined, name: string): string {
  if (!value) throw new ConfigError(`${name} is required (this command uses no embedded services; \`npm run dev\` starts them)`);
  return value;
}
