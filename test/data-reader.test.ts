/**
 * The engine's DATA reader against smtp-server's own, on the same input: the
 * message bytes each hands on, where each finds the end of the message, and
 * the commands that follow it, for random messages (escape dots, lone dots,
 * bare CR and LF, end sequences in every form) split at random points.
 */
import { describe, expect, it } from "@effect/vitest"
import { SMTPStream } from "smtp-server/lib/smtp-stream.js"
import { CommandParser } from "../src/internal/engine/SmtpServerHooks.ts"

interface Outcome {
  readonly message: string
  readonly ended: boolean
  readonly commands: ReadonlyArray<string>
}

/** Feeds `chunks` to `parser` in data mode and reports what came out. */
const feed = (parser: SMTPStream, chunks: ReadonlyArray<Buffer>): Promise<Outcome> =>
  new Promise((resolve, reject) => {
    const commands: Array<string> = []
    const pieces: Array<Buffer> = []
    let ended = false
    parser.oncommand = (command, callback) => {
      commands.push(command.toString("latin1"))
      callback?.()
    }
    const stream = parser.startDataMode(Number.POSITIVE_INFINITY)
    stream.on("data", (piece: Buffer) => pieces.push(piece))
    stream.on("end", () => {
      ended = true
      parser.continue()
    })
    let index = 0
    const next = (): void => {
      const chunk = chunks[index++]
      if (chunk === undefined) {
        // Let pending turns (upstream's escapes, the stream's end) run before reporting.
        return void setImmediate(() => setImmediate(() => resolve({ message: Buffer.concat(pieces).toString("latin1"), ended, commands })))
      }
      parser.write(chunk, (error) => error ? reject(error) : setImmediate(next))
    }
    next()
  })

/** A deterministic random source. */
const random = (seed: number) => () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff
  return seed / 0x7fffffff
}

const PIECES = ["a", "line", ".", "..", "...", "\r\n", "\r\n.", "\r\n..", "\r\n.\r\n", "\n", "\r", "\n.\r\n", "\r\n.\n", " ", "x.y", "\r\n.x"]

const message = (next: () => number): Buffer => {
  const parts: Array<string> = []
  const count = 1 + Math.floor(next() * 40)
  for (let i = 0; i < count; i++) parts.push(PIECES[Math.floor(next() * PIECES.length)]!)
  // Mostly a proper end, then commands pipelined after it.
  if (next() < 0.8) parts.push("\r\n.\r\nMAIL FROM:<a@x.test>\r\nQUIT\r\n")
  return Buffer.from(parts.join(""), "latin1")
}

const split = (bytes: Buffer, next: () => number): Array<Buffer> => {
  const chunks: Array<Buffer> = []
  let at = 0
  while (at < bytes.length) {
    const size = 1 + Math.floor(next() * (next() < 0.5 ? 4 : 40))
    chunks.push(bytes.subarray(at, at + size))
    at += size
  }
  return chunks
}

describe("DATA reader", () => {
  it("hands on the same bytes and finds the same end as smtp-server's, on 3,000 random messages and splits", async () => {
    const next = random(20261207)
    for (let round = 0; round < 3000; round++) {
      const bytes = message(next)
      const chunks = split(bytes, next)
      const upstream = await feed(new SMTPStream(), chunks)
      const ours = await feed(new CommandParser({}), chunks)
      expect(ours, JSON.stringify(bytes.toString("latin1"))).toStrictEqual(upstream)
    }
  }, 120_000)

  it("reads a message whole in one write per chunk, escape dots removed", async () => {
    const body = Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? ".." : "") + `line ${i}\r\n`).join("")
    const expected = Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? "." : "") + `line ${i}\r\n`).join("")
    const parser = new CommandParser({})
    const outcome = await feed(parser, [Buffer.from(`${body}.\r\n`, "latin1")])
    expect(outcome.message).toBe(expected)
    expect(outcome.ended).toBe(true)
  })
})
