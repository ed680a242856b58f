import { defineConfig } from "vitest/config"

// node_modules/.bin/vitest, run directly, starts on the system's node; the suite needs Node 24 (the `node` devDependency).
if (Number(process.versions.node.split(".")[0]) < 24) {
  throw new Error(
    `effect-smtp's tests need Node 24, not ${process.version} (${process.execPath}): run \`npm test\` or \`npx vitest\`, ` +
      "which put node_modules/.bin (with the `node` devDependency) first on PATH. " +
      "If node_modules/.bin/node is missing (npm ci --ignore-scripts), run `npm rebuild node` first."
  )
}

// The package's own name resolves to its sources here, not to the built dist/ (then Vite's server defaults).
const conditions = ["@effect-smtp/source", "module", "node", "development|production"]

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ["test/**/*.test.ts", "examples/**/*.test.ts"],
    // Server logs of a passing test are noise; a failing test shows its own.
    silent: "passed-only",
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
