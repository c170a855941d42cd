// A fault scenario's stage: its own services, and the API and worker processes it kills and starts.
import { afterAll, beforeAll } from 'vitest';
import { spawnThreadbox, type ThreadboxProcess } from '../../testkit/processes.js';
import { Services } from './services.js';

/** API and worker processes of one scenario; clients use the first live API. */
export class Fleet {
  readonly apis: ThreadboxProcess[] = [];
  readonly workers: ThreadboxProcess[] = [];
  /** every process started, for the output of the dead */
  readonly all: ThreadboxProcess[] = [];

  constructor(private readonly services: { env(): Record<string, string> }) {}

  async startApi(): Promise<ThreadboxProcess> {
    const api = await spawnThreadbox('api', this.services.env());
    this.apis.push(api);
    this.all.push(api);
    void api.exited.then(() => this.apis.splice(this.apis.indexOf(api), 1));
    return api;
  }

  async startWorker(): Promise<ThreadboxProcess> {
    const worker = await spawnThreadbox('worker', this.services.env());
    this.workers.push(worker);
    this.all.push(worker);
    void worker.exited.then(() => this.workers.splice(this.workers.indexOf(worker), 1));
    return worker;
  }

  /** The first API instance still running (or the last one known, while none is). */
  private lastUrl = '';
  readonly api = (): string => {
    this.lastUrl = this.apis[0]?.url ?? this.lastUrl;
    return this.lastUrl;
  };

  /** The tail of each process's output, for a failure's evidence. */
  outputs(lines = 12): string {
    return this.all
      .map((p) => {
        const alive = this.apis.includes(p) || this.workers.includes(p);
        const tail = p.output().trim().split('\n').slice(alive ? -lines : -4 * lines);
        return `--- ${p.role} ${p.pid}${alive ? '' : ' (exited)'}:\n${tail.join('\n')}`;
      })
      .join('\n');
  }

  async stop() {
    await Promise.all([...this.apis, ...this.workers].map((p) => p.kill()));
  }
}

/**
 * The scenario's stage: its own Postgres and Temporal, then `apis` API and `workers` worker
 * processes, started before the scenario and all stopped after it.
 */
export function useFleet(shape: { apis?: number; workers?: number } = {}) {
  const stage = {} as { services: Services; fleet: Fleet };
  beforeAll(async () => {
    stage.services = await Services.start();
    stage.fleet = new Fleet(stage.services);
    const starts: Promise<unknown>[] = [];
    for (let i = 0; i < (shape.apis ?? 1); i++) starts.push(stage.fleet.startApi());
    for (let i = 0; i < (shape.workers ?? 1); i++) starts.push(stage.fleet.startWorker());
    await Promise.all(starts);
  });
  afterAll(async () => {
    await stage.fleet?.stop();
    await stage.services?.stop();
  });
  return stage;
}

