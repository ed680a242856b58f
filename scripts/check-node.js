// Runs first in `npm test`, on whatever `node` npm found: the suite needs Node 24, which the `node`
// devDependency provides (npm puts node_modules/.bin first on PATH for scripts).
const [major] = process.versions.node.split(".").map(Number)
if (major < 24) {
  console.error(
    `effect-smtp's tests need Node 24, but npm ran ${process.execPath} (${process.version}).\n` +
      "Node 24 comes with `npm ci` as the `node` devDependency; its install script did not run " +
      "(npm ci --ignore-scripts, or install scripts not allowed). Run `npm rebuild node`, then `npm test` again."
  )
  process.exit(1)
}
