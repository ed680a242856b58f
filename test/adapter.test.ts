/**
 * The adapter's guarantees over real sockets: answers never stall pipelined
 * input, DATA is always drained, state lives exactly as long as its
 * connection or transaction, disconnects interrupt handlers, and shutdown is
 * graceful.
 */
import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Context, Deferred, Duration, Effect, Exit, Fiber, Layer, Ref, Scope, Stream } from "effect"
import { SMTPServer } from "smtp-server"
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js"
import { MailFrom, Message, SmtpApp, SmtpConfigError, SmtpServer, SmtpServerConfig, SmtpServerVersionError, SmtpSession } from "../src/index.ts"
import * as SelfSignedCertificate from "../src/internal/SelfSignedCertificate.ts"
import type { Options } from "../src/layers/SmtpServerConfig.ts"
import { connect, type RawClient, send, serve } from "./support.ts"

/** Reads `count` replies. */
const replies = (client: { reply: Effect.Effect<string> }, count: number) =>
  Effect.forEach(Array.from({ length: count }), () => client.reply)

/** MAIL, RCPT and DATA pipelined, then after their replies the message: the three replies. */
const beginMessage = (client: RawClient, from: string, to: string, body: string) =>
  Effect.gen(function*() {
    yield* client.write(`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nDATA\r\n`)
    const envelope = yield* replies(client, 3)
    yield* client.write(`${body}\r\n.\r\n`)
    return envelope
  })

/** One whole transaction: its four replies. */
const transaction = (client: RawClient, from: string, to: string, body: string) =>
  Effect.map(Effect.zip(beginMessage(client, from, to, body), client.reply), ([envelope, last]) => [...envelope, last])

const environment = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnv({ env }))

const greeted = (port: number) =>
  Effect.gen(function*() {
    const client = yield* connect(port)
    yield* client.reply
    yield* client.write("EHLO client.test\r\n")
    yield* client.reply
    return client
  })

class Counter extends Context.Service<Counter, Ref.Ref<number>>()("test/Counter") {}

