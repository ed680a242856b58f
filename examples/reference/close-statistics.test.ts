import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option, Ref } from "effect"
import { TestClock } from "effect/testing"
import { Reject, SmtpApp, SmtpSession } from "effect-smtp"
import { SmtpTest } from "effect-smtp/testing"
import { closing, SessionStats, type Stats, statisticsWithAuth } from "./close-statistics.ts"
import { captureLogs } from "./test-logger.ts"

describe("close", () => {
  it.effect("Fumi onClose: every session's end is logged, one refused at connect too", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(closing.pipe(SmtpApp.onConnect((next) =>
        Effect.flatMap(SmtpSession.current, ({ remoteAddress }) =>
          remoteAddress === "192.0.2.66" ? Reject.permanent(554, "5.7.1", "Access denied") : next)
      )))
      const first = yield* server.connect()
      yield* first.quit
      yield* first.closed
      const second = yield* server.connect()
      yield* second.command("EHLO") // a syntax error; then the client just goes away
      yield* second.command("QUIT")
      yield* second.closed
      const refused = yield* server.connect({ remoteAddress: "192.0.2.66" })
      expect(refused.greeting).toEqual({ code: 554, enhanced: "5.7.1", lines: ["Access denied"] })
      yield* refused.closed
      expect(logs.lines).toEqual(["[test1] Session test1 ended", "[test2] Session test2 ended", "[test3] Session test3 ended"])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("smtp-server onClose: id, client, user, messages accepted and duration (on the fake clock)", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const logged = yield* Ref.make<ReadonlyArray<Stats>>([])
      const stats = Layer.succeed(SessionStats, { log: (entry) => Ref.update(logged, (all) => [...all, entry]) })
      const server = yield* SmtpTest.make(statisticsWithAuth, { allowInsecureAuth: true }).pipe(Effect.provide(stats))
      const client = yield* server.connect({ remoteAddress: "198.51.100.7" })
      yield* client.ehlo("client.example")
      yield* client.auth({ method: "PLAIN", username: "alice", password: "secret" })
      yield* client.send({ from: "alice@example.com", to: "bob@example.com", message: "one\n" })
      yield* client.send({ from: "alice@example.com", to: "bob@example.com", message: "two\n" })
      yield* client.mailFrom("alice@example.com") // a third transaction, without a message
      yield* TestClock.adjust("1500 millis")
      yield* client.quit
      yield* client.closed
      const anonymous = yield* server.connect()
      yield* anonymous.quit
      yield* anonymous.closed
      expect(yield* Ref.get(logged)).toEqual([
        { id: "test1", from: "198.51.100.7", user: Option.some("alice"), messages: 2, duration: 1500 },
        { id: "test2", from: "192.0.2.1", user: Option.none(), messages: 0, duration: 0 }
      ])
      expect(logs.lines).toEqual(["[test1] Connection closed: test1", "[test2] Connection closed: test2"])
    }).pipe(Effect.provide(logs.layer))
  })
})
