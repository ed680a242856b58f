import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { contentFilter } from "./content-filtering.ts"

describe("content filtering", () => {
  it.effect("a message with the spam pattern gets 550 5.7.1; a clean one is queued", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(contentFilter, { maxMessageSize: 1000 })).connect()
      yield* client.ehlo("client.example")
      const mail = { from: "alice@example.com", to: "bob@example.com" }
      expect(yield* client.send({ ...mail, message: "Subject: offer\n\nCLICK HERE NOW\n" })).toEqual({
        code: 550,
        enhanced: "5.7.1",
        lines: ["Message rejected as spam"]
      })
      expect(yield* client.send({ ...mail, message: "Subject: menu\n\nCLICK HERE for the lunch menu\n" })).toEqual({
        code: 250,
        enhanced: "2.6.0",
        lines: ["OK: message queued"]
      })
      // Over the size limit, MessageTooLarge left alone is the default 552.
      expect(yield* client.send({ ...mail, message: "y".repeat(1500) })).toEqual({
        code: 552,
        enhanced: "5.3.4",
        lines: ["Message size exceeds fixed maximum message size"]
      })
    }))
})
