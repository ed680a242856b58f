import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { TestClock } from "effect/testing"
import { SmtpTest } from "effect-smtp/testing"
import { app, User } from "./custom-session-data.ts"
import { captureLogs } from "./test-logger.ts"

describe("custom session data", () => {
  it.effect("connection state for the session, transaction state for each message, the AUTH time in the user", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(app, { allowInsecureAuth: true })).connect()
      yield* client.ehlo("client.example")
      yield* TestClock.adjust("1 second")
      yield* client.auth({ method: "PLAIN", username: "alice", password: "x" })
      yield* TestClock.adjust("2 seconds")
      const accepted = { code: 250, enhanced: "2.0.0", lines: ["Accepted"] }
      expect(yield* client.send({ from: "spammer@host.invalid", to: "bob@example.com", message: "one\n" })).toEqual(accepted)
      yield* TestClock.adjust("2 seconds")
      expect(yield* client.send({ from: "alice@example.com", to: "bob@example.com", message: "two\n" })).toEqual(accepted)
      yield* client.quit
      expect(yield* client.user(User)).toEqual(Option.some({ username: "alice", authenticatedAt: 1000 }))
      expect(logs.lines).toEqual([
        "[test1] Session duration: 3000",
        "[test1] Spam score: 9",
        "[test1] Session duration: 5000",
        "[test1] Spam score: 1",
        "[test1] Total messages: 2"
      ])
    }).pipe(Effect.provide(logs.layer))
  })
})
