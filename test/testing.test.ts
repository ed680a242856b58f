/**
 * The test kit: an app served in memory through the real engine, driven by
 * the kit's client, with mock layers and the fake clock. Nothing here may
 * listen: `net.Server.prototype.listen` throws for the whole file, and a
 * control test shows that the guard does catch a real server.
 */
import { afterAll, afterEach, describe, expect, it, layer, vi } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Option, Redacted, Ref } from "effect"
import { TestClock } from "effect/testing"
import * as net from "node:net"
import {
  Credentials,
  deliver,
  MailFrom,
  MessageStore,
  RcptTo,
  Reject,
  SmtpApp,
  SmtpServer,
  SmtpServerConfig,
  SmtpSession,
  type SmtpConfigError,
  type SmtpServerVersionError,
  Username
} from "../src/index.ts"
import type { Options } from "../src/layers/SmtpServerConfig.ts"
import { SmtpTest, SmtpTestError } from "../src/testing/index.ts"
import { fixtureTls } from "./support.ts"

const listen = vi.spyOn(net.Server.prototype, "listen").mockImplementation(() => {
  throw new Error("a port was opened")
})
afterEach(() => expect(listen).not.toHaveBeenCalled())
afterAll(() => listen.mockRestore())

const localPart = (address: { readonly mailbox: { readonly localPart: string } }) => address.mailbox.localPart

/** Rejects what its recipients' local parts ask for; `slow` never answers, `crash` is a bug. */
const recipients = SmtpApp.onRcptTo((next) =>
  Effect.gen(function*() {
    const recipient = localPart(yield* RcptTo)
    if (recipient === "nobody") return yield* Reject.permanent(550, "5.1.1", "No such user")
    if (recipient === "slow") return yield* Effect.never
    if (recipient === "crash") return yield* Effect.die(new Error("bug"))
    return yield* next
  })
)

const message = "Subject: dots\n\n.leading dot\n..two dots\n.\nlast line\n"

/** A connection whose `RCPT TO:<slow@example.com>` is with the app, in a forked fiber. */
const slowRecipient = (options: Options) =>
  Effect.gen(function*() {
    const client = yield* (yield* SmtpTest.make(SmtpApp.empty.pipe(recipients), options)).connect()
    yield* client.ehlo("client.test")
    yield* client.mailFrom("alice@example.com")
    return { client, slow: yield* Effect.forkChild(client.rcptTo("slow@example.com")) }
  })

