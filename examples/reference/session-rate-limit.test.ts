import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { app } from "./session-rate-limit.ts"

const recipients = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `rcpt${from + i}@example.com`)

describe("session-based rate limiting", () => {
  it.effect("100 recipients per connection, across messages; a new connection starts at 0", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(app)
      const client = yield* server.connect()
      yield* client.ehlo("client.example")
      expect(yield* client.send({ from: "alice@example.com", to: recipients(1, 60), message: "one\n" })).toMatchObject({ code: 250 })
      yield* client.mailFrom("alice@example.com")
      for (const to of recipients(61, 100)) expect(yield* client.rcptTo(to)).toMatchObject({ code: 250 })
      expect(yield* client.rcptTo("rcpt101@example.com")).toEqual({ code: 452, enhanced: "4.5.3", lines: ["Too many recipients"] })
      const fresh = yield* server.connect()
      yield* fresh.ehlo("client.example")
      yield* fresh.mailFrom("alice@example.com")
      expect(yield* fresh.rcptTo("rcpt1@example.com")).toEqual({ code: 250, enhanced: "2.1.5", lines: ["Accepted"] })
    }))
})
