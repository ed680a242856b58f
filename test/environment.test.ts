/**
 * Every documented environment variable, set through the environment only
 * (`SmtpServerConfig.layerConfig()` over `ConfigProvider.fromEnv`), and its
 * effect on a running server over real sockets on 127.0.0.1. Each value is
 * one whose effect the default would not have, and each case has a short
 * timeout, so a variable the server ignores fails its case rather than hangs.
 * Two more cases: all variables at once reach the running server's
 * `SmtpServerConfig`, and every row of `documentation("SMTP")` has a case here.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Metric, Option, Redacted, Schedule, Scope } from "effect"
import * as Dns from "effect/net/Dns"
import { TestClock } from "effect/testing"
import * as net from "node:net"
import * as tls from "node:tls"
import { fileURLToPath } from "node:url"
import {
  Credentials,
  deliver,
  MemoryMessages,
  MessageStore,
  SmtpApp,
  SmtpServer,
  SmtpMetrics,
  SmtpServerConfig,
  type SmtpServerSettings,
  SmtpSession,
  type TranscriptLine,
  Username,
  type UserKey
} from "../src/index.ts"
import { documentation, make as makeSettings } from "../src/layers/SmtpServerConfig.ts"
import { connect, fixtureTls, type RawClient, replyReader, send, startMessage, writer } from "./support.ts"

type Env = Readonly<Record<string, string>>

/** What a case checks the running server with. */
interface Case {
  /** The variable the case is about. */
  readonly variable: string
  /** The variables it sets (SMTP_HOST=127.0.0.1 and SMTP_PORT=0 are added unless it sets them). */
  readonly env: Env
  /** What the server does with it, where the default would not. */
  readonly observed: string
  /** Run on `TestClock` (`it.effect`) rather than the real clock. */
  readonly fakeClock?: true
  readonly check: (serve: Serve, env: Env) => Effect.Effect<void, unknown, Scope.Scope>
}

/** Starts a server for `app` with the case's variables, in the current scope. */
type Serve = <Cs, Ts, U extends UserKey>(app: SmtpApp.SmtpApp<Cs, Ts, MessageStore, U>) => ReturnType<typeof serveFromEnv>

// ---------------------------------------------------------------------------
// The table: one case per variable.
// ---------------------------------------------------------------------------

/** In an `env`, stands for a port nothing listens on, found when the case runs. */
const aFreePort = "<a free port>"
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))
const timedOut = "451 4.4.1 Timed out while processing the command, try again later"
const tooSlow = "421 4.4.2 Timeout receiving the message, closing the connection"
const insecureAuth = { SMTP_ALLOW_INSECURE_AUTH: "true" }

