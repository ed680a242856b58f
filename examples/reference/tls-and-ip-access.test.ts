import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { fixtureTls } from "../../test/support.ts"
import { accessByIp, tlsRequired } from "./tls-and-ip-access.ts"

const tlsRequiredReply = { code: 530, enhanced: "5.7.0", lines: ["TLS required for untrusted networks"] }

describe("TLS and IP access", () => {
  it.effect("MAIL FROM before STARTTLS gets 530 5.7.0; after it, 250", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(tlsRequired, { tls: fixtureTls, hostname: "localhost" })).connect()
      yield* client.ehlo("client.example")
      expect(yield* client.mailFrom("alice@example.com")).toEqual({ code: 530, enhanced: "5.7.0", lines: ["Must use STARTTLS"] })
      expect(yield* client.starttls).toMatchObject({ code: 220 })
      yield* client.ehlo("client.example")
      expect(yield* client.mailFrom("alice@example.com")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Accepted"] })
    }))

  it.effect("plaintext connections are taken from trusted addresses only", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(accessByIp)
      expect((yield* server.connect({ remoteAddress: "192.0.2.1" })).greeting.code).toBe(220)
      expect((yield* server.connect({ remoteAddress: "192.0.2.2" })).greeting.code).toBe(220)
      expect((yield* server.connect({ remoteAddress: "198.51.100.7" })).greeting).toEqual(tlsRequiredReply)
    }))

  it.effect("on an implicit TLS port, untrusted addresses are taken too", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(accessByIp, { tls: fixtureTls, hostname: "localhost", implicitTls: true })
      expect((yield* server.connect({ remoteAddress: "198.51.100.7", secure: true })).greeting.code).toBe(220)
    }))
})
