// A separate OS process for the concurrent-append test: fires `count` concurrent appends at one
// thread and reports, as one JSON line on stdout, what each returned and every error it saw.
import { createPool } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';

const [databaseUrl, tenant, threadId, worker, count] = process.argv.slice(2);

function report(result: object, exitCode: number): never {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(exitCode);
}

// Anything that escapes the appends below must reach the test, not vanish into a crash.
process.on('unhandledRejection', (err) => report({ worker, fatal: `unhandledRejection: ${String(err)}` }, 2));
process.on('uncaughtException', (err) => report({ worker, fatal: `uncaughtException: ${String(err)}` }, 2));

const pool = createPool(databaseUrl!, 10);
const store = new Store(pool);
const ref = { tenant: tenant!, threadId: threadId! };

const started = performance.now();
const outcomes = await Promise.allSettled(
  Array.from({ length: Number(count) }, (_, i) =>
    store.commitMessages(ref, [{ messageId: `w${worker}-m${i}`, role: 'user', content: `worker ${worker} message ${i}` }]),
  ),
);
const appendMs = Math.round(performance.now() - started);
await pool.end();

const committed: { messageId: string; seq: number }[] = [];
const errors: string[] = [];
for (const outcome of outcomes) {
  if (outcome.status === 'rejected') errors.push(String(outcome.reason));
  else if (outcome.value.firstSeq !== outcome.value.lastSeq) errors.push(`one message got seqs ${outcome.value.firstSeq}..${outcome.value.lastSeq}`);
  else committed.push({ messageId: outcome.value.messageIds[0]!, seq: outcome.value.firstSeq });
}
report({ worker, appendMs, committed, errors }, 0);