const cases: ReadonlyArray<Case> = [
  {
    variable: "SMTP_HOST",
    env: { SMTP_HOST: "127.0.0.2" },
    observed: "listens on 127.0.0.2 and delivers there; nothing answers on 127.0.0.1",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        expect(server.address.address).toBe("127.0.0.2")
        expect(yield* send(server.port, mail, { host: "127.0.0.2" })).toMatchObject({ ok: true })
        expect(yield* send(server.port, mail, { host: "127.0.0.1" })).toMatchObject({ ok: false })
        expect(yield* server.messages).toHaveLength(1)
      })
  },
  {
    variable: "SMTP_PORT",
    env: { SMTP_PORT: aFreePort },
    observed: "listens on that port and greets there",
    check: (serve, env) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        expect(server.address.port).toBe(Number(env["SMTP_PORT"]))
        const client = yield* connect(Number(env["SMTP_PORT"]))
        expect(yield* client.reply).toMatch(/^220 /)
      })
  },
  {
    variable: "SMTP_HOSTNAME",
    env: { SMTP_HOSTNAME: "mx.env.test" },
    observed: "the name in the greeting and the EHLO reply",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* connect((yield* serve(store)).port)
        expect(yield* client.reply).toBe("220 mx.env.test ESMTP")
        expect(yield* say(client, "EHLO client.test")).toMatch(/^250-mx\.env\.test /)
      })
  },
  {
    variable: "SMTP_BANNER",
    env: { SMTP_HOSTNAME: "mx.env.test", SMTP_BANNER: "mail from the environment" },
    observed: "the text after the name in the greeting",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* connect((yield* serve(store)).port)
        expect(yield* client.reply).toBe("220 mx.env.test ESMTP mail from the environment")
      })
  },
  {
    variable: "SMTP_MAX_MESSAGE_SIZE",
    env: { SMTP_MAX_MESSAGE_SIZE: "12345" },
    observed: "EHLO advertises SIZE 12345; a 20,000-byte message gets 552 5.3.4",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const client = yield* connect(server.port)
        yield* client.reply
        const [ehlo] = yield* startMessage(client)
        expect(ehlo).toMatch(/^250[ -]SIZE 12345$/m)
        yield* client.write(`Subject: big\r\n\r\n${`${"z".repeat(98)}\r\n`.repeat(200)}.\r\n`)
        expect(yield* client.reply).toMatch(/^552 5\.3\.4 /)
        expect(yield* server.messages).toHaveLength(0)
      })
  },
  {
    variable: "SMTP_MAX_RECIPIENTS",
    env: { SMTP_MAX_RECIPIENTS: "2" },
    observed: "the third RCPT gets 452 4.5.3",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(store)).port)
        expect(yield* say(client, "MAIL FROM:<a@x.test>")).toMatch(/^250 /)
        expect(yield* say(client, "RCPT TO:<b@x.test>")).toMatch(/^250 /)
        expect(yield* say(client, "RCPT TO:<c@x.test>")).toMatch(/^250 /)
        expect(yield* say(client, "RCPT TO:<d@x.test>")).toMatch(/^452 4\.5\.3 /)
      })
  },
  {
    variable: "SMTP_MAX_CLIENTS",
    env: { SMTP_MAX_CLIENTS: "1" },
    observed: "a second connection gets 421 4.7.0 and is closed",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const first = yield* connect(server.port)
        expect(yield* first.reply).toMatch(/^220 /)
        const second = yield* connect(server.port)
        expect(yield* second.reply).toBe("421 4.7.0 Too many connections, try again later")
        yield* second.closed
      })
  },
  {
    variable: "SMTP_MAX_CONNECTIONS_PER_CLIENT",
    env: { SMTP_MAX_CONNECTIONS_PER_CLIENT: "2" },
    observed: "a third connection from 127.0.0.1 gets 421 4.7.0 and is closed",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const first = yield* connect(server.port)
        const second = yield* connect(server.port)
        expect([yield* first.reply, yield* second.reply]).toEqual([expect.stringMatching(/^220 /), expect.stringMatching(/^220 /)])
        const third = yield* connect(server.port)
        expect(yield* third.reply).toBe("421 4.7.0 Too many connections from your address, try again later")
        yield* third.closed
      })
  },
  {
    variable: "SMTP_IDLE_TIMEOUT",
    env: { SMTP_IDLE_TIMEOUT: "300 millis" },
    observed: "a client that says nothing after the greeting gets 421 4.4.2 and is closed",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* connect((yield* serve(store)).port)
        expect(yield* client.reply).toMatch(/^220 /)
        expect(yield* client.reply).toBe("421 4.4.2 Timeout - closing connection")
        yield* client.closed
      })
  },
  {
    variable: "SMTP_SHUTDOWN_TIMEOUT",
    env: { SMTP_SHUTDOWN_TIMEOUT: "200 millis" },
    observed: "closing the server interrupts a data handler that never ends, and the client gets 421 4.3.2",
    check: (serve) =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const interrupted = yield* Deferred.make<void>()
        const app = SmtpApp.empty.pipe(SmtpApp.onData(() => endless(started, interrupted)))
        const scope = yield* Scope.make()
        const server = yield* serve(app).pipe(Scope.provide(scope))
        const client = yield* connect(server.port)
        yield* client.reply
        yield* startMessage(client)
        yield* client.write("Subject: stuck\r\n\r\nbody\r\n.\r\n")
        yield* Deferred.await(started)
        // With the default of 8 seconds this would outlast the case's timeout.
        yield* Scope.close(scope, Exit.void)
        yield* Deferred.await(interrupted)
        expect(yield* client.reply).toMatch(/^421 4\.3\.2 /)
      })
  },
  {
    variable: "SMTP_PHASE_TIMEOUTS_CONNECT",
    env: { SMTP_PHASE_TIMEOUTS_CONNECT: "200 millis" },
    observed: "a connect handler that never ends: the greeting is 451 4.4.1, then the close",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* connect((yield* serve(SmtpApp.empty.pipe(SmtpApp.onConnect(() => Effect.never)))).port)
        expect(yield* client.reply).toBe(timedOut)
        yield* client.closed
      })
  },
  {
    variable: "SMTP_PHASE_TIMEOUTS_SECURE",
    env: { SMTP_PHASE_TIMEOUTS_SECURE: "200 millis", SMTP_TLS_CERT: "self-signed" },
    observed: "a secure handler that never ends: the TLS session gets 451 4.4.1",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* startTls((yield* serve(SmtpApp.empty.pipe(SmtpApp.onSecure(() => Effect.never)))).port)
        const secure = yield* tlsClient({ socket: client.socket })
        expect(yield* secure.reply).toBe(timedOut)
      })
  },
  {
    variable: "SMTP_PHASE_TIMEOUTS_AUTH",
    env: { SMTP_PHASE_TIMEOUTS_AUTH: "200 millis", ...insecureAuth },
    observed: "an auth handler that never ends: AUTH gets 451 4.4.1",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(SmtpApp.empty.pipe(SmtpApp.onAuth(Username, () => Effect.never)))).port)
        expect(yield* say(client, `AUTH PLAIN ${plain("alice", "secret")}`)).toBe(timedOut)
      })
  },
  {
    variable: "SMTP_PHASE_TIMEOUTS_MAIL_FROM",
    env: { SMTP_PHASE_TIMEOUTS_MAIL_FROM: "200 millis" },
    observed: "a mail from handler that never ends: MAIL gets 451 4.4.1",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(SmtpApp.empty.pipe(SmtpApp.onMailFrom(() => Effect.never)))).port)
        expect(yield* say(client, "MAIL FROM:<a@x.test>")).toBe(timedOut)
      })
  },
  {
    variable: "SMTP_PHASE_TIMEOUTS_RCPT_TO",
    env: { SMTP_PHASE_TIMEOUTS_RCPT_TO: "200 millis" },
    observed: "a rcpt to handler that never ends: RCPT gets 451 4.4.1",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(SmtpApp.empty.pipe(SmtpApp.onRcptTo(() => Effect.never)))).port)
        expect(yield* say(client, "MAIL FROM:<a@x.test>")).toMatch(/^250 /)
        expect(yield* say(client, "RCPT TO:<b@x.test>")).toBe(timedOut)
      })
  },
  {
    variable: "SMTP_PHASE_TIMEOUTS_DATA",
    env: { SMTP_PHASE_TIMEOUTS_DATA: "200 millis" },
    observed: "a data handler that never ends: the message gets 451 4.4.1",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* connect((yield* serve(SmtpApp.empty.pipe(SmtpApp.onData(() => Effect.never)))).port)
        yield* client.reply
        yield* startMessage(client)
        yield* client.write("Subject: x\r\n\r\nbody\r\n.\r\n")
        expect(yield* client.reply).toBe(timedOut)
      })
  },
  {
    variable: "SMTP_PHASE_TIMEOUTS_CLOSE",
    env: { SMTP_PHASE_TIMEOUTS_CLOSE: "200 millis" },
    observed: "a close handler that never ends is interrupted (its finalizer runs)",
    check: (serve) =>
      Effect.gen(function*() {
        const started = yield* Deferred.make<void>()
        const interrupted = yield* Deferred.make<void>()
        const client = yield* greeted((yield* serve(SmtpApp.empty.pipe(SmtpApp.onClose(() => endless(started, interrupted))))).port)
        expect(yield* say(client, "QUIT")).toMatch(/^221 /)
        yield* Deferred.await(started)
        // With the default of 10 seconds this would outlast the case's timeout.
        yield* Deferred.await(interrupted)
      })
  },
  {
    variable: "SMTP_TLS_CERT",
    env: { SMTP_TLS_CERT: "self-signed", SMTP_HOSTNAME: "mx.env.test" },
    observed: "STARTTLS is offered and works, with a certificate made for the host name",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* startTls((yield* serve(store)).port)
        const secure = yield* tlsClient({ socket: client.socket })
        expect(secure.socket.getPeerCertificate().subject?.CN).toBe("mx.env.test")
        expect(yield* say(secure, "EHLO client.test")).toMatch(/^250[ -]/)
      })
  },
  {
    variable: "SMTP_REQUEST_CLIENT_CERTIFICATE",
    env: { SMTP_REQUEST_CLIENT_CERTIFICATE: "true", SMTP_TLS_CERT: "self-signed" },
    observed: "the client's certificate, given over STARTTLS, reaches the app on the session's tls",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const client = yield* startTls(server.port)
        const secure = yield* tlsClient({ socket: client.socket, cert: fixtureTls.cert, key: Redacted.value(fixtureTls.key) })
        expect(yield* say(secure, "EHLO client.test")).toMatch(/^250[ -]/)
        expect(yield* transaction(secure, "MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>")).toEqual(["250", "250", "354", "250"])
        const [message] = yield* server.messages
        expect(message).toBeDefined()
        const certificate = Option.flatMap(message!.session.tls, (tls) => tls.peerCertificate)
        expect(Option.map(certificate, (given) => given.subject)).toEqual(Option.some({ CN: "localhost" }))
      })
  },
  {
    variable: "SMTP_TLS_KEY",
    env: { SMTP_TLS_CERT: fixture("localhost.crt"), SMTP_TLS_KEY: fixture("localhost.key") },
    observed: "with the certificate file, STARTTLS serves that certificate: a client that trusts only it delivers",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const pinned = { ignoreTLS: false, requireTLS: true, tls: { ca: fixtureTls.cert, servername: "localhost" } }
        expect(yield* send(server.port, mail, pinned)).toMatchObject({ ok: true })
        expect(yield* server.messages).toHaveLength(1)
      })
  },
  {
    variable: "SMTP_IMPLICIT_TLS",
    env: { SMTP_IMPLICIT_TLS: "true", SMTP_TLS_CERT: "self-signed" },
    observed: "TLS from the first byte: the greeting comes over TLS",
    check: (serve) =>
      Effect.gen(function*() {
        const secure = yield* tlsClient({ host: "127.0.0.1", port: (yield* serve(store)).port })
        expect(yield* secure.reply).toMatch(/^220 /)
        expect(yield* say(secure, "EHLO client.test")).not.toMatch(/STARTTLS/)
      })
  },
  {
    variable: "SMTP_AUTH_METHODS",
    env: { SMTP_AUTH_METHODS: "LOGIN", ...insecureAuth },
    observed: "only AUTH LOGIN is offered; AUTH PLAIN gets 504 5.5.4, LOGIN logs in",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* connect((yield* serve(aliceOnly)).port)
        yield* client.reply
        expect(yield* say(client, "EHLO client.test")).toMatch(/^250[ -]AUTH LOGIN$/m)
        expect(yield* say(client, `AUTH PLAIN ${plain("alice", "secret")}`)).toMatch(/^504 5\.5\.4 /)
        expect(yield* say(client, "AUTH LOGIN")).toMatch(/^334 /)
        expect(yield* say(client, base64("alice"))).toMatch(/^334 /)
        expect(yield* say(client, base64("secret"))).toMatch(/^235 /)
      })
  },
  {
    variable: "SMTP_AUTH_REQUIRED",
    env: { SMTP_AUTH_REQUIRED: "true", ...insecureAuth },
    observed: "MAIL before AUTH gets 530 5.7.0; after AUTH it is accepted",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(aliceOnly)).port)
        expect(yield* say(client, "MAIL FROM:<a@x.test>")).toBe("530 5.7.0 Authentication required")
        expect(yield* say(client, `AUTH PLAIN ${plain("alice", "secret")}`)).toMatch(/^235 /)
        expect(yield* say(client, "MAIL FROM:<a@x.test>")).toMatch(/^250 /)
      })
  },
  {
    variable: "SMTP_ALLOW_INSECURE_AUTH",
    env: insecureAuth,
    observed: "AUTH is offered and accepted without TLS",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* connect((yield* serve(aliceOnly)).port)
        yield* client.reply
        expect(yield* say(client, "EHLO client.test")).toMatch(/^250[ -]AUTH PLAIN LOGIN$/m)
        expect(yield* say(client, `AUTH PLAIN ${plain("alice", "secret")}`)).toMatch(/^235 /)
      })
  },
  {
    variable: "SMTP_MAX_AUTH_FAILURES",
    env: { SMTP_MAX_AUTH_FAILURES: "2", SMTP_AUTH_FAILURE_DELAY: "1 millis", ...insecureAuth },
    observed: "the second failed AUTH gets 421 4.7.0 and the connection closes",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(aliceOnly)).port)
        const attempt = say(client, `AUTH PLAIN ${plain("mallory", "guess")}`)
        expect(yield* attempt).toMatch(/^535 5\.7\.8 /)
        expect(yield* attempt).toBe("421 4.7.0 Too many failed authentication attempts")
        yield* client.closed
      })
  },
  {
    variable: "SMTP_AUTH_FAILURE_DELAY",
    env: { SMTP_AUTH_FAILURE_DELAY: "10 millis", ...insecureAuth },
    observed: "on TestClock, a failed AUTH is answered before the clock has moved the default second",
    fakeClock: true,
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(aliceOnly)).port)
        yield* client.write(`AUTH PLAIN ${plain("mallory", "guess")}\r\n`)
        const answer = yield* Effect.forkChild(client.reply)
        // 10 ms of the fake clock at a time, with a real pause for the sockets: at most half the default delay.
        for (let step = 0; step < 50 && answer.pollUnsafe() === undefined; step++) {
          yield* TestClock.adjust("10 millis")
          yield* realPause(20)
        }
        expect(answer.pollUnsafe()).toBeDefined()
        expect(yield* Fiber.join(answer)).toMatch(/^535 5\.7\.8 /)
      })
  },
  {
    variable: "SMTP_BARE_LINE_ENDINGS",
    env: { SMTP_BARE_LINE_ENDINGS: "normalize" },
    observed: "bare LF and CR in a message become CRLF and it is delivered",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        expect(yield* deliverRaw(server.port, "Subject: x\r\n\r\none\ntwo\rthree\r\n")).toMatch(/^250 /)
        expect(yield* stored(server)).toEqual(["Subject: x\r\n\r\none\r\ntwo\r\nthree\r\n"])
      })
  },
  {
    variable: "SMTP_NUL_BYTES",
    env: { SMTP_NUL_BYTES: "strip" },
    observed: "NUL bytes are stripped and the message is delivered",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        expect(yield* deliverRaw(server.port, "Subject: x\r\n\r\nn\0u\0l\r\n")).toMatch(/^250 /)
        expect(yield* stored(server)).toEqual(["Subject: x\r\n\r\nnul\r\n"])
      })
  },
  {
    variable: "SMTP_MAX_LINE_LENGTH",
    env: { SMTP_MAX_LINE_LENGTH: "1000" },
    observed: "a 1001-byte line gets 550 5.6.0 and nothing is delivered",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        expect(yield* deliverRaw(server.port, `Subject: x\r\n\r\n${"y".repeat(1001)}\r\n`)).toMatch(/^550 5\.6\.0 /)
        expect(yield* server.messages).toHaveLength(0)
      })
  },
  {
    variable: "SMTP_XCLIENT_PEERS",
    env: { SMTP_XCLIENT_PEERS: "127.0.0.1" },
    observed: "XCLIENT from 127.0.0.1 is offered and hands the session to 198.51.100.7 with a new greeting",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(store)).port)
        expect(yield* say(client, "EHLO proxy.test")).toMatch(/^250[ -]XCLIENT NAME ADDR PORT PROTO HELO LOGIN$/m)
        expect(yield* say(client, "XCLIENT ADDR=198.51.100.7")).toMatch(/^220 /)
      })
  },
  {
    variable: "SMTP_XFORWARD_PEERS",
    env: { SMTP_XFORWARD_PEERS: "127.0.0.1" },
    observed: "XFORWARD from 127.0.0.1 is offered and accepted",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(store)).port)
        expect(yield* say(client, "EHLO proxy.test")).toMatch(/^250[ -]XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE$/m)
        expect(yield* say(client, "XFORWARD ADDR=198.51.100.7")).toMatch(/^250 /)
      })
  },
  {
    variable: "SMTP_REVERSE_LOOKUP",
    env: { SMTP_REVERSE_LOOKUP: "true" },
    observed: "the client's name comes from the Dns service (here one that answers in 300 ms): clientHostname is slow.example.test",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        expect(yield* send(server.port, mail)).toMatchObject({ ok: true })
        expect((yield* server.messages).map((message) => message.session.clientHostname)).toEqual(["slow.example.test"])
      })
  },
  {
    variable: "SMTP_REVERSE_LOOKUP_TIMEOUT",
    env: { SMTP_REVERSE_LOOKUP: "true", SMTP_REVERSE_LOOKUP_TIMEOUT: "100 millis" },
    observed: "a lookup slower than that leaves clientHostname the address literal, [127.0.0.1]",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        expect(yield* send(server.port, mail)).toMatchObject({ ok: true })
        expect((yield* server.messages).map((message) => message.session.clientHostname)).toEqual(["[127.0.0.1]"])
      })
  },
  {
    variable: "SMTP_EXTRA_MAIL_PARAMETERS",
    env: { SMTP_EXTRA_MAIL_PARAMETERS: "XTRACE,xprio" },
    observed: "MAIL FROM with XTRACE=1 and XPRIO is accepted and the parameters reach the app; XOTHER gets 555 5.5.4",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const client = yield* greeted(server.port)
        expect(yield* say(client, "MAIL FROM:<a@x.test> XOTHER=1")).toMatch(/^555 5\.5\.4 /)
        expect(yield* transaction(client, "MAIL FROM:<a@x.test> XTRACE=1 XPRIO", "RCPT TO:<b@x.test>")).toEqual(["250", "250", "354", "250"])
        expect((yield* server.messages).map((message) => message.envelope.mailFrom.params.extra)).toEqual([{ XTRACE: "1", XPRIO: "" }])
      })
  },
  {
    variable: "SMTP_EXTRA_RCPT_PARAMETERS",
    env: { SMTP_EXTRA_RCPT_PARAMETERS: "XALIAS" },
    observed: "RCPT TO with XALIAS=team is accepted and the parameter reaches the app; XOTHER gets 555 5.5.4",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const client = yield* greeted(server.port)
        expect(yield* say(client, "MAIL FROM:<a@x.test>")).toMatch(/^250 /)
        expect(yield* say(client, "RCPT TO:<b@x.test> XOTHER=1")).toMatch(/^555 5\.5\.4 /)
        expect(yield* say(client, "RSET")).toMatch(/^250 /)
        expect(yield* transaction(client, "MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test> XALIAS=team")).toEqual(["250", "250", "354", "250"])
        expect((yield* server.messages).map((message) => message.envelope.rcptTo.map((rcpt) => rcpt.params.extra))).toEqual([[{ XALIAS: "team" }]])
      })
  },
  {
    variable: "SMTP_MAX_JUNK_COMMANDS",
    env: { SMTP_MAX_JUNK_COMMANDS: "2" },
    observed: "the third NOOP gets 421 4.7.0 and the connection closes",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(store)).port)
        expect(yield* say(client, "NOOP")).toMatch(/^250 /)
        expect(yield* say(client, "NOOP")).toMatch(/^250 /)
        expect(yield* say(client, "NOOP")).toBe("421 4.7.0 Too many commands that do not send mail")
        yield* client.closed
      })
  },
  {
    variable: "SMTP_COMMAND_TIMEOUT",
    env: { SMTP_COMMAND_TIMEOUT: "300 millis" },
    observed: "a command line trickled in byte by byte gets 421 4.4.2 and the connection closes",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* greeted((yield* serve(store)).port)
        yield* trickle(client, "M", "40 millis", 60)
        expect(yield* client.reply).toBe("421 4.4.2 Timeout receiving the command line, closing the connection")
        yield* client.closed
      })
  },
  {
    variable: "SMTP_DATA_TIMEOUT",
    env: { SMTP_DATA_TIMEOUT: "300 millis" },
    observed: "a message trickled in line by line gets 421 4.4.2 and nothing is delivered",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const client = yield* connect(server.port)
        yield* client.reply
        yield* startMessage(client)
        yield* trickle(client, "a line\r\n", "100 millis", 30)
        expect(yield* client.reply).toBe(tooSlow)
        expect(yield* server.messages).toHaveLength(0)
      })
  },
  {
    variable: "SMTP_MIN_DATA_RATE",
    env: { SMTP_MIN_DATA_RATE: "100000", SMTP_IDLE_TIMEOUT: "300 millis" },
    observed: "a message at 4000 bytes/s (8 times the default minimum) gets 421 4.4.2 after the grace",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const client = yield* connect(server.port)
        yield* client.reply
        yield* startMessage(client)
        yield* trickle(client, `${"x".repeat(198)}\r\n`, "50 millis", 40)
        yield* client.write(".\r\n")
        expect(yield* client.reply).toBe(tooSlow)
        expect(yield* server.messages).toHaveLength(0)
      })
  },
  {
    variable: "SMTP_TLS_HANDSHAKE_TIMEOUT",
    env: { SMTP_TLS_HANDSHAKE_TIMEOUT: "300 millis", SMTP_TLS_CERT: "self-signed" },
    observed: "a TLS handshake trickled in after STARTTLS: the connection closes",
    check: (serve) =>
      Effect.gen(function*() {
        const client = yield* startTls((yield* serve(store)).port)
        // The header of a handshake record announcing 16 KB: a TLS stack waits for all of it.
        yield* client.write(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00]))
        yield* trickle(client, Buffer.from([0x01]), "50 millis", 60)
        expect(client.socket.readyState).not.toBe("open")
        yield* client.closed
      })
  },
  {
    variable: "SMTP_WRITE_STALL_TIMEOUT",
    env: { SMTP_WRITE_STALL_TIMEOUT: "300 millis", SMTP_REJECT_UNAUTHORIZED_PIPELINING: "false" },
    observed: "a client that leaves its replies unread is disconnected",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const client = yield* connect(server.port)
        yield* client.reply
        client.socket.pause()
        // Far more reply bytes than the socket buffers of both ends hold.
        client.socket.write("EHLO x.test\r\n".repeat(100_000))
        // The client reads nothing, so it learns of the close only from the server's count.
        const open = yield* server.connections.pipe(
          Effect.repeat({ until: (open) => open === 0, schedule: Schedule.spaced("50 millis"), times: 60 })
        )
        expect(open).toBe(0)
      })
  },
  {
    variable: "SMTP_REJECT_UNAUTHORIZED_PIPELINING",
    env: { SMTP_REJECT_UNAUTHORIZED_PIPELINING: "false" },
    observed: "a whole session in one write is answered command by command and delivered",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const client = yield* connect(server.port)
        yield* client.reply
        yield* client.write("EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        const replies = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => client.reply)
        expect(replies.map((reply) => reply.slice(0, 3))).toEqual(["250", "250", "250", "354", "250", "221"])
        expect(yield* server.messages).toHaveLength(1)
      })
  },
  {
    variable: "SMTP_METRICS",
    env: { SMTP_METRICS: "false" },
    observed: "an accepted message leaves smtp_messages_accepted_total as it was",
    check: (serve) =>
      Effect.gen(function*() {
        const server = yield* serve(store)
        const before = yield* Metric.value(SmtpMetrics.messagesAccepted)
        expect(yield* send(server.port, mail)).toMatchObject({ ok: true })
        expect(yield* Metric.value(SmtpMetrics.messagesAccepted)).toEqual(before)
      })
  },
  {
    variable: "SMTP_TRANSCRIPT",
    env: { SMTP_TRANSCRIPT: "true" },
    observed: "the data phase reads the session's commands and replies",
    check: (serve) =>
      Effect.gen(function*() {
        const seen: Array<ReadonlyArray<TranscriptLine>> = []
        const reading = SmtpApp.empty.pipe(
          SmtpApp.onData((next) => Effect.andThen(Effect.map(SmtpSession.transcript, (lines) => void seen.push(lines)), next)),
          deliver
        )
        const client = yield* connect((yield* serve(reading)).port)
        yield* client.reply
        for (const line of ["HELO x.test", "MAIL FROM:<a@x.test>", "RCPT TO:<b@x.test>", "DATA"]) {
          yield* client.write(`${line}\r\n`)
          yield* client.reply
        }
        yield* client.write("Subject: x\r\n\r\nhi\r\n.\r\n")
        expect(yield* client.reply).toMatch(/^250 /)
        expect(seen[0]).toEqual([
          { from: "server", line: expect.stringMatching(/^220 /) },
          { from: "client", line: "HELO x.test" },
          { from: "server", line: expect.stringMatching(/^250 /) },
          { from: "client", line: "MAIL FROM:<a@x.test>" },
          { from: "server", line: "250 2.1.0 Accepted" },
          { from: "client", line: "RCPT TO:<b@x.test>" },
          { from: "server", line: "250 2.1.5 Accepted" },
          { from: "client", line: "DATA" },
          { from: "server", line: "354 End data with <CR><LF>.<CR><LF>" }
        ])
      })
  }
]

