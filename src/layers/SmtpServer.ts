/**
 * The SMTP server as a scoped Layer.
 *
 * `SmtpServer.layer(app)` listens with the settings of `SmtpServerConfig` and
 * runs `app` for every connection, with the services the app requires taken
 * from the Layer's context: a requirement nobody provides is a compile error
 * where the Layer is launched. Closing the scope (SIGTERM or SIGINT under
 * `NodeRuntime.runMain`) shuts down gracefully: the listener stops, idle
 * connections get `421 4.3.2`, messages in flight get up to
 * `shutdownTimeout` to finish, then whatever is left is interrupted.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { AddressInfo } from "node:net"
import type { SmtpApp, UserKey } from "../phases/SmtpApp.ts"
import * as SmtpEngine from "../internal/engine/Engine.ts"
import type { SmtpServerVersionError } from "../internal/engine/SmtpServerVersion.ts"
import { SmtpConfigError, SmtpServerConfig } from "./SmtpServerConfig.ts"

export { SmtpServerVersionError } from "../internal/engine/SmtpServerVersion.ts"

/** The server could not listen: `reason` says why, `message` says it in words. */
export class SmtpListenError extends Schema.TaggedError<SmtpListenError>()("SmtpListenError", {
  reason: Schema.Literals(["AddressInUse", "AddressNotAvailable", "PermissionDenied", "Other"]),
  host: Schema.String,
  port: Schema.Number,
  message: Schema.String
}) {}

const reasons: Record<string, SmtpListenError["reason"]> = {
  EADDRINUSE: "AddressInUse",
  EADDRNOTAVAIL: "AddressNotAvailable",
  EACCES: "PermissionDenied"
}

const listenError = (host: string, port: number, error: NodeJS.ErrnoException | undefined, message: string) =>
  new SmtpListenError({ reason: reasons[error?.code ?? ""] ?? "Other", host, port, message })

/** A running server. */
export class SmtpServer extends Context.Service<SmtpServer, {
  /** The bound address: with port 0, the port the system picked. */
  readonly address: AddressInfo
  /** Open connections. */
  readonly connections: Effect.Effect<number>
}>()("effect-smtp/SmtpServer") {
  /** Serves `app`. */
  static readonly layer = <Cs, Ts, R, U extends UserKey>(
    app: SmtpApp<Cs, Ts, R, U>
  ): Layer.Layer<SmtpServer, SmtpListenError | SmtpConfigError | SmtpServerVersionError, R | SmtpServerConfig> =>
    Layer.effect(SmtpServer, serve(app))
}

const serve = Effect.fnUntraced(function*<Cs, Ts, R, U extends UserKey>(app: SmtpApp<Cs, Ts, R, U>) {
  const settings = yield* SmtpServerConfig
  const engine = yield* SmtpEngine.make(app, settings)
  const address = yield* Effect.acquireRelease(
    Effect.callback<AddressInfo, SmtpListenError>((resume) => {
      const onError = (error: NodeJS.ErrnoException) =>
        resume(Effect.fail(listenError(settings.host, settings.port, error, error.message)))
      engine.server.listener.once("error", onError)
      engine.server.listen(settings.port, settings.host, () => {
        engine.server.listener.off("error", onError)
        const bound = engine.server.listener.address()
        if (bound === null || typeof bound === "string") {
          return resume(Effect.fail(listenError(settings.host, settings.port, undefined, `not a TCP address: ${String(bound)}`)))
        }
        resume(Effect.succeed(bound))
      })
    }),
    () => shutdown(engine, settings.shutdownTimeout)
  )
  yield* Effect.logInfo("smtp server listening").pipe(Effect.annotateLogs({ component: "effect-smtp", host: address.address, port: address.port }))
  return SmtpServer.of({ address, connections: Effect.sync(engine.connections) })
})

const shutdown = (engine: SmtpEngine.SmtpEngine, timeout: Duration.Duration) =>
  Effect.gen(function*() {
    const closed = Effect.callback<void>((resume) => {
      engine.server.close(() => resume(Effect.void))
    })
    yield* engine.drain
    const finished = yield* Effect.andThen(closed, engine.settled).pipe(Effect.timeoutOption(timeout))
    if (finished._tag === "None") {
      yield* Effect.logWarning("shutdown timeout: interrupting handlers still running").pipe(
        Effect.annotateLogs({ component: "effect-smtp", busy: engine.busy() })
      )
      yield* engine.abort
      yield* closed
    }
    yield* Effect.logInfo("smtp server closed").pipe(Effect.annotateLogs("component", "effect-smtp"))
  })
