import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { data } from "./data-size-and-body.ts"
import { captureLogs } from "./test-logger.ts"

describe("data: size and body", () => {
  it.effect("the body is read whole (dot-unstuffed, CRLF) and the message accepted", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(data, { maxMessageSize: 1000 })).connect()
      yield* client.ehlo("client.example")
      const reply = yield* client.send({ from: "alice@example.com", to: "bob@example.com", message: "Subject: hi\n\n.dot\nhello\n" })
      expect(reply).toEqual({ code: 250, enhanced: "2.6.0", lines: ["OK: message queued"] })
      expect(logs.lines).toEqual(["[test1] Received message: Subject: hi\r\n\r\n.dot\r\nhello\r\n"])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("a message over maxMessageSize gets the example's 552 5.3.4 Message too large, and nothing is logged", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(data, { maxMessageSize: 1000 })).connect()
      yield* client.ehlo("client.example")
      const reply = yield* client.send({ from: "alice@example.com", to: "bob@example.com", message: `Subject: big\n\n${"x".repeat(2000)}\n` })
      expect(reply).toEqual({ code: 552, enhanced: "5.3.4", lines: ["Message too large"] })
      expect(logs.lines).toEqual([])
      // The connection goes on: the rest of the big message was drained.
      expect(yield* client.send({ from: "alice@example.com", to: "bob@example.com", message: "small\n" })).toMatchObject({ code: 250 })
    }).pipe(Effect.provide(logs.layer))
  })
})