/** Every variable at once, none at its default. */
const everything: Env = {
  SMTP_HOST: "127.0.0.3",
  SMTP_PORT: aFreePort,
  SMTP_HOSTNAME: "mx.all.test",
  SMTP_BANNER: "all from the environment",
  SMTP_MAX_MESSAGE_SIZE: "54321",
  SMTP_MAX_RECIPIENTS: "7",
  SMTP_MAX_CLIENTS: "50",
  SMTP_MAX_CONNECTIONS_PER_CLIENT: "5",
  SMTP_IDLE_TIMEOUT: "45 seconds",
  SMTP_SHUTDOWN_TIMEOUT: "3 seconds",
  SMTP_PHASE_TIMEOUTS_CONNECT: "11 seconds",
  SMTP_PHASE_TIMEOUTS_SECURE: "12 seconds",
  SMTP_PHASE_TIMEOUTS_AUTH: "13 seconds",
  SMTP_PHASE_TIMEOUTS_MAIL_FROM: "14 seconds",
  SMTP_PHASE_TIMEOUTS_RCPT_TO: "15 seconds",
  SMTP_PHASE_TIMEOUTS_DATA: "16 seconds",
  SMTP_PHASE_TIMEOUTS_CLOSE: "17 seconds",
  SMTP_TLS_CERT: fixture("localhost.crt"),
  SMTP_TLS_KEY: fixture("localhost.key"),
  SMTP_IMPLICIT_TLS: "true",
  SMTP_AUTH_METHODS: "LOGIN",
  SMTP_AUTH_REQUIRED: "true",
  SMTP_ALLOW_INSECURE_AUTH: "true",
  SMTP_MAX_AUTH_FAILURES: "5",
  SMTP_AUTH_FAILURE_DELAY: "250 millis",
  SMTP_BARE_LINE_ENDINGS: "normalize",
  SMTP_NUL_BYTES: "strip",
  SMTP_MAX_LINE_LENGTH: "2000",
  SMTP_REQUEST_CLIENT_CERTIFICATE: "true",
  SMTP_XCLIENT_PEERS: "192.0.2.10",
  SMTP_XFORWARD_PEERS: "192.0.2.11",
  SMTP_REVERSE_LOOKUP: "true",
  SMTP_REVERSE_LOOKUP_TIMEOUT: "9 seconds",
  SMTP_EXTRA_MAIL_PARAMETERS: "XTRACE",
  SMTP_EXTRA_RCPT_PARAMETERS: "XALIAS",
  SMTP_MAX_JUNK_COMMANDS: "9",
  SMTP_COMMAND_TIMEOUT: "20 seconds",
  SMTP_DATA_TIMEOUT: "2 minutes",
  SMTP_MIN_DATA_RATE: "50",
  SMTP_TLS_HANDSHAKE_TIMEOUT: "7 seconds",
  SMTP_WRITE_STALL_TIMEOUT: "25 seconds",
  SMTP_REJECT_UNAUTHORIZED_PIPELINING: "false",
  SMTP_METRICS: "false",
  SMTP_TRANSCRIPT: "true"
}

