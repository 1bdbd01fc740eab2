/**
 * The process-wide limiter: everything the store does in a process (hashing, compressing, writing,
 * reading) draws from one {@link Limiter}, so one huge layer and many small ones share the cores
 * and the memory budget fairly (composefs-rs's shared semaphore, see docs/store-format.md
 * "Concurrency").
 *
 * - CPU: a pool of worker threads (one per core) runs sha256 and zstd; tasks queue FIFO across all
 *   layers.
 * - Memory: the input of every import goes through a fixed set of blocks of shared memory
 *   ({@link BlockPool}), handed to the workers once when they start: a message to a worker names a
 *   block and offsets in it, never carries bytes, and nothing is allocated per message. An import
 *   takes a block before it reads more input and gives it back once the block's objects are
 *   packed and its bytes hashed; waiting for a block is what applies backpressure to the input.
 * - I/O: backend requests made by the store run through a counting semaphore.
 * - Buffers: pack buffers come from a free list by size, so a long import allocates (and the
 *   garbage collector frees) almost nothing in its steady state.
 * - Sequential hashing (a layer's diffID: one hash over the whole stream, in order) runs in the
 *   pool too, pinned to one worker so its blocks are hashed in order.
 */
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { WorkerRequest, WorkerResponse, WorkerSetup } from './worker.ts';

const MiB = 1024 * 1024;
/**
 * Size of a shared block: the largest object (a CHUNK_SIZE piece of a big file, objects.ts) must fit
 * in one, so a worker reads every object from one contiguous range.
 */
export const BLOCK_BYTES = 2 * MiB;
/**
 * Default memory for blocks of input in flight (8 blocks): one filling, one per worker hashing and
 * compressing, the rest queued or waiting to be packed; small enough for the 256 MiB RSS target.
 */
export const DEFAULT_MEMORY_BYTES = 8 * BLOCK_BYTES;
/** Fewer blocks than this would leave the workers idle while the main thread fills the only one. */
const MIN_BLOCKS = 2;
/** Default concurrent backend requests (enough to hide S3 latency, little memory). */
export const DEFAULT_IO_CONCURRENCY = 8;
/**
 * Chunk size of zlib streams and file read streams in the store and of the pipeline's layer
 * decoders (Node's defaults are 16 and 64 KiB). Each chunk of a zlib stream is one round trip to
 * the thread pool and one Buffer: with 16 KiB chunks that overhead cost more than the codec itself
 * (measured: gunzip of a 645 MB tar, 5.6 CPU-s per GB with 16 KiB chunks, 2.8 with 256 KiB).
 */
export const STREAM_CHUNK_BYTES = 256 * 1024;
/** worker.ts's WORKER_MARKER: tells it that it runs as a pool worker. */
const WORKER_MARKER = 'stevedore-store-worker';
/** Workers allocate little JS (their buffers are external): a small young generation keeps their heaps small. */
const WORKER_YOUNG_GENERATION_MB = 4;
/**
 * A worker's first lines, plain JavaScript (evaluated, so loading them strips no types): turn on
 * Node's compile cache for the thread, then load worker.ts. With the cache warm, worker.ts comes
 * out of the cache already stripped of its types, and the thread never loads Node's TypeScript
 * stripper (a WebAssembly module: about 18 MiB of RSS per thread). The first process to run fills
 * the cache (flushCompileCache right after the load, not at exit). The cache is Node's own, in
 * NODE_COMPILE_CACHE or its default directory under the temp dir, keyed by Node version and file
 * content; NODE_DISABLE_COMPILE_CACHE=1 turns it off. Only this thread's modules are affected.
 */
const WORKER_BOOTSTRAP = `
const { enableCompileCache, flushCompileCache } = require('node:module');
enableCompileCache();
import(${JSON.stringify(new URL('./worker.ts', import.meta.url).href)}).then(() => flushCompileCache());
`;

/**
 * `env` with NODE_COMPILE_CACHE set (to Node's default directory when unset): the environment of a
 * child Node process that should start as stevedore's own processes do (apps/cli/bin/stevedore.mjs,
 * the Dockerfile), loading its TypeScript from the compile cache instead of loading the stripper.
 */
export function compileCacheEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, NODE_COMPILE_CACHE: env.NODE_COMPILE_CACHE ?? join(tmpdir(), 'node-compile-cache') };
}

