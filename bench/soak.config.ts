// The crash soak (bench/soak.ts) is not part of `npm test`: run it on its own with
//   npm run build && npx vitest run --config bench/soak.config.ts
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['bench/soak.ts'],
    testTimeout: 3_600_000,
    hookTimeout: 60_000,
    // The herd talks to one registrar; one worker keeps the machine for it.
    maxWorkers: 1,
  },
});
