import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    globalSetup: ['@stevedore/testing/vitest-global-setup'],
    // The CLI is run as real processes: `stevedore stack` starts Redis, workers and the API.
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
