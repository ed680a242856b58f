/**
 * Compile-time guarantees: `npm test` type-checks this file, so each
 * `@ts-expect-error` below fails the build if the error it expects goes away.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { MailFrom, RcptTo, Reject, SmtpApp, SmtpServer, SmtpServerConfig } from "../src/index.ts"

class Users extends Context.Service<Users, { readonly exists: (name: string) => Effect.Effect<boolean> }>()("test/Users") {}

const app = SmtpApp.empty.pipe(
  SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const users = yield* Users
      const rcpt = yield* RcptTo
      if (!(yield* users.exists(rcpt.mailbox.localPart))) {
        return yield* Reject.permanent(550, "5.1.1", "No such user")
      }
      yield* next
    })
  )
)

const server = SmtpServer.layer(app).pipe(Layer.provide(SmtpServerConfig.layer({ port: 0 })))

describe("types", () => {
  it("a service the app needs and nobody provides is a compile error where the server is launched", () => {
    // @ts-expect-error Users is required by the rcpt to phase and not provided
    const launch: Effect.Effect<never, unknown, never> = Layer.launch(server)
    const provided: Effect.Effect<never, unknown, never> = Layer.launch(
      server.pipe(Layer.provide(Layer.succeed(Users, { exists: () => Effect.succeed(true) })))
    )
    expect([typeof launch, typeof provided]).toEqual(["object", "object"])
  })

  it("a phase's own input is provided by the phase; another phase's is not", () => {
    const wrongPhase = SmtpApp.empty.pipe(SmtpApp.onMailFrom((next) => Effect.andThen(RcptTo, next)))
    const rightPhase = SmtpApp.empty.pipe(SmtpApp.onMailFrom((next) => Effect.andThen(MailFrom, next)))
    const launchable = (layer: Layer.Layer<SmtpServer, unknown, never>) => layer
    // @ts-expect-error RcptTo is not available in the mail from phase
    launchable(SmtpServer.layer(wrongPhase).pipe(Layer.provide(SmtpServerConfig.layer())))
    expect(launchable(SmtpServer.layer(rightPhase).pipe(Layer.provide(SmtpServerConfig.layer())))).toBeDefined()
  })

  it("a middleware whose errors are not rejections does not compile until they are mapped", () => {
    class StoreDown extends Error {}
    const failing = Effect.fail(new StoreDown("disk full"))
    // @ts-expect-error StoreDown is not an SmtpRejection
    SmtpApp.onData(() => failing)
    const mapped = SmtpApp.onData(() =>
      failing.pipe(Effect.mapError(() => Reject.temporary(451, "4.3.0", "Storage unavailable")))
    )
    const orDie = SmtpApp.onData(() => Effect.orDie(failing))
    expect([typeof mapped, typeof orDie]).toEqual(["function", "function"])
  })

  it("reply codes and enhanced codes must agree in class", () => {
    // @ts-expect-error 550 is not a temporary code
    expect(() => Reject.temporary(550, "4.1.1", "x")).toThrow()
    // @ts-expect-error a permanent rejection needs a 5.x.x enhanced code
    expect(() => Reject.permanent(550, "4.1.1", "x")).toThrow()
    expect(() => Reject.permanent(550, "5.1.1", "line\r\nbreak")).toThrow()
    expect(Reject.permanent(550, "5.1.1", "No such user").line).toBe("550 5.1.1 No such user")
  })
})
