import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // One stack (registries, token server) for the whole run; tests use unique repositories.
    globalSetup: ['@stevedore/testing/vitest-global-setup'],
    // Real servers on a shared 2-core machine: starting a registry takes seconds.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
