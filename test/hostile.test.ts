/**
 * Hostile input over raw sockets against the real server: SMTP smuggling in
 * every bare-CR/LF form at several segmentations, NUL bytes, long lines, BDAT.
 * Each case checks the replies, that nothing was delivered, and that the
 * server still serves a normal client afterwards.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import { SmtpApp, SmtpServer, SmtpServerConfig, Username } from "../src/index.ts"
import type { Options } from "../src/layers/SmtpServerConfig.ts"
import { connect, fixtureTls, send, serveMemory, startMessage } from "./support.ts"

/** A server whose auth phase accepts nobody; returns its port. */
const serveNobodyLogsIn = (options: Options) =>
  Layer.build(
    SmtpServer.layer(SmtpApp.empty.pipe(SmtpApp.onAuth(Username, (next) => next))).pipe(
      Layer.provide(SmtpServerConfig.layer({ host: "127.0.0.1", port: 0, ...options }))
    )
  ).pipe(Effect.map((context) => Context.get(context, SmtpServer).address.port))

/** Writes `data` cut into pieces at `cuts`, each piece its own write. */
const writeInPieces = (client: { write: (data: Buffer) => Effect.Effect<void> }, data: Buffer, cuts: ReadonlyArray<number>) =>
  Effect.forEach(
    [0, ...cuts.filter((cut) => cut > 0 && cut < data.length).sort((a, b) => a - b), data.length].flatMap((start, i, all) =>
      i + 1 < all.length && all[i + 1]! > start ? [data.subarray(start, all[i + 1])] : []
    ),
    (piece) => client.write(piece),
    { discard: true }
  )

const everyByte = (length: number) => Array.from({ length: length - 1 }, (_, i) => i + 1)
/** Deterministic pseudo-random cut points. */
const scattered = (length: number, seed: number) => {
  let x = seed
  return Array.from({ length: 12 }, () => (x = (x * 1103515245 + 12345) % 2147483648) % length)
}

const smuggled = "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@x.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n"
const forms: ReadonlyArray<readonly [string, string, RegExp]> = [
  ["LF.LF", "\n.\n", /^550 5\.5\.2 /],
  ["LF.CRLF", "\n.\r\n", /^550 5\.5\.2 /],
  ["CR.CR", "\r.\r", /^550 5\.5\.2 /],
  ["CR.CRLF", "\r.\r\n", /^550 5\.5\.2 /],
  ["CRLF.CR", "\r\n.\r", /^550 5\.5\.2 /],
  ["CRLF.LF", "\r\n.\n", /^550 5\.5\.2 /],
  ["LF.CR", "\n.\r", /^550 5\.5\.2 /],
  ["CRLF.NUL", "\r\n.\0\r\n", /^550 5\.6\.0 /]
]
const segmentations: ReadonlyArray<readonly [string, (length: number) => ReadonlyArray<number>]> = [
  ["one write", () => []],
  ["one byte per write", everyByte],
  ["random cuts", (length) => scattered(length, length)]
]

