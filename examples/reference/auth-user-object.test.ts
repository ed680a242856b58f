import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Redacted } from "effect"
import { TestClock } from "effect/testing"
import { SmtpTest } from "effect-smtp/testing"
import { Account, accounts, admin, MailUser, mailUsers, User, Users } from "./auth-user-object.ts"
import { captureLogs } from "./test-logger.ts"

const alice = { id: 7, username: "alice", email: "alice@example.com", roles: ["sender"] }

describe("auth: the app's user", () => {
  it.effect("Fumi onAuth: admin/secret is accepted as { id: 1, name: 'Admin' }", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(admin, { allowInsecureAuth: true })
      const client = yield* server.connect()
      yield* client.ehlo("client.example")
      expect(yield* client.auth({ method: "PLAIN", username: "admin", password: "secret" })).toEqual({
        code: 235,
        enhanced: "2.7.0",
        lines: ["Authentication successful"]
      })
      yield* client.quit
      expect(yield* client.user(User)).toEqual(Option.some({ id: 1, name: "Admin" }))
    }))

  it.effect("Fumi onAuth: anything else gets 535 5.7.8 Invalid credentials (after the failure delay)", () =>
    Effect.gen(function*() {
      const server = yield* SmtpTest.make(admin, { allowInsecureAuth: true })
      const client = yield* server.connect()
      yield* client.ehlo("client.example")
      const wrong = yield* Effect.forkChild(client.auth({ method: "LOGIN", username: "admin", password: "guess" }))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(wrong)).toEqual({ code: 535, enhanced: "5.7.8", lines: ["Invalid credentials"] })
      yield* client.quit
      expect(yield* client.user(User)).toEqual(Option.none())
    }))

  it.effect("Fumi User Authentication: the user from Users, read typed in MAIL FROM", () => {
    const logs = captureLogs()
    const users = Layer.succeed(Users, {
      authenticate: (username, password) =>
        Effect.succeed(username === "alice" && Redacted.value(password) === "wonderland" ? Option.some(alice) : Option.none())
    })
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(accounts, { allowInsecureAuth: true })
      const anonymous = yield* server.connect()
      yield* anonymous.ehlo("client.example")
      yield* anonymous.mailFrom("someone@example.net")
      const client = yield* server.connect()
      yield* client.ehlo("client.example")
      const wrong = yield* Effect.forkChild(client.auth({ method: "PLAIN", username: "alice", password: "nope" }))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(wrong)).toEqual({ code: 535, enhanced: "5.7.8", lines: ["Authentication failed"] })
      expect(yield* client.auth({ method: "PLAIN", username: "alice", password: "wonderland" })).toMatchObject({ code: 235 })
      expect(yield* client.mailFrom("alice@example.com")).toEqual({ code: 250, enhanced: "2.1.0", lines: ["Accepted"] })
      yield* client.quit
      expect(yield* client.user(Account)).toEqual(Option.some(alice))
      expect(logs.lines).toEqual(["[test1] Authenticated user: none", "[test2] Authenticated user: alice"])
    }).pipe(Effect.provide([logs.layer, users]))
  })

  it.effect("smtp-server Authentication: the user set by onAuth is read in MAIL FROM", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const server = yield* SmtpTest.make(mailUsers, { allowInsecureAuth: true })
      const client = yield* server.connect()
      yield* client.ehlo("client.example")
      yield* client.auth({ method: "LOGIN", username: "anyone", password: "anything" })
      yield* client.mailFrom("anyone@example.com")
      yield* client.quit
      expect(yield* client.user(MailUser)).toEqual(Option.some({ id: 123, email: "user@example.com" }))
      expect(logs.lines).toEqual(["[test1] user@example.com"])
    }).pipe(Effect.provide(logs.layer))
  })
})
