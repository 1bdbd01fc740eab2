/**
 * The process-wide limiter: everything the store does in a process (hashing, compressing, writing,
 * reading) draws from one {@link Limiter}, so one huge layer and many small ones share the cores
 * and the memory budget fairly (composefs-rs's shared semaphore, see docs/store-format.md
 * "Concurrency").
 *
 * - CPU: a pool of worker threads (one per core) runs sha256 and zstd; tasks queue FIFO across all
 *   layers.
 * - Memory: buffers of object bytes (batches of small files, chunks of big ones) are acquired from
 *   a byte budget before they are read from the input, and released once written. Waiting for the
 *   budget is what applies backpressure to the input stream.
 * - I/O: backend requests made by the store run through a counting semaphore.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { WorkerRequest, WorkerResponse } from './worker.ts';

/** Default memory budget for in-flight object bytes (8 chunks of 8 MiB). */
export const DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024;
/** Default concurrent backend requests (enough to hide S3 latency, little memory). */
export const DEFAULT_IO_CONCURRENCY = 8;
const WORKER_MARKER = 'stevedore-store-worker';

export interface LimiterOptions {
  readonly memoryBytes?: number;
  readonly workers?: number;
  readonly ioConcurrency?: number;
}

interface Waiter {
  readonly amount: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
  readonly signal: AbortSignal | undefined;
  onAbort?: () => void;
}

/** A FIFO counting semaphore over an amount (bytes or slots). */
export class Semaphore {
  readonly capacity: number;
  #available: number;
  #waiters: Waiter[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
    this.#available = capacity;
  }

  get available(): number {
    return this.#available;
  }

  /**
   * Takes `amount` (clamped to the capacity, so a request larger than the whole budget waits for
   * everything else to finish instead of forever); resolves to the release function.
   */
  async acquire(amount: number, signal?: AbortSignal): Promise<() => void> {
    const n = Math.min(amount, this.capacity);
    signal?.throwIfAborted();
    if (this.#waiters.length === 0 && this.#available >= n) {
      this.#available -= n;
    } else {
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = { amount: n, resolve, reject, signal };
        if (signal !== undefined) {
          waiter.onAbort = () => {
            this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
            reject(
              signal.reason instanceof Error ? signal.reason : new Error('aborted', { cause: signal.reason }),
            );
            this.#wake();
          };
          signal.addEventListener('abort', waiter.onAbort, { once: true });
        }
        this.#waiters.push(waiter);
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#available += n;
      this.#wake();
    };
  }

  /** Runs `fn` holding one unit. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(1, signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  #wake(): void {
    while (this.#waiters.length > 0 && this.#available >= this.#waiters[0]!.amount) {
      const w = this.#waiters.shift()!;
      this.#available -= w.amount;
      if (w.onAbort !== undefined) w.signal?.removeEventListener('abort', w.onAbort);
      w.resolve();
    }
  }
}

type Distribute<T> = T extends { op: infer O } ? (O extends WorkerRequest['op'] ? T : never) : never;
export type ResponseOf<R extends WorkerRequest> = Distribute<Extract<WorkerResponse, { op: R['op'] }>>;

interface Task {
  readonly request: WorkerRequest;
  readonly transfer: ArrayBuffer[];
  readonly resolve: (r: WorkerResponse) => void;
  readonly reject: (err: unknown) => void;
}

/** Worker threads running worker.ts; tasks queue FIFO. Idle workers don't keep the process alive. */
export class WorkerPool {
  readonly size: number;
  #idle: Worker[] = [];
  #busy = new Map<Worker, Task>();
  #queue: Task[] = [];
  #all = new Set<Worker>();
  #nextId = 1;
  #closed = false;

  constructor(size: number) {
    this.size = size;
  }

  run<R extends WorkerRequest>(request: Omit<R, 'id'>, transfer: ArrayBuffer[] = []): Promise<ResponseOf<R>> {
    if (this.#closed) return Promise.reject(new Error('worker pool closed'));
    return new Promise<WorkerResponse>((resolve, reject) => {
      this.#queue.push({
        request: { ...request, id: this.#nextId++ } as unknown as WorkerRequest,
        transfer,
        resolve,
        reject,
      });
      this.#dispatch();
    }) as Promise<ResponseOf<R>>;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#queue) t.reject(new Error('worker pool closed'));
    this.#queue = [];
    await Promise.all([...this.#all].map((w) => w.terminate()));
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      let worker = this.#idle.pop();
      if (worker === undefined) {
        if (this.#all.size >= this.size) return;
        worker = this.#spawn();
      }
      const task = this.#queue.shift()!;
      this.#busy.set(worker, task);
      worker.ref();
      worker.postMessage(task.request, task.transfer);
    }
  }

  #spawn(): Worker {
    const worker = new Worker(new URL('./worker.ts', import.meta.url), { workerData: WORKER_MARKER });
    this.#all.add(worker);
    worker.on('message', (response: WorkerResponse) => {
      const task = this.#busy.get(worker);
      this.#busy.delete(worker);
      if (task !== undefined) {
        if (response.op === 'error') task.reject(new Error(`store worker failed: ${response.message}`));
        else task.resolve(response);
      }
      this.#idle.push(worker);
      worker.unref();
      this.#dispatch();
    });
    const fail = (err: unknown): void => {
      const task = this.#busy.get(worker);
      this.#busy.delete(worker);
      this.#all.delete(worker);
      const i = this.#idle.indexOf(worker);
      if (i >= 0) this.#idle.splice(i, 1);
      task?.reject(new Error('store worker died', { cause: err }));
      if (!this.#closed) this.#dispatch();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (this.#all.has(worker)) fail(new Error(`exit code ${code}`));
    });
    return worker;
  }
}

/** CPU, memory and I/O limits shared by every store in the process (see the module comment). */
export class Limiter {
  readonly pool: WorkerPool;
  readonly memory: Semaphore;
  readonly io: Semaphore;

  constructor(options: LimiterOptions = {}) {
    this.pool = new WorkerPool(options.workers ?? Math.max(1, availableParallelism()));
    this.memory = new Semaphore(options.memoryBytes ?? DEFAULT_MEMORY_BYTES);
    this.io = new Semaphore(options.ioConcurrency ?? DEFAULT_IO_CONCURRENCY);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}

let shared: Limiter | undefined;

/** The process-wide limiter used by stores opened without one. */
export function sharedLimiter(): Limiter {
  shared ??= new Limiter();
  return shared;
}
