/**
 * The README's statements that code can check: its settings tables are the
 * Schema's documentation, the examples it shows are the files the suite runs,
 * and every setting its security table names exists.
 */
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { commandDocumentation } from "../src/bin/MailServer.ts"
import type { Row } from "../src/internal/SettingsReader.ts"
import { documentation, SettingsSchema } from "../src/layers/SmtpServerConfig.ts"

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8")

/** The text of the README section under `heading`, up to the next section. */
const section = (heading: string): string => {
  const start = readme.indexOf(`\n## ${heading}\n`)
  expect(start, `README section "${heading}"`).toBeGreaterThan(-1)
  const end = readme.indexOf("\n## ", start + 1)
  return readme.slice(start, end === -1 ? undefined : end)
}

/** The rows of the settings tables in `text`: lines that start with a setting name. */
const tableRows = (text: string): ReadonlyArray<string> => text.split("\n").filter((line) => line.startsWith("| `"))

const asRow = (row: Row) => `| \`${row.setting}\` | \`${row.variable}\` | \`${row.default}\` | ${row.meaning} |`

/** The code block that follows the link to `file`, and the file without its leading doc comment. */
const shown = (file: string) => {
  const link = readme.indexOf(`[\`${file}\`]`)
  expect(link, `README links ${file}`).toBeGreaterThan(-1)
  const start = readme.indexOf("```ts\n", link) + "```ts\n".length
  const block = readme.slice(start, readme.indexOf("```\n", start))
  const source = readFileSync(new URL(`../${file}`, import.meta.url), "utf8").replace(/^\/\*\*[\s\S]*?\*\/\n/, "")
  return { block, source }
}

describe("README", () => {
  it("the Configuration table is the settings Schema's documentation, row for row", () => {
    expect(tableRows(section("Configuration"))).toEqual(documentation().map(asRow))
  })

  it("the mail server's table is the command's own settings, row for row", () => {
    expect(tableRows(section("The mail server (`effect-smtp`)"))).toEqual(commandDocumentation().map(asRow))
  })

  it("the examples it shows are the files the suite runs", () => {
    for (const file of ["examples/server.ts", "examples/testing.test.ts", "examples/plugin.ts"]) {
      const { block, source } = shown(file)
      expect(block).toBe(source)
    }
  })

  it("every setting the security table names is a setting", () => {
    const names = section("Security defaults").split("\n")
      .filter((line) => line.startsWith("| ") && !line.startsWith("| protection") && !line.startsWith("|---"))
      .flatMap((line) => [...(line.split(" | ").at(-1) ?? "").matchAll(/(?:^|, )`([a-zA-Z]+)[`:]/g)].map((match) => match[1]))
    expect(names.length).toBeGreaterThan(10)
    for (const name of names) expect(Object.keys(SettingsSchema.fields)).toContain(name)
  })
})
