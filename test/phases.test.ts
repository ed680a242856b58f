/**
 * The phase model over real sockets: each phase accepts and rejects with the
 * exact reply, middleware runs in order around `next`, defects and timeouts
 * become temporary replies, and the server keeps serving.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option, Redacted, Ref, Stream } from "effect"
import { TestClock } from "effect/testing"
import { Credentials, MailFrom, Message, RcptTo, Reject, SmtpApp, SmtpSession, SmtpTransaction, Username, type UserKey } from "../src/index.ts"
import type { Options } from "../src/layers/SmtpServerConfig.ts"
import { SmtpTest, type SmtpTestClient } from "../src/testing/index.ts"
import type { Reply } from "../src/testing/SmtpTestClient.ts"
import { connect, fixtureTls, send, serve } from "./support.ts"

const tls = fixtureTls

/** Serves `app` in memory (no socket: the protocol is all these tests need), says EHLO, returns the client. */
const kitSession = <Cs, Ts, R, U extends UserKey>(app: SmtpApp.SmtpApp<Cs, Ts, R, U>, options: Options = {}) =>
  Effect.gen(function*() {
    const server = yield* SmtpTest.make(app, options)
    const client = yield* server.connect()
    yield* client.ehlo("client.test")
    return client
  })

/** A reply as one line: code, enhanced code, text. */
const line = (reply: Reply) => [reply.code, reply.enhanced, reply.lines.join(" ")].filter((part) => part !== undefined).join(" ")

const say = (client: SmtpTestClient, text: string) => Effect.map(client.command(text), line)

/** Greets, says EHLO and returns the client. */
const session = (port: number) =>
  Effect.gen(function*() {
    const client = yield* connect(port)
    expect(yield* client.reply).toMatch(/^220 /)
    yield* client.write("EHLO client.test\r\n")
    expect(yield* client.reply).toMatch(/^250[ -]/)
    return client
  })

const command = (client: { write: (s: string) => Effect.Effect<void>; reply: Effect.Effect<string> }, line: string) =>
  Effect.andThen(client.write(`${line}\r\n`), client.reply)

