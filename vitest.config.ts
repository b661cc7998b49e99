import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Timeouts only bound a failure (tests wait for conditions): tests that start real processes take
    // several times their idle time on a loaded 2-core machine, and must still pass there.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: end-to-end tests start real processes, so keep parallelism modest.
    maxWorkers: 2,
    // .ci/run asks for a JSON summary to print the plain closing line.
    reporters: process.env['CASCADE_TEST_RESULTS'] ? ['default', 'json'] : ['default'],
    outputFile: process.env['CASCADE_TEST_RESULTS'] ? { json: process.env['CASCADE_TEST_RESULTS'] } : undefined,
  },
});
