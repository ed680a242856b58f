/**
 * Pipelining rules over raw sockets (RFC 2920 section 3.1, RFC 3207 section 4):
 * a client that sends ahead of a reply it must wait for gets 554 5.5.0 and is
 * disconnected before anything it sent ahead runs; what RFC 2920 allows passes.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as net from "node:net"
import { Duplex } from "node:stream"
import * as tls from "node:tls"
import { connect, fixtureTls, replyReader, send, serveMemory } from "./support.ts"

const outOfSync = "554 5.5.0 Error: SMTP protocol synchronization, closing the connection"

describe("pipelining", () => {
  it.live("a command sent before the reply to EHLO: 554 5.5.0, closed, nothing run", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory()
      const client = yield* connect(server.port)
      yield* client.reply
      yield* client.write("EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n")
      expect(yield* client.reply).toBe(outOfSync)
      expect(yield* client.reply).toBe("")
      yield* client.closed
      expect(yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: "polite" })).toMatchObject({ ok: true })
    }))

  it.live("the message sent before the reply to DATA: 554 5.5.0, closed, nothing delivered", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory()
      const client = yield* connect(server.port)
      yield* client.reply
      yield* client.write("EHLO x.test\r\n")
      yield* client.reply
      yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nSubject: eager\r\n\r\nhi\r\n.\r\n")
      expect(yield* client.reply).toMatch(/^250 /)
      expect(yield* client.reply).toMatch(/^250 /)
      expect(yield* client.reply).toBe(outOfSync)
      yield* client.closed
      expect(yield* server.messages).toHaveLength(0)
    }))

  it.live("with the check off, two whole transactions and QUIT in one write are all answered and both stored", () =>
    Effect.gen(function*() {
      // smtp-server lost the parser's place when a second message ended within the same write (fixed in CommandParser).
      const server = yield* serveMemory({ rejectUnauthorizedPipelining: false })
      const client = yield* connect(server.port)
      yield* client.reply
      const transaction = (n: number) => `MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nSubject: ${n}\r\n\r\nhi\r\n.\r\n`
      yield* client.write(`EHLO x.test\r\n${transaction(1)}${transaction(2)}QUIT\r\n`)
      const codes: Array<string> = []
      for (let i = 0; i < 10; i++) codes.push((yield* client.reply).slice(0, 3))
      expect(codes).toEqual(["250", "250", "250", "354", "250", "250", "250", "354", "250", "221"])
      yield* client.closed
      expect(yield* server.messages).toHaveLength(2)
    }))

  it.live("after HELO (no PIPELINING offered) any command sent ahead: 554 5.5.0", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory()
      const client = yield* connect(server.port)
      yield* client.reply
      yield* client.write("HELO x.test\r\n")
      expect(yield* client.reply).toMatch(/^250 /)
      yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n")
      expect(yield* client.reply).toBe(outOfSync)
      yield* client.closed
    }))

  it.live("bytes behind STARTTLS close the connection, even with the pipelining check off", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ tls: fixtureTls, rejectUnauthorizedPipelining: false })
      const client = yield* connect(server.port)
      yield* client.reply
      yield* client.write("EHLO x.test\r\n")
      expect(yield* client.reply).toMatch(/STARTTLS/)
      yield* client.write("STARTTLS\r\nMAIL FROM:<injected@x.test>\r\n")
      expect(yield* client.reply).toBe(outOfSync)
      yield* client.closed
    }))

  it.live("what RFC 2920 allows passes: MAIL, RCPT and DATA in one write, the next transaction right after a message", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory()
      const client = yield* connect(server.port)
      yield* client.reply
      yield* client.write("EHLO x.test\r\n")
      expect(yield* client.reply).toMatch(/PIPELINING/)
      yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n")
      expect((yield* Effect.forEach([1, 2, 3, 4], () => client.reply)).map((r) => r.slice(0, 3))).toEqual(["250", "250", "250", "354"])
      yield* client.write("Subject: 1\r\n\r\none\r\n.\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
      expect((yield* Effect.forEach([1, 2, 3, 4], () => client.reply)).map((r) => r.slice(0, 3))).toEqual(["250", "250", "250", "354"])
      yield* client.write("Subject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
      expect((yield* Effect.forEach([1, 2], () => client.reply)).map((r) => r.slice(0, 3))).toEqual(["250", "221"])
      expect(yield* server.messages).toHaveLength(2)
    }))

  it.live("rejectUnauthorizedPipelining: false lets a client send everything in one write", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ rejectUnauthorizedPipelining: false })
      const client = yield* connect(server.port)
      yield* client.reply
      yield* client.write("EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
      const replies = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => client.reply)
      expect(replies.map((r) => r.slice(0, 3))).toEqual(["250", "250", "250", "354", "250", "221"])
      expect(yield* server.messages).toHaveLength(1)
    }))

  it.live("lines split across reads and bare LF line ends are counted right: no false alarm, no miss", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory()
      const client = yield* connect(server.port)
      yield* client.reply
      for (const piece of ["EHLO x.te", "st\r", "\n"]) {
        yield* client.write(piece)
        yield* Effect.sleep("30 millis")
      }
      expect(yield* client.reply).toMatch(/^250[ -]/)
      yield* client.write("MAIL FROM:<a@x.test>\nRCPT TO:<b@x.test>\nDATA\n")
      expect((yield* Effect.forEach([1, 2, 3], () => client.reply)).map((r) => r.slice(0, 3))).toEqual(["250", "250", "354"])
      yield* client.write("Subject: ok\r\n\r\nfine\r\n.\r\n")
      expect(yield* client.reply).toMatch(/^250 /)
      // DATA begun in one read and ended in the next, with the message right behind it.
      yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDA")
      expect((yield* Effect.forEach([1, 2], () => client.reply)).map((r) => r.slice(0, 3))).toEqual(["250", "250"])
      yield* client.write("TA\r\nSubject: eager\r\n\r\n.\r\n")
      expect(yield* client.reply).toBe(outOfSync)
      expect(yield* server.messages).toHaveLength(1)
    }))

  it.live("over TLS: commands in separate TLS records of one TCP write count as sent ahead", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ tls: fixtureTls, implicitTls: true })
      const early = yield* heldTlsClient(server.port)
      yield* early.reply
      yield* early.together(["EHLO x.test\r\n", "MAIL FROM:<a@x.test>\r\n"])
      expect(yield* early.reply).toBe(outOfSync)
      const eager = yield* heldTlsClient(server.port)
      yield* eager.reply
      yield* eager.together(["EHLO x.test\r\n"])
      yield* eager.reply
      yield* eager.together(["MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"])
      yield* eager.reply
      yield* eager.reply
      yield* eager.together(["DATA\r\n", "Subject: eager\r\n\r\nsent before the 354\r\n.\r\n"])
      expect(yield* eager.reply).toBe(outOfSync)
      expect(yield* server.messages).toHaveLength(0)
      const secure = { secure: true, ignoreTLS: false, tls: { rejectUnauthorized: false } }
      expect(yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: "polite" }, secure)).toMatchObject({ ok: true })
    }))
})

/**
 * A TLS client that sends each of `together`'s pieces as its own TLS record and all of them in one TCP write,
 * as a client that pipelines over TLS does; `reply` is the next whole reply.
 */
