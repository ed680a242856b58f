/**
 * The envelope at each stage: Fumi "Envelope Structure" (before and after MAIL FROM, after RCPT TO, during DATA)
 * and smtp-server's "onMailFrom", "onRcptTo" and "onData" handlers. The envelope is the transaction's: a
 * transaction opens with MAIL FROM, `SmtpTransaction.current` has the sender once MAIL FROM is accepted and the
 * recipients accepted so far, and the data phase's `Message` has it whole. The command being handled is
 * `MailFrom` or `RcptTo`.
 */
import { Effect, Option } from "effect"
import { Accept, MailFrom, Message, RcptTo, SmtpApp, SmtpTransaction } from "effect-smtp"

export const fumiEnvelope = SmtpApp.empty.pipe(
  // #region fumi-session: Before MAIL FROM
  SmtpApp.onConnect((next) =>
    Effect.gen(function*() {
      // No envelope at connection: no transaction yet (`yield* SmtpTransaction` here would be a requirement no server meets)
      const transaction = yield* Effect.serviceOption(SmtpTransaction)
      yield* Effect.log(`Transaction: ${Option.isSome(transaction) ? "open" : "none"}`)
      yield* next
    })
  ),
  // #endregion
  // #region fumi-session: After MAIL FROM
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const { address, params } = yield* MailFrom // the sender being handled, with its ESMTP parameters decoded
      yield* Effect.log("MAIL FROM:", { address, params })
      yield* next
    })
  ),
  // #endregion
  // #region fumi-session: After RCPT TO
  SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      // Recipients accumulate in the transaction: the ones accepted so far
      const { rcptTo } = yield* SmtpTransaction.current
      yield* Effect.log("Recipients:", rcptTo.map((r) => r.address))
      yield* next
    })
  ),
  // #endregion
  // #region fumi-session: During DATA
  SmtpApp.onData((next) =>
    Effect.gen(function*() {
      const { mailFrom, rcptTo } = (yield* Message).envelope // complete envelope available
      yield* Effect.log(`From: ${mailFrom.address}`)
      yield* Effect.log(`To: ${rcptTo.map((r) => r.address).join(", ")}`)
      yield* next
    })
  )
  // #endregion
)

export const smtpServerHandlers = SmtpApp.empty.pipe(
  // #region smtp-server: onMailFrom
  SmtpApp.onMailFrom((next) =>
    SmtpTransaction.current.pipe(Effect.flatMap(({ id }) => Effect.log("Transaction #", id)), Effect.andThen(next))
  ),
  // #endregion
  // #region smtp-server: onRcptTo
  SmtpApp.onRcptTo((next) =>
    SmtpTransaction.current.pipe(Effect.flatMap(({ rcptTo }) => Effect.log("Recipients so far:", rcptTo.length)), Effect.andThen(next))
  ),
  // #endregion
  // #region smtp-server: onData
  SmtpApp.onData(() =>
    Effect.gen(function*() {
      const { envelope } = yield* Message // process the message with the full envelope
      yield* Effect.log("From:", envelope.mailFrom.address)
      yield* Effect.log("To:", envelope.rcptTo.map((r) => r.address))
      yield* Accept.ok("2.0.0", "Accepted")
    })
  )
  // #endregion
)
