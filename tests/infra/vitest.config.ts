import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // No servers: kustomize renders the overlays once per file (tens of milliseconds each).
    testTimeout: 30_000,
  },
});
