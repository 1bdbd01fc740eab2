import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // The S3 server for the suite that runs against both backends (inject('stack').s3).
    globalSetup: ['@stevedore/testing/vitest-global-setup'],
    testTimeout: 60_000,
  },
});
