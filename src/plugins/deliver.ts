/**
 * The data phase that stores the message: `app.pipe(deliver)`.
 *
 * It reads the message through the app's `MessageStore` and answers only once
 * the store has all of it, with the store's id: `250 2.0.0 Ok: queued as <id>`,
 * the id the engine's log line of the message and the stored message carry. A storage fault is
 * answered with its `StorageError`'s reply (`452 4.3.1` when full, `451 4.3.0`
 * otherwise). Put it last: it does not call `next`.
 */
import * as Effect from "effect/Effect"
import * as Accept from "../phases/Accept.ts"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { MessageStore } from "../services/MessageStore.ts"
import { Message } from "../services/PhaseInput.ts"
import { SmtpSession } from "../services/SmtpSession.ts"

export const deliver = SmtpApp.onData(() =>
  Effect.gen(function*() {
    const store = yield* MessageStore
    const { envelope, stream } = yield* Message
    const session = yield* SmtpSession.current
    const id = yield* store.store({ session, envelope }, stream).pipe(
      Effect.catchTag("StorageError", (error) =>
        Effect.logWarning("message not stored").pipe(
          Effect.annotateLogs({ reason: error.reason, error: error.message }),
          Effect.andThen(Effect.fail(error.rejection))
        ))
    )
    yield* Accept.queued(id)
  })
)