describe("phases", () => {
  it.live("connect: a rejection refuses the connection with its exact reply", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onConnect(() => Effect.fail(Reject.permanent(554, "5.7.1", "Your address is denied")))
      )
      const server = yield* serve(app)
      const client = yield* connect(server.address.port)
      expect(yield* client.reply).toBe("554 5.7.1 Your address is denied")
      yield* client.closed
    }))

  it.effect("mail from, rcpt to and data: accept, and reject with exact codes", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onMailFrom((next) =>
          Effect.gen(function*() {
            const from = yield* MailFrom
            if (Option.exists(from.mailbox, (m) => m.domain === "spam.test")) {
              return yield* Reject.permanent(550, "5.7.1", "Sender rejected")
            }
            yield* next
          })
        ),
        SmtpApp.onRcptTo((next) =>
          Effect.gen(function*() {
            const to = yield* RcptTo
            if (to.mailbox.localPart === "full") return yield* Reject.temporary(452, "4.2.2", "Mailbox full")
            yield* next
          })
        ),
        SmtpApp.onData(() =>
          Effect.gen(function*() {
            const message = yield* Message
            const text = Buffer.from(yield* Stream.mkUint8Array(message.stream)).toString()
            if (text.includes("virus")) return yield* Reject.permanent(554, "5.7.1", "Message content rejected")
          })
        )
      )
      const client = yield* kitSession(app)
      expect(yield* say(client, "MAIL FROM:<a@spam.test>")).toBe("550 5.7.1 Sender rejected")
      expect(yield* say(client, "MAIL FROM:<a@ok.test>")).toBe("250 2.1.0 Accepted")
      expect(yield* say(client, "RCPT TO:<full@x.test>")).toBe("452 4.2.2 Mailbox full")
      expect(yield* say(client, "RCPT TO:<b@x.test>")).toBe("250 2.1.5 Accepted")
      expect(yield* say(client, "DATA")).toMatch(/^354 /)
      expect(yield* say(client, "Subject: hi\r\n\r\nthis has a virus\r\n.")).toBe("554 5.7.1 Message content rejected")
      expect(yield* say(client, "MAIL FROM:<a@ok.test>")).toBe("250 2.1.0 Accepted")
      expect(yield* say(client, "RCPT TO:<b@x.test>")).toBe("250 2.1.5 Accepted")
      expect(yield* say(client, "DATA")).toMatch(/^354 /)
      expect(yield* say(client, "Subject: hi\r\n\r\nclean\r\n.")).toBe("250 2.6.0 OK: message queued")
      expect(yield* say(client, "QUIT")).toMatch(/^221 /)
    }))

  it.effect("malformed parameters and addresses are rejected before any handler runs", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(0)
      const app = SmtpApp.empty.pipe(SmtpApp.onMailFrom((next) => Effect.andThen(Ref.update(calls, (n) => n + 1), next)))
      const client = yield* kitSession(app)
      expect(yield* say(client, "MAIL FROM:<a@x.test> SIZE=abc")).toMatch(/^555 5\.5\.4 /)
      expect(yield* say(client, "MAIL FROM:<a@x.test> BODY=9BIT")).toMatch(/^5\d\d 5\.5\.4 /)
      expect(yield* say(client, "MAIL FROM:<a@x.test> FOO=BAR")).toMatch(/^555 5\.5\.4 /)
      expect(yield* say(client, "MAIL FROM:<no-at-sign>")).toMatch(/^5\d\d 5\.1\.\d /)
      expect(yield* Ref.get(calls)).toBe(0)
      expect(yield* say(client, "MAIL FROM:<a@x.test> SIZE=1000 BODY=8BITMIME")).toBe("250 2.1.0 Accepted")
      expect(yield* Ref.get(calls)).toBe(1)
    }))

  it.live("auth: a middleware accepts by returning; the end of the chain is 535 5.7.8", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onAuth(Username, (next) =>
          Effect.gen(function*() {
            const credentials = yield* Credentials
            if (credentials.username === "alice" && Redacted.value(credentials.password) === "secret") return credentials.username
            return yield* next
          })
        )
      )
      const server = yield* serve(app, { tls, authRequired: true })
      const bad = yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: "x" }, {
        ignoreTLS: false,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        auth: { user: "alice", pass: "wrong" }
      })
      expect(bad).toMatchObject({ ok: false, code: 535 })
      expect(bad.response).toMatch(/^535 5\.7\.8 /)
      const good = yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: "x" }, {
        ignoreTLS: false,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        auth: { user: "alice", pass: "secret" }
      })
      expect(good).toMatchObject({ ok: true })
    }))

  it.live("secure: runs once TLS is up and sees the TLS details", () =>
    Effect.gen(function*() {
      const seen = yield* Ref.make<Array<string>>([])
      const app = SmtpApp.empty.pipe(
        SmtpApp.onSecure((next) =>
          Effect.gen(function*() {
            const state = yield* SmtpSession.current
            yield* Ref.update(seen, (all) => [...all, Option.match(state.tls, { onNone: () => "none", onSome: (t) => t.protocol })])
            yield* next
          })
        )
      )
      const server = yield* serve(app, { tls })
      const result = yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: "x" }, {
        ignoreTLS: false,
        requireTLS: true,
        tls: { rejectUnauthorized: false }
      })
      expect(result).toMatchObject({ ok: true })
      expect((yield* Ref.get(seen))[0]).toMatch(/^TLSv1\.[23]$/)
    }))

  it.effect("middleware runs in registration order, around next", () =>
    Effect.gen(function*() {
      const trace = yield* Ref.make<Array<string>>([])
      const note = (line: string) => Ref.update(trace, (all) => [...all, line])
      const around = (name: string) =>
        SmtpApp.onMailFrom((next) => note(`${name} before`).pipe(Effect.andThen(next), Effect.andThen(note(`${name} after`))))
      const app = SmtpApp.empty.pipe(
        around("outer"),
        around("inner"),
        SmtpApp.onMailFrom(() => note("last: accepts without next"))
      )
      const client = yield* kitSession(app)
      expect(yield* say(client, "MAIL FROM:<a@x.test>")).toBe("250 2.1.0 Accepted")
      expect(yield* Ref.get(trace)).toEqual([
        "outer before",
        "inner before",
        "last: accepts without next",
        "inner after",
        "outer after"
      ])
    }))

  it.effect("a defect is a 451 4.3.0, and the server goes on serving", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(
        SmtpApp.onRcptTo((next) =>
          Effect.gen(function*() {
            const to = yield* RcptTo
            if (to.mailbox.localPart === "bug") return yield* Effect.die(new Error("handler bug"))
            yield* next
          })
        )
      )
      const server = yield* SmtpTest.make(app)
      const client = yield* server.connect()
      yield* client.ehlo("client.test")
      expect(yield* say(client, "MAIL FROM:<a@x.test>")).toBe("250 2.1.0 Accepted")
      expect(yield* say(client, "RCPT TO:<bug@x.test>")).toBe("451 4.3.0 Internal server error, try again later")
      expect(yield* say(client, "RCPT TO:<ok@x.test>")).toBe("250 2.1.5 Accepted")
      const another = yield* server.connect()
      yield* another.ehlo("another.test")
      expect(yield* another.send({ from: "a@x.test", to: "ok@x.test", message: "Subject: x\r\n\r\nx\r\n" })).toMatchObject({ code: 250 })
    }))

  it.effect("running next twice is a defect: 451", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(SmtpApp.onMailFrom((next) => Effect.andThen(next, next)))
      const client = yield* kitSession(app)
      expect(yield* say(client, "MAIL FROM:<a@x.test>")).toBe("451 4.3.0 Internal server error, try again later")
    }))

  it.effect("a handler past its phase timeout gets 451 4.4.1 (on the fake clock)", () =>
    Effect.gen(function*() {
      const client = yield* kitSession(SmtpApp.empty.pipe(SmtpApp.onMailFrom(() => Effect.never)))
      const pending = yield* Effect.forkChild(say(client, "MAIL FROM:<a@x.test>"))
      yield* TestClock.adjust("30 seconds")
      expect(yield* Fiber.join(pending)).toBe("451 4.4.1 Timed out while processing the command, try again later")
      expect(yield* say(client, "NOOP")).toMatch(/^250 /)
    }))

  it.effect("a closing rejection answers 421 and closes the connection", () =>
    Effect.gen(function*() {
      const app = SmtpApp.empty.pipe(SmtpApp.onMailFrom(() => Effect.fail(Reject.closing("4.7.0", "Too many errors"))))
      const client = yield* kitSession(app)
      expect(yield* say(client, "MAIL FROM:<a@x.test>")).toBe("421 4.7.0 Too many errors")
      yield* client.closed
    }))

  it.effect("transactions: the envelope builds up and is reset after DATA and on RSET", () =>
    Effect.gen(function*() {
      const envelopes = yield* Ref.make<Array<string>>([])
      const app = SmtpApp.empty.pipe(
        SmtpApp.onData(() =>
          Effect.gen(function*() {
            const { envelope } = yield* Message
            const from = envelope.mailFrom.address === "" ? "<>" : envelope.mailFrom.address
            yield* Ref.update(envelopes, (all) => [...all, `${envelope.id}:${from}->${envelope.rcptTo.map((r) => r.address).join(",")}`])
          })
        )
      )
      const client = yield* kitSession(app)
      const message = (from: string, to: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          expect(yield* say(client, `MAIL FROM:<${from}>`)).toMatch(/^250 /)
          for (const rcpt of to) expect(yield* say(client, `RCPT TO:<${rcpt}>`)).toMatch(/^250 /)
          expect(yield* say(client, "DATA")).toMatch(/^354 /)
          expect(yield* say(client, "Subject: x\r\n\r\nbody\r\n.")).toMatch(/^250 /)
        })
      yield* message("a@x.test", ["b@x.test", "c@x.test"])
      expect(yield* say(client, "MAIL FROM:<dropped@x.test>")).toMatch(/^250 /)
      expect(yield* say(client, "RCPT TO:<dropped@x.test>")).toMatch(/^250 /)
      expect(yield* say(client, "RSET")).toMatch(/^250 /)
      yield* message("", ["d@x.test"])
      const seen = yield* Ref.get(envelopes)
      expect(seen).toHaveLength(2)
      expect(seen[0]).toBe("1:a@x.test->b@x.test,c@x.test")
      expect(seen[1]).toMatch(/^\d+:<>->d@x\.test$/)
    }))
})