export interface LimiterOptions {
  /**
   * Shared memory for input in flight, in blocks of {@link BLOCK_BYTES} (at least two); default
   * {@link DEFAULT_MEMORY_BYTES}. Pack buffers come on top (two of 10 MiB per running import).
   */
  readonly memoryBytes?: number;
  /** Worker threads; default one per core. */
  readonly workers?: number;
  /** Concurrent backend requests; default {@link DEFAULT_IO_CONCURRENCY}. */
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

interface Slot {
  worker: Worker | undefined;
  busy: Task | undefined;
  /** Tasks that must run on this worker, in order (stateful work such as a stream's hash). */
  readonly queue: Task[];
}

/**
 * Worker threads running worker.ts. Tasks queue FIFO and go to the first idle worker, except
 * tasks with an affinity, which run in order on that worker (ahead of shared tasks). Idle workers
 * don't keep the process alive.
 */
export class WorkerPool {
  readonly size: number;
  #slots: Slot[];
  #shared: Task[] = [];
  /** Streams pinned to each worker and not finished (see {@link WorkerPool.pin}). */
  #pins: number[];
  #nextId = 1;
  #closed = false;

  readonly #setup: WorkerSetup;

  constructor(size: number, blocks: BlockPool) {
    this.size = size;
    this.#setup = {
      marker: WORKER_MARKER,
      input: blocks.input,
      blockBytes: blocks.blockBytes,
    };
    this.#slots = Array.from({ length: size }, () => ({ worker: undefined, busy: undefined, queue: [] }));
    this.#pins = Array.from({ length: size }, () => 0);
  }