describe("adapter", () => {
  it.live("pipelined transactions in one write are all answered (no stall on immediate answers)", () =>
    Effect.gen(function*() {
      // Handlers that finish at once: answering them synchronously stalls smtp-server 3.21 when the next
      // transaction is already buffered.
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom((next) => next),
        SmtpApp.onRcptTo((next) => next),
        SmtpApp.onData(() => Effect.void)
      )
      const server = yield* serve(app)
      const client = yield* greeted(server.address.port)
      const all = yield* Effect.gen(function*() {
        yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        const first = yield* replies(client, 3)
        // A message, then the next transaction up to its DATA in the same write, as RFC 2920 allows.
        yield* client.write("Subject: 1\r\n\r\none\r\n.\r\nMAIL FROM:<c@x.test>\r\nRCPT TO:<d@x.test>\r\nDATA\r\n")
        const second = yield* replies(client, 4)
        yield* client.write("Subject: 2\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
        return [...first, ...second, ...(yield* replies(client, 2))]
      }).pipe(Effect.timeout("5 seconds"))
      expect(all.map((line) => line.slice(0, 3))).toEqual(["250", "250", "354", "250", "250", "250", "354", "250", "221"])
    }))

  it.live("DATA is drained when the handler ignores it or fails early; the connection sends its next message", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onData(() =>
          Effect.gen(function*() {
            const message = yield* Message
            // Read one chunk, then walk away (reject) without reading the rest.
            yield* Stream.runHead(message.stream)
          })
        )
      )
      const server = yield* serve(app)
      const client = yield* greeted(server.address.port)
      const big = "x".repeat(998) + "\r\n"
      const codes = (all: ReadonlyArray<string>) => all.map((l) => l.slice(0, 3))
      expect(codes(yield* transaction(client, "a@x.test", "b@x.test", big.repeat(2000)))).toEqual(["250", "250", "354", "250"])
      expect(codes(yield* transaction(client, "a@x.test", "b@x.test", "short"))).toEqual(["250", "250", "354", "250"])
    }))

  it.live("a message over the size limit gets 552 5.3.4 after draining, and the next one is accepted", () =>
    Effect.gen(function*() {
      const sizes = yield* Ref.make<Array<number>>([])
      const app = SmtpApp.empty.pipe(
        SmtpApp.onData(() =>
          Effect.gen(function*() {
            const message = yield* Message
            const bytes = yield* Stream.mkUint8Array(message.stream)
            yield* Ref.update(sizes, (all) => [...all, bytes.length])
          })
        )
      )
      const server = yield* serve(app, { maxMessageSize: 10_000 })
      const client = yield* greeted(server.address.port)
      const tooBig = yield* transaction(client, "a@x.test", "b@x.test", "y".repeat(500) + "\r\n" + "z".repeat(20_000))
      expect(tooBig[3]).toMatch(/^552 5\.3\.4 /)
      expect((yield* transaction(client, "a@x.test", "b@x.test", "small"))[3]).toMatch(/^250 /)
      expect(yield* Ref.get(sizes)).toEqual([7])
    }))

  it.live("one size setting drives the SIZE advertisement; the recipient limit answers 452 4.5.3", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(SmtpApp.onRcptTo((next) => next))
      const server = yield* serve(app, { maxMessageSize: 12_345, maxRecipients: 2 })
      const client = yield* connect(server.address.port)
      yield* client.reply
      yield* client.write("EHLO client.test\r\n")
      const ehlo = yield* client.reply
      expect(ehlo).toMatch(/^250[ -]SIZE 12345$/m)
      expect(ehlo).toMatch(/^250[ -]ENHANCEDSTATUSCODES$/m)
      yield* client.write("MAIL FROM:<a@x.test> SIZE=20000\r\n")
      expect(yield* client.reply).toMatch(/^552 5\.3\.4 /)
      yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nRCPT TO:<d@x.test>\r\n")
      const answers = yield* replies(client, 4)
      expect(answers.slice(0, 3).map((l) => l.slice(0, 3))).toEqual(["250", "250", "250"])
      expect(answers[3]).toMatch(/^452 4\.5\.3 /)
    }))

  it.live("connection state is built per connection and released when it closes; transaction state per transaction", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<string>>([])
      const note = (line: string) => Ref.update(log, (all) => [...all, line])
      const connectionState = Layer.effect(
        Counter,
        Effect.acquireRelease(
          Effect.flatMap(SmtpSession.current, (s) => Effect.as(note(`open ${s.remotePort > 0}`), Ref.makeUnsafe(0))),
          () => note("connection released")
        )
      )
      class TxLog extends Context.Service<TxLog, { readonly id: number }>()("test/TxLog") {}
      let next = 0
      const transactionState = Layer.effect(
        TxLog,
        Effect.acquireRelease(Effect.sync(() => ({ id: ++next })), (tx) => note(`tx ${tx.id} released`))
      )
      const app = SmtpApp.empty.pipe(
        SmtpApp.withConnectionState(connectionState),
        SmtpApp.withTransactionState(transactionState),
        SmtpApp.onMailFrom((next) =>
          Effect.gen(function*() {
            const counter = yield* Counter
            const tx = yield* TxLog
            const n = yield* Ref.updateAndGet(counter, (k) => k + 1)
            yield* note(`mail ${n} in tx ${tx.id}`)
            yield* next
          })
        )
      )
      const server = yield* serve(app)
      const client = yield* greeted(server.address.port)
      yield* transaction(client, "a@x.test", "b@x.test", "one")
      yield* client.write("MAIL FROM:<a@x.test>\r\nRSET\r\nMAIL FROM:<a@x.test>\r\nQUIT\r\n")
      yield* replies(client, 4)
      yield* client.closed
      yield* Effect.sleep("100 millis")
      expect(yield* Ref.get(log)).toEqual([
        "open true",
        "mail 1 in tx 1",
        "tx 1 released",
        "mail 2 in tx 2",
        "tx 2 released",
        "mail 3 in tx 3",
        "tx 3 released",
        "connection released"
      ])
    }))

  it.live("a client that disconnects interrupts its running handler, whose finalizers run", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const finalized = yield* Deferred.make<boolean>()
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom(() =>
          Deferred.succeed(started, undefined).pipe(
            Effect.andThen(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(finalized, true))
          )
        )
      )
      const server = yield* serve(app)
      const client = yield* greeted(server.address.port)
      yield* client.write("MAIL FROM:<a@x.test>\r\n")
      yield* Deferred.await(started)
      client.socket.destroy()
      expect(yield* Deferred.await(finalized).pipe(Effect.timeout("5 seconds"))).toBe(true)
      const another = yield* greeted(server.address.port)
      yield* another.write("NOOP\r\n")
      expect(yield* another.reply).toMatch(/^250 /)
    }))

  it.live("a client reset in the middle of DATA does not end the process; the server keeps serving", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onData(() => Message.use((m) => Stream.runDrain(m.stream)))
      )
      const server = yield* serve(app)
      const client = yield* greeted(server.address.port)
      yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
      yield* replies(client, 3)
      yield* client.write("Subject: half\r\n\r\n" + "z".repeat(50_000))
      client.socket.resetAndDestroy()
      yield* Effect.sleep("100 millis")
      expect(yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: "after" })).toMatchObject({ ok: true })
    }))

  it.live("shutdown: a message in flight completes, idle and later commands get 421 4.3.2", () =>
    Effect.gen(function*() {
      const inData = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const stored = yield* Ref.make(0)
      const app = SmtpApp.empty.pipe(
        SmtpApp.onData(() =>
          Effect.gen(function*() {
            const message = yield* Message
            yield* Stream.runDrain(message.stream)
            yield* Deferred.succeed(inData, undefined)
            yield* Deferred.await(release)
            yield* Ref.update(stored, (n) => n + 1)
          })
        )
      )
      const scope = yield* Scope.make()
      const server = yield* serve(app, { shutdownTimeout: "5 seconds" }).pipe(Scope.provide(scope))
      const busy = yield* greeted(server.address.port)
      const idle = yield* greeted(server.address.port)
      yield* beginMessage(busy, "a@x.test", "b@x.test", "in flight")
      yield* Deferred.await(inData)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      expect(yield* idle.reply).toBe("421 4.3.2 Service shutting down, try again later")
      yield* Deferred.succeed(release, undefined)
      expect(yield* busy.reply).toMatch(/^250 /)
      expect(yield* Ref.get(stored)).toBe(1)
      yield* busy.write("MAIL FROM:<late@x.test>\r\n")
      expect(yield* busy.reply).toBe("421 4.3.2 Service shutting down, try again later")
      yield* Fiber.join(closing)
      const refused = yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: "x" })
      expect(refused.ok).toBe(false)
    }))

  it.live("a middleware that takes a phase input away around next cannot starve the one after it", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom((next) => Effect.updateContext(next, (context: Context.Context<never>) => Context.omit(MailFrom)(context))),
        SmtpApp.onMailFrom((next) => Effect.andThen(MailFrom, next))
      )
      const server = yield* serve(app)
      const client = yield* greeted(server.address.port)
      yield* client.write("MAIL FROM:<a@x.test>\r\n")
      expect(yield* client.reply).toMatch(/^250 /)
    }))

  it.live("a middleware that replaces the whole context around next gets 451: nothing says which run it is", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom((next) => Effect.updateContext(next, (_: Context.Context<never>) => Context.empty())),
        SmtpApp.onMailFrom((next) => next)
      )
      const server = yield* serve(app)
      const client = yield* greeted(server.address.port)
      yield* client.write("MAIL FROM:<a@x.test>\r\n")
      expect(yield* client.reply).toBe("451 4.3.0 Internal server error, try again later")
    }))

  it.live("the close phase runs for every greeted connection, not for a client gone before its greeting", () =>
    Effect.gen(function*() {
      const closes = yield* Ref.make(0)
      const server = yield* serve(SmtpApp.empty.pipe(SmtpApp.onClose((next) => Effect.andThen(Ref.update(closes, (n) => n + 1), next))))
      // Port probes: connected and gone within smtp-server's wait for clients that talk first.
      for (let i = 0; i < 3; i++) {
        const probe = yield* connect(server.address.port)
        probe.socket.destroy()
        yield* probe.closed
      }
      const client = yield* greeted(server.address.port)
      yield* client.write("QUIT\r\n")
      expect(yield* client.reply).toMatch(/^221 /)
      yield* Effect.sleep("300 millis")
      expect(yield* Ref.get(closes)).toBe(1)
    }))

  it.live("shutdown between the 354 and the first byte of the message: the message is still received and stored", () =>
    Effect.gen(function*() {
      // The longest shutdownTimeout too: smtp-server's own timer after it must not overflow into 1 ms.
      for (const shutdownTimeout of ["5 seconds", "2147483647 millis"]) {
        const stored = yield* Ref.make(0)
        const app = SmtpApp.empty.pipe(
          SmtpApp.onData(() => Message.use((message) => Stream.runDrain(message.stream)).pipe(Effect.andThen(Ref.update(stored, (n) => n + 1))))
        )
        const scope = yield* Scope.make()
        const server = yield* serve(app, { shutdownTimeout }).pipe(Scope.provide(scope))
        const client = yield* greeted(server.address.port)
        yield* client.write("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        expect((yield* replies(client, 3))[2]).toMatch(/^354 /)
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
        yield* Effect.sleep("200 millis")
        yield* client.write("Subject: late\r\n\r\nbody\r\n.\r\n")
        expect(yield* client.reply, shutdownTimeout).toMatch(/^250 /)
        yield* Fiber.join(closing)
        expect(yield* Ref.get(stored)).toBe(1)
      }
    }))

  it.live("shutdown timeout: a handler still running is interrupted and the client gets 421 4.3.2", () =>
    Effect.gen(function*() {
      const interrupted = yield* Deferred.make<void>()
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom(() => Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))))
      )
      const scope = yield* Scope.make()
      const server = yield* serve(app, { shutdownTimeout: "100 millis" }).pipe(Scope.provide(scope))
      const client = yield* greeted(server.address.port)
      yield* client.write("MAIL FROM:<a@x.test>\r\n")
      yield* Effect.sleep("50 millis")
      yield* Scope.close(scope, Exit.void)
      yield* Deferred.await(interrupted)
      expect(yield* client.reply).toMatch(/^421 4\.3\.2 /)
    }))
})

