/**
 * Faults at every stage of a session, over raw sockets: a client reset before
 * the greeting, after it, inside an AUTH exchange, in the middle of DATA and
 * in the middle of a TLS handshake, and bytes that are not TLS where TLS is
 * due. Each is logged, and the server goes on serving.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Logger, References, Schedule } from "effect"
import { format } from "node:util"
import { SmtpApp, SmtpServer, SmtpServerConfig, Username } from "../src/index.ts"
import type { Options } from "../src/layers/SmtpServerConfig.ts"
import { connect, fixtureTls, type RawClient, send } from "./support.ts"

/** A server with STARTTLS and AUTH (before TLS too, to reach the AUTH exchange in plaintext) that lets nobody in. */
const serveWithAuth = (options: Options) =>
  Layer.build(
    SmtpServer.layer(SmtpApp.empty.pipe(SmtpApp.onAuth(Username, (next) => next))).pipe(
      Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, hostname: "mx.test", ...options }))
    )
  ).pipe(Effect.map((context) => Context.get(context, SmtpServer)))

const say = (client: RawClient, line: string) => Effect.andThen(client.write(`${line}\r\n`), client.reply)

/** A TLS record header announcing more than is sent: a handshake left in the middle. */
const halfHandshake = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])

describe("faults", () => {
  it.live("resets and TLS errors at every stage are logged (resets at Debug) and the server serves on", () => {
    const logged: Array<string> = []
    const capture = Logger.make<unknown, void>((entry) => void logged.push(`${entry.logLevel} ${format(...[entry.message].flat())}`))
    return Effect.gen(function*() {
      const server = yield* serveWithAuth({ tls: fixtureTls, allowInsecureAuth: true })
      const port = server.address.port
      const reset = (client: RawClient) => Effect.sync(() => client.socket.resetAndDestroy())

      const early = yield* connect(port)
      yield* reset(early)

      const greeted = yield* connect(port)
      yield* greeted.reply
      yield* reset(greeted)

      const inAuth = yield* connect(port)
      yield* inAuth.reply
      yield* say(inAuth, "EHLO x.test")
      expect(yield* say(inAuth, "AUTH LOGIN")).toMatch(/^334 /)
      yield* reset(inAuth)

      const inData = yield* connect(port)
      yield* inData.reply
      yield* say(inData, "EHLO x.test")
      yield* say(inData, "MAIL FROM:<a@x.test>")
      yield* say(inData, "RCPT TO:<b@x.test>")
      expect(yield* say(inData, "DATA")).toMatch(/^354 /)
      yield* inData.write("Subject: half\r\n\r\n" + "z".repeat(10_000))
      yield* reset(inData)

      const inHandshake = yield* connect(port)
      yield* inHandshake.reply
      yield* say(inHandshake, "EHLO x.test")
      expect(yield* say(inHandshake, "STARTTLS")).toMatch(/^220 /)
      yield* inHandshake.write(halfHandshake)
      yield* reset(inHandshake)

      const notTls = yield* connect(port)
      yield* notTls.reply
      yield* say(notTls, "EHLO x.test")
      expect(yield* say(notTls, "STARTTLS")).toMatch(/^220 /)
      yield* notTls.write("EHLO this is not TLS\r\n")
      yield* notTls.closed

      yield* server.connections.pipe(Effect.repeat({ until: (open) => open === 0, schedule: Schedule.spaced("20 millis") }))
      // A client resetting its connection is what clients do: Debug, never Warn.
      expect(logged.filter((line) => /^Debug .*ECONNRESET/.test(line)).length).toBeGreaterThanOrEqual(3)
      expect(logged.filter((line) => /^Warn .*ECONNRESET/.test(line))).toEqual([])
      expect(logged.some((line) => /^Warn .*(SSL|TLS|wrong version)/i.test(line))).toBe(true)
      expect(yield* send(port, { from: "a@x.test", to: "b@x.test", text: "after" })).toMatchObject({ ok: true })
    }).pipe(Effect.provide(Logger.layer([capture])), Effect.provideService(References.MinimumLogLevel, "Debug"))
  })

  it.live("STARTTLS sessions give back their per-client slot when they end", () =>
    Effect.gen(function*() {
      const server = yield* serveWithAuth({ tls: fixtureTls, maxConnectionsPerClient: 2 })
      const overTls = { requireTLS: true, ignoreTLS: false, tls: { rejectUnauthorized: false } }
      for (const n of [1, 2, 3, 4]) {
        expect(yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: `n${n}` }, overTls)).toMatchObject({ ok: true })
      }
      yield* server.connections.pipe(Effect.repeat({ until: (open) => open === 0, schedule: Schedule.spaced("20 millis") }))
    }))
})
