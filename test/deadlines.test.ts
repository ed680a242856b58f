/**
 * Deadlines a trickle of bytes cannot extend, over raw sockets: the TLS
 * handshake (STARTTLS and implicit TLS), the minimum DATA rate, and replies a
 * client leaves unread. The idle timeout stays at its default of minutes, so
 * each close here is the deadline's; the server serves others afterwards.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Duration, Effect, Schedule } from "effect"
import * as tls from "node:tls"
import { connect, fixtureTls, send, serveMemory, startMessage, type RawClient } from "./support.ts"

/** Writes `piece` every `interval` until the server closes the connection, at most `limit` times. */
const trickle = (client: RawClient, piece: string | Buffer, interval: Duration.Input, limit: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < limit && client.socket.readyState === "open"; i++) {
      yield* client.write(piece)
      yield* Effect.sleep(interval)
    }
  })

/** The header of a TLS handshake record announcing 16 KB: a TLS stack waits for all of it. */
const recordHeader = Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00])

/** A plaintext client that has sent STARTTLS and got its 220: the TLS handshake is the client's next move. */
const startTls = (port: number) =>
  Effect.gen(function*() {
    const client = yield* connect(port)
    yield* client.reply
    yield* client.write("EHLO x.test\r\n")
    yield* client.reply
    yield* client.write("STARTTLS\r\n")
    expect(yield* client.reply).toMatch(/^220 /)
    return client
  })

describe("deadlines", () => {
  it.live("STARTTLS: a handshake trickled in past tlsHandshakeTimeout closes the connection", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ tls: fixtureTls, tlsHandshakeTimeout: "300 millis" })
      const client = yield* startTls(server.port)
      yield* client.write(recordHeader)
      yield* trickle(client, Buffer.from([0x01]), "50 millis", 200)
      yield* client.closed
      expect(client.socket.readyState).toBe("closed")
      expect(yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: "fine" })).toMatchObject({ ok: true })
    }))

  it.live("implicit TLS: a handshake trickled in past tlsHandshakeTimeout closes the connection", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ tls: fixtureTls, implicitTls: true, tlsHandshakeTimeout: "300 millis" })
      const client = yield* connect(server.port)
      yield* client.write(recordHeader)
      yield* trickle(client, Buffer.from([0x01]), "50 millis", 200)
      yield* client.closed
      expect(client.socket.readyState).toBe("closed")
      const secure = { secure: true, ignoreTLS: false, tls: { rejectUnauthorized: false } }
      expect(yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: "fine" }, secure)).toMatchObject({ ok: true })
    }))

  it.live("implicit TLS: connections still in their handshake count against the connection limits", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ tls: fixtureTls, implicitTls: true, maxConnectionsPerClient: 2 })
      const first = yield* connect(server.port)
      const second = yield* connect(server.port)
      const third = yield* connect(server.port)
      yield* third.closed
      expect([first.socket.readyState, second.socket.readyState]).toEqual(["open", "open"])
      first.socket.destroy()
      second.socket.destroy()
      yield* Effect.sleep("100 millis")
      const secure = { secure: true, ignoreTLS: false, tls: { rejectUnauthorized: false } }
      expect(yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: "fine" }, secure)).toMatchObject({ ok: true })
    }))

  it.live("a message slower than minDataRate: 421 4.4.2 and closed; a faster one is delivered", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ minDataRate: 100, idleTimeout: "400 millis" })
      const slow = yield* connect(server.port)
      yield* slow.reply
      yield* startMessage(slow)
      yield* trickle(slow, "ab", "100 millis", 100)
      expect(yield* slow.reply).toBe("421 4.4.2 Timeout receiving the message, closing the connection")
      yield* slow.closed
      const steady = yield* connect(server.port)
      yield* steady.reply
      yield* startMessage(steady)
      yield* trickle(steady, "x".repeat(198) + "\r\n", "100 millis", 8)
      yield* steady.write(".\r\n")
      expect(yield* steady.reply).toMatch(/^250 /)
      expect(yield* server.messages).toHaveLength(1)
    }))

  it.live("a client that leaves its replies unread is disconnected after writeStallTimeout", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ rejectUnauthorizedPipelining: false, writeStallTimeout: "300 millis" })
      const client = yield* connect(server.port)
      yield* client.reply
      client.socket.pause()
      // Far more reply bytes than the socket buffers of both ends hold.
      client.socket.write("EHLO x.test\r\n".repeat(100_000))
      // The client reads nothing, so it learns of the close only from the server's count.
      yield* server.connections.pipe(
        Effect.repeat({ until: (open) => open === 0, schedule: Schedule.spaced("50 millis") })
      )
      expect(yield* send(server.port, { from: "a@x.test", to: "b@x.test", text: "fine" })).toMatchObject({ ok: true })
    }))

  it.live("after STARTTLS a command line trickled in past commandTimeout still gets 421 4.4.2", () =>
    Effect.gen(function*() {
      const server = yield* serveMemory({ tls: fixtureTls, commandTimeout: "300 millis" })
      const client = yield* startTls(server.port)
      const secure = tls.connect({ socket: client.socket, rejectUnauthorized: false })
      yield* Effect.callback<void>((resume) => void secure.once("secureConnect", () => resume(Effect.void)))
      const received: Array<string> = []
      secure.on("data", (chunk: Buffer) => void received.push(chunk.toString("latin1")))
      secure.on("error", () => undefined)
      for (let i = 0; i < 200 && !secure.destroyed && !received.join("").includes("421"); i++) {
        secure.write("M")
        yield* Effect.sleep("40 millis")
      }
      expect(received.join("")).toBe("421 4.4.2 Timeout receiving the command line, closing the connection\r\n")
    }))
})
