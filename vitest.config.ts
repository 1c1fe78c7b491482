import { defineConfig } from 'vitest/config';

// SoftHSM reads SOFTHSM2_CONF once per process (C_Initialize), so every test file
// runs in its own forked process with its own token directory.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: true,
    maxWorkers: 2,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