describe("configuration", () => {
  const build = (options: Options) =>
    Layer.build(SmtpServer.layer(SmtpApp.empty).pipe(Layer.provide(SmtpServerConfig.layer(options)))).pipe(
      Effect.flip,
      Effect.map((error) => error.message)
    )

  it.live("contradictions fail the Layer with an error that names them", () =>
    Effect.gen(function*() {
      expect(yield* build({ port: 0, implicitTls: true })).toBe("implicitTls: needs a tls certificate, got true")
      expect(yield* build({ port: 0, authRequired: true })).toMatch(/^authRequired: AUTH can never be offered/)
      expect(yield* build({ port: 0, authRequired: true, allowInsecureAuth: true })).toMatch(/no auth middleware/)
      expect(yield* build({ port: 70000 })).toMatch(/port/)
      const fromOutside: string = JSON.parse(`"soon"`)
      expect(yield* build({ port: 0, phaseTimeouts: { data: fromOutside } })).toBe(`phaseTimeouts.data: Expected a valid Duration string, got "soon"`)
    }))

  it.live("settings come from the environment through Config", () =>
    Effect.gen(function*() {
      const settings = yield* Effect.provide(
        SmtpServerConfig.use(Effect.succeed),
        SmtpServerConfig.layerConfig().pipe(
          Layer.provide(environment({ SMTP_PORT: "2600", SMTP_MAX_MESSAGE_SIZE: "1000", SMTP_IDLE_TIMEOUT: "30 seconds" }))
        )
      )
      expect(settings.port).toBe(2600)
      expect(settings.maxMessageSize).toBe(1000)
      expect(settings.idleTimeout).toEqual(Duration.seconds(30))
      const anyPort = yield* Effect.provide(
        SmtpServerConfig.use(Effect.succeed),
        SmtpServerConfig.layerConfig().pipe(Layer.provide(environment({ SMTP_PORT: "0" })))
      )
      expect(anyPort.port).toBe(0)
      const outOfRange = yield* Layer.build(SmtpServerConfig.layerConfig().pipe(Layer.provide(environment({ SMTP_PORT: "70000" })))).pipe(Effect.flip)
      expect(outOfRange.message).toBe("SMTP_PORT: Expected a value between 0 and 65535")
    }))

  it.live("TLS: a certificate that does not match its key fails the Layer; \"self-signed\" serves STARTTLS", () =>
    Effect.gen(function*() {
      const one = yield* SelfSignedCertificate.make("one.test")
      const other = yield* SelfSignedCertificate.make("other.test")
      expect(yield* build({ port: 0, tls: { cert: one.cert, key: other.key } })).toMatch(/^tls: Expected a certificate and its matching key/)
      const server = yield* serve(SmtpApp.empty.pipe(SmtpApp.onRcptTo((next) => next)), { tls: "self-signed" })
      const overTls = { requireTLS: true, ignoreTLS: false, tls: { rejectUnauthorized: false } }
      expect(yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: "x" }, overTls)).toMatchObject({ ok: true })
    }))

  it.live("an smtp-server without an internal the engine overrides stops the Layer, naming its version and what is missing", () =>
    Effect.gen(function*() {
      const onCommand = Object.getOwnPropertyDescriptor(SMTPConnection.prototype, "_onCommand")
      const upgrade = Object.getOwnPropertyDescriptor(SMTPServer.prototype, "_upgrade")
      const restore = Effect.sync(() => {
        if (onCommand !== undefined) Object.defineProperty(SMTPConnection.prototype, "_onCommand", onCommand)
        if (upgrade !== undefined) Object.defineProperty(SMTPServer.prototype, "_upgrade", upgrade)
      })
      const error = yield* Effect.gen(function*() {
        Reflect.deleteProperty(SMTPConnection.prototype, "_onCommand")
        Reflect.deleteProperty(SMTPServer.prototype, "_upgrade")
        return yield* Layer.build(SmtpServer.layer(SmtpApp.empty).pipe(Layer.provide(SmtpServerConfig.layer({ port: 0 })))).pipe(Effect.flip)
      }).pipe(Effect.ensuring(restore))
      expect(error).toBeInstanceOf(SmtpServerVersionError)
      expect(error.message).toBe(
        "smtp-server 3.21.6 lacks SMTPServer._upgrade, SMTPConnection._onCommand: effect-smtp is built against smtp-server ~3.21"
      )
      // Restored, the same Layer builds.
      yield* Layer.build(SmtpServer.layer(SmtpApp.empty).pipe(Layer.provide(SmtpServerConfig.layer({ port: 0 }))))
    }))

  it.live("layerConfig: a setting given in code is not read from its variable at all, and a key never reaches a message", () =>
    Effect.gen(function*() {
      // Kubernetes puts SMTP_PORT=tcp://… into every pod of a namespace with a Service named smtp.
      const settings = yield* Effect.provide(
        SmtpServerConfig.read({ port: Config.Port("PORT"), phaseTimeouts: { data: Config.Duration("DATA_TIMEOUT") } }),
        ConfigProvider.layer(ConfigProvider.fromEnv({
          env: { PORT: "2601", SMTP_PORT: "tcp://10.0.0.1:25", DATA_TIMEOUT: "2 minutes", SMTP_PHASE_TIMEOUTS_DATA: "soon" }
        }))
      )
      expect(settings.port).toBe(2601)
      expect(settings.phaseTimeouts.data).toEqual(Duration.minutes(2))
      const options: Options = {}
      Reflect.set(options, "tls", { cert: "-----BEGIN CERTIFICATE-----", key: "-----BEGIN PRIVATE KEY-----secret" })
      const message = (yield* Effect.flip(SmtpServerConfig.make(options))).message
      expect(message).toMatch(/^tls\.key: /)
      expect(message).not.toContain("secret")
    }))

  it.live("settings in code: undefined is not given; a timeout must be finite and at most 24 days", () =>
    Effect.gen(function*() {
      // As a caller compiled without exactOptionalPropertyTypes may pass them.
      const options: Options = { phaseTimeouts: {} }
      for (const key of ["port", "banner", "tls"]) Reflect.set(options, key, undefined)
      Reflect.set(options.phaseTimeouts ?? {}, "data", undefined)
      const settings = yield* SmtpServerConfig.make(options)
      expect(settings.port).toBe(2525)
      expect(settings.phaseTimeouts.data).toEqual(Duration.minutes(5))
      expect((yield* Effect.flip(SmtpServerConfig.make({ idleTimeout: Infinity }))).message).toBe(
        "idleTimeout: Expected a duration of at most 24 days, got Infinity"
      )
      expect((yield* Effect.flip(SmtpServerConfig.make({ shutdownTimeout: Duration.days(30) }))).message).toMatch(/^shutdownTimeout: Expected a duration of at most 24 days/)
    }))

  it.live("a config error is an SmtpConfigError", () =>
    Effect.gen(function*() {
      const error = yield* Layer.build(SmtpServerConfig.layer({ maxRecipients: 0 })).pipe(Effect.flip)
      expect(error).toBeInstanceOf(SmtpConfigError)
    }))
})

