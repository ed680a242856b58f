import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { fixtureTls } from "../../test/support.ts"
import { accessing, lifecycle } from "./session-lifecycle.ts"
import { captureLogs } from "./test-logger.ts"

describe("session", () => {
  it.effect("Fumi Accessing Session Data: id, address and TLS at connect; client and opening command at MAIL FROM", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(accessing)).connect({ remoteAddress: "198.51.100.7" })
      yield* client.helo("client.example")
      yield* client.mailFrom("alice@example.com")
      expect(logs.lines).toEqual([
        "[test1] Session test1 started",
        "[test1] Remote IP: 198.51.100.7",
        "[test1] Secure: false",
        "[test1] Session test1",
        "[test1] Client: [198.51.100.7]",
        "[test1] Opening: HELO"
      ])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("Fumi Session Lifecycle: connect, auth, MAIL, RCPT (each), DATA, close", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(lifecycle, { allowInsecureAuth: true })).connect()
      yield* client.ehlo("client.example")
      expect(yield* client.auth({ method: "LOGIN", username: "alice", password: "any" })).toMatchObject({ code: 235 })
      const mail = { from: "alice@example.com", to: ["bob@example.com", "carol@example.com"], message: "hi\n" }
      expect(yield* client.send(mail)).toEqual({ code: 250, enhanced: "2.6.0", lines: ["OK: message queued"] })
      yield* client.quit
      yield* client.closed
      expect(logs.lines).toEqual([
        "[test1] Connected from 192.0.2.1",
        "[test1] Auth attempt: alice",
        "[test1] MAIL FROM: alice@example.com",
        "[test1] RCPT TO: bob@example.com",
        "[test1] RCPT TO: carol@example.com",
        "[test1] Receiving message...",
        "[test1] Session ended"
      ])
    }).pipe(Effect.provide(logs.layer))
  })

  // smtp-server "Session Object Structure": the same facts, as effect-smtp has them.
  it.effect("smtp-server Session Object Structure: SmtpSession.current after an ESMTPSA session", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(lifecycle, { tls: fixtureTls, hostname: "localhost", host: "203.0.113.1", port: 25 })
      const client = yield* server.connect({ remoteAddress: "192.0.2.1", remotePort: 54321 })
      yield* client.ehlo("client.example.com")
      yield* client.starttls
      yield* client.ehlo("client.example.com")
      yield* client.auth({ method: "PLAIN", username: "user@example.com", password: "x" })
      yield* client.send({ from: "sender@example.com", to: "rcpt@example.com", message: "hi\n" })
      yield* client.mailFrom("sender@example.com", { SIZE: "12345" })
      yield* client.rcptTo("rcpt@example.com")
      yield* client.quit
      expect(yield* client.session).toEqual({
        id: "test1",
        remoteAddress: "192.0.2.1",
        remotePort: 54321,
        localAddress: "203.0.113.1",
        localPort: 25,
        clientHostname: "[192.0.2.1]", // the reverse DNS name with the reverseLookup setting
        secure: true,
        tls: Option.some({ protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384", servername: Option.some("localhost"), peerCertificate: Option.none() }),
        openingCommand: Option.some("EHLO"),
        heloName: Option.some("client.example.com"), // smtp-server's hostNameAppearsAs
        transmissionType: "ESMTPSA",
        username: Option.some("user@example.com"), // the app's own user: `client.user(Username)` here
        xClient: new Map(), // what a proxy said with XCLIENT (with the xclientPeers setting)
        xForward: new Map(),
        transactions: 2, // started (MAIL FROM accepted)
        messages: 1 // accepted (DATA answered 250)
      })
      // The envelope is the transaction's, not the session's: each as it ended.
      const transactions = yield* client.transactions
      expect(transactions.map(({ id, mailFrom, rcptTo }) => ({
        id,
        mailFrom: Option.map(mailFrom, ({ address, params }) => ({ address, size: params.size })),
        rcptTo: rcptTo.map(({ address }) => address)
      }))).toEqual([
        { id: 1, mailFrom: Option.some({ address: "sender@example.com", size: undefined }), rcptTo: ["rcpt@example.com"] },
        { id: 2, mailFrom: Option.some({ address: "sender@example.com", size: 12345 }), rcptTo: ["rcpt@example.com"] }
      ])
    }))
})