// ---------------------------------------------------------------------------
// Apps and helpers.
// ---------------------------------------------------------------------------

const mail = { from: "a@x.test", to: "b@x.test", text: "hello" }

/** Stores every message in memory. */
const store = SmtpApp.empty.pipe(deliver)

/** Lets alice in with "secret", nobody else; stores every message. */
const aliceOnly = SmtpApp.empty.pipe(
  SmtpApp.onAuth(Username, (next) =>
    Effect.gen(function*() {
      const { password, username } = yield* Credentials
      if (username === "alice" && Redacted.value(password) === "secret") return username
      return yield* next
    })
  ),
  deliver
)

/** A handler that never ends: it says when it starts and when it is interrupted. */
const endless = (started: Deferred.Deferred<void>, interrupted: Deferred.Deferred<void>) =>
  Deferred.succeed(started, undefined).pipe(
    Effect.andThen(Effect.never),
    Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
  )

const base64 = (text: string) => Buffer.from(text).toString("base64")
const plain = (username: string, password: string) => base64(`\0${username}\0${password}`)

/** `env` with a free port where it asks for one. */
const resolve = (env: Env) =>
  Effect.forEach(Object.entries(env), ([name, value]) =>
    value === aFreePort
      ? Effect.map(freePort(env["SMTP_HOST"] ?? "127.0.0.1"), (port) => [name, String(port)] as const)
      : Effect.succeed([name, value] as const)).pipe(Effect.map(Object.fromEntries<string>))

