import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { SmtpTest } from "effect-smtp/testing"
import { fixtureTls } from "../../test/support.ts"
import { secure } from "./secure-phase.ts"
import { captureLogs } from "./test-logger.ts"

const tlsLines = (session: string) => [
  `[${session}] TLS cipher: TLS_AES_256_GCM_SHA384`,
  `[${session}] TLS protocol: TLSv1.3`,
  `[${session}] Server name: localhost`
]

describe("secure phase", () => {
  it.effect("after STARTTLS: the cipher, the protocol and the SNI name", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(secure, { tls: fixtureTls, hostname: "localhost" })).connect()
      yield* client.ehlo("client.example")
      expect(logs.lines).toEqual([]) // not secure yet
      expect(yield* client.starttls).toEqual({ code: 220, enhanced: "2.0.0", lines: ["Ready to start TLS"] })
      yield* client.ehlo("client.example") // answered once the secure phase is done
      expect(logs.lines).toEqual(tlsLines("test1"))
      yield* client.quit
      expect((yield* client.session).tls).toEqual(
        Option.some({ protocol: "TLSv1.3", cipher: "TLS_AES_256_GCM_SHA384", servername: Option.some("localhost"), peerCertificate: Option.none() })
      )
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("with requestClientCertificate: the certificate the client gave, on the session for later phases too", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(secure, { tls: fixtureTls, hostname: "localhost", requestClientCertificate: true })
      const client = yield* server.connect({ certificate: { cert: fixtureTls.cert, key: Redacted.value(fixtureTls.key) } })
      yield* client.ehlo("client.example")
      yield* client.starttls
      yield* client.ehlo("client.example")
      expect(logs.lines).toEqual([...tlsLines("test1"), `[test1] Client cert: {"CN":"localhost"}`])
      yield* client.quit
      const { tls } = yield* client.session
      const certificate = Option.flatMap(tls, (details) => details.peerCertificate)
      // Self-signed, so it does not verify against Node's certificate authorities: the app decides.
      expect(Option.map(certificate, ({ subject, verified }) => ({ subject, verified }))).toEqual(Option.some({ subject: { CN: "localhost" }, verified: false }))
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect("on an implicit TLS port: before the greeting", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(secure, { tls: fixtureTls, hostname: "localhost", implicitTls: true })
      const client = yield* server.connect()
      expect(client.greeting.code).toBe(220)
      expect(logs.lines).toEqual(tlsLines("test1"))
    }).pipe(Effect.provide(logs.layer))
  })
})
