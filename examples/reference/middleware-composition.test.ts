import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SmtpApp } from "effect-smtp"
import { SmtpTest } from "effect-smtp/testing"
import { composition, pattern } from "./middleware-composition.ts"
import { captureLogs } from "./test-logger.ts"

describe("middleware composition", () => {
  it.effect("code before next runs on the way in, code after it on the way out", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(pattern)
      const client = yield* server.connect()
      yield* client.ehlo("client.example")
      expect(yield* client.mailFrom("alice@example.com")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Accepted"] })
      expect(logs.lines).toEqual(["[test1] Sender: alice@example.com", "[test1] MailFrom processing complete"])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("chains run in registration order: 1 → 2 → 3 → 2 → 1", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(composition)
      const client = yield* server.connect()
      yield* client.ehlo("client.example")
      expect(yield* client.mailFrom("alice@example.com")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Accepted"] })
      expect(logs.lines).toEqual(["[test1] 1: before", "[test1] 2: before", "[test1] 3: final handler", "[test1] 2: after", "[test1] 1: after"])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("running next twice is a bug: the command gets 451 4.3.0", () =>
    Effect.gen(function*() {
      const twice = SmtpApp.empty.pipe(SmtpApp.onMailFrom((next) => Effect.andThen(next, next)))
      const client = yield* (yield* SmtpTest.make(twice)).connect()
      yield* client.ehlo("client.example")
      expect(yield* client.mailFrom("alice@example.com")).toEqual({
        code: 451,
        enhanced: "4.3.0",
        lines: ["Internal server error, try again later"]
      })
    }))
})
