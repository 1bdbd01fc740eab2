import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // The smoke tests run the benchmark end to end: worker processes, Redis, a registry, S3,
    // skopeo and containerd. Minutes on a shared 2-core machine, not milliseconds.
    testTimeout: 600_000,
    hookTimeout: 120_000,
  },
});
