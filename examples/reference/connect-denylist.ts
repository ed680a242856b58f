/**
 * Refusing clients at connect, before the greeting: Fumi "Connect (onConnect)" and "Building Plugins" (a plugin is
 * a function from app to app), and smtp-server "onConnect" (a denylist, a connection limit and a connection time).
 */
import { Clock, Context, Effect, Layer } from "effect"
import { Reject, SmtpApp, SmtpSession } from "effect-smtp"

// #region fumi-middleware: Connect (onConnect)
export const connect = SmtpApp.empty.pipe(
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const { remoteAddress } = yield* SmtpSession.current
      yield* Effect.log(`Connection from ${remoteAddress}`)
      // Block connections from specific IPs
      if (remoteAddress === "192.0.2.1") return yield* Reject.permanent(550, "5.7.1", "Access denied")
      yield* next
    })
  )
)
// #endregion

// #region fumi-middleware: Building Plugins
// A plugin is a function from app to app: every SmtpApp combinator is one already (bundle several with `flow`).
export const denylist = (blockedIps: ReadonlyArray<string>) =>
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const { remoteAddress } = yield* SmtpSession.current
      if (blockedIps.includes(remoteAddress)) return yield* Reject.permanent(550, "5.7.1", "Access denied")
      yield* next
    })
  )

// Usage
export const app = SmtpApp.empty.pipe(denylist(["192.0.2.1", "192.0.2.2"]))
// #endregion

/** What the smtp-server example leaves to the app: `isBlacklisted` and `getTooManyConnections`. */
export class ClientPolicy extends Context.Service<ClientPolicy, {
  readonly isBlacklisted: (ip: string) => Effect.Effect<boolean>
  readonly tooManyConnections: (ip: string) => Effect.Effect<boolean>
}>()("app/ClientPolicy") {}

// #region smtp-server: onConnect
/** `session.connectionTime`: connection state, built as the connection opens. */
export class ConnectionTime extends Context.Service<ConnectionTime, number>()("app/ConnectionTime") {}

export const guarded = SmtpApp.empty.pipe(
  SmtpApp.withConnectionState(Layer.effect(ConnectionTime, Clock.currentTimeMillis)),
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const { remoteAddress } = yield* SmtpSession.current
      yield* Effect.log(`Connection from ${remoteAddress}`)
      const policy = yield* ClientPolicy
      if (yield* policy.isBlacklisted(remoteAddress)) return yield* Reject.permanent(554, "5.7.1", "IP address is blacklisted")
      if (yield* policy.tooManyConnections(remoteAddress)) return yield* Reject.closing("4.7.0", "Too many connections")
      yield* next // the greeting (220) is sent only once the connect chain succeeds
    })
  )
)
// #endregion
