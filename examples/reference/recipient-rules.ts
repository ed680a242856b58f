/**
 * Recipients: Fumi "Recipient To (onRcptTo)" (local domains only) and "Conditional Logic Based on Authentication"
 * (relay for authenticated users only).
 */
import { Effect, Option, Redacted } from "effect"
import { Credentials, RcptTo, Reject, SmtpApp, Username } from "effect-smtp"

// #region fumi-middleware: Recipient To (onRcptTo)
export const recipients = SmtpApp.empty.pipe(
  SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const { mailbox } = yield* RcptTo
      // Only accept mail for specific domains
      if (mailbox.domain !== "mycompany.com") return yield* Reject.permanent(550, "5.7.1", "Recipient not accepted")
      yield* next
    })
  )
)
// #endregion

export const relay = SmtpApp.empty.pipe(
  // Who may log in (not in the Fumi example): the user is the login name.
  SmtpApp.onAuth(Username, (next) =>
    Effect.gen(function*() {
      const { username, password } = yield* Credentials
      return Redacted.value(password) === "secret" ? username : yield* next
    })
  ),
  // #region fumi-session: Conditional Logic Based on Authentication
  SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const { mailbox } = yield* RcptTo
      const user = yield* Effect.serviceOption(Username)
      // Authenticated users can send anywhere, others only to local domains
      if (Option.isNone(user) && mailbox.domain !== "mycompany.com") {
        return yield* Reject.permanent(550, "5.7.1", "Relay access denied")
      }
      yield* next
    })
  )
  // #endregion
)
