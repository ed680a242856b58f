/** Fumi "Mail From (onMailFrom)": refusing senders by domain. */
import { Effect } from "effect"
import { MailFrom, Reject, SmtpApp } from "effect-smtp"

// #region fumi-middleware: Mail From (onMailFrom)
export const senders = SmtpApp.empty.pipe(
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const sender = (yield* MailFrom).address // the domain is lower-cased: SPAM.example matches too
      // Block specific sender domains
      if (sender.endsWith("@spam.example")) return yield* Reject.permanent(550, "5.7.1", "Sender domain blocked")
      yield* next
    })
  )
)
// #endregion
