/**
 * The DATA guard against a reference model: random bodies made of the bytes
 * that matter (CR, LF, NUL, dot, letters), split at random points, under each
 * policy. The guard must pass on exactly what the model says, or reject.
 */
import { describe, expect, it } from "@effect/vitest"
import { MessageGuard, type Policy } from "../src/internal/MessageGuard.ts"

const run = (input: Buffer, policy: Policy, cuts: ReadonlyArray<number>) => {
  const guard = new MessageGuard(policy)
  const out: Array<Buffer> = []
  let start = 0
  for (const cut of [...cuts, input.length]) {
    out.push(guard.pass(input.subarray(start, cut)))
    start = cut
  }
  out.push(guard.finish())
  return { output: Buffer.concat(out).toString("latin1"), rejected: guard.verdict !== undefined }
}

/** What the guard must do, on the whole body at once. */
const model = (input: string, policy: Policy): { readonly output: string; readonly rejected: boolean } => {
  // Stripped NULs are not there at all, so CR NUL LF is a line break.
  const text = policy.nulBytes === "strip" ? input.replace(/\0/g, "") : input
  const bare = /\r(?!\n)|(?<!\r)\n/.test(text)
  const nul = text.includes("\0")
  if ((bare && policy.bareLineEndings === "reject") || nul) return { output: "", rejected: true }
  const output = text.replace(/\r\n|\r|\n/g, "\r\n")
  const longest = Math.max(...output.split("\r\n").map((line) => line.length))
  return longest > policy.maxLineLength ? { output: "", rejected: true } : { output, rejected: false }
}

let seed = 42
const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n

describe("MessageGuard", () => {
  const policies: ReadonlyArray<Policy> = [
    { bareLineEndings: "reject", nulBytes: "reject", maxLineLength: 12 },
    { bareLineEndings: "normalize", nulBytes: "strip", maxLineLength: 12 },
    { bareLineEndings: "normalize", nulBytes: "reject", maxLineLength: 1000 },
    { bareLineEndings: "reject", nulBytes: "strip", maxLineLength: 1000 }
  ]
  for (const policy of policies) {
    it(`agrees with the model: ${JSON.stringify(policy)}`, () => {
      const alphabet = ["a", "b", ".", "\r\n", "\r\n", "\r\n", "\r", "\n", "\0"]
      for (let n = 0; n < 400; n++) {
        const text = Array.from({ length: random(40) }, () => alphabet[random(alphabet.length)]).join("") + "\r\n"
        const input = Buffer.from(text, "latin1")
        const cuts = Array.from({ length: random(6) }, () => random(input.length + 1)).sort((a, b) => a - b)
        const expected = model(text, policy)
        const actual = run(input, policy, cuts)
        expect({ text, cuts, rejected: actual.rejected }).toEqual({ text, cuts, rejected: expected.rejected })
        if (!expected.rejected) expect({ text, cuts, output: actual.output }).toEqual({ text, cuts, output: expected.output })
      }
    })
  }
})
