import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { fumiEnvelope, smtpServerHandlers } from "./envelope-stages.ts"
import { captureLogs } from "./test-logger.ts"

describe("envelope stages", () => {
  it.effect("Fumi: none at connect, the sender's parameters at MAIL FROM, recipients so far, the whole envelope in DATA", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(fumiEnvelope)).connect()
      yield* client.ehlo("client.example")
      yield* client.mailFrom("sender@example.com", { SIZE: "12345", BODY: "8BITMIME" })
      yield* client.rcptTo("first@example.com")
      yield* client.rcptTo("second@example.com")
      expect(yield* client.data("hi\n")).toEqual({ code: 250, enhanced: "2.6.0", lines: ["OK: message queued"] })
      const params = { size: 12345, body: "8BITMIME", smtpUtf8: false, requireTls: false, extra: {} }
      expect(logs.lines).toEqual([
        "[test1] Transaction: none",
        `[test1] MAIL FROM: ${JSON.stringify({ address: "sender@example.com", params })}`,
        "[test1] Recipients: []",
        `[test1] Recipients: ["first@example.com"]`,
        "[test1] From: sender@example.com",
        "[test1] To: first@example.com, second@example.com"
      ])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("smtp-server: the transaction number, recipients so far, and the envelope in DATA, answered 250 Accepted", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(smtpServerHandlers)).connect()
      yield* client.ehlo("client.example")
      const mail = { from: "sender@example.com", to: ["first@example.com", "second@example.com"], message: "hi\n" }
      expect(yield* client.send(mail)).toEqual({ code: 250, enhanced: "2.0.0", lines: ["Accepted"] })
      yield* client.send({ ...mail, to: "third@example.com" })
      expect(logs.lines).toEqual([
        "[test1] Transaction # 1",
        "[test1] Recipients so far: 0",
        "[test1] Recipients so far: 1",
        "[test1] From: sender@example.com",
        `[test1] To: ["first@example.com","second@example.com"]`,
        "[test1] Transaction # 2",
        "[test1] Recipients so far: 0",
        "[test1] From: sender@example.com",
        `[test1] To: ["third@example.com"]`
      ])
    }).pipe(Effect.provide(logs.layer))
  })

  // smtp-server "Session Reset (RSET/HELO/EHLO)": RSET (or a new HELO/EHLO) ends the transaction and its envelope;
  // the next MAIL FROM starts a new one, numbered on. The user stays (see auth-user-object).
  it.effect("smtp-server Session Reset: RSET clears the envelope; the next transaction is a new one", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(smtpServerHandlers)).connect()
      yield* client.ehlo("client.example")
      yield* client.mailFrom("sender@example.com")
      yield* client.rcptTo("first@example.com")
      expect(yield* client.rset).toEqual({ code: 250, enhanced: "2.0.0", lines: ["Flushed"] })
      yield* client.mailFrom("other@example.com")
      yield* client.rcptTo("second@example.com")
      yield* client.ehlo("client.example")
      yield* client.quit
      const transactions = yield* client.transactions
      expect(transactions.map(({ id, mailFrom, rcptTo }) => ({
        id,
        mailFrom: Option.map(mailFrom, (from) => from.address),
        rcptTo: rcptTo.map((to) => to.address)
      }))).toEqual([
        { id: 1, mailFrom: Option.some("sender@example.com"), rcptTo: ["first@example.com"] },
        { id: 2, mailFrom: Option.some("other@example.com"), rcptTo: ["second@example.com"] }
      ])
      expect((yield* client.session).transactions).toBe(2)
      expect(logs.lines).toEqual([
        "[test1] Transaction # 1",
        "[test1] Recipients so far: 0",
        "[test1] Transaction # 2",
        "[test1] Recipients so far: 0"
      ])
    }).pipe(Effect.provide(logs.layer))
  })
})
