/**
 * The README's "Testing your server" example: an app whose auth phase needs a
 * `Users` service and whose rcpt phase needs a `Mailboxes` service, tested
 * with both replaced by test layers, in memory and on the fake clock.
 */
import { afterAll, expect, layer, vi } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option, Redacted } from "effect"
import { TestClock } from "effect/testing"
import * as net from "node:net"
import { Credentials, RcptTo, Reject, SmtpApp, Username } from "effect-smtp"
import { SmtpTest } from "effect-smtp/testing"

// The app: AUTH checks Users, RCPT TO checks Mailboxes.
class Users extends Context.Service<Users, {
  readonly verify: (username: string, password: Redacted.Redacted<string>) => Effect.Effect<boolean>
}>()("app/Users") {
  static readonly layerTest = (passwords: Record<string, string>) =>
    Layer.succeed(Users, { verify: (username, password) => Effect.succeed(passwords[username] === Redacted.value(password)) })
}

class Mailboxes extends Context.Service<Mailboxes, {
  readonly exists: (address: string) => Effect.Effect<boolean>
}>()("app/Mailboxes") {}

const app = SmtpApp.empty.pipe(
  SmtpApp.onAuth(Username, (next) =>
    Effect.gen(function*() {
      const { password, username } = yield* Credentials
      if (yield* Users.use((users) => users.verify(username, password))) return username // accepted, as this user
      return yield* next // the end of the auth chain answers 535 5.7.8
    })
  ),
  SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const { mailbox } = yield* RcptTo
      if (yield* Mailboxes.use((mailboxes) => mailboxes.exists(mailbox.address))) return yield* next
      return yield* Reject.permanent(550, "5.1.1", "No such mailbox")
    })
  )
)

// The test: no port (and this file fails if anything listens), mock layers, fake clock.
const listen = vi.spyOn(net.Server.prototype, "listen")
afterAll(() => expect(listen).not.toHaveBeenCalled())
const TestServer = SmtpTest.layer(app, { allowInsecureAuth: true }).pipe(Layer.provide([ // in memory: AUTH without TLS
  Users.layerTest({ alice: "secret" }),
  Layer.mock(Mailboxes, { exists: (to) => to.startsWith("slow@") ? Effect.never : Effect.succeed(to === "bob@example.com") })
]))

layer(TestServer)("mail server", (it) => {
  it.effect("checks credentials with Users", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.example")
      const wrong = yield* Effect.forkChild(client.auth({ method: "PLAIN", username: "alice", password: "nope" }))
      yield* TestClock.adjust("1 second") // a failed AUTH is answered after a delay, here on the fake clock
      expect(yield* Fiber.join(wrong)).toMatchObject({ code: 535, enhanced: "5.7.8" })
      expect(yield* client.auth({ method: "PLAIN", username: "alice", password: "secret" })).toMatchObject({ code: 235 })
      yield* client.quit
      expect(yield* client.user(Username)).toEqual(Option.some("alice")) // what the app accepted
    }))
  it.effect("checks recipients with Mailboxes, within the rcpt phase timeout", () =>
    Effect.gen(function*() {
      const client = yield* SmtpTest.connect()
      yield* client.ehlo("client.example")
      yield* client.mailFrom("alice@example.com")
      expect(yield* client.rcptTo("bob@example.com")).toMatchObject({ code: 250 })
      expect(yield* client.rcptTo("nobody@example.com")).toMatchObject({ code: 550, enhanced: "5.1.1" })
      const slow = yield* Effect.forkChild(client.rcptTo("slow@example.com"))
      yield* TestClock.adjust("30 seconds") // the rcpt phase timeout, on the fake clock
      expect(yield* Fiber.join(slow)).toMatchObject({ code: 451, enhanced: "4.4.1" })
    }))
})
