import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import { SmtpTest } from "effect-smtp/testing"
import { app, ClientPolicy, connect, ConnectionTime, guarded } from "./connect-denylist.ts"
import { captureLogs } from "./test-logger.ts"

describe("connect: denylists", () => {
  it.effect("Fumi onConnect: logs every client and refuses 192.0.2.1 instead of greeting it", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(connect, { hostname: "mx.example" })
      const blocked = yield* server.connect({ remoteAddress: "192.0.2.1" })
      expect(blocked.greeting).toEqual({ code: 550, enhanced: "5.7.1", lines: ["Access denied"] })
      const allowed = yield* server.connect({ remoteAddress: "198.51.100.7" })
      expect(allowed.greeting.code).toBe(220)
      expect(logs.lines).toEqual(["[test1] Connection from 192.0.2.1", "[test2] Connection from 198.51.100.7"])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("the denylist plugin refuses the addresses it was given", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(app)
      for (const remoteAddress of ["192.0.2.1", "192.0.2.2"]) {
        expect((yield* server.connect({ remoteAddress })).greeting).toEqual({ code: 550, enhanced: "5.7.1", lines: ["Access denied"] })
      }
      expect((yield* server.connect({ remoteAddress: "192.0.2.3" })).greeting.code).toBe(220)
    }))

  it.effect("smtp-server onConnect: 554 for a blacklisted client, 421 for one with too many connections", () => {
    const logs = captureLogs()
    const policy = Layer.succeed(ClientPolicy, {
      isBlacklisted: (ip) => Effect.succeed(ip === "203.0.113.66"),
      tooManyConnections: (ip) => Effect.succeed(ip === "203.0.113.99")
    })
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(guarded)
      const blacklisted = yield* server.connect({ remoteAddress: "203.0.113.66" })
      expect(blacklisted.greeting).toEqual({ code: 554, enhanced: "5.7.1", lines: ["IP address is blacklisted"] })
      const busy = yield* server.connect({ remoteAddress: "203.0.113.99" })
      expect(busy.greeting).toEqual({ code: 421, enhanced: "4.7.0", lines: ["Too many connections"] })
      yield* TestClock.adjust("2 seconds")
      const welcome = yield* server.connect({ remoteAddress: "198.51.100.7" })
      expect(welcome.greeting.code).toBe(220)
      yield* welcome.quit
      expect(yield* welcome.user(ConnectionTime)).toEqual(Option.some(2000)) // the connection's own state
      expect(logs.lines).toEqual([
        "[test1] Connection from 203.0.113.66",
        "[test2] Connection from 203.0.113.99",
        "[test3] Connection from 198.51.100.7"
      ])
    }).pipe(Effect.provide([logs.layer, policy]))
  })
})
