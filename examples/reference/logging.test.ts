import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { SmtpTest } from "effect-smtp/testing"
import { fixtureTls } from "../../test/support.ts"
import { logging, tracking, transactionLog } from "./logging.ts"
import { captureLogs } from "./test-logger.ts"

describe("logging", () => {
  it.effect("Fumi Logging Middleware: connect, MAIL FROM and RCPT TO, with the session id", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(logging)
      const client = yield* server.connect({ remoteAddress: "198.51.100.7" })
      yield* client.ehlo("client.example")
      yield* client.send({ from: "alice@example.com", to: ["bob@example.com", "carol@example.com"], message: "hi\n" })
      const other = yield* server.connect()
      yield* other.ehlo("other.example")
      yield* other.mailFrom("")
      expect(logs.lines).toEqual([
        "[test1] Connected: 198.51.100.7",
        "[test1] MAIL FROM: alice@example.com",
        "[test1] RCPT TO: bob@example.com",
        "[test1] RCPT TO: carol@example.com",
        "[test2] Connected: 192.0.2.1",
        "[test2] MAIL FROM: "
      ])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("Fumi Logging Complete Transaction: one structured line per message", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(transactionLog, { allowInsecureAuth: true })).connect()
      yield* client.ehlo("client.example")
      yield* client.send({ from: "", to: "postmaster@example.com", message: "bounce\n" })
      yield* client.auth({ method: "PLAIN", username: "alice", password: "secret" })
      yield* client.send({ from: "alice@example.com", to: ["bob@example.com", "carol@example.com"], message: "hi\n" })
      const entry = { sessionId: "test1", clientIp: "192.0.2.1", clientHostname: "[192.0.2.1]", secure: false }
      expect(logs.lines).toEqual([
        `[test1] Transaction: ${
          JSON.stringify({
            ...entry,
            authenticated: false,
            user: null,
            from: "",
            to: ["postmaster@example.com"],
            transmissionType: "ESMTP"
          })
        }`,
        `[test1] Transaction: ${
          JSON.stringify({
            ...entry,
            authenticated: true,
            user: "alice",
            from: "alice@example.com",
            to: ["bob@example.com", "carol@example.com"],
            transmissionType: "ESMTPA"
          })
        }`
      ])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("smtp-server Complete Session Tracking: every phase, then the statistics at close", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(tracking, { tls: fixtureTls, hostname: "localhost" })).connect()
      yield* client.ehlo("client.example")
      expect(yield* client.starttls).toMatchObject({ code: 220 })
      yield* client.ehlo("client.example")
      expect(yield* client.auth({ method: "PLAIN", username: "alice@example.com", password: "x" })).toMatchObject({ code: 235 })
      const reply = yield* client.send({ from: "alice@example.com", to: "bob@example.com", message: "Subject: hi\n\nhello\n" })
      expect(reply).toEqual({ code: 250, enhanced: "2.0.0", lines: ["Message accepted"] })
      yield* client.mailFrom("alice@example.com") // a second transaction, without a message
      yield* client.rset
      yield* TestClock.adjust("250 millis")
      yield* client.quit
      yield* client.closed
      expect(logs.lines).toEqual([
        "[test1] Connected from 192.0.2.1",
        "[test1] Upgraded to TLS",
        "[test1] Auth attempt: alice@example.com",
        "[test1] MAIL FROM: alice@example.com",
        "[test1] RCPT TO: bob@example.com",
        "[test1] Receiving message...",
        "[test1] Received 22 bytes",
        "[test1] MAIL FROM: alice@example.com",
        "[test1] Closed after 250ms",
        "[test1]  User: alice@example.com",
        "[test1]  Transactions: 2",
        "[test1]  Secure: true"
      ])
    }).pipe(Effect.provide(logs.layer))
  })
})
