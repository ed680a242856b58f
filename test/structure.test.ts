/**
 * The shape of the source: no module over 400 lines, smtp-server's internals
 * known to one module only, no import circle, and the door's start-up check
 * naming what an smtp-server release without a member lacks.
 */
import { describe, expect, it } from "@effect/vitest"
import { readdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { SMTPStream } from "smtp-server/lib/smtp-stream.js"
import { missing } from "../src/internal/engine/SmtpServerHooks.ts"

const SRC = path.join(import.meta.dirname, "..", "src")
const DOOR = path.join(SRC, "internal", "engine", "SmtpServerHooks.ts")

const sources = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    return entry.isDirectory() ? sources(full) : entry.name.endsWith(".ts") ? [full] : []
  })

const files = sources(SRC)
const text = new Map(files.map((file) => [file, readFileSync(file, "utf8")]))

/** Code without comments and string contents' line breaks: enough to find member accesses. */
const code = (source: string): string => source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "")

describe("source structure", () => {
  it("no module is over 400 lines", () => {
    const long = files.filter((file) => text.get(file)!.split("\n").length - 1 > 400).map((file) => path.relative(SRC, file))
    expect(long).toEqual([])
  })

  it("only SmtpServerHooks imports smtp-server's internal modules or names an underscore member (Effect's _tag aside)", () => {
    const others = files.filter((file) => file !== DOOR)
    const offenders = others.filter((file) => {
      const source = code(text.get(file)!)
      return /smtp-server\/lib\//.test(source) || /\._(?!tag\b)[A-Za-z]/.test(source) || /["']_(?!tag\b)[a-z][A-Za-z]*["']/.test(source)
    })
    expect(offenders.map((file) => path.relative(SRC, file))).toEqual([])
    expect(code(text.get(DOOR)!)).toMatch(/smtp-server\/lib\/smtp-connection\.js/)
  })

  it("no import circle", () => {
    const imports = new Map(files.map((file) => [
      file,
      [...text.get(file)!.matchAll(/^import[^"']*["'](\.{1,2}\/[^"']+)["']/gm)].map((match) => path.resolve(path.dirname(file), match[1]!))
    ]))
    const circles: Array<string> = []
    const state = new Map<string, "visiting" | "done">()
    const visit = (file: string, trail: Array<string>): void => {
      if (state.get(file) === "done") return
      if (state.get(file) === "visiting") {
        circles.push([...trail.slice(trail.indexOf(file)), file].map((f) => path.relative(SRC, f)).join(" -> "))
        return
      }
      state.set(file, "visiting")
      for (const next of imports.get(file) ?? []) visit(next, [...trail, file])
      state.set(file, "done")
    }
    for (const file of files) visit(file, [])
    expect(circles).toEqual([])
    // The check sees the imports it is about.
    expect(imports.get(DOOR)?.some((file) => file.endsWith("CommandPolicy.ts"))).toBe(true)
  })

  it("the start-up check names a member an smtp-server release lacks, and nothing for the installed one", () => {
    expect(missing()).toEqual([])
    const feed = Object.getOwnPropertyDescriptor(SMTPStream.prototype, "_feedDataStream")
    try {
      Reflect.deleteProperty(SMTPStream.prototype, "_feedDataStream")
      expect(missing()).toEqual(["SMTPStream._feedDataStream"])
    } finally {
      if (feed !== undefined) Object.defineProperty(SMTPStream.prototype, "_feedDataStream", feed)
    }
    expect(missing()).toEqual([])
  })
})
