import { defineConfig } from 'vitest/config';

// The integration tests: GameConnection against the real `dualconn` binary (target/debug).
export default defineConfig({
  test: {
    include: ['test-integration/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 20_000,
  },
});
