/**
 * The close phase: Fumi "Close (onClose)" and smtp-server "onClose" (session statistics). It runs after the
 * connection has closed, for every connection (also one refused at connect); there is nobody left to reply to.
 */
import { Clock, Context, Effect, Layer, Option } from "effect"
import { Credentials, SmtpApp, SmtpSession, Username } from "effect-smtp"

// #region fumi-middleware: Close (onClose)
export const closing = SmtpApp.empty.pipe(
  SmtpApp.onClose(() => Effect.flatMap(SmtpSession.current, ({ id }) => Effect.log(`Session ${id} ended`)))
)
// #endregion

/** The statistics of a connection. */
export interface Stats {
  readonly id: string
  readonly from: string
  readonly user: Option.Option<string>
  readonly messages: number
  readonly duration: number
}

/** smtp-server's `logStats`: where the statistics go. */
export class SessionStats extends Context.Service<SessionStats, { readonly log: (stats: Stats) => Effect.Effect<void> }>()(
  "app/SessionStats"
) {}

// #region smtp-server: onClose
/** `session.connectionTime`: connection state, set as the connection opens. */
export class ConnectionTime extends Context.Service<ConnectionTime, number>()("app/ConnectionTime") {}

export const statistics = SmtpApp.empty.pipe(
  SmtpApp.withConnectionState(Layer.effect(ConnectionTime, Clock.currentTimeMillis)),
  SmtpApp.onClose(() =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      yield* Effect.log("Connection closed:", session.id)
      const duration = (yield* Clock.currentTimeMillis) - (yield* ConnectionTime)
      const stats = yield* SessionStats
      yield* stats.log({ id: session.id, from: session.remoteAddress, user: session.username, messages: session.messages, duration })
      // Nothing to clean up: the connection's state is released with it.
    })
  )
)
// #endregion

/** Who may log in, for the statistics to have a user (not in the smtp-server example). */
export const statisticsWithAuth = statistics.pipe(
  SmtpApp.onAuth(Username, () => Effect.map(Credentials, ({ username }) => username))
)