/** The servers' resolver (used with SMTP_REVERSE_LOOKUP): every address is slow.example.test, after 300 ms. */
const slowDns = Layer.succeed(Dns.Dns, Dns.make({
  lookup: () => Effect.succeed([]),
  reverse: () => Effect.as(Effect.sleep("300 millis"), ["slow.example.test"])
}))

/** A port nothing listened on a moment ago: listens on port 0 and closes. */
const freePort = (host: string) =>
  Effect.callback<number>((resume) => {
    const probe = net.createServer()
    probe.listen(0, host, () => {
      const { port } = probe.address() as net.AddressInfo
      probe.close(() => resume(Effect.succeed(port)))
    })
  })

/**
 * Serves `app` with every setting read from `env` through Effect's Config, in
 * the current scope; an in-memory store takes the messages.
 */
const serveFromEnv = <Cs, Ts, U extends UserKey>(env: Env, app: SmtpApp.SmtpApp<Cs, Ts, MessageStore, U>) =>
  Effect.gen(function*() {
    const settings = SmtpServerConfig.layerConfig().pipe(
      Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { SMTP_HOST: "127.0.0.1", SMTP_PORT: "0", ...env } })))
    )
    const context = yield* Layer.build(
      SmtpServer.layer(app).pipe(
        Layer.provideMerge(Layer.fresh(MessageStore.layerMemory)),
        Layer.provideMerge(settings),
        Layer.provide(slowDns)
      )
    )
    const server = Context.get(context, SmtpServer)
    return {
      address: server.address,
      port: server.address.port,
      connections: server.connections,
      messages: Context.get(context, MemoryMessages).all,
      settings: Context.get(context, SmtpServerConfig)
    }
  })

