/**
 * The app-facing model of API v2, through the test kit: the typed user of an
 * accepted AUTH, success replies of the app's own, `MessageTooLarge`,
 * transaction numbering, connection state at connect and close for everyone,
 * and reverse DNS through Effect's `Dns` service. Exact replies throughout.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Option, Redacted, Scope, Stream } from "effect"
import * as Dns from "effect/net/Dns"
import { TestClock } from "effect/testing"
import { Accept, Credentials, MailFrom, Message, RcptTo, Reject, SmtpApp, SmtpSession, SmtpTransaction, Username } from "../src/index.ts"
import { SmtpTest } from "../src/testing/index.ts"
import { fixtureTls, Trail } from "./support.ts"

class User extends Context.Service<User, { readonly id: number; readonly name: string }>()("test/User") {}

const insecure = { allowInsecureAuth: true, authFailureDelay: "1 millis" } as const

describe("auth with a typed user", () => {
  const app = SmtpApp.empty.pipe(
    // A logging middleware in front passes on with next: it does not decide.
    SmtpApp.onAuth(User, (next) => Effect.andThen(Effect.flatMap(Credentials, ({ username }) => Trail.add(`attempt ${username}`)), next)),
    SmtpApp.onAuth(User, () =>
      Effect.gen(function*() {
        const { username, password } = yield* Credentials
        if (username === "admin" && Redacted.value(password) === "pw") return { id: 1, name: "Admin" }
        return yield* Reject.permanent(535, "5.7.8", "Invalid credentials")
      })),
    SmtpApp.onMailFrom((next) =>
      Effect.gen(function*() {
        const user = yield* Effect.serviceOption(User)
        if (Option.isSome(user)) yield* Accept.ok("2.1.0", `Hello ${user.value.name} (#${user.value.id})`)
        yield* next
      })
    )
  )
  const server = SmtpTest.layer(app, insecure).pipe(Layer.provideMerge(Trail.layer))

  it.effect("accepting succeeds with the user; later phases read it with its type; the kit reports it", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      expect(yield* client.mailFrom("a@x.test")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Accepted"] })
      // Not within a mail transaction (RFC 4954): the user would miss the rest of it.
      expect(yield* client.auth({ method: "PLAIN", username: "admin", password: "pw" })).toEqual({
        code: 503,
        enhanced: "5.5.1",
        lines: ["AUTH is not permitted during a mail transaction"]
      })
      yield* client.rset
      expect(yield* client.auth({ method: "PLAIN", username: "admin", password: "pw" })).toMatchObject({ code: 235 })
      expect(yield* client.mailFrom("a@x.test")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Hello Admin (#1)"] })
      yield* client.quit
      expect(yield* client.user(User)).toEqual(Option.some({ id: 1, name: "Admin" }))
      expect((yield* client.session).username).toEqual(Option.some("admin"))
      expect(yield* Trail.all).toEqual(["attempt admin"])
    }).pipe(Effect.provide(server)))

  it.effect("a rejection of the app's own is sent as built; no user is added", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.test")
      const failed = yield* Effect.forkChild(client.auth({ method: "PLAIN", username: "eve", password: "pw" }))
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(failed)).toEqual({ code: 535, enhanced: "5.7.8", lines: ["Invalid credentials"] })
      yield* client.quit
      expect(yield* client.user(User)).toEqual(Option.none())
    }).pipe(Effect.provide(server)))

  it.effect("a chain that only passes on ends in 535 5.7.8; the built-in Username key takes the login name", () =>
    Effect.gen(function*() {
      const passing = SmtpApp.empty.pipe(SmtpApp.onAuth(Username, (next) => next))
      const client = yield* (yield* SmtpTest.make(passing, insecure)).connect()
      yield* client.ehlo("client.test")
      const failed = yield* Effect.forkChild(client.auth({ method: "LOGIN", username: "bob", password: "x" }))
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.join(failed)).toEqual({ code: 535, enhanced: "5.7.8", lines: ["Authentication credentials invalid"] })
    }))

  it.effect("STARTTLS logs the user out (RFC 3207), as smtp-server does: later phases no longer see it", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(app, { ...insecure, tls: fixtureTls })).connect()
      yield* client.ehlo("client.test")
      expect(yield* client.auth({ method: "PLAIN", username: "admin", password: "pw" })).toMatchObject({ code: 235 })
      expect(yield* client.mailFrom("a@x.test")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Hello Admin (#1)"] })
      yield* client.starttls
      yield* client.ehlo("client.test")
      expect(yield* client.mailFrom("a@x.test")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Accepted"] })
      yield* client.quit
      expect(yield* client.user(User)).toEqual(Option.none())
      expect((yield* client.session).username).toEqual(Option.none())
    }).pipe(Effect.provide(Trail.layer)))

  it("an auth middleware must succeed with the app's user: one that succeeds with nothing, or with another type, does not compile", () => {
    // @ts-expect-error the auth middleware must succeed with the user (here it succeeds with void)
    SmtpApp.onAuth(User, (next) => Effect.gen(function*() { yield* next }))
    // @ts-expect-error the user must have the app's user type
    SmtpApp.onAuth(User, () => Effect.succeed({ id: "1", name: "Admin" }))
    const accepting = SmtpApp.onAuth(User, () => Effect.succeed({ id: 1, name: "Admin" }))
    expect(typeof accepting).toBe("function")
  })

  it("an app has one user type", () => {
    class Other extends Context.Service<Other, { readonly login: string }>()("test/Other") {}
    const withUser = SmtpApp.empty.pipe(SmtpApp.onAuth(User, () => Effect.succeed({ id: 1, name: "a" })))
    // @ts-expect-error Other is not the app's user type
    expect(() => withUser.pipe(SmtpApp.onAuth(Other, () => Effect.succeed({ login: "a" })))).toThrow(/one user type/)
  })
})

describe("success replies of the app's own", () => {
  const message = "Subject: x\r\n\r\nbody\r\n"

  it.effect("MAIL, RCPT and DATA answer in the app's words; the last word on the way out wins; a rejection wins over both", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom((next) => Effect.andThen(MailFrom, (sender) => Effect.andThen(Accept.ok("2.1.0", `Sender <${sender.address}> ok`), next))),
        SmtpApp.onRcptTo((next) =>
          Effect.gen(function*() {
            const { address, mailbox } = yield* RcptTo
            if (mailbox.domain === "moved.test") yield* Accept.forwarding("2.1.5", `User not local; will forward to <${mailbox.localPart}@new.test>`)
            if (mailbox.localPart === "late") {
              yield* Accept.ok("2.1.5", "never sent")
              return yield* Reject.permanent(550, "5.1.1", `No such user <${address}>`)
            }
            yield* next
          })),
        // The outer data middleware has the last word, after the inner one set its own.
        SmtpApp.onData((next) => Effect.andThen(next, Accept.ok("2.0.0", "Ok: outer"))),
        SmtpApp.onData(() => Accept.ok("2.0.0", "Ok: inner"))
      )
      const client = yield* (yield* SmtpTest.make(app)).connect()
      yield* client.ehlo("client.test")
      expect(yield* client.mailFrom("a@x.test")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Sender <a@x.test> ok"] })
      expect(yield* client.rcptTo("b@x.test")).toEqual({ code: 250, enhanced: "2.1.5", lines: ["Accepted"] })
      expect(yield* client.rcptTo("c@moved.test")).toEqual({ code: 251, enhanced: "2.1.5", lines: ["User not local; will forward to <c@new.test>"] })
      expect(yield* client.rcptTo("late@x.test")).toEqual({ code: 550, enhanced: "5.1.1", lines: ["No such user <late@x.test>"] })
      expect(yield* client.data(message)).toEqual({ code: 250, enhanced: "2.0.0", lines: ["Ok: outer"] })
      yield* client.quit
      const [transaction] = yield* client.transactions
      expect(transaction?.rcptTo.map((rcpt) => rcpt.address)).toEqual(["b@x.test", "c@moved.test"])
    }))

  it("a success reply is set where a phase can answer with it: not at connect, and 251 only for a recipient", () => {
    const launchable = (layer: Layer.Layer<SmtpTest, unknown, never>) => layer
    const atConnect = SmtpApp.empty.pipe(SmtpApp.onConnect((next) => Effect.andThen(Accept.ok("2.0.0", "hi"), next)))
    // @ts-expect-error PhaseReply is provided by the mail from, rcpt to and data phases only
    launchable(SmtpTest.layer(atConnect))
    const forwardingMail = SmtpApp.empty.pipe(SmtpApp.onMailFrom((next) => Effect.andThen(Accept.forwarding("2.1.0", "x"), next)))
    // @ts-expect-error 251 needs RcptTo: RCPT only
    launchable(SmtpTest.layer(forwardingMail))
    expect(() => Accept.ok("2.1.0", "two\r\nlines").pipe(Effect.provideService(Accept.PhaseReply, { set: () => Effect.void }), Effect.runSync)).toThrow()
  })
})

describe("a message over the size limit", () => {
  const big = `Subject: big\r\n\r\n${"x".repeat(70)}\r\n`.repeat(30)

  it.effect("the stream fails with MessageTooLarge (limit, bytes received); the handler's own 552 is sent; the connection goes on", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onData(() =>
          Effect.gen(function*() {
            const { stream } = yield* Message
            yield* Stream.runDrain(stream).pipe(
              Effect.catchTag("MessageTooLarge", (error) =>
                Effect.andThen(
                  Trail.add(`limit ${error.limit}, received more: ${error.received > error.limit}`),
                  Reject.permanent(552, "5.3.4", `Too big for us: ${error.limit} bytes at most`)
                ))
            )
          }))
      )
      const client = yield* (yield* SmtpTest.make(app, { maxMessageSize: 1000 })).connect()
      yield* client.ehlo("client.test")
      expect(yield* client.send({ from: "a@x.test", to: "b@x.test", message: big })).toEqual({
        code: 552,
        enhanced: "5.3.4",
        lines: ["Too big for us: 1000 bytes at most"]
      })
      expect(yield* Trail.all).toEqual(["limit 1000, received more: true"])
      expect(yield* client.send({ from: "a@x.test", to: "b@x.test", message: "Subject: small\r\n\r\nok\r\n" })).toMatchObject({ code: 250 })
    }).pipe(Effect.provide(Trail.layer)))

  it.effect("an app without data middleware still has the content rules: a bare LF gets 550 5.5.2", () =>
    Effect.gen(function*() {
      const client = yield* (yield* SmtpTest.make(SmtpApp.empty)).connect()
      yield* client.ehlo("client.test")
      yield* client.mailFrom("a@x.test")
      yield* client.rcptTo("b@x.test")
      expect(yield* client.command("DATA")).toMatchObject({ code: 354 })
      expect(yield* client.command("Subject: x\r\n\r\nsmuggled\n.\r\nMAIL FROM:<x@y>\r\n.")).toEqual({
        code: 550,
        enhanced: "5.5.2",
        lines: ["Message contains a bare CR or LF: lines must end with CRLF"]
      })
      expect(yield* client.send({ from: "a@x.test", to: "b@x.test", message: "Subject: ok\r\n\r\nfine\r\n" })).toMatchObject({ code: 250 })
    }))

  it.effect("a message that arrived whole is not late, however long its handler waits before reading it", () =>
    Effect.gen(function*() {
      const patient = SmtpApp.empty.pipe(SmtpApp.onData(() =>
        Effect.andThen(Effect.sleep("1500 millis"), Effect.flatMap(Message, ({ stream }) => Stream.runDrain(stream)))
      ))
      const client = yield* (yield* SmtpTest.make(patient, { dataTimeout: "1 second" })).connect()
      yield* client.ehlo("client.test")
      const sent = yield* Effect.forkChild(client.send({ from: "a@x.test", to: "b@x.test", message: "Subject: x\r\n\r\nbody\r\n" }))
      yield* TestClock.adjust("1500 millis")
      expect(yield* Fiber.join(sent)).toMatchObject({ code: 250 })
    }))

  it.live("a message that never arrived whole is never counted as accepted, with data middleware or without", () =>
    Effect.gen(function*() {
      for (const app of [SmtpApp.empty, SmtpApp.empty.pipe(SmtpApp.onData(() => Effect.void))]) {
        const server = yield* SmtpTest.make(app)
        const scope = yield* Scope.make()
        const client = yield* server.connect().pipe(Scope.provide(scope))
        yield* client.ehlo("client.test")
        yield* client.mailFrom("a@x.test")
        yield* client.rcptTo("b@x.test")
        expect(yield* client.command("DATA")).toMatchObject({ code: 354 })
        yield* Effect.forkChild(client.command("Subject: cut short\r\n\r\nno final dot"))
        yield* Effect.sleep("20 millis")
        yield* Scope.close(scope, Exit.void) // the client leaves in the middle of the message
        expect(yield* client.session).toMatchObject({ transactions: 1, messages: 0 })
      }
    }))

  it.effect("left as it is, or ignored, or swallowed, it gets 552 5.3.4 and never a 250", () =>
    Effect.gen(function*() {
      const tooBig = { code: 552, enhanced: "5.3.4", lines: ["Message size exceeds fixed maximum message size"] }
      const handlers = [
        // No data middleware at all: smtp-server's own DATA handling is never used.
        (app: typeof SmtpApp.empty) => app,
        SmtpApp.onData(() => Effect.flatMap(Message, ({ stream }) => Stream.runDrain(stream))),
        SmtpApp.onData(() => Effect.void),
        SmtpApp.onData(() => Effect.flatMap(Message, ({ stream }) => Effect.ignore(Stream.runDrain(stream))))
      ]
      for (const handler of handlers) {
        const client = yield* (yield* SmtpTest.make(SmtpApp.empty.pipe(handler), { maxMessageSize: 1000 })).connect()
        yield* client.ehlo("client.test")
        expect(yield* client.send({ from: "a@x.test", to: "b@x.test", message: big })).toEqual(tooBig)
        expect(yield* client.send({ from: "a@x.test", to: "b@x.test", message: "Subject: small\r\n\r\nok\r\n" })).toMatchObject({ code: 250 })
      }
    }))
})

describe("transactions and messages", () => {
  it.effect("transactions are numbered when MAIL FROM is accepted; messages count the accepted ones", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom((next) =>
          Effect.gen(function*() {
            const sender = yield* MailFrom
            const transaction = yield* SmtpTransaction.current
            yield* Trail.add(`MAIL ${sender.address} in transaction ${transaction.id}`)
            if (sender.address.startsWith("refused@")) return yield* Reject.permanent(550, "5.7.1", "Sender refused")
            yield* next
          })),
        SmtpApp.onData(() =>
          Effect.gen(function*() {
            const { envelope } = yield* Message
            const session = yield* SmtpSession.current
            yield* Trail.add(`DATA in transaction ${envelope.id} from ${envelope.mailFrom.address}, ${session.transactions} started`)
          }))
      )
      const client = yield* (yield* SmtpTest.make(app)).connect()
      yield* client.ehlo("client.test")
      yield* client.mailFrom("a@x.test")
      yield* client.rset
      yield* client.ehlo("client.test")
      expect(yield* client.mailFrom("refused@x.test")).toMatchObject({ code: 550 })
      yield* client.mailFrom("b@x.test")
      yield* client.rcptTo("c@x.test")
      yield* client.data("Subject: x\r\n\r\nbody\r\n")
      yield* client.mailFrom("d@x.test")
      yield* client.quit
      expect(yield* Trail.all).toEqual([
        "MAIL a@x.test in transaction 1",
        "MAIL refused@x.test in transaction 2",
        "MAIL b@x.test in transaction 2",
        "DATA in transaction 2 from b@x.test, 2 started",
        "MAIL d@x.test in transaction 3"
      ])
      expect(yield* client.session).toMatchObject({ transactions: 3, messages: 1 })
      expect((yield* client.transactions).map((transaction) => transaction.id)).toEqual([1, 2, 3])
    }).pipe(Effect.provide(Trail.layer)))
})

describe("connection state at connect, close for everyone", () => {
  /** Connection state that records when it is built and released. */
  class Visit extends Context.Service<Visit, { readonly from: string }>()("test/Visit") {}
  const visit = (refuseFrom: string) =>
    Layer.effect(
      Visit,
      Effect.gen(function*() {
        const session = yield* SmtpSession.current
        yield* Trail.add(`built for ${session.remoteAddress}`)
        if (session.remoteAddress === refuseFrom) return yield* Reject.closing("4.7.0", "State refused")
        yield* Effect.addFinalizer(() => Trail.add(`released for ${session.remoteAddress}`))
        return { from: session.remoteAddress }
      })
    )
  const app = SmtpApp.empty.pipe(
    SmtpApp.withConnectionState(visit("192.0.2.9")),
    SmtpApp.onConnect((next) =>
      Effect.gen(function*() {
        const { from } = yield* Visit
        if (from === "192.0.2.66") return yield* Reject.permanent(554, "5.7.1", "Access denied")
        yield* next
      })),
    SmtpApp.onClose((next) => Effect.andThen(Effect.flatMap(Visit, ({ from }) => Trail.add(`close for ${from}`)), next))
  )

  it.effect("state is built once, before connect middleware; close runs for a connection refused at connect; a failing state is built once and has no close", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(app, { hostname: "mx.test" })
      for (const remoteAddress of ["192.0.2.1", "192.0.2.66", "192.0.2.9"]) {
        yield* Effect.scoped(Effect.gen(function*() {
          const client = yield* server.connect({ remoteAddress })
          const { code, enhanced, lines } = client.greeting
          yield* Trail.add([`greeting ${code}`, ...(enhanced === undefined ? [] : [enhanced]), ...lines].join(" "))
          if (code === 220) yield* client.quit
          yield* client.closed
        }))
      }
      expect(yield* Trail.all).toEqual([
        "built for 192.0.2.1",
        "greeting 220 mx.test ESMTP",
        "close for 192.0.2.1",
        "released for 192.0.2.1",
        "built for 192.0.2.66",
        "greeting 554 5.7.1 Access denied",
        "close for 192.0.2.66",
        "released for 192.0.2.66",
        "built for 192.0.2.9",
        "greeting 421 4.7.0 State refused"
      ])
    }).pipe(Effect.provide(Trail.layer)))
})

