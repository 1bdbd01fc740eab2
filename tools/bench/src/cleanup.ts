/**
 * Scoped cleanups for benchmark runs that start servers and processes: every deferred cleanup
 * runs, last deferred first, whether the body succeeds or fails. A cleanup failure after a
 * success fails the run; after a failure it is reported on stderr next to the original error,
 * which is the one thrown.
 */
export type Defer = (cleanup: () => Promise<void>) => void;

async function unwind(stack: readonly (() => Promise<void>)[]): Promise<unknown[]> {
  const errors: unknown[] = [];
  for (const cleanup of stack) {
    try {
      await cleanup();
    } catch (err) {
      errors.push(err);
    }
  }
  return errors;
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

export async function withCleanups<T>(body: (defer: Defer) => Promise<T>): Promise<T> {
  const stack: (() => Promise<void>)[] = [];
  const defer: Defer = (cleanup) => {
    stack.unshift(cleanup);
  };
  let result: T;
  try {
    result = await body(defer);
  } catch (err) {
    for (const e of await unwind(stack)) {
      process.stderr.write(`a cleanup after the failure below also failed: ${describe(e)}\n`);
    }
    throw err;
  }
  const errors = await unwind(stack);
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanups failed`);
  return result;
}
