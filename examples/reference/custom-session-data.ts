/**
 * smtp-server "Custom Session Data": what the example keeps on the session object is state of the app's own,
 * typed. What lives as long as the connection is connection state; the spam score of a message is transaction
 * state (from MAIL FROM to the end of the message, or RSET); the time of the AUTH belongs to the user; and the
 * count of messages the session has already (`messages`).
 */
import { Clock, Context, Effect, Layer, Ref } from "effect"
import { Accept, Credentials, MailFrom, SmtpApp, SmtpSession } from "effect-smtp"

/** The example's `calculateSpamScore`. */
export const calculateSpamScore = (address: string): number => (address.endsWith(".invalid") ? 9 : 1)

// #region smtp-server: Custom Session Data
export interface Custom { readonly tags: ReadonlyArray<string>; readonly priority: "normal" | "high" }
export class ReceivedAt extends Context.Service<ReceivedAt, number>()("app/ReceivedAt") {}
export class CustomData extends Context.Service<CustomData, Ref.Ref<Custom>>()("app/CustomData") {}
export class SpamScore extends Context.Service<SpamScore, Ref.Ref<number>>()("app/SpamScore") {}
export class User extends Context.Service<User, { readonly username: string; readonly authenticatedAt: number }>()("app/User") {}

export const app = SmtpApp.empty.pipe(
  SmtpApp.withConnectionState(Layer.effect(ReceivedAt, Clock.currentTimeMillis)),
  SmtpApp.withConnectionState(Layer.effect(CustomData, Ref.make<Custom>({ tags: [], priority: "normal" }))),
  SmtpApp.withTransactionState(Layer.effect(SpamScore, Ref.make(0))),
  SmtpApp.onAuth(User, () =>
    Effect.gen(function*() {
      const { username } = yield* Credentials
      return { username, authenticatedAt: yield* Clock.currentTimeMillis } // add authentication time
    })
  ),
  SmtpApp.onMailFrom((next) =>
    Effect.gen(function*() {
      const { address } = yield* MailFrom
      yield* Ref.set(yield* SpamScore, calculateSpamScore(address)) // add spam score
      yield* next
    })
  ),
  SmtpApp.onData(() =>
    Effect.gen(function*() {
      yield* Effect.log("Session duration:", (yield* Clock.currentTimeMillis) - (yield* ReceivedAt))
      yield* Effect.log("Spam score:", yield* Ref.get(yield* SpamScore))
      yield* Accept.ok("2.0.0", "Accepted")
    })
  ),
  SmtpApp.onClose(() =>
    Effect.flatMap(SmtpSession.current, (session) => Effect.log("Total messages:", session.messages))
  )
)
// #endregion
