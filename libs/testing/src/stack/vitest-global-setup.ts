/**
 * Vitest global setup: starts the whole stack once per test run and provides its serializable
 * info to tests, which read it with `inject('stack')`. Use it in a project's vitest.config.ts:
 *
 *     test: { globalSetup: ['@stevedore/testing/vitest-global-setup'] }
 *
 * `STEVEDORE_TOKEN_EXPIRES_IN` (seconds) sets the token registry's `expires_in`.
 */
import type { TestProject } from 'vitest/node';
import type {} from './provided-context.ts';
import { startStack, type Stack } from './stack.ts';

let stack: Stack | undefined;

export async function setup(project: TestProject): Promise<void> {
  const expiresIn = process.env.STEVEDORE_TOKEN_EXPIRES_IN;
  stack = await startStack(expiresIn === undefined ? {} : { tokenExpiresIn: Number(expiresIn) });
  project.provide('stack', stack.info());
}

export async function teardown(): Promise<void> {
  const running = stack;
  stack = undefined;
  await running?.stop();
}