describe("SmtpTest", () => {
  it.effect("the port guard catches a server that listens", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Layer.build(SmtpServer.layer(SmtpApp.empty).pipe(Layer.provide(SmtpServerConfig.layer({ port: 0 }))))
      )
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("a port was opened")
      expect(listen).toHaveBeenCalledTimes(1)
      listen.mockClear()
    }))

  it.effect("greets from the address the test chose, through the app's connect phase", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(SmtpApp.onConnect((next) =>
        Effect.gen(function*() {
          const session = yield* SmtpSession.current
          if (session.remoteAddress.startsWith("203.0.113.")) {
            return yield* Reject.permanent(554, "5.7.1", "Access denied")
          }
          return yield* next
        })
      ))
      const server = yield* SmtpTest.make(app, { hostname: "mx.test" })
      const refused = yield* server.connect({ remoteAddress: "203.0.113.9", remotePort: 40025 })
      expect(refused.greeting).toEqual({ code: 554, enhanced: "5.7.1", lines: ["Access denied"] })
      expect(yield* refused.session).toMatchObject({ remoteAddress: "203.0.113.9", remotePort: 40025 })
      const welcome = yield* server.connect()
      expect(welcome.greeting).toEqual({ code: 220, enhanced: undefined, lines: ["mx.test ESMTP"] })
      const ehlo = yield* welcome.ehlo("client.test")
      expect(ehlo.code).toBe(250)
      expect(ehlo.lines).toContain("PIPELINING")
      expect(ehlo.lines[0]).toBe("mx.test Nice to meet you, [192.0.2.1]")
    }))

  it.effect("lets the engine refuse a connection before any session", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(SmtpApp.empty, { maxConnectionsPerClient: 1 })
      const first = yield* server.connect()
      const second = yield* server.connect()
      expect(second.greeting).toMatchObject({ code: 421, enhanced: "4.7.0" })
      yield* second.closed
      expect(yield* Effect.flip(second.session)).toBeInstanceOf(SmtpTestError)
      expect((yield* server.connect({ remoteAddress: "192.0.2.2" })).greeting.code).toBe(220)
      expect(yield* first.quit).toMatchObject({ code: 221 })
    }))

  it.effect("answers pipelined commands one at a time, in order", () =>
    Effect.gen(function*() {
      const order = yield* Ref.make<ReadonlyArray<string>>([])
      const app = SmtpApp.empty.pipe(
        SmtpApp.onRcptTo((next) => Effect.flatMap(RcptTo, (rcpt) => Ref.update(order, (seen) => [...seen, localPart(rcpt)])).pipe(Effect.andThen(next))),
        recipients
      )
      const client = yield* (yield* SmtpTest.make(app)).connect()
      yield* client.ehlo("client.test")
      const replies = yield* client.pipeline([
        "MAIL FROM:<alice@example.com>",
        "RCPT TO:<bob@example.com>",
        "RCPT TO:<nobody@example.com>",
        "RCPT TO:<carol@example.com>"
      ])
      expect(replies.map((reply) => `${reply.code} ${reply.enhanced}`)).toEqual(["250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5"])
      // Commands from concurrent fibers get their own replies: they are matched in the order they were written.
      const [dave, nobody] = yield* Effect.all([client.rcptTo("dave@example.com"), client.rcptTo("nobody@example.com")], {
        concurrency: "unbounded"
      })
      expect([dave?.code, nobody?.code]).toEqual([250, 550])
      expect((yield* client.data(message)).code).toBe(250)
      yield* client.quit
      expect(yield* Ref.get(order)).toEqual(["bob", "nobody", "carol", "dave", "nobody"])
      const [transaction] = yield* client.transactions
      expect(transaction?.rcptTo.map(localPart)).toEqual(["bob", "carol", "dave"])
    }))

  it.effect("stores DATA dot-unstuffed, with its envelope", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(SmtpApp.empty.pipe(deliver))).connect({ remoteAddress: "198.51.100.4" })
      yield* client.ehlo("client.test")
      const reply = yield* client.send({ from: "alice@example.com", to: ["bob@example.com", "carol@example.com"], message })
      const [stored, ...others] = yield* SmtpTest.messages
      expect(others).toEqual([])
      expect(reply).toEqual({ code: 250, enhanced: "2.0.0", lines: [`Ok: queued as ${stored!.id}`] })
      expect(Buffer.from(stored!.bytes).toString()).toBe("Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n")
      expect(stored!.envelope.rcptTo.map(localPart)).toEqual(["bob", "carol"])
      expect(stored!.session.remoteAddress).toBe("198.51.100.4")
    }).pipe(Effect.provide(MessageStore.layerMemory)))

  it.effect("returns rejections with their exact codes, the app's and smtp-server's", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom((next) =>
          Effect.flatMap(MailFrom, (from) =>
            Option.exists(from.mailbox, (mailbox) => mailbox.domain === "spam.test")
              ? Reject.permanent(550, "5.7.1", "Sender rejected")
              : next)
        ),
        recipients,
        SmtpApp.onData(() => Reject.permanent(554, "5.6.0", "Content rejected"))
      )
      const client = yield* (yield* SmtpTest.make(app, { maxRecipients: 2 })).connect()
      const status = (reply: { readonly code: number; readonly enhanced: string | undefined }) => `${reply.code} ${reply.enhanced}`
      expect(status(yield* client.command("FOO"))).toBe("500 5.5.2")
      yield* client.ehlo("client.test")
      expect(status(yield* client.rcptTo("bob@example.com"))).toBe("503 5.5.1")
      expect(status(yield* client.mailFrom("eve@spam.test"))).toBe("550 5.7.1")
      expect(status(yield* client.mailFrom("alice@example.com", { SIZE: "100", BODY: "8BITMIME" }))).toBe("250 2.1.0")
      expect(status(yield* client.rcptTo("crash@example.com"))).toBe("451 4.3.0")
      expect(status(yield* client.rcptTo("nobody@example.com"))).toBe("550 5.1.1")
      expect(status(yield* client.rcptTo("bob@example.com"))).toBe("250 2.1.5")
      expect(status(yield* client.rcptTo("carol@example.com"))).toBe("250 2.1.5")
      expect(status(yield* client.rcptTo("dave@example.com"))).toBe("452 4.5.3")
      expect(yield* client.data(message)).toEqual({ code: 554, enhanced: "5.6.0", lines: ["Content rejected"] })
      expect(status(yield* client.mailFrom("alice@example.com", { SIZE: "x" }))).toBe("555 5.5.4")
      expect(status(yield* client.mailFrom("alice@example.com", { FOO: "1" }))).toBe("555 5.5.4")
    }))

  it.effect("checks credentials with the app's auth phase and a mock service", () =>
    Effect.gen(function*() {
      class Users extends Context.Service<Users, {
        readonly check: (username: string, password: string) => Effect.Effect<boolean>
      }>()("test/Users") {}
      const app = SmtpApp.empty.pipe(SmtpApp.onAuth(Username, (next) =>
        Effect.gen(function*() {
          const credentials = yield* Credentials
          const users = yield* Users
          return (yield* users.check(credentials.username, Redacted.value(credentials.password))) ? credentials.username : yield* next
        })
      ))
      const server = yield* SmtpTest.make(app, { tls: fixtureTls, authFailureDelay: "1 second" }).pipe(
        Effect.provide(Layer.mock(Users, { check: (username, password) => Effect.succeed(username === "alice" && password === "s3cret") }))
      )
      const plain = yield* server.connect()
      yield* plain.ehlo("client.test")
      expect(yield* plain.auth({ method: "PLAIN", username: "alice", password: "s3cret" })).toMatchObject({ code: 500, enhanced: "5.5.2" })
      const client = yield* server.connect({ secure: true })
      yield* client.ehlo("client.test")
      const wrong = yield* Effect.forkChild(client.auth({ method: "PLAIN", username: "alice", password: "wrong" }))
      yield* TestClock.adjust("999 millis")
      expect(wrong.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(wrong)).toMatchObject({ code: 535, enhanced: "5.7.8" })
      expect(yield* client.auth({ method: "LOGIN", username: "alice", password: "s3cret" })).toMatchObject({ code: 235, enhanced: "2.7.0" })
      yield* client.quit
      expect(yield* client.session).toMatchObject({ username: Option.some("alice"), transmissionType: "ESMTPSA" })
    }))

  it.effect("turns a handler that runs past its phase timeout into 451 4.4.1 under the fake clock", () =>
    Effect.gen(function*() {
      const { client, slow } = yield* slowRecipient({ phaseTimeouts: { rcptTo: "10 seconds" } })
      yield* TestClock.adjust("9 seconds")
      expect(slow.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(slow)).toMatchObject({ code: 451, enhanced: "4.4.1" })
      expect(yield* client.rcptTo("bob@example.com")).toMatchObject({ code: 250 })
    }))

  it.effect("closes an idle connection with 421 4.4.2 under the fake clock", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(SmtpApp.empty, { idleTimeout: "1 minute" })).connect()
      yield* client.ehlo("client.test")
      yield* TestClock.adjust("59 seconds")
      expect(yield* client.command("NOOP")).toMatchObject({ code: 250 })
      const unsolicited = yield* Effect.forkChild(client.reply)
      yield* TestClock.adjust("59 seconds")
      expect(unsolicited.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(unsolicited)).toMatchObject({ code: 421, enhanced: "4.4.2" })
      yield* client.closed
      expect(yield* Effect.flip(client.command("NOOP"))).toBeInstanceOf(SmtpTestError)
    }))

  it.effect("does not count idle time while the app is still answering", () =>
    Effect.gen(function*() {
      const { client, slow } = yield* slowRecipient({ idleTimeout: "1 minute", phaseTimeouts: { rcptTo: "5 minutes" } })
      yield* TestClock.adjust("4 minutes")
      expect(slow.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 minute")
      expect(yield* Fiber.join(slow)).toMatchObject({ code: 451, enhanced: "4.4.1" })
      const unsolicited = yield* Effect.forkChild(client.reply)
      yield* TestClock.adjust("1 minute")
      expect(yield* Fiber.join(unsolicited)).toMatchObject({ code: 421 })
    }))

  it.effect("reports the final session and every transaction of a connection", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(SmtpApp.empty.pipe(recipients))).connect()
      yield* client.helo("client.test")
      yield* client.mailFrom("alice@example.com")
      yield* client.rcptTo("bob@example.com")
      expect(yield* client.send({ from: "erin@example.com", to: "nobody@example.com", message })).toMatchObject({ code: 503 })
      expect(yield* client.rcptTo("nobody@example.com")).toMatchObject({ code: 550 })
      expect(yield* client.data(message)).toMatchObject({ code: 250 })
      expect(yield* client.rset).toMatchObject({ code: 250 })
      yield* client.send({ from: "", to: "carol@example.com", message })
      yield* client.mailFrom("dave@example.com")
      yield* client.quit
      const session = yield* client.session
      expect(session).toMatchObject({
        id: "test1",
        remoteAddress: "192.0.2.1",
        secure: false,
        heloName: Option.some("client.test"),
        openingCommand: Option.some("HELO"),
        transmissionType: "SMTP",
        username: Option.none(),
        // Started when MAIL FROM was accepted (three), and accepted messages (two).
        transactions: 3,
        messages: 2
      })
      const transactions = yield* client.transactions
      expect(transactions.map((transaction) => ({
        id: transaction.id,
        from: Option.map(transaction.mailFrom, (from) => Option.map(from.mailbox, (mailbox) => mailbox.address)),
        to: transaction.rcptTo.map(localPart)
      }))).toEqual([
        { id: 1, from: Option.some(Option.some("alice@example.com")), to: ["bob"] },
        { id: 2, from: Option.some(Option.none()), to: ["carol"] },
        { id: 3, from: Option.some(Option.some("dave@example.com")), to: [] }
      ])
    }))

  it.effect("runs the app's close phase when the test drops a connection", () =>
    Effect.gen(function*() {
      const closed = yield* Ref.make(Option.none<string>())
      const app = SmtpApp.empty.pipe(SmtpApp.onClose((next) =>
        Effect.flatMap(SmtpSession.current, (session) => Ref.set(closed, session.heloName)).pipe(Effect.andThen(next))
      ))
      const server = yield* SmtpTest.make(app)
      yield* Effect.scoped(Effect.flatMap(server.connect(), (client) => client.ehlo("dropped.test")))
      expect(yield* Ref.get(closed)).toEqual(Option.some("dropped.test"))
    }))

  it.effect("upgrades with STARTTLS over the in-memory connection", () =>
    Effect.gen(function*() {
      const secured = yield* Ref.make(0)
      const app = SmtpApp.empty.pipe(SmtpApp.onSecure((next) => Effect.andThen(Ref.update(secured, (n) => n + 1), next)))
      const client = yield* (yield* SmtpTest.make(app, { hostname: "mx.test", tls: fixtureTls })).connect()
      expect((yield* client.ehlo("client.test")).lines).toContain("STARTTLS")
      expect(yield* client.starttls).toMatchObject({ code: 220, enhanced: "2.0.0" })
      // smtp-server reads the next command once the app's secure phase has run.
      expect((yield* client.ehlo("client.test")).lines).not.toContain("STARTTLS")
      expect(yield* Ref.get(secured)).toBe(1)
      expect(yield* client.send({ from: "alice@example.com", to: "bob@example.com", message })).toMatchObject({ code: 250 })
      yield* client.quit
      const session = yield* client.session
      expect(session).toMatchObject({ secure: true, transmissionType: "ESMTPS" })
      expect(Option.map(session.tls, (tls) => [tls.protocol, tls.servername])).toEqual(Option.some(["TLSv1.3", Option.some("mx.test")]))
    }))

  it.effect("opens secure connections with TLS from the first byte", () =>
    Effect.gen(function*() {
      const secured = yield* Ref.make(0)
      const app = SmtpApp.empty.pipe(SmtpApp.onSecure((next) => Effect.andThen(Ref.update(secured, (n) => n + 1), next)))
      const server = yield* SmtpTest.make(app, { tls: fixtureTls })
      const client = yield* server.connect({ secure: true })
      expect(client.greeting.code).toBe(220)
      expect(yield* Ref.get(secured)).toBe(1)
      expect((yield* client.ehlo("client.test")).lines).not.toContain("STARTTLS")
      yield* client.quit
      expect(yield* client.session).toMatchObject({ secure: true, tls: Option.some({ protocol: "TLSv1.3" }) })
      const plain = yield* server.connect()
      yield* plain.quit
      expect(yield* plain.session).toMatchObject({ secure: false, tls: Option.none() })
      const noCertificate = yield* SmtpTest.make(app)
      expect(yield* Effect.flip(noCertificate.connect({ secure: true }))).toBeInstanceOf(SmtpTestError)
      const implicit = yield* SmtpTest.make(app, { tls: fixtureTls, implicitTls: true })
      expect(yield* Effect.flip(implicit.connect({ secure: false }))).toBeInstanceOf(SmtpTestError)
      const byDefault = yield* implicit.connect()
      yield* byDefault.quit
      expect(yield* byDefault.session).toMatchObject({ secure: true, tls: Option.some({ protocol: "TLSv1.3" }) })
    }))

  it.effect("fails like SmtpServer.layer on settings that cannot work", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(SmtpTest.make(SmtpApp.empty, { authRequired: true, allowInsecureAuth: true }))
      expect(error.message).toContain("no auth middleware")
      expect((yield* Effect.flip(SmtpTest.make(SmtpApp.empty, { maxRecipients: 0 })))._tag).toBe("SmtpConfigError")
    }))

  it("makes a service the app needs and nobody provides a compile error", () => {
    class Mailboxes extends Context.Service<Mailboxes, { readonly exists: (address: string) => Effect.Effect<boolean> }>()("test/Mailboxes") {}
    const app = SmtpApp.empty.pipe(SmtpApp.onRcptTo((next) => Effect.andThen(Mailboxes.use((m) => m.exists("a")), next)))
    // @ts-expect-error: the server Layer still needs Mailboxes
    const missing: Layer.Layer<SmtpTest, SmtpConfigError | SmtpServerVersionError> = SmtpTest.layer(app)
    const provided: Layer.Layer<SmtpTest, SmtpConfigError | SmtpServerVersionError> = SmtpTest.layer(app).pipe(
      Layer.provide(Layer.mock(Mailboxes, { exists: () => Effect.succeed(true) }))
    )
    expect([missing, provided].every(Layer.isLayer)).toBe(true)
  })
})

class Greylist extends Context.Service<Greylist, { readonly delay: Effect.Effect<void> }>()("test/Greylist") {}

const greylisting = SmtpApp.empty.pipe(SmtpApp.onMailFrom((next) => Effect.andThen(Effect.flatMap(Greylist, (g) => g.delay), next)))

layer(
  SmtpTest.layer(greylisting, { phaseTimeouts: { mailFrom: "1 minute" } }).pipe(
    Layer.provide(Layer.succeed(Greylist, { delay: Effect.sleep("2 minutes") }))
  )
)("SmtpTest.layer in a shared layer", (it) => {
  it.effect("serves each test from the one server", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.quit
      expect((yield* client.session).id).toBe("test1")
    }))

  it.effect("runs phase timeouts on the layer's fake clock", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      const mail = yield* Effect.forkChild(client.mailFrom("alice@example.com"))
      yield* TestClock.adjust("1 minute")
      expect(yield* Fiber.join(mail)).toMatchObject({ code: 451, enhanced: "4.4.1" })
      yield* client.quit
      expect((yield* client.session).id).toBe("test2")
    }))
})
