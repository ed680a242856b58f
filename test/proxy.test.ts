/**
 * XCLIENT and XFORWARD from trusted proxies (the `xclientPeers` and
 * `xforwardPeers` settings), through the test kit: who may send them, what
 * the session shows afterwards, the connect middleware running again for the
 * proxied client, and the proxy's own login not passing to that client.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import { Credentials, MailFrom, Reject, SmtpApp, SmtpSession, Username } from "../src/index.ts"
import * as Dns from "effect/net/Dns"
import { SmtpTest } from "../src/testing/index.ts"
import { Trail } from "./support.ts"

const proxy = "192.0.2.10"

const app = SmtpApp.empty.pipe(
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      yield* Trail.add(`connect ${session.remoteAddress} ${session.clientHostname}`)
      if (session.remoteAddress === "198.51.100.66") return yield* Reject.permanent(554, "5.7.1", "Access denied")
      yield* next
    })
  ),
  SmtpApp.onAuth(Username, () => Effect.map(Credentials, ({ username }) => username)),
  SmtpApp.onClose(() => Effect.flatMap(SmtpSession.current, (session) => Trail.add(`close ${session.remoteAddress}`))),
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      const user = yield* Effect.serviceOption(Username)
      const { address } = yield* MailFrom
      yield* Trail.add(
        `mail ${address} from ${session.remoteAddress} (ADDR:DEFAULT ${session.xClient.get("ADDR:DEFAULT") ?? "-"}, ` +
          `forwarded from ${session.xForward.get("ADDR") ?? "-"}) as ${Option.getOrElse(user, () => "nobody")}`
      )
      yield* next
    })
  )
)

const settings = { xclientPeers: [proxy], xforwardPeers: [proxy], allowInsecureAuth: true, hostname: "mx.test" }

describe("XCLIENT and XFORWARD", () => {
  it.effect("a trusted proxy's XCLIENT hands the session over: the proxy's session closes, the client's connects, then a new greeting", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(app, settings)).connect({ remoteAddress: proxy })
      const ehlo = yield* client.ehlo("proxy.test")
      expect(ehlo.lines).toContain("XCLIENT NAME ADDR PORT PROTO HELO LOGIN")
      expect(ehlo.lines).toContain("XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE")
      expect(yield* client.command("XCLIENT ADDR=198.51.100.7 NAME=client.example")).toEqual({
        code: 220,
        enhanced: undefined,
        lines: ["mx.test ESMTP"]
      })
      const again = yield* client.ehlo("client.example")
      expect(again.lines).not.toContain("XCLIENT NAME ADDR PORT PROTO HELO LOGIN")
      expect(yield* client.mailFrom("a@x.test")).toMatchObject({ code: 250 })
      yield* client.quit
      const session = yield* client.session
      expect(yield* Trail.all).toEqual([
        `connect ${proxy} [${proxy}]`,
        `close ${proxy}`,
        "connect 198.51.100.7 client.example",
        `mail a@x.test from 198.51.100.7 (ADDR:DEFAULT ${proxy}, forwarded from -) as nobody`,
        "close 198.51.100.7"
      ])
      expect(session.xClient.get("ADDR")).toBe("198.51.100.7")
      expect(session.heloName).toEqual(Option.some("client.example"))
    }).pipe(Effect.provide(Trail.layer)))

  it.effect("the proxied client is refused by the connect middleware as a direct one would be", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(app, settings)).connect({ remoteAddress: proxy })
      yield* client.ehlo("proxy.test")
      expect(yield* client.command("XCLIENT ADDR=198.51.100.66")).toEqual({ code: 554, enhanced: "5.7.1", lines: ["Access denied"] })
      yield* client.closed
    }).pipe(Effect.provide(Trail.layer)))

  it.effect("the proxy's login does not pass to the client; XCLIENT LOGIN is refused (it would skip the auth phase)", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(app, settings)
      const client = yield* server.connect({ remoteAddress: proxy })
      yield* client.ehlo("proxy.test")
      expect(yield* client.auth({ method: "PLAIN", username: "relay", password: "x" })).toMatchObject({ code: 235 })
      expect(yield* client.command("XCLIENT ADDR=198.51.100.7")).toMatchObject({ code: 220 })
      yield* client.ehlo("client.example")
      yield* client.mailFrom("a@x.test")
      yield* client.quit
      expect((yield* Trail.all).at(-1)).toBe(`mail a@x.test from 198.51.100.7 (ADDR:DEFAULT ${proxy}, forwarded from -) as nobody`)
      expect(yield* client.user(Username)).toEqual(Option.none())
      const login = yield* server.connect({ remoteAddress: proxy })
      yield* login.ehlo("proxy.test")
      expect(yield* login.command("XCLIENT ADDR=198.51.100.8 LOGIN=alice")).toEqual({
        code: 550,
        enhanced: "5.7.0",
        lines: ["XCLIENT LOGIN is not supported: use AUTH"]
      })
    }).pipe(Effect.provide(Trail.layer)))

  it.effect("XFORWARD from a trusted proxy reaches the session; from anyone else both commands get 550 and are not offered", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(app, settings)
      const client = yield* server.connect({ remoteAddress: proxy })
      yield* client.ehlo("proxy.test")
      expect(yield* client.command("XFORWARD ADDR=203.0.113.5 NAME=origin.example")).toMatchObject({ code: 250 })
      yield* client.mailFrom("a@x.test")
      const stranger = yield* server.connect({ remoteAddress: "192.0.2.1" })
      const ehlo = yield* stranger.ehlo("client.test")
      expect(ehlo.lines.some((line) => line.startsWith("XCLIENT") || line.startsWith("XFORWARD"))).toBe(false)
      expect(yield* stranger.command("XCLIENT ADDR=198.51.100.7")).toEqual({ code: 550, enhanced: "5.7.0", lines: ["Error: Not allowed"] })
      expect(yield* stranger.command("XFORWARD ADDR=198.51.100.7")).toEqual({ code: 550, enhanced: "5.7.0", lines: ["Error: Not allowed"] })
      // As in smtp-server, the forwarded address is the session's (XFORWARD is for logs: no connect phase runs again).
      expect((yield* Trail.all).at(-2)).toBe("mail a@x.test from 203.0.113.5 (ADDR:DEFAULT -, forwarded from 203.0.113.5) as nobody")
    }).pipe(Effect.provide(Trail.layer)))

  it.effect("without the settings, nobody may use them, and each try counts against the junk limit", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(app, { maxJunkCommands: 2 })).connect({ remoteAddress: proxy })
      yield* client.ehlo("proxy.test")
      expect(yield* client.command("XCLIENT ADDR=198.51.100.7")).toMatchObject({ code: 550, enhanced: "5.7.0" })
      expect(yield* client.command("XFORWARD ADDR=198.51.100.7")).toMatchObject({ code: 550, enhanced: "5.7.0" })
      expect(yield* client.command("XCLIENT ADDR=198.51.100.7")).toEqual({ code: 421, enhanced: "4.7.0", lines: ["Too many commands that do not send mail"] })
    }).pipe(Effect.provide(Trail.layer)))

  it.effect("XCLIENT that logs the proxy's user out (LOGIN= with nothing) takes the app's user too", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(app, settings)).connect({ remoteAddress: proxy })
      yield* client.ehlo("proxy.test")
      expect(yield* client.auth({ method: "PLAIN", username: "relay", password: "x" })).toMatchObject({ code: 235 })
      expect(yield* client.command("XCLIENT LOGIN= NAME=client.example")).toMatchObject({ code: 220 })
      yield* client.ehlo("client.example")
      yield* client.mailFrom("a@x.test")
      yield* client.quit
      expect(yield* client.user(Username)).toEqual(Option.none())
      expect((yield* Trail.all).at(-2)).toBe(`mail a@x.test from ${proxy} (ADDR:DEFAULT -, forwarded from -) as nobody`)
    }).pipe(Effect.provide(Trail.layer)))

  it.effect("a client handed over without NAME is named by reverse DNS, or [address]: never the proxy's name", () =>
    Effect.gen(function*() {
      const withLookup = yield* SmtpTest.make(app, { ...settings, reverseLookup: true })
      const looked = yield* withLookup.connect({ remoteAddress: proxy })
      yield* looked.command("XCLIENT ADDR=198.51.100.7")
      yield* looked.command("XCLIENT ADDR=198.51.100.8").pipe(Effect.ignore)
      const plain = yield* (yield* SmtpTest.make(app, settings)).connect({ remoteAddress: proxy })
      yield* plain.command("XCLIENT ADDR=198.51.100.9")
      expect((yield* Trail.all).filter((entry) => entry.startsWith("connect"))).toEqual([
        `connect ${proxy} proxy.internal`,
        "connect 198.51.100.7 client.lookup.test",
        `connect ${proxy} [${proxy}]`,
        "connect 198.51.100.9 [198.51.100.9]"
      ])
    }).pipe(Effect.provide([
      Trail.layer,
      Layer.succeed(Dns.Dns, Dns.make({
        lookup: () => Effect.succeed([]),
        reverse: (address) => Effect.succeed(String(address) === proxy ? ["proxy.internal"] : ["client.lookup.test"])
      }))
    ])))
})

describe("XCLIENT handovers, the hard cases", () => {
  /** Records the start and end of every close phase, with the user it saw; the proxy's takes 300 ms. */
  const slowClose = SmtpApp.empty.pipe(
    SmtpApp.onConnect((next) => Effect.andThen(Effect.flatMap(SmtpSession.current, (session) => Trail.add(`connect ${session.remoteAddress}`)), next)),
    SmtpApp.onAuth(Username, () => Effect.map(Credentials, ({ username }) => username)),
    SmtpApp.onClose(() =>
      Effect.gen(function*() {
        const session = yield* SmtpSession.current
        const user = Option.getOrElse(yield* Effect.serviceOption(Username), () => "nobody")
        yield* Trail.add(`close start ${session.remoteAddress} as ${user}`)
        if (session.remoteAddress === proxy) yield* Effect.sleep("300 millis")
        // Read again: the proxy's session stays the proxy's, whatever happened to the connection meanwhile.
        yield* Trail.add(`close end ${(yield* SmtpSession.current).remoteAddress}`)
      })
    )
  )

  it.live("the proxy's close phase sees the proxy's user, and runs whole even if the connection drops during the handover", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(slowClose, settings)
      const scope = yield* Scope.make()
      const client = yield* server.connect({ remoteAddress: proxy }).pipe(Scope.provide(scope))
      yield* client.ehlo("proxy.test")
      expect(yield* client.auth({ method: "PLAIN", username: "relay", password: "x" })).toMatchObject({ code: 235 })
      yield* Effect.forkChild(client.command("XCLIENT ADDR=198.51.100.7"))
      yield* Effect.sleep("50 millis") // the proxy's close phase has begun
      yield* Scope.close(scope, Exit.void) // the connection drops; this waits for the close phases
      expect(yield* Trail.all).toEqual([
        `connect ${proxy}`,
        `close start ${proxy} as relay`,
        `close end ${proxy}`
      ])
    }).pipe(Effect.provide(Trail.layer)))

  it.effect("XCLIENT ADDR=[UNAVAILABLE] changes no client: nothing starts over", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(slowClose, settings)).connect({ remoteAddress: proxy })
      yield* client.ehlo("proxy.test")
      expect(yield* client.command("XCLIENT ADDR=[UNAVAILABLE]")).toMatchObject({ code: 220 })
      yield* client.quit
      const closing = yield* Effect.forkChild(client.closed)
      yield* TestClock.adjust("300 millis")
      yield* Fiber.join(closing)
      expect(yield* Trail.all).toEqual([`connect ${proxy}`, `close start ${proxy} as nobody`, `close end ${proxy}`])
    }).pipe(Effect.provide(Trail.layer)))
})
