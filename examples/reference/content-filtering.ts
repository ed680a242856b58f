/** Fumi "Content Filtering": reading the message and refusing spam. */
import { Effect, Stream } from "effect"
import { Message, Reject, SmtpApp } from "effect-smtp"

// #region fumi-middleware: Content Filtering
export const contentFilter = SmtpApp.empty.pipe(
  SmtpApp.onData((next) =>
    Effect.gen(function*() {
      const message = yield* Message.use(({ stream }) => Stream.mkString(Stream.decodeText(stream)))
      // Check for spam patterns
      if (message.includes("CLICK HERE NOW")) return yield* Reject.permanent(550, "5.7.1", "Message rejected as spam")
      yield* next
    })
  )
)
// #endregion
