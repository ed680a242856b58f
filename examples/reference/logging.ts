/**
 * Logging: Fumi "Logging Middleware" and "Logging Complete Transaction", smtp-server "Complete Session Tracking
 * Example". Every log line of a phase is annotated with the connection's `sessionId` (and `remoteAddress` and
 * `phase`), so the `[${session.id}]` prefix of the originals is the logger's job here.
 */
import { Clock, Context, Effect, Layer, Option, Stream } from "effect"
import { Accept, Credentials, MailFrom, Message, RcptTo, SmtpApp, SmtpServer, SmtpServerConfig, SmtpSession, Username } from "effect-smtp"

// #region fumi-middleware: Logging Middleware
export const logging = SmtpApp.empty.pipe(
  SmtpApp.onConnect((next) =>
    SmtpSession.current.pipe(Effect.flatMap(({ remoteAddress }) => Effect.log(`Connected: ${remoteAddress}`)), Effect.andThen(next))
  ),
  SmtpApp.onMailFrom((next) => MailFrom.use(({ address }) => Effect.log(`MAIL FROM: ${address}`)).pipe(Effect.andThen(next))),
  SmtpApp.onRcptTo((next) => RcptTo.use(({ address }) => Effect.log(`RCPT TO: ${address}`)).pipe(Effect.andThen(next)))
)
// #endregion

export const transactionLog = SmtpApp.empty.pipe(
  // Who may log in (not in the Fumi example): the user is the login name.
  SmtpApp.onAuth(Username, () => Effect.map(Credentials, ({ username }) => username)),
  // #region fumi-session: Logging Complete Transaction
  SmtpApp.onData((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      const { envelope } = yield* Message
      const user = yield* Effect.serviceOption(Username)
      yield* Effect.log("Transaction:", {
        sessionId: session.id,
        clientIp: session.remoteAddress,
        clientHostname: session.clientHostname,
        secure: session.secure,
        authenticated: Option.isSome(user),
        user: Option.getOrNull(user),
        from: envelope.mailFrom.address,
        to: envelope.rcptTo.map((r) => r.address),
        transmissionType: session.transmissionType
      })
      yield* next
    })
  )
  // #endregion
)

// #region smtp-server: Complete Session Tracking Example
export class StartTime extends Context.Service<StartTime, number>()("app/StartTime") {}
export class User extends Context.Service<User, { readonly email: string }>()("app/User") {}

export const tracking = SmtpApp.empty.pipe(
  SmtpApp.withConnectionState(Layer.effect(StartTime, Clock.currentTimeMillis)),
  SmtpApp.onConnect((next) =>
    SmtpSession.current.pipe(Effect.flatMap((s) => Effect.log(`Connected from ${s.remoteAddress}`)), Effect.andThen(next))
  ),
  SmtpApp.onSecure((next) => Effect.log("Upgraded to TLS").pipe(Effect.andThen(next))), // the cipher: the session's `tls`
  SmtpApp.onAuth(User, () =>
    Effect.gen(function*() {
      const { username } = yield* Credentials
      yield* Effect.log(`Auth attempt: ${username}`)
      return { email: username }
    })
  ),
  SmtpApp.onMailFrom((next) => MailFrom.use((from) => Effect.log(`MAIL FROM: ${from.address}`)).pipe(Effect.andThen(next))),
  SmtpApp.onRcptTo((next) => RcptTo.use((to) => Effect.log(`RCPT TO: ${to.address}`)).pipe(Effect.andThen(next))),
  SmtpApp.onData(() =>
    Effect.gen(function*() {
      yield* Effect.log("Receiving message...")
      const { stream } = yield* Message
      const bytes = yield* Stream.runFold(stream, () => 0, (n, chunk) => n + chunk.length)
      yield* Effect.log(`Received ${bytes} bytes`)
      yield* Accept.ok("2.0.0", "Message accepted")
    })
  ),
  SmtpApp.onClose(() =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      const duration = (yield* Clock.currentTimeMillis) - (yield* StartTime)
      const user = yield* Effect.serviceOption(User)
      yield* Effect.log(`Closed after ${duration}ms`)
      yield* Effect.log(` User: ${Option.match(user, { onNone: () => "none", onSome: (u) => u.email })}`)
      yield* Effect.log(` Transactions: ${session.transactions}`)
      yield* Effect.log(` Secure: ${session.secure}`)
    })
  )
)

export const server = SmtpServer.layer(tracking).pipe(Layer.provide(SmtpServerConfig.layer({ port: 2525 })))
// #endregion
