import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: end-to-end tests start real processes, so keep parallelism modest.
    maxWorkers: 2,
    // .ci/run asks for a JSON summary to print the plain closing line.
    reporters: process.env['CASCADE_TEST_RESULTS'] ? ['default', 'json'] : ['default'],
    outputFile: process.env['CASCADE_TEST_RESULTS'] ? { json: process.env['CASCADE_TEST_RESULTS'] } : undefined,
  },
});