  /**
   * A worker for a new stateful stream (a stream hash): the one with the fewest streams pinned to
   * it. Two hashes running at once (an export's archive digest and the diffID of the layer it
   * writes) then land on different workers; numbering streams round-robin put every other layer's
   * diffID on the archive's worker. Give it back with {@link WorkerPool.unpin} when the stream ends.
   */
  /**
   * Starts every worker now instead of at its first task (a worker takes tens of milliseconds to
   * start): for a caller that knows work is coming. Idle workers still don't keep the process alive.
   */
  warm(): void {
    if (this.#closed) return;
    for (const slot of this.#slots) {
      if (slot.worker !== undefined) continue;
      slot.worker = this.#spawn(slot);
      slot.worker.unref();
    }
  }

  pin(): number {
    let best = 0;
    for (let i = 1; i < this.size; i++) if (this.#pins[i]! < this.#pins[best]!) best = i;
    this.#pins[best]! += 1;
    return best;
  }

  unpin(worker: number): void {
    if (this.#pins[worker]! > 0) this.#pins[worker]! -= 1;
  }

  run<R extends WorkerRequest>(
    request: Omit<R, 'id'>,
    transfer: ArrayBuffer[] = [],
    affinity?: number,
  ): Promise<ResponseOf<R>> {
    if (this.#closed) return Promise.reject(new Error('worker pool closed'));
    return new Promise<WorkerResponse>((resolve, reject) => {
      const task: Task = {
        request: { ...request, id: this.#nextId++ } as unknown as WorkerRequest,
        transfer,
        resolve,
        reject,
      };
      if (affinity === undefined) this.#shared.push(task);
      else this.#slots[affinity % this.size]!.queue.push(task);
      this.#dispatch();
    }) as Promise<ResponseOf<R>>;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const closed = new Error('worker pool closed');
    for (const t of this.#shared) t.reject(closed);
    this.#shared = [];
    const workers: Worker[] = [];
    for (const slot of this.#slots) {
      for (const t of slot.queue.splice(0)) t.reject(closed);
      if (slot.worker !== undefined) workers.push(slot.worker);
      slot.worker = undefined;
    }
    await Promise.all(workers.map((w) => w.terminate()));
  }

  #dispatch(): void {
    if (this.#closed) return;
    for (const slot of this.#slots) {
      if (slot.busy !== undefined) continue;
      const task = slot.queue.shift() ?? this.#shared.shift();
      if (task === undefined) continue;
      slot.worker ??= this.#spawn(slot);
      slot.busy = task;
      slot.worker.ref();
      slot.worker.postMessage(task.request, task.transfer);
    }
  }

  #spawn(slot: Slot): Worker {
    const worker = new Worker(WORKER_BOOTSTRAP, {
      eval: true,
      workerData: this.#setup,
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    });
    worker.on('message', (response: WorkerResponse) => {
      const task = slot.busy;
      slot.busy = undefined;
      if (task !== undefined) {
        if (response.op === 'error') task.reject(new Error(`store worker failed: ${response.message}`));
        else task.resolve(response);
      }
      worker.unref();
      this.#dispatch();
    });
    const fail = (err: unknown): void => {
      if (slot.worker !== worker) return;
      const task = slot.busy;
      slot.busy = undefined;
      slot.worker = undefined;
      task?.reject(new Error('store worker died', { cause: err }));
      this.#dispatch();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
    return worker;
  }
}

/**
 * Free ArrayBuffers by size. `take` reuses one or allocates (without zero-filling); `give` keeps
 * it for reuse unless `maxFreeBytes` are already kept. Buffers come back from workers as new
 * ArrayBuffer objects over the same memory, which is why they are kept by size, not identity.
 */
export class BufferPool {
  readonly maxFreeBytes: number;
  #free = new Map<number, ArrayBuffer[]>();
  #freeBytes = 0;

  constructor(maxFreeBytes: number) {
    this.maxFreeBytes = maxFreeBytes;
  }

  take(size: number): ArrayBuffer {
    const b = this.#free.get(size)?.pop();
    if (b !== undefined) {
      this.#freeBytes -= size;
      return b;
    }
    return Buffer.allocUnsafeSlow(size).buffer;
  }

  give(b: ArrayBuffer): void {
    if (b.detached || this.#freeBytes + b.byteLength > this.maxFreeBytes) return;
    let list = this.#free.get(b.byteLength);
    if (list === undefined) this.#free.set(b.byteLength, (list = []));
    list.push(b);
    this.#freeBytes += b.byteLength;
  }
}

/**
 * Blocks of shared memory (see the module comment): `count` blocks of `blockBytes` in one
 * SharedArrayBuffer (`input`), taken FIFO. Workers read objects in place and write an object's
 * compressed frame over its own raw bytes, once the block has been added to its diffID (a kept
 * frame is smaller than its object).
 */
export class BlockPool {
  readonly blockBytes: number;
  readonly count: number;
  readonly input: SharedArrayBuffer;
  readonly #inputViews: Buffer[];
  readonly #free: number[];
  #waiters: BlockWaiter[] = [];

  constructor(count: number, blockBytes = BLOCK_BYTES) {
    this.blockBytes = blockBytes;
    this.count = count;
    this.input = new SharedArrayBuffer(count * blockBytes);
    this.#inputViews = Array.from({ length: count }, (_, i) =>
      Buffer.from(this.input, i * blockBytes, blockBytes),
    );
    this.#free = Array.from({ length: count }, (_, i) => count - 1 - i);
  }

  /** Blocks free right now. */
  get available(): number {
    return this.#free.length;
  }

  /** Takes a block, waiting (FIFO) for one; give it back with {@link BlockPool.release}. */
  acquire(signal?: AbortSignal): Promise<number> {
    if (signal?.aborted === true) return Promise.reject(abortReason(signal));
    if (this.#waiters.length === 0 && this.#free.length > 0) return Promise.resolve(this.#free.pop()!);
    return new Promise<number>((resolve, reject) => {
      const waiter: BlockWaiter = { resolve, signal };
      if (signal !== undefined) {
        waiter.onAbort = () => {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          reject(
            signal.reason instanceof Error ? signal.reason : new Error('aborted', { cause: signal.reason }),
          );
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
    });
  }

  release(block: number): void {
    const w = this.#waiters.shift();
    if (w === undefined) {
      this.#free.push(block);
      return;
    }
    if (w.onAbort !== undefined) w.signal?.removeEventListener('abort', w.onAbort);
    w.resolve(block);
  }

  /** The block's input bytes. */
  inputView(block: number): Buffer {
    return this.#inputViews[block]!;
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted', { cause: signal.reason });
}

interface BlockWaiter {
  readonly resolve: (block: number) => void;
  readonly signal: AbortSignal | undefined;
  onAbort?: () => void;
}

/** CPU, memory and I/O limits shared by every store in the process (see the module comment). */
export class Limiter {
  readonly pool: WorkerPool;
  readonly blocks: BlockPool;
  readonly io: Semaphore;
  readonly buffers: BufferPool;

  constructor(options: LimiterOptions = {}) {
    const memory = options.memoryBytes ?? DEFAULT_MEMORY_BYTES;
    this.blocks = new BlockPool(Math.max(MIN_BLOCKS, Math.floor(memory / BLOCK_BYTES)));
    this.pool = new WorkerPool(options.workers ?? Math.max(1, availableParallelism()), this.blocks);
    this.io = new Semaphore(options.ioConcurrency ?? DEFAULT_IO_CONCURRENCY);
    this.buffers = new BufferPool(memory);
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