describe("the app's own user type", () => {
  interface User {
    readonly name: string
    readonly quota: number
  }
  class CurrentUser extends Context.Service<CurrentUser, User>()("test/CurrentUser") {}

  it.live("auth accepts with a typed user; later phases read it as a service", () =>
    Effect.gen(function*() {
      const quotas = yield* Ref.make<Array<number>>([])
      const app = SmtpApp.empty.pipe(
        SmtpApp.onAuth(CurrentUser, (next) =>
          Effect.gen(function*() {
            const credentials = yield* Credentials
            if (Redacted.value(credentials.password) !== "pw") return yield* next
            return { name: credentials.username, quota: 42 }
          })
        ),
        SmtpApp.onMailFrom((next) =>
          Effect.gen(function*() {
            const user = yield* Effect.serviceOption(CurrentUser)
            const session = yield* SmtpSession.current
            if (Option.isNone(user)) return yield* Reject.permanent(530, "5.7.0", "Authentication required")
            expect(session.username).toEqual(Option.some(user.value.name))
            yield* Ref.update(quotas, (all) => [...all, user.value.quota])
            yield* next
          })
        )
      )
      const server = yield* serve(app, { tls })
      const options = { ignoreTLS: false, requireTLS: true, tls: { rejectUnauthorized: false } }
      const anonymous = yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: "x" }, options)
      expect(anonymous).toMatchObject({ ok: false, code: 530 })
      const signedIn = yield* send(server.address.port, { from: "a@x.test", to: "b@x.test", text: "x" }, {
        ...options,
        auth: { user: "carol", pass: "pw" }
      })
      expect(signedIn).toMatchObject({ ok: true })
      expect(yield* Ref.get(quotas)).toEqual([42])
    }))
})
