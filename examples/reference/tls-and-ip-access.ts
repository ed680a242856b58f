/** Fumi "TLS Requirement Check" and "Access Control by IP". */
import { Effect } from "effect"
import { Reject, SmtpApp, SmtpSession } from "effect-smtp"

// #region fumi-session: TLS Requirement Check
export const tlsRequired = SmtpApp.empty.pipe(
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      if (!(yield* SmtpSession.current).secure) return yield* Reject.permanent(530, "5.7.0", "Must use STARTTLS")
      yield* next
    })
  )
)
// #endregion

// #region fumi-session: Access Control by IP
const trustedIps = ["192.0.2.1", "192.0.2.2"]

export const accessByIp = SmtpApp.empty.pipe(
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      const { remoteAddress, secure } = yield* SmtpSession.current
      const isTrusted = trustedIps.includes(remoteAddress)
      // At connect, only implicit TLS (port 465 style) is secure: STARTTLS comes later
      if (!isTrusted && !secure) return yield* Reject.permanent(530, "5.7.0", "TLS required for untrusted networks")
      yield* next
    })
  )
)
// #endregion
