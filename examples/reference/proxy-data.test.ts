import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { proxied, proxySettings } from "./proxy-data.ts"
import { captureLogs } from "./test-logger.ts"

describe("proxy data", () => {
  it.effect("XCLIENT from the trusted proxy: the connect middleware sees the real client and the proxy", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(proxied, proxySettings)).connect({ remoteAddress: "192.0.2.10" })
      expect(logs.lines).toEqual([]) // the proxy's own connection: no proxy data yet
      yield* client.ehlo("proxy.example")
      const reply = yield* client.command("XCLIENT ADDR=192.0.2.100 NAME=client.example.com PORT=12345 PROTO=SMTP HELO=client.example.com")
      expect(reply.code).toBe(220)
      expect(logs.lines).toEqual(["[test1] Real client IP: 192.0.2.100", "[test1] Proxy IP: 192.0.2.10"])
      yield* client.quit
      // smtp-server's "XCLIENT Data" listing, as the session has it.
      expect(Object.fromEntries((yield* client.session).xClient)).toEqual({
        ADDR: "192.0.2.100",
        "ADDR:DEFAULT": "192.0.2.10",
        NAME: "client.example.com",
        "NAME:DEFAULT": "[192.0.2.10]",
        PORT: "12345",
        "PORT:DEFAULT": "49152",
        PROTO: "SMTP",
        HELO: "client.example.com"
      })
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("XFORWARD from the trusted proxy: the session keeps where the message came from", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(proxied, proxySettings)).connect({ remoteAddress: "192.0.2.10" })
      yield* client.ehlo("proxy.example")
      const forward = "XFORWARD ADDR=192.0.2.200 NAME=forwarded.example.com PORT=25 PROTO=ESMTP HELO=forwarded.example.com IDENT=identifier SOURCE=REMOTE"
      expect(yield* client.command(forward)).toMatchObject({ code: 250 })
      yield* client.quit
      // smtp-server's "XFORWARD Data" listing, as the session has it.
      expect(Object.fromEntries((yield* client.session).xForward)).toEqual({
        ADDR: "192.0.2.200",
        "ADDR:DEFAULT": "192.0.2.10",
        NAME: "forwarded.example.com",
        PORT: "25",
        PROTO: "ESMTP",
        HELO: "forwarded.example.com",
        IDENT: "identifier",
        SOURCE: "REMOTE"
      })
    }))

  it.effect("anyone else: 550 5.7.0", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(proxied, proxySettings)).connect({ remoteAddress: "198.51.100.9" })
      yield* client.ehlo("client.example")
      expect(yield* client.command("XCLIENT ADDR=192.0.2.100")).toMatchObject({ code: 550, enhanced: "5.7.0" })
    }))
})
