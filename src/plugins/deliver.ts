/**
 * The data phase that stores the message: `app.pipe(deliver)`.
 *
 * It reads the message through the app's `MessageStore` and answers 250 only
 * once the store has all of it; a storage fault is answered with its
 * `StorageError`'s reply (`452 4.3.1` when full, `451 4.3.0` otherwise). Put it
 * last: it does not call `next`.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as SmtpApp from "../phases/SmtpApp.ts"
import { MessageStore } from "../services/MessageStore.ts"
import { Message } from "../services/PhaseInput.ts"
import { reversePath } from "../services/SmtpAddress.ts"
import { SmtpSession } from "../services/SmtpSession.ts"
import { SmtpTransaction } from "../services/SmtpTransaction.ts"

export const deliver = SmtpApp.onData(() =>
  Effect.gen(function*() {
    const store = yield* MessageStore
    const message = yield* Message
    const session = yield* SmtpSession.current
    const envelope = yield* SmtpTransaction.envelope
    let size = 0
    const counted = Stream.map(message.stream, (chunk) => {
      size += chunk.length
      return chunk
    })
    const id = yield* store.store({ session, envelope }, counted).pipe(
      Effect.catchTag("StorageError", (error) =>
        Effect.logWarning("message not stored", { reason: error.reason, error: error.message }).pipe(
          Effect.andThen(Effect.fail(error.rejection))
        ))
    )
    yield* Effect.logInfo("message accepted", {
      id,
      size,
      from: Option.match(envelope.mailFrom, { onNone: () => "", onSome: reversePath }),
      to: envelope.rcptTo.map((rcpt) => rcpt.mailbox.address)
    })
  })
)
