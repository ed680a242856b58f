/**
 * The README's statements that code can check: its settings tables are the
 * Schema's documentation, the examples it shows are the files the suite runs,
 * every setting its security table names exists, and its observability tables
 * name the metrics (with their types and labels), log lines and spans there are.
 */
import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { SmtpMetrics } from "../src/index.ts"
import { phaseNames } from "../src/internal/engine/Facts.ts"
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
    for (const file of ["examples/server.ts", "examples/testing.test.ts", "examples/plugin.ts", "examples/observability.ts", "examples/policies.ts"]) {
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

  it("the Observability tables: every metric with its type and labels, every log line and span the code makes", () => {
    const observability = section("Observability")
    const rows = (columns: number) =>
      observability.split("\n").filter((line) => line.startsWith("| `")).map((line) => line.split(" | ").slice(0, columns))
    const metrics = [
      SmtpMetrics.connectionsOpened,
      SmtpMetrics.connectionsActive,
      SmtpMetrics.tlsSessions("starttls"),
      SmtpMetrics.authAttempts("success"),
      SmtpMetrics.messagesAccepted,
      SmtpMetrics.receivedBytes,
      SmtpMetrics.messageSize,
      SmtpMetrics.rejections("connect", "4xx", "4.7.0"),
      SmtpMetrics.defects("data"),
      SmtpMetrics.phaseDuration("data"),
      SmtpMetrics.policyStoreFailures("rate_limits")
    ]
    const documented = rows(3).filter(([name]) => name!.startsWith("| `smtp_")).map(([name, type, labels]) => [
      name!.slice(3, -1),
      type,
      [...labels!.replace(/\(.*?\)/g, "").matchAll(/(?:^|, )`(\w+)`/g)].map((match) => match[1])
    ])
    expect(documented).toEqual(metrics.map((metric) => [metric.id, metric.type.toLowerCase(), Object.keys(metric.attributes ?? {})]))

    const sources = (dir: string): Array<string> =>
      readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
        entry.isDirectory() ? sources(path.join(dir, entry.name)) : [readFileSync(path.join(dir, entry.name), "utf8")]
      )
    const code = sources(new URL("../src", import.meta.url).pathname).join("\n")
    const lines = rows(2).filter(([, level]) => /^(Info|Warn|Error|Debug)/.test(level ?? "")).flatMap(([names]) => [...names!.replace(/\(.*?\)/g, "").matchAll(/`([^`]+)`/g)].map((match) => match[1]!))
    expect(lines.length).toBeGreaterThan(12)
    for (const message of lines) expect(code, message).toContain(`"${message}"`)

    const spans = observability.split("\n").filter((line) => line.startsWith("| `smtp.")).flatMap((line) =>
      [...line.split(" | ")[0]!.matchAll(/`(smtp\.\w+)`/g)].map((match) => match[1])
    )
    expect(spans).toEqual(["smtp.connection", ...Object.values(phaseNames).map((name) => `smtp.${name}`)])

    // The Grafana dashboard it links queries these metrics, and no other.
    const dashboard = readFileSync(new URL("../deploy/grafana-dashboard.json", import.meta.url), "utf8")
    const queried = new Set([...dashboard.matchAll(/\b(smtp_\w+)/g)].map((match) => match[1]!.replace(/_bucket$/, "")))
    expect([...queried].sort()).toEqual(metrics.map((metric) => metric.id).sort())
  })
})