describe("reverse DNS", () => {
  const app = SmtpApp.empty.pipe(SmtpApp.onConnect((next) => Effect.andThen(Effect.flatMap(SmtpSession.current, (session) => Trail.add(session.clientHostname)), next)))
  const resolver = (reverse: (address: string) => Effect.Effect<ReadonlyArray<string>, Dns.DnsError>) =>
    Layer.succeed(Dns.Dns, Dns.make({ lookup: () => Effect.succeed([]), reverse: (address) => reverse(String(address)) }))

  it.effect("with reverseLookup, clientHostname is the name the app's Dns service gives (without its root dot), before connect middleware", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(app, { reverseLookup: true })
      const client = yield* server.connect({ remoteAddress: "192.0.2.7" })
      expect(client.greeting.code).toBe(220)
      yield* client.quit
      expect((yield* client.session).clientHostname).toBe("mail.client.test")
      expect(yield* Trail.all).toEqual(["mail.client.test"])
    }).pipe(Effect.provide([Trail.layer, resolver((address) => Effect.succeed(address === "192.0.2.7" ? ["mail.client.test."] : []))])))

  it.effect("a lookup that fails or outlasts reverseLookupTimeout leaves the address literal; without the setting, none is made", () =>
    Effect.gen(function*() {
      const failing = yield* SmtpTest.make(app, { reverseLookup: true })
      yield* Effect.scoped(Effect.andThen(failing.connect({ remoteAddress: "192.0.2.8" }), (client) => client.quit))
      const slow = yield* SmtpTest.make(app, { reverseLookup: true, reverseLookupTimeout: "2 seconds" })
      const connecting = yield* Effect.forkChild(Effect.scoped(Effect.map(slow.connect({ remoteAddress: "192.0.2.1" }), (client) => client.greeting)))
      yield* TestClock.adjust("2 seconds")
      expect((yield* Fiber.join(connecting)).code).toBe(220)
      const off = yield* SmtpTest.make(app)
      yield* Effect.scoped(Effect.andThen(off.connect({ remoteAddress: "192.0.2.1" }), (client) => client.quit))
      expect(yield* Trail.all).toEqual(["[192.0.2.8]", "[192.0.2.1]", "[192.0.2.1]"])
    }).pipe(Effect.provide([
      Trail.layer,
      resolver((address) =>
        address === "192.0.2.8"
          ? Effect.fail(new Dns.DnsError({ reason: "NotFound", method: "reverse", hostname: address }))
          : address === "192.0.2.1"
          ? Effect.never
          : Effect.die("no other lookup"))
    ])))
})

describe("the close phase", () => {
  it.effect("every close middleware runs, whether the ones before it ran next, ended the chain or failed; the kit still sees the user", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onAuth(Username, () => Effect.flatMap(Credentials, ({ username }) => Effect.succeed(username))),
        SmtpApp.onClose(() => Trail.add("first, without next")),
        SmtpApp.onClose(() => Effect.andThen(Trail.add("second, failing"), Reject.temporary(451, "4.3.0", "close failed"))),
        SmtpApp.onClose((next) => Effect.andThen(Trail.add("third, around next"), Effect.andThen(next, Trail.add("third, after next")))),
        SmtpApp.onClose(() => Trail.add("fourth"))
      )
      const client = yield* (yield* SmtpTest.make(app, insecure)).connect()
      yield* client.ehlo("client.test")
      expect(yield* client.auth({ method: "PLAIN", username: "carol", password: "x" })).toMatchObject({ code: 235 })
      yield* client.quit
      expect(yield* client.user(Username)).toEqual(Option.some("carol"))
      expect(yield* Trail.all).toEqual(["first, without next", "second, failing", "third, around next", "fourth", "third, after next"])
    }).pipe(Effect.provide(Trail.layer)))
})
