// One fault scenario's Postgres (data dir kept across restarts) and Temporal dev server (history in a db
// file), which the scenario takes down and brings back; and the operator who terminates workflows.
import { Client, Connection } from '@temporalio/client';
import type { DevServiceName } from '../../src/infra/dev-services.js';
import { startScratchServices, type ScratchServices } from '../../testkit/services.js';
import { sleep } from '../../testkit/wait.js';

/** When a dependency was down (epoch ms): stopped, being started again, answering again. */
export interface Outage {
  stoppedAt: number;
  restartingAt: number;
  upAt: number;
}

export interface Operator {
  /** terminates the run's workflow; resolves to its workflow id */
  terminateRun(runId: string, reason: string): Promise<string>;
  /** terminates the thread's workflow; resolves to its workflow id */
  terminateThread(threadId: string, reason: string): Promise<string>;
  close(): Promise<void>;
}

export class Services {
  private constructor(private readonly dev: ScratchServices) {}

  static async start(): Promise<Services> {
    return new Services(await startScratchServices('threadbox-faults-', { keepHistory: true }));
  }

  /** Stops Postgres, waits, starts it again on the same port and data; `whileDown` is called once it is stopped. */
  restartPostgres(downMs: number, whileDown?: () => void): Promise<Outage> {
    return this.restart('postgres', downMs, whileDown);
  }

  /** Stops the Temporal dev server, waits, starts it again on the same port and history file; `whileDown` as above. */
  restartTemporal(downMs: number, whileDown?: () => void): Promise<Outage> {
    return this.restart('temporal', downMs, whileDown);
  }

  private async restart(service: DevServiceName, downMs: number, whileDown?: () => void): Promise<Outage> {
    await this.dev.stopService(service);
    const stoppedAt = Date.now();
    whileDown?.();
    await sleep(downMs);
    const restartingAt = Date.now();
    await this.dev.startService(service);
    return { stoppedAt, restartingAt, upAt: Date.now() };
  }

  /** What an operator does in the Temporal UI: find a run's or a thread's workflow by its search attributes, and terminate it. */
  async operator(): Promise<Operator> {
    const connection = await Connection.connect({ address: this.dev.temporalAddress });
    const client = new Client({ connection });
    const terminate = async (query: string, reason: string): Promise<string> => {
      // Visibility trails the start by a moment.
      for (let attempt = 1; ; attempt++) {
        for await (const workflow of client.workflow.list({ query: `${query} AND ExecutionStatus = 'Running'` })) {
          await client.workflow.getHandle(workflow.workflowId, workflow.runId).terminate(reason);
          return workflow.workflowId;
        }
        if (attempt >= 50) throw new Error(`no running workflow matches ${query}`);
        await sleep(100);
      }
    };
    return {
      terminateRun: (runId, reason) => terminate(`WorkflowType = 'runWorkflow' AND ThreadboxRunId = '${runId}'`, reason),
      terminateThread: (threadId, reason) => terminate(`WorkflowType = 'threadWorkflow' AND ThreadId = '${threadId}'`, reason),
      close: () => connection.close(),
    };
  }

  env(): Record<string, string> {
    return {
      DATABASE_URL: this.dev.databaseUrl,
      TEMPORAL_ADDRESS: this.dev.temporalAddress,
      TEMPORAL_TASK_QUEUE: 'faults',
      // A keepalive every second lets clients tell a dead connection from a quiet run.
      THREADBOX_SSE_HEARTBEAT_MS: '1000',
      // Clients retry every 250 ms while a dependency is down: that is not what the rate limit is for.
      THREADBOX_RATE_LIMIT_PER_MIN: '1000000',
    };
  }

  stop(): Promise<void> {
    return this.dev.stop();
  }
}
