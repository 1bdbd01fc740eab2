import { describe, expect, it } from 'vitest';
import type { WorkerProcess } from '@stevedore/testing';
import { awaitPulls, type PullEventSource } from './stevedore-run.ts';

type ExitStatus = Awaited<WorkerProcess['exited']>;

/** A pull event source driven by the test, and workers whose exit the test decides. */
function harness(workerCount = 1) {
  let completed: (id: string) => void = () => undefined;
  let failed: (id: string, reason: string) => void = () => undefined;
  const subscribe: PullEventSource = (onCompleted, onFailed) => {
    completed = onCompleted;
    failed = onFailed;
  };
  const exits: ((status: ExitStatus) => void)[] = [];
  const workers = Array.from({ length: workerCount }, (_, i) => ({
    pid: 1000 + i,
    exited: new Promise<ExitStatus>((resolve) => exits.push(resolve)),
    output: () => 'line 1\nlast words\n',
  }));
  return {
    subscribe,
    workers,
    exits,
    complete: (id: string) => completed(id),
    fail: (id: string, r: string) => failed(id, r),
  };
}

describe('awaitPulls', () => {
  it('resolves once every pull completed, counting completions seen before the wait', async () => {
    const h = harness();
    const pulls = awaitPulls(h.subscribe, h.workers, 10_000, () => Promise.resolve('?'));
    h.complete('pull-a');
    h.complete('other');
    const done = pulls.expect(['pull-a', 'pull-b']);
    h.complete('pull-b');
    await expect(done).resolves.toBeUndefined();
  });

  it('fails with the root cause of a failed pull', async () => {
    const h = harness();
    const pulls = awaitPulls(h.subscribe, h.workers, 10_000, (id) =>
      Promise.resolve(`fetch-blob of ${id}: 404`),
    );
    const done = pulls.expect(['pull-a', 'pull-b']);
    h.complete('pull-a');
    h.fail('pull-b', 'child failed');
    await expect(done).rejects.toThrow('pull pull-b failed: fetch-blob of pull-b: 404');
  });

  it('fails at once when a worker process exits, with the end of its log', async () => {
    const h = harness(2);
    const pulls = awaitPulls(h.subscribe, h.workers, 10_000, () => Promise.resolve('?'));
    const done = pulls.expect(['pull-a']);
    h.exits[1]!({ code: null, signal: 'SIGKILL' });
    await expect(done).rejects.toThrow(
      'worker process 1001 exited (code null, signal SIGKILL) during the pull:\nline 1\nlast words',
    );
  });

  it('gives up after the time limit, naming the pulls not done', async () => {
    const h = harness();
    const pulls = awaitPulls(h.subscribe, h.workers, 50, () => Promise.resolve('?'));
    const done = pulls.expect(['pull-a', 'pull-b']);
    h.complete('pull-a');
    await expect(done).rejects.toThrow('pulls pull-b not done after 50 ms');
  });
});