/** A client that reads replies: plaintext (`RawClient`) or over TLS. */
interface Talker {
  readonly write: (data: string | Buffer) => Effect.Effect<void>
  readonly reply: Effect.Effect<string>
}

const say = (client: Talker, line: string) => Effect.andThen(client.write(`${line}\r\n`), client.reply)

/** `mail`, `rcpt`, DATA and a small message, one line at a time: the code of each reply. */
const transaction = (client: Talker, mail: string, rcpt: string) =>
  Effect.forEach([mail, rcpt, "DATA", "Subject: x\r\n\r\nbody\r\n."], (line) => Effect.map(say(client, line), (reply) => reply.slice(0, 3)))

/** Connected, greeted, EHLO said. */
const greeted = (port: number) =>
  Effect.gen(function*() {
    const client = yield* connect(port)
    expect(yield* client.reply).toMatch(/^220 /)
    expect(yield* say(client, "EHLO client.test")).toMatch(/^250[ -]/)
    return client
  })

/** A plaintext client that has said STARTTLS and got its 220: the handshake is its next move. */
const startTls = (port: number) =>
  Effect.gen(function*() {
    const client = yield* greeted(port)
    expect(yield* say(client, "STARTTLS")).toMatch(/^220 /)
    return client
  })

/** Writes `piece` every `interval` until the server closes the connection, at most `limit` times. */
const trickle = (client: RawClient, piece: string | Buffer, interval: Duration.Input, limit: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < limit && client.socket.readyState === "open"; i++) {
      yield* client.write(piece)
      yield* Effect.sleep(interval)
    }
  })

