import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BlockPool, WorkerPool } from './limiter.ts';
import type { DigestBlockRequest, DigestEndRequest } from './worker.ts';

describe('BlockPool', () => {
  it('hands out every block, then makes takers wait in order', async () => {
    const pool = new BlockPool(2, 1024);
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect(new Set([a, b])).toEqual(new Set([0, 1]));
    expect(pool.available).toBe(0);
    const order: string[] = [];
    const first = pool.acquire().then((n) => order.push(`first ${n}`));
    const second = pool.acquire().then((n) => order.push(`second ${n}`));
    pool.release(b);
    pool.release(a);
    await Promise.all([first, second]);
    expect(order).toEqual([`first ${b}`, `second ${a}`]);
    expect(pool.available).toBe(0);
  });

  it('drops a waiter whose signal aborts, and the next release goes to the one behind it', async () => {
    const pool = new BlockPool(1, 1024);
    const held = await pool.acquire();
    const controller = new AbortController();
    const aborted = pool.acquire(controller.signal);
    const behind = pool.acquire();
    controller.abort(new Error('import failed'));
    await expect(aborted).rejects.toThrow('import failed');
    pool.release(held);
    expect(await behind).toBe(held);
    await expect(pool.acquire(controller.signal)).rejects.toThrow('import failed');
  });

  it('views each block at its place in the shared memory', () => {
    const pool = new BlockPool(3, 1024);
    pool.inputView(2).fill(9);
    pool.inputView(0).fill(5);
    const input = new Uint8Array(pool.input);
    expect([input[0], input[1023], input[1024], input[2047], input[2048], input[3071]]).toEqual([
      5, 5, 0, 0, 9, 9,
    ]);
  });
});

describe('WorkerPool.pin', () => {
  it('puts each new stream on the worker with the fewest unfinished streams', async () => {
    const pool = new WorkerPool(2, new BlockPool(2, 1024));
    const archive = pool.pin();
    const firstLayer = pool.pin();
    expect(firstLayer).not.toBe(archive);
    pool.unpin(firstLayer);
    // The next layer's hash goes where the finished one was, not next to the archive's.
    expect(pool.pin()).toBe(firstLayer);
    expect(pool.pin()).toBe(archive);
    await pool.close();
  });
});

describe('WorkerPool.warm', () => {
  const threads = (): number => readdirSync('/proc/self/task').length;

  it('starts every worker at once, once, and they still run tasks', async () => {
    const blocks = new BlockPool(2, 1024);
    const pool = new WorkerPool(2, blocks);
    const before = threads();
    pool.warm();
    pool.warm();
    expect(threads()).toBe(before + 2);
    blocks.inputView(0).fill(0, 0, 3);
    const hasher = pool.pin();
    await pool.run<DigestBlockRequest>({ op: 'digest-block', stream: 1, block: 0, length: 3 }, [], hasher);
    const end = await pool.run<DigestEndRequest>({ op: 'digest-end', stream: 1, discard: false }, [], hasher);
    expect(end.digest).toBe(`sha256:${createHash('sha256').update(Buffer.alloc(3)).digest('hex')}`);
    expect(threads()).toBe(before + 2);
    await pool.close();
  });

  it('leaves idle workers that do not keep the process alive', () => {
    const limiter = fileURLToPath(new URL('./limiter.ts', import.meta.url));
    const script = `
      const { BlockPool, WorkerPool } = await import(${JSON.stringify(limiter)});
      new WorkerPool(2, new BlockPool(2, 1024)).warm();
      process.stdout.write('warmed');
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(out).toBe('warmed');
  });
});
