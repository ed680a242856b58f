/**
 * Fumi "Session-Based Rate Limiting": recipients counted per connection. A Ref in connection state replaces the
 * Map keyed by session id: each connection has its own, and it goes when the connection closes.
 */
import { Context, Effect, flow, Layer, Ref } from "effect"
import { Reject, SmtpApp } from "effect-smtp"

// #region fumi-session: Session-Based Rate Limiting
export class RecipientCount extends Context.Service<RecipientCount, Ref.Ref<number>>()("app/RecipientCount") {}

export const recipientLimit = flow(
  SmtpApp.withConnectionState(Layer.effect(RecipientCount, Ref.make(0))),
  SmtpApp.onRcptTo((next) =>
    Effect.gen(function*() {
      const count = yield* Ref.updateAndGet(yield* RecipientCount, (n) => n + 1)
      // Limit recipients per session
      if (count > 100) return yield* Reject.temporary(452, "4.5.3", "Too many recipients")
      yield* next
    })
  )
)
// #endregion

export const app = SmtpApp.empty.pipe(recipientLimit)