/** A pause on the real clock, whatever Clock the test runs on. */
const realPause = (millis: number) => Effect.promise(() => new Promise((done) => setTimeout(done, millis)))

/** One message over a raw socket, `body` as it is (no dot-stuffing): the reply to it. */
const deliverRaw = (port: number, body: string) =>
  Effect.gen(function*() {
    const client = yield* connect(port)
    yield* client.reply
    yield* startMessage(client)
    yield* client.write(`${body}.\r\n`)
    return yield* client.reply
  })

const stored = (server: { readonly messages: MemoryMessages["Service"]["all"] }) =>
  Effect.map(server.messages, (messages) => messages.map((message) => Buffer.from(message.bytes).toString("latin1")))

/** A TLS client: over a socket that has said STARTTLS, or straight to a port (implicit TLS). */
const tlsClient = (options: tls.ConnectionOptions) =>
  Effect.acquireRelease(
    Effect.callback<Talker & { readonly socket: tls.TLSSocket }>((resume) => {
      const socket = tls.connect({ rejectUnauthorized: false, ...options })
      socket.on("error", (error) => resume(Effect.die(error)))
      const reply = replyReader(socket)
      const write = writer(socket)
      socket.once("secureConnect", () => resume(Effect.succeed({ socket, reply, write })))
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )

/** The value at a setting's path ("phaseTimeouts.data"). */
const valueAt = (settings: SmtpServerSettings, setting: string): unknown =>
  setting.split(".").reduce<unknown>((value, key) => Reflect.get(Object(value), key), settings)

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

/**
 * Shorter than every default a case would otherwise wait out (the shortest is the shutdown timeout, 8 seconds): a
 * variable the server ignores fails its case by this timeout.
 */
const caseTimeout = 5_000

describe("each environment variable, on a running server", () => {
  for (const { check, env, fakeClock, observed, variable } of cases) {
    const test = fakeClock === true ? it.effect : it.live
    const value = (env[variable] ?? "").replace(/^.*\/test\/fixtures\//, "test/fixtures/")
    test(`${variable}=${value}: ${observed}`, () =>
      Effect.gen(function*() {
        const resolved = yield* resolve(env)
        yield* check((app) => serveFromEnv(resolved, app), resolved)
      }), caseTimeout)
  }
})

describe("the variables as a whole", () => {
  it("every documented variable has a case that sets it", () => {
    const documented = documentation("SMTP").map((row) => row.variable)
    expect(cases.map((c) => c.variable).sort()).toEqual([...documented].sort())
    for (const c of cases) expect(c.env).toHaveProperty(c.variable)
    expect(Object.keys(everything).sort()).toEqual([...new Set(documented)].sort())
  })

  it.live("all variables at once reach the running server's SmtpServerConfig, none at its default", () =>
    Effect.gen(function*() {
      const env = yield* resolve(everything)
      const server = yield* serveFromEnv(env, aliceOnly)
      const defaults = yield* makeSettings()
      const { tls: certificate, ...settings } = server.settings
      expect(settings).toEqual({
        host: "127.0.0.3",
        port: Number(env["SMTP_PORT"]),
        hostname: "mx.all.test",
        banner: Option.some("all from the environment"),
        maxMessageSize: 54321,
        maxRecipients: 7,
        maxClients: 50,
        maxConnectionsPerClient: 5,
        idleTimeout: Duration.seconds(45),
        shutdownTimeout: Duration.seconds(3),
        phaseTimeouts: {
          connect: Duration.seconds(11),
          secure: Duration.seconds(12),
          auth: Duration.seconds(13),
          mailFrom: Duration.seconds(14),
          rcptTo: Duration.seconds(15),
          data: Duration.seconds(16),
          close: Duration.seconds(17)
        },
        implicitTls: true,
        authMethods: ["LOGIN"],
        authRequired: true,
        allowInsecureAuth: true,
        maxAuthFailures: 5,
        authFailureDelay: Duration.millis(250),
        bareLineEndings: "normalize",
        nulBytes: "strip",
        maxLineLength: 2000,
        requestClientCertificate: true,
        xclientPeers: ["192.0.2.10"],
        xforwardPeers: ["192.0.2.11"],
        reverseLookup: true,
        reverseLookupTimeout: Duration.seconds(9),
        extraMailParameters: ["XTRACE"],
        extraRcptParameters: ["XALIAS"],
        maxJunkCommands: 9,
        commandTimeout: Duration.seconds(20),
        dataTimeout: Duration.minutes(2),
        minDataRate: 50,
        tlsHandshakeTimeout: Duration.seconds(7),
        writeStallTimeout: Duration.seconds(25),
        rejectUnauthorizedPipelining: false,
        metrics: false,
        transcript: true
      })
      expect(Option.map(certificate, (c) => [c.cert, Redacted.value(c.key)])).toEqual(
        Option.some([fixtureTls.cert, Redacted.value(fixtureTls.key)])
      )
      for (const row of documentation("SMTP")) {
        expect(valueAt(server.settings, row.setting), row.variable).not.toEqual(valueAt(defaults, row.setting))
      }
      // And the server runs with them: implicit TLS with the file's certificate, on 127.0.0.3, with the greeting's text.
      expect(server.address).toMatchObject({ address: "127.0.0.3", port: Number(env["SMTP_PORT"]) })
      const secure = yield* tlsClient({ host: "127.0.0.3", port: server.port, ca: fixtureTls.cert, servername: "localhost", rejectUnauthorized: true })
      expect(yield* secure.reply).toBe("220 mx.all.test ESMTP all from the environment")
    }))
})
