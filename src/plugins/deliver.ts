/**
 * The data phase that stores the message: `app.pipe(deliver)`.
 *
 * It reads the message through the app's `MessageStore` and answers only once
 * the store has all of it, with the store's id: `250 2.0.0 Ok: queued as <id>`,
 * the id its log line and the stored message carry. A storage fault is
 * answered with its `StorageError`'s reply (`452 4.3.1` when full, `451 4.3.0`
 * otherwise). Put it last: it does not call `next`.
 */
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
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
    let size = 0
    const counted = Stream.map(stream, (chunk) => {
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
      from: envelope.mailFrom.address,
      to: envelope.rcptTo.map((rcpt) => rcpt.address)
    })
    yield* Accept.ok("2.0.0", `Ok: queued as ${id}`)
  })
)
