/**
 * Fumi "Data (onData)": the size check and reading the body. Past `maxMessageSize` the message stream fails with
 * `MessageTooLarge` (Fumi's `ctx.sizeExceeded`), here answered in the example's own words.
 */
import { Effect, Stream } from "effect"
import { Message, Reject, SmtpApp } from "effect-smtp"

// #region fumi-middleware: Data (onData)
export const data = SmtpApp.empty.pipe(
  SmtpApp.onData((next) =>
    Effect.gen(function*() {
      const { stream } = yield* Message
      // Read the message stream; it fails with MessageTooLarge if the message exceeded the size limit
      const body = yield* Stream.mkString(Stream.decodeText(stream)).pipe(
        Effect.catchTag("MessageTooLarge", () => Reject.permanent(552, "5.3.4", "Message too large"))
      )
      yield* Effect.log("Received message:", body)
      yield* next
    })
  )
)
// #endregion