describe("hostile input", () => {
  for (const [form, separator, reply] of forms) {
    for (const [segmentation, cuts] of segmentations) {
      it.live(`smuggling with ${form}, ${segmentation}: rejected, nothing delivered, nothing run`, () =>
        Effect.gen(function*() {
          const server = yield* serveMemory()
          const client = yield* connect(server.port)
          yield* client.reply
          yield* startMessage(client)
          const body = Buffer.from(`Subject: hi\r\n\r\nhello${separator}${smuggled}\r\n.\r\n`, "latin1")
          yield* writeInPieces(client, body, cuts(body.length))
          expect(yield* client.reply).toMatch(reply)
          yield* client.write("NOOP\r\n")
          expect(yield* client.reply).toMatch(/^250 2\.0\.0 OK/)
          expect(yield* server.messages).toHaveLength(0)
          expect(yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: "normal" })).toMatchObject({ ok: true })
          expect(yield* server.messages).toHaveLength(1)
        }))
    }
  }

  it.live("normalize: bare line endings become CRLF and the message is delivered", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ bareLineEndings: "normalize" })
      const client = yield* connect(server.port)
      yield* client.reply
      yield* startMessage(client)
      yield* client.write("Subject: x\r\n\r\none\ntwo\rthree\n.\nfour\r\n.\r\n")
      expect(yield* client.reply).toMatch(/^250 /)
      const [message] = yield* server.messages
      expect(Buffer.from(message!.bytes).toString("latin1")).toBe("Subject: x\r\n\r\none\r\ntwo\r\nthree\r\n.\r\nfour\r\n")
    }))

  it.live("NUL bytes can be stripped instead; a line over the limit is rejected", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ nulBytes: "strip", maxLineLength: 1000 })
      const client = yield* connect(server.port)
      yield* client.reply
      yield* startMessage(client)
      yield* client.write("Subject: x\r\n\r\nn\0u\0l\r\n.\r\n")
      expect(yield* client.reply).toMatch(/^250 /)
      yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
      yield* Effect.forEach([1, 2, 3], () => client.reply)
      yield* client.write(`Subject: x\r\n\r\n${"y".repeat(1001)}\r\n.\r\n`)
      expect(yield* client.reply).toMatch(/^550 5\.6\.0 /)
      const messages = yield* server.messages
      expect(messages.map((m) => Buffer.from(m.bytes).toString("latin1"))).toEqual(["Subject: x\r\n\r\nnul\r\n"])
    }))

  it.live("BDAT closes the connection and its payload is never run as commands", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory()
      const client = yield* connect(server.port)
      yield* client.reply
      yield* client.write("EHLO x.test\r\n")
      const ehlo = yield* client.reply
      expect(ehlo).not.toMatch(/CHUNKING/)
      yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n")
      yield* Effect.forEach([1, 2], () => client.reply)
      yield* client.write("BDAT 60 LAST\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n")
      expect(yield* client.reply).toMatch(/^5\d\d 5\.5\.1 /)
      expect(yield* client.reply).toBe("")
      yield* client.closed
      expect(yield* server.messages).toHaveLength(0)
    }))

  it.live("junk commands past the limit: 421 4.7.0 and the connection closes", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ maxJunkCommands: 5 })
      const client = yield* connect(server.port)
      yield* client.reply
      yield* client.write("EHLO x.test\r\n")
      yield* client.reply
      yield* client.write("NOOP\r\nRSET\r\nHELP\r\nVRFY a\r\nNOOP\r\nNOOP\r\nMAIL FROM:<a@x.test>\r\n")
      const replies = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => client.reply)
      expect(replies[5]).toBe("421 4.7.0 Too many commands that do not send mail")
      expect(yield* client.reply).toBe("")
    }))

  it.live("failed AUTH attempts are capped: the third gets 421 4.7.0 and the connection closes", () =>
    Effect.gen(function*() {
      const client = yield* connect(yield* serveNobodyLogsIn({ allowInsecureAuth: true, authFailureDelay: "1 millis" }))
      yield* client.reply
      yield* client.write("EHLO x.test\r\n")
      yield* client.reply
      const attempt = Effect.andThen(client.write(`AUTH PLAIN ${Buffer.from("\0mallory\0guess").toString("base64")}\r\n`), client.reply)
      expect(yield* attempt).toMatch(/^535 5\.7\.8 /)
      expect(yield* attempt).toMatch(/^535 5\.7\.8 /)
      expect(yield* attempt).toBe("421 4.7.0 Too many failed authentication attempts")
      yield* client.closed
    }))

  it.live("AUTH: strict base64, * cancels, and MAIL needs a login when auth is required", () =>
    Effect.gen(function*() {
      const client = yield* connect(
        yield* serveNobodyLogsIn({ allowInsecureAuth: true, authRequired: true, authFailureDelay: "1 millis" })
      )
      yield* client.reply
      const say = (line: string) => Effect.andThen(client.write(`${line}\r\n`), client.reply)
      yield* say("EHLO x.test")
      expect(yield* say("MAIL FROM:<a@x.test>")).toBe("530 5.7.0 Authentication required")
      expect(yield* say("AUTH PLAIN not*base64!")).toBe("501 5.5.2 Cannot decode the response: not base64")
      expect(yield* say("AUTH LOGIN")).toMatch(/^334 /)
      expect(yield* say("%%%")).toBe("501 5.5.2 Cannot decode the response: not base64")
      expect(yield* say("AUTH PLAIN")).toMatch(/^334/)
      expect(yield* say("*")).toMatch(/^501 5\.\d\.\d /)
      expect(yield* say("NOOP")).toMatch(/^250 /)
    }))

  it.live("verbs are ASCII letters: a look-alike such as MAıL or ſTARTTLS is no command (500 5.5.2), auth stays required", () =>
    Effect.gen(function*() {
      const client = yield* connect(yield* serveNobodyLogsIn({ tls: fixtureTls, authRequired: true }))
      yield* client.reply
      const say = (line: string) => Effect.andThen(client.write(Buffer.from(`${line}\r\n`, "utf8")), client.reply)
      yield* say("EHLO x.test")
      expect(yield* say("MAIL FROM:<a@x.test>")).toBe("530 5.7.0 Authentication required")
      expect(yield* say("MAıL FROM:<a@x.test>")).toBe("500 5.5.2 Error: command not recognized")
      expect(yield* say("RCPT TO:<b@x.test>")).toMatch(/^5\d\d /)
      expect(yield* say("ſTARTTLS")).toBe("500 5.5.2 Error: command not recognized")
      expect(yield* say("NOOP")).toMatch(/^250 /)
    }))

  it.live("AUTH is not offered or accepted before TLS when TLS is available", () =>
    Effect.gen(function*() {
      const client = yield* connect(yield* serveNobodyLogsIn({ tls: fixtureTls }))
      yield* client.reply
      yield* client.write("EHLO x.test\r\n")
      const ehlo = yield* client.reply
      expect(ehlo).toMatch(/STARTTLS/)
      expect(ehlo).not.toMatch(/AUTH/)
      yield* client.write(`AUTH PLAIN ${Buffer.from("\0a\0b").toString("base64")}\r\n`)
      expect(yield* client.reply).toMatch(/^5\d\d 5\.\d\.\d /)
    }))

  it.live("addresses: non-ASCII only with SMTPUTF8, valid UTF-8, RFC 5321 sizes", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory()
      const client = yield* connect(server.port)
      yield* client.reply
      const say = (line: string, encoding: BufferEncoding = "utf8") =>
        Effect.andThen(client.write(Buffer.from(`${line}\r\n`, encoding)), client.reply)
      yield* say("EHLO x.test")
      expect(yield* say("MAIL FROM:<josé@x.test>")).toBe("553 5.6.7 Non-ASCII address requires SMTPUTF8")
      expect(yield* say("MAIL FROM:<josé@x.test>", "latin1")).toBe("501 5.5.2 Address is not valid UTF-8")
      expect(yield* say("MAIL FROM:<a@x.test>")).toMatch(/^250 /)
      expect(yield* say("RCPT TO:<zoë@x.test>")).toBe("553 5.6.7 Non-ASCII address requires SMTPUTF8")
      expect(yield* say(`RCPT TO:<${"l".repeat(65)}@x.test>`)).toBe("501 5.1.3 Local part longer than 64 octets")
      expect(yield* say(`RCPT TO:<${"l".repeat(60)}@${"d.".repeat(100)}test>`)).toMatch(/^501 5\.1\.3 /)
      expect(yield* say("RSET")).toMatch(/^250 /)
      expect(yield* say("MAIL FROM:<josé@x.test> SMTPUTF8")).toMatch(/^250 /)
      expect(yield* say("RCPT TO:<zoë@x.test>")).toMatch(/^250 /)
    }))

  it.live("malformed MAIL and RCPT parameters get 555 5.5.4; lines over the per-verb limits 500 5.5.2", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory()
      const client = yield* connect(server.port)
      yield* client.reply
      const say = (line: string) => Effect.andThen(client.write(`${line}\r\n`), client.reply)
      yield* say("EHLO x.test")
      for (const parameters of ["SIZE=abc", "=x", "BODY=FOO", "SMTPUTF8=1", "ENVID=", "X-UNKNOWN=1"]) {
        expect(yield* say(`MAIL FROM:<a@x.test> ${parameters}`)).toMatch(/^555 5\.5\.4 /)
      }
      expect(yield* say(`MAIL FROM:<${"l".repeat(65)}@x.test>`)).toBe("501 5.1.7 Local part longer than 64 octets")
      expect(yield* say(`NOOP ${"x".repeat(510)}`)).toBe("500 5.5.2 Line too long")
      expect(yield* say(`MAIL FROM:<a@x.test> ENVID=${"x".repeat(2040)}`)).toBe("500 5.5.2 Line too long")
      expect(yield* say("MAIL FROM:<a@x.test> SIZE=100 BODY=8BITMIME")).toMatch(/^250 /)
      expect(yield* say("RCPT TO:<b@x.test> NOTIFY=NEVER")).toMatch(/^250 /)
      expect(yield* say("RCPT TO:<b@x.test> NOTIFY=SOMETIMES")).toMatch(/^555 5\.5\.4 /)
      expect(yield* say(`AUTH PLAIN ${"x".repeat(20_000)}`)).toBe("500 5.5.2 Line too long, closing the connection")
      yield* client.closed
    }))

  it.live("a message trickled in slower than dataTimeout: 421 4.4.2, closed, nothing delivered", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ dataTimeout: "300 millis" })
      const client = yield* connect(server.port)
      yield* client.reply
      yield* startMessage(client)
      for (const piece of ["Subject: slow\r\n", "\r\n", "one byte at a time"]) {
        yield* client.write(piece)
        yield* Effect.sleep("100 millis")
      }
      expect(yield* client.reply).toBe("421 4.4.2 Timeout receiving the message, closing the connection")
      yield* client.closed
      expect(yield* server.messages).toHaveLength(0)
      expect(yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: "fast" })).toMatchObject({ ok: true })
    }))

  it.live("a command line trickled in slower than commandTimeout: 421 4.4.2; slow but whole lines are fine", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ commandTimeout: "300 millis" })
      const patient = yield* connect(server.port)
      yield* patient.reply
      for (const line of ["EHLO x.test", "NOOP", "NOOP"]) {
        yield* patient.write(`${line}\r\n`)
        expect(yield* patient.reply).toMatch(/^250/)
        yield* Effect.sleep("200 millis")
      }
      const trickler = yield* connect(server.port)
      yield* trickler.reply
      for (const byte of "MAIL FROM:<a@x.test>") {
        yield* trickler.write(byte)
        yield* Effect.sleep("40 millis")
      }
      expect(yield* trickler.reply).toBe("421 4.4.2 Timeout receiving the command line, closing the connection")
      yield* trickler.closed
    }))

  it.live("connections past the per-client and total limits get 421 4.7.0", () =>
    Effect.gen(function*() {
      const perClient = yield* serveMemory({ maxConnectionsPerClient: 2 })
      const first = yield* connect(perClient.port)
      const second = yield* connect(perClient.port)
      expect(yield* first.reply).toMatch(/^220 /)
      expect(yield* second.reply).toMatch(/^220 /)
      const third = yield* connect(perClient.port)
      expect(yield* third.reply).toBe("421 4.7.0 Too many connections from your address, try again later")
      yield* third.closed
      first.socket.destroy()
      yield* first.closed
      yield* Effect.sleep("50 millis")
      const again = yield* connect(perClient.port)
      expect(yield* again.reply).toMatch(/^220 /)
      const total = yield* serveMemory({ maxClients: 1 })
      const only = yield* connect(total.port)
      expect(yield* only.reply).toMatch(/^220 /)
      const refused = yield* connect(total.port)
      expect(yield* refused.reply).toBe("421 4.7.0 Too many connections, try again later")
    }))

  it.live.prop(
    "any CRLF message, split at random points, is delivered byte-identical",
    {
      lines: Schema.Array(Schema.String.check(Schema.isPattern(/^[^\r\n\0]{0,200}$/))),
      cuts: Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 100_000 })))
    },
    ({ lines, cuts }) =>
      Effect.gen(function*() {
        const server = yield* serveMemory()
        const message = Buffer.from(["Subject: property", "", ...lines].join("\r\n") + "\r\n", "utf8")
        const stuffed = Buffer.from(message.toString("latin1").replace(/^\./gm, ".."), "latin1")
        const client = yield* connect(server.port)
        yield* client.reply
        yield* startMessage(client)
        const wire = Buffer.concat([stuffed, Buffer.from(".\r\n")])
        yield* writeInPieces(client, wire, cuts.map((cut) => cut % wire.length))
        expect(yield* client.reply).toMatch(/^250 /)
        const [stored] = yield* server.messages
        expect(Buffer.from(stored!.bytes).equals(message)).toBe(true)
      }),
    { timeout: 60_000, arbitrary: { runs: 30 } }
  )
})
