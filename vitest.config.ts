import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // End-to-end tests share the kernel's netfilter hooks; run files one at a time.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Builds dist/pve-nat.cjs once when the run includes end-to-end tests.
    globalSetup: ["test/e2e/global-setup.ts"],
  },
});
