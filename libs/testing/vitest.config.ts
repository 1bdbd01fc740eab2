import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // The stack for tests that use inject('stack'); the stack's own tests also start their own
    // servers, to check options, stop() and counts that a shared stack would blur.
    globalSetup: ['@stevedore/testing/vitest-global-setup'],
  },
});