const heldTlsClient = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly together: (pieces: ReadonlyArray<string>) => Effect.Effect<void>; readonly reply: Effect.Effect<string>; readonly secure: tls.TLSSocket }>((resume) => {
      const raw = net.connect(port, "127.0.0.1")
      raw.on("error", () => undefined)
      let held: Array<Buffer> | undefined
      const wire = new Duplex({
        read() {},
        write(chunk: Buffer, _encoding, done) {
          if (held === undefined) raw.write(chunk)
          else held.push(chunk)
          done()
        }
      })
      raw.on("data", (chunk: Buffer) => wire.push(chunk))
      raw.on("end", () => wire.push(null))
      const secure = tls.connect({ socket: wire, rejectUnauthorized: false })
      secure.on("error", () => undefined)
      const reply = replyReader(secure)
      // Each secure.write becomes a record on a later turn; the records go out together once all are made.
      const together = (pieces: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          held = []
          for (const piece of pieces) {
            secure.write(piece)
            yield* Effect.promise(() => new Promise((turn) => setImmediate(turn)))
          }
          const records = Buffer.concat(held)
          held = undefined
          raw.write(records)
        })
      secure.once("secureConnect", () => resume(Effect.succeed({ together, reply, secure })))
    }),
    (client) => Effect.sync(() => client.secure.destroy())
  )
