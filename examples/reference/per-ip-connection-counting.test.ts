import { describe, expect, it } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { app, Connections } from "./per-ip-connection-counting.ts"

describe("per-IP connection counting", () => {
  it.effect("the 11th connection from one address gets 421 4.7.0; a closed one frees its slot", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(app)
      const first = yield* server.connect({ remoteAddress: "192.0.2.1" })
      const others = yield* Effect.forEach(Array.from({ length: 9 }), () => server.connect({ remoteAddress: "192.0.2.1" }))
      expect([first, ...others].map((client) => client.greeting.code)).toEqual(Array(10).fill(220))
      const eleventh = yield* server.connect({ remoteAddress: "192.0.2.1" })
      expect(eleventh.greeting).toEqual({ code: 421, enhanced: "4.7.0", lines: ["Too many connections"] })
      expect((yield* server.connect({ remoteAddress: "198.51.100.7" })).greeting.code).toBe(220) // counted apart
      yield* eleventh.closed
      yield* first.quit
      yield* first.closed
      expect((yield* Ref.get(yield* Connections))["192.0.2.1"]).toBe(9)
      expect((yield* server.connect({ remoteAddress: "192.0.2.1" })).greeting.code).toBe(220)
    }).pipe(Effect.provide(Connections.layer)))
})
