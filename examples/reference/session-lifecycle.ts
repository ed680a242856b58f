/**
 * The session: Fumi "Accessing Session Data" and "Session Lifecycle". `SmtpSession.current` is a snapshot of the
 * connection in every phase; the log lines of a phase carry its id (`sessionId`) already.
 */
import { Effect, Option } from "effect"
import { Credentials, MailFrom, RcptTo, SmtpApp, SmtpSession, Username } from "effect-smtp"

// #region fumi-session: Accessing Session Data
export const accessing = SmtpApp.empty.pipe(
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      yield* Effect.log(`Session ${session.id} started`)
      yield* Effect.log(`Remote IP: ${session.remoteAddress}`)
      yield* Effect.log(`Secure: ${session.secure}`)
      yield* next
    })
  ),
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const session = yield* SmtpSession.current
      yield* Effect.log(`Session ${session.id}`)
      yield* Effect.log(`Client: ${session.clientHostname}`) // reverse DNS; the HELO name is `heloName`
      yield* Effect.log(`Opening: ${Option.getOrElse(session.openingCommand, () => "none")}`)
      yield* next
    })
  )
)
// #endregion

// #region fumi-session: Session Lifecycle
export const lifecycle = SmtpApp.empty.pipe(
  // 1. Connection established
  SmtpApp.onConnect((next) =>
    SmtpSession.current.pipe(Effect.flatMap((s) => Effect.log(`Connected from ${s.remoteAddress}`)), Effect.andThen(next))
  ),
  // 2. (Optional) Authentication: accepting is returning the user
  SmtpApp.onAuth(Username, () =>
    Effect.gen(function*() {
      const { username } = yield* Credentials
      yield* Effect.log(`Auth attempt: ${username}`)
      return username
    })
  ),
  // 3. MAIL FROM
  SmtpApp.onMailFrom((next) => MailFrom.use((from) => Effect.log(`MAIL FROM: ${from.address}`)).pipe(Effect.andThen(next))),
  // 4. RCPT TO (once per recipient)
  SmtpApp.onRcptTo((next) => RcptTo.use((to) => Effect.log(`RCPT TO: ${to.address}`)).pipe(Effect.andThen(next))),
  // 5. DATA
  SmtpApp.onData((next) => Effect.log("Receiving message...").pipe(Effect.andThen(next))),
  // 6. Connection closed
  SmtpApp.onClose(() => Effect.log("Session ended"))
)
// #endregion
