import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // The registry for the round trip, and skopeo/podman as real readers of the archives.
    globalSetup: ['@stevedore/testing/vitest-global-setup'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
